/**
 * A pickle virtual machine that only builds data. Python's unpickler imports and calls whatever
 * GLOBAL names, which is how a malicious checkpoint runs code; this one resolves every global
 * against a whitelist of constructors implemented here as plain data builders, and refuses any
 * other name with an UnsafePickleError. It covers the opcodes of protocols 0-5 that `torch.save`
 * and ordinary data pickles emit.
 *
 * Python values become: None → null, bool → boolean, int → number (bigint beyond 2^53), float →
 * number, str → string, bytes/bytearray → Uint8Array, list → array, tuple → PickleTuple, dict →
 * Map, set/frozenset → Set, a whitelisted global → PickleGlobal, and a call → whatever the
 * global's implementation returns.
 */
import { FormatError, quoteValue, UnsafePickleError } from '../errors.js';

/** A Python tuple (kept distinct from lists, which are plain arrays). */
export class PickleTuple {
  constructor(readonly items: readonly unknown[]) {}
}

/** What a whitelisted global does when the pickle uses it. */
export interface PickleGlobalImpl {
  /** REDUCE / NEWOBJ / INST / OBJ: build a value from the positional arguments. */
  call?(args: readonly unknown[], where: string): unknown;
  /** NEWOBJ (`cls.__new__(cls, *args)`); defaults to `call`. */
  newobj?(args: readonly unknown[], where: string): unknown;
  /** BUILD on an object this global made: returns the object to keep on the stack. */
  build?(obj: unknown, state: unknown, where: string): unknown;
}

/** A global the pickle named (`module.name`), pushed by GLOBAL / STACK_GLOBAL. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly impl: PickleGlobalImpl,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

export interface UnpickleOptions {
  /** The whitelist, keyed by `module.name`. Anything else is an UnsafePickleError. */
  globals: ReadonlyMap<string, PickleGlobalImpl>;
  /** Resolves persistent ids (PERSID / BINPERSID), e.g. torch storages. */
  persistentLoad?: (pid: unknown, where: string) => unknown;
  /** Names the stream in error messages, e.g. "model.bin: archive/data.pkl". */
  what?: string;
  /** Most values the stack (plus marks) may hold; default 1,000,000. */
  maxStack?: number;
  /** Most memo entries; default 1,000,000. */
  maxMemo?: number;
}

function orderedDictFrom(args: readonly unknown[], where: string): Map<unknown, unknown> {
  const map = new Map<unknown, unknown>();
  if (args.length === 0) return map;
  const items = args[0];
  const list = items instanceof PickleTuple ? items.items : Array.isArray(items) ? items : undefined;
  if (args.length > 1 || list === undefined) throw new FormatError(`${where}: unsupported OrderedDict(...) arguments`);
  for (const pair of list) {
    if (!(pair instanceof PickleTuple) || pair.items.length !== 2)
      throw new FormatError(`${where}: OrderedDict item is not a pair`);
    map.set(pair.items[0], pair.items[1]);
  }
  return map;
}

function setFrom(args: readonly unknown[], where: string): Set<unknown> {
  if (args.length === 0) return new Set();
  const items = args[0];
  const list = items instanceof PickleTuple ? items.items : Array.isArray(items) ? items : undefined;
  if (args.length > 1 || list === undefined) throw new FormatError(`${where}: unsupported set(...) arguments`);
  return new Set(list);
}

/**
 * Harmless standard-library globals: `collections.OrderedDict` (→ Map; a BUILD on it, which
 * carries attributes such as a state dict's `_metadata`, is ignored), `_codecs.encode(s,
 * 'latin1')` (how protocol 2 spells bytes) and `set` / `frozenset`.
 */
export const BASIC_GLOBALS: ReadonlyMap<string, PickleGlobalImpl> = new Map<string, PickleGlobalImpl>([
  ['collections.OrderedDict', { call: orderedDictFrom, build: (obj) => obj }],
  [
    '_codecs.encode',
    {
      call(args, where) {
        const [text, encoding] = args;
        if (
          typeof text !== 'string' ||
          (encoding !== 'latin1' && encoding !== 'latin-1' && encoding !== 'iso-8859-1')
        ) {
          throw new FormatError(`${where}: _codecs.encode is only supported for latin1 strings`);
        }
        const out = new Uint8Array(text.length);
        for (let i = 0; i < text.length; i++) {
          const c = text.charCodeAt(i);
          if (c > 0xff) throw new FormatError(`${where}: _codecs.encode(latin1) of a character beyond U+00FF`);
          out[i] = c;
        }
        return out;
      },
    },
  ],
  ['builtins.set', { call: setFrom }],
  ['builtins.frozenset', { call: setFrom }],
  ['__builtin__.set', { call: setFrom }],
  ['__builtin__.frozenset', { call: setFrom }],
]);

const OPCODE_NAMES: Readonly<Record<number, string>> = {
  0x28: 'MARK',
  0x2e: 'STOP',
  0x30: 'POP',
  0x31: 'POP_MARK',
  0x32: 'DUP',
  0x46: 'FLOAT',
  0x49: 'INT',
  0x4a: 'BININT',
  0x4b: 'BININT1',
  0x4c: 'LONG',
  0x4d: 'BININT2',
  0x4e: 'NONE',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x52: 'REDUCE',
  0x53: 'STRING',
  0x54: 'BINSTRING',
  0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE',
  0x58: 'BINUNICODE',
  0x61: 'APPEND',
  0x62: 'BUILD',
  0x63: 'GLOBAL',
  0x64: 'DICT',
  0x7d: 'EMPTY_DICT',
  0x65: 'APPENDS',
  0x67: 'GET',
  0x68: 'BINGET',
  0x69: 'INST',
  0x6a: 'LONG_BINGET',
  0x6c: 'LIST',
  0x5d: 'EMPTY_LIST',
  0x6f: 'OBJ',
  0x70: 'PUT',
  0x71: 'BINPUT',
  0x72: 'LONG_BINPUT',
  0x73: 'SETITEM',
  0x74: 'TUPLE',
  0x29: 'EMPTY_TUPLE',
  0x75: 'SETITEMS',
  0x47: 'BINFLOAT',
  0x80: 'PROTO',
  0x81: 'NEWOBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x85: 'TUPLE1',
  0x86: 'TUPLE2',
  0x87: 'TUPLE3',
  0x88: 'NEWTRUE',
  0x89: 'NEWFALSE',
  0x8a: 'LONG1',
  0x8b: 'LONG4',
  0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE',
  0x8d: 'BINUNICODE8',
  0x8e: 'BINBYTES8',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x92: 'NEWOBJ_EX',
  0x93: 'STACK_GLOBAL',
  0x94: 'MEMOIZE',
  0x95: 'FRAME',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

/** Longest GLOBAL / INST / text-opcode line accepted. */
const MAX_LINE = 4096;
/**
 * Longest LONG1 / LONG4 integer accepted, in bytes, and its decimal spelling for the text opcodes.
 * Checkpoints hold sizes and offsets (8 bytes at most); refusing longer ones keeps decoding linear.
 */
const MAX_INT_BYTES = 16;
const MAX_INT_DIGITS = 40;

/** Runs the pickle in `data` and returns the value STOP leaves. Never executes anything. */
export function unpickle(data: Uint8Array, options: UnpickleOptions): unknown {
  const what = options.what ?? 'pickle';
  const maxStack = options.maxStack ?? 1_000_000;
  const maxMemo = options.maxMemo ?? 1_000_000;
  const utf8 = new TextDecoder('utf-8');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  /** Which whitelisted global made an object, so BUILD can be routed to it. */
  const madeBy = new WeakMap<object, PickleGlobalImpl>();
  let pos = 0;
  let op = 0;
  let opPos = 0;

  const where = () => `${what} (byte ${opPos}, ${OPCODE_NAMES[op] ?? 'opcode'})`;
  const fail = (msg: string): never => {
    throw new FormatError(`${where()}: ${msg}`);
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > data.length) {
      throw new FormatError(
        `${what} is truncated: ${OPCODE_NAMES[op] ?? 'opcode'} at byte ${opPos} needs ${n} more bytes but the stream has ${data.length - pos}`,
      );
    }
  };
  const u8 = () => {
    need(1);
    return data[pos++]!;
  };
  const u16 = () => {
    need(2);
    pos += 2;
    return view.getUint16(pos - 2, true);
  };
  const i32 = () => {
    need(4);
    pos += 4;
    return view.getInt32(pos - 4, true);
  };
  const u32 = () => {
    need(4);
    pos += 4;
    return view.getUint32(pos - 4, true);
  };
  const u64 = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`length ${v} is absurd`);
    return Number(v);
  };
  const bytes = (n: number) => {
    need(n);
    pos += n;
    return data.subarray(pos - n, pos);
  };
  const line = () => {
    // Looks no further than the longest line allowed, so a missing newline costs MAX_LINE, not the stream.
    const end = data.subarray(pos, pos + MAX_LINE + 1).indexOf(0x0a);
    if (end < 0) {
      if (pos + MAX_LINE + 1 <= data.length) fail('line too long');
      throw new FormatError(
        `${what} is truncated: ${OPCODE_NAMES[op] ?? 'opcode'} at byte ${opPos} has no end of line`,
      );
    }
    const s = utf8.decode(data.subarray(pos, pos + end));
    pos += end + 1;
    return s;
  };

  const push = (v: unknown) => {
    if (stack.length + marks.length >= maxStack) fail(`stack grows beyond ${maxStack} entries`);
    stack.push(v);
  };
  const floor = () => (marks.length > 0 ? marks[marks.length - 1]! : 0);
  const pop = (): unknown => {
    if (stack.length <= floor()) fail('stack underflow (corrupt pickle)');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length <= floor()) fail('stack underflow (corrupt pickle)');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) return fail('no MARK to pop to (corrupt pickle)');
    return stack.splice(m);
  };
  const memoPut = (index: number, v: unknown) => {
    if (!memo.has(index) && memo.size >= maxMemo) fail(`memo grows beyond ${maxMemo} entries`);
    memo.set(index, v);
  };
  const memoGet = (index: number) => {
    if (!memo.has(index)) fail(`memo key ${index} was never stored (corrupt pickle)`);
    push(memo.get(index));
  };
  const intValue = (b: bigint): number | bigint =>
    b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  const parseIntText = (s: string): number | bigint => {
    const t = s.endsWith('L') ? s.slice(0, -1) : s;
    if (!/^[+-]?\d+$/.test(t)) fail(`bad integer ${quoteValue(s)}`);
    const digits = t.length - (/^[+-]/.test(t) ? 1 : 0);
    if (digits > MAX_INT_DIGITS) fail(`integer of ${digits} digits is too long (at most ${MAX_INT_DIGITS})`);
    return intValue(BigInt(t));
  };
  /** A little-endian two's-complement integer (LONG1 / LONG4) of at most MAX_INT_BYTES. */
  const parseIntBytes = (b: Uint8Array): number | bigint => {
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b.length > 0 && (b[b.length - 1]! & 0x80) !== 0) v -= 1n << BigInt(8 * b.length);
    return intValue(v);
  };
  const resolveGlobal = (module: string, name: string): PickleGlobal => {
    const qualified = `${module}.${name}`;
    const impl = options.globals.get(qualified);
    if (impl === undefined) {
      throw new UnsafePickleError(
        `${what}: pickle asks for global ${qualified}, which is not allowed (only tensor data is loaded from pickles)`,
      );
    }
    return new PickleGlobal(module, name, impl);
  };
  const callGlobal = (callable: unknown, args: readonly unknown[], how: 'call' | 'newobj'): unknown => {
    if (!(callable instanceof PickleGlobal)) return fail('calls something that is not a global');
    const impl = callable.impl;
    const fn = how === 'newobj' ? (impl.newobj ?? impl.call) : impl.call;
    if (fn === undefined) return fail(`${callable.qualifiedName} cannot be called`);
    const result = fn.call(impl, args, where());
    if (impl.build !== undefined && typeof result === 'object' && result !== null) madeBy.set(result, impl);
    return result;
  };
  const tupleArgs = (v: unknown): readonly unknown[] => {
    if (!(v instanceof PickleTuple)) return fail('arguments are not a tuple');
    return v.items;
  };
  const setItems = (target: unknown, items: unknown[]) => {
    if (!(target instanceof Map)) return fail('sets items on something that is not a dict');
    if (items.length % 2 !== 0) fail('odd number of items for a dict');
    for (let i = 0; i < items.length; i += 2) target.set(items[i], items[i + 1]);
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    if (!Array.isArray(target)) return fail('appends to something that is not a list');
    for (const it of items) target.push(it);
  };

  for (;;) {
    opPos = pos;
    if (pos >= data.length) throw new FormatError(`${what} is truncated: the stream ends at byte ${pos} without STOP`);
    op = data[pos++]!;
    switch (op) {
      case 0x80: {
        // PROTO
        const v = u8();
        if (v > 5) fail(`pickle protocol ${v} is newer than 5`);
        break;
      }
      case 0x95: {
        // FRAME: framing is only a hint for buffered readers.
        const n = u64();
        need(n);
        break;
      }
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        if (stack.length + marks.length >= maxStack) fail(`stack grows beyond ${maxStack} entries`);
        marks.push(stack.length);
        break;
      case 0x30: // POP
        if (stack.length > floor()) stack.pop();
        else popMark();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4a: // BININT
        push(i32());
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x8a: // LONG1
      case 0x8b: {
        // LONG4
        const n = op === 0x8a ? u8() : i32();
        if (n < 0) fail('negative LONG4 length');
        if (n > MAX_INT_BYTES) fail(`integer of ${n} bytes is too long (at most ${MAX_INT_BYTES})`);
        push(parseIntBytes(bytes(n)));
        break;
      }
      case 0x49: {
        // INT (text; "00" / "01" are False / True)
        const s = line();
        push(s === '00' ? false : s === '01' ? true : parseIntText(s));
        break;
      }
      case 0x4c: // LONG (text)
        push(parseIntText(line()));
        break;
      case 0x46: {
        // FLOAT (text)
        const s = line();
        const v = Number(s);
        if (s.trim() === '' || (Number.isNaN(v) && !/^[+-]?nan$/i.test(s.trim()))) fail(`bad float ${quoteValue(s)}`);
        push(v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        push(utf8.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(utf8.decode(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        push(utf8.decode(bytes(u64())));
        break;
      case 0x54: {
        // BINSTRING (Python 2 str; decoded as UTF-8, as torch.load does)
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        push(utf8.decode(bytes(n)));
        break;
      }
      case 0x55: // SHORT_BINSTRING
        push(utf8.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
      case 0x96: // BYTEARRAY8
        push(bytes(u64()).slice());
        break;
      case 0x7d: // EMPTY_DICT
        push(new Map());
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const m = new Map();
        setItems(m, items);
        push(m);
        break;
      }
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x29: // EMPTY_TUPLE
        push(new PickleTuple([]));
        break;
      case 0x74: // TUPLE
        push(new PickleTuple(popMark()));
        break;
      case 0x85: // TUPLE1
        push(new PickleTuple([pop()]));
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        push(new PickleTuple([a, b]));
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        push(new PickleTuple([a, b, c]));
        break;
      }
      case 0x8f: // EMPTY_SET
        push(new Set());
        break;
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail('adds items to something that is not a set');
        for (const it of items) (s as Set<unknown>).add(it);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x71: // BINPUT
        memoPut(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, top());
        break;
      case 0x70: {
        // PUT (text)
        const k = parseIntText(line());
        if (typeof k !== 'number' || k < 0) fail('bad memo key');
        memoPut(k as number, top());
        break;
      }
      case 0x68: // BINGET
        memoGet(u8());
        break;
      case 0x6a: // LONG_BINGET
        memoGet(u32());
        break;
      case 0x67: {
        // GET (text)
        const k = parseIntText(line());
        if (typeof k !== 'number') fail('bad memo key');
        memoGet(k as number);
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: {
        // EXT4: copyreg's extension registry names arbitrary globals.
        const code = op === 0x82 ? u8() : op === 0x83 ? u16() : i32();
        throw new UnsafePickleError(
          `${what}: pickle asks for extension code ${code} (a global from copyreg's registry), which is not allowed`,
        );
      }
      case 0x52: {
        // REDUCE
        const args = tupleArgs(pop());
        const callable = pop();
        push(callGlobal(callable, args, 'call'));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = tupleArgs(pop());
        const cls = pop();
        push(callGlobal(cls, args, 'newobj'));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = tupleArgs(pop());
        const cls = pop();
        if (!(kwargs instanceof Map) || kwargs.size !== 0) fail('keyword arguments are not supported');
        push(callGlobal(cls, args, 'newobj'));
        break;
      }
      case 0x69: {
        // INST
        const module = line();
        const name = line();
        const cls = resolveGlobal(module, name);
        push(callGlobal(cls, popMark(), 'call'));
        break;
      }
      case 0x6f: {
        // OBJ
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        push(callGlobal(items[0], items.slice(1), 'call'));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        const impl = typeof obj === 'object' && obj !== null ? madeBy.get(obj) : undefined;
        if (impl?.build === undefined) fail('BUILD on an object that takes no state');
        stack[stack.length - 1] = impl!.build!(obj, state, where());
        break;
      }
      case 0x50: // PERSID
      case 0x51: {
        // BINPERSID
        const pid = op === 0x50 ? line() : pop();
        if (options.persistentLoad === undefined)
          fail('the pickle refers to persistent objects, which this reader cannot resolve');
        push(options.persistentLoad!(pid, where()));
        break;
      }
      case 0x53: // STRING
      case 0x56: // UNICODE
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        fail(`opcode ${OPCODE_NAMES[op]} is not supported`);
        break;
      default:
        throw new FormatError(
          `${what}: unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${opPos} (corrupt or not a pickle)`,
        );
    }
  }
}
