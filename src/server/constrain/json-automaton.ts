/**
 * A byte-level pushdown automaton that accepts exactly the JSON texts valid under a compiled
 * schema (see schema.ts), one byte at a time. Working on bytes rather than characters matches
 * byte-level BPE vocabularies, whose tokens may hold half a UTF-8 character.
 *
 * A state is a small set of parse stacks (a union schema may leave several parses alive until a
 * byte tells them apart). Stacks are persistent linked lists of immutable frames, so feeding a
 * byte to a state never changes it: the token-mask search forks a state at every trie node for
 * free. Whitespace between tokens is at most one space or newline, numbers have a bounded number of digits
 * and free-form values a bounded nesting depth, so a model cannot stall the automaton forever in
 * a place where the output could not end.
 */
import { MAX_BOUNDED_INT_DIGITS, numFeasible, numInBounds, type NumBounds } from './numeric.js';
import { inAlphabet, type StringLanguage } from './regex.js';
import { deref, type ArrayNode, type ObjectNode, type SchemaNode } from './schema.js';

/**
 * Whitespace allowed between two JSON tokens: one space or one newline, no more. A model left to
 * indent spends its `max_tokens` on layout and the value never closes; one byte still lets it use
 * the tokens it knows (`": "`, `", "`).
 */
export const MAX_WHITESPACE = 1;
/** Deepest nesting allowed inside schema-free ("any") values. */
export const MAX_ANY_DEPTH = 24;
const MAX_INT_DIGITS = 15;
const MAX_FRAC_DIGITS = 15;
const MAX_EXP_DIGITS = 2;
/** States keep at most this many alive parses (more only arise from pathological unions). */
const MAX_STACKS = 64;

type NumPhase = 'sign' | 'zero' | 'int' | 'dot' | 'frac' | 'e' | 'esign' | 'exp';
type ObjPhase = 'open' | 'colon' | 'value' | 'after' | 'comma';
type ArrPhase = 'open' | 'value' | 'after' | 'comma';

/** UTF-8 / escape progress inside a JSON string. */
interface StrProgress {
  /** 1 right after a backslash. */
  esc: 0 | 1;
  /** Hex digits still expected after \u. */
  hex: number;
  /** UTF-8 continuation bytes still expected, and the range allowed for the next one. */
  cont: number;
  lo: number;
  hi: number;
}

type Frame =
  | { t: 'root'; done: boolean }
  | { t: 'value'; schema: SchemaNode; ws: number }
  | { t: 'obj'; schema: ObjectNode; phase: ObjPhase; seen: readonly string[]; key: string | null; ws: number }
  | {
      t: 'key';
      schema: ObjectNode;
      seen: readonly string[];
      raw: string;
      p: StrProgress;
      cands: readonly string[] | null;
    }
  | { t: 'arr'; schema: ArrayNode; phase: ArrPhase; count: number; ws: number }
  | { t: 'str'; min: number; max: number; len: number; p: StrProgress; lang?: StringLanguage; ls: number }
  | {
      t: 'num';
      integer: boolean;
      phase: NumPhase;
      n: number;
      bd?: NumBounds;
      txt: string;
      /** Memoized numEnds: the trie walk asks once per edge out of the same frame. */
      ends?: boolean;
    }
  | { t: 'lit'; schemaId: number; texts: readonly Uint8Array[]; alive: readonly number[]; pos: number };

export interface Stack {
  readonly frame: Frame;
  readonly parent: Stack | null;
  readonly depth: number;
  /** Memoized identity of the whole stack (see stackKey). */
  k?: string;
}

const FRESH: StrProgress = { esc: 0, hex: 0, cont: 0, lo: 0x80, hi: 0xbf };

// Schema-free building blocks for "any" values (negative ids keep them apart from compiled nodes).
const ANY: SchemaNode = { id: -1, kind: 'any' };
const ANY_OBJECT: ObjectNode = {
  id: -2,
  kind: 'object',
  properties: new Map(),
  propertyBytes: new Map(),
  required: new Set(),
  additional: ANY,
  minProperties: 0,
  maxProperties: Infinity,
};
const ANY_ARRAY: ArrayNode = { id: -3, kind: 'array', prefixItems: [], items: ANY, minItems: 0, maxItems: Infinity };
const ANY_STRING: SchemaNode = { id: -4, kind: 'string', minLength: 0, maxLength: Infinity };
const ANY_NUMBER: SchemaNode = { id: -5, kind: 'number', integer: false };
const enc = new TextEncoder();
const ANY_LITERALS: SchemaNode = {
  id: -6,
  kind: 'literal',
  texts: [enc.encode('true'), enc.encode('false'), enc.encode('null')],
};

function push(frame: Frame, parent: Stack | null): Stack {
  return { frame, parent, depth: parent ? parent.depth + 1 : 0 };
}

function isWs(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** A gap's whitespace count after one more byte, or -1 (tabs and carriage returns are refused). */
function wsNext(ws: number, b: number): number {
  if (b === 0x0d || b === 0x09 || ws >= MAX_WHITESPACE) return -1;
  return ws + 1;
}

function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}

function isHex(b: number): boolean {
  return isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

const ESCAPES = new Set([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74]); // " \ / b f n r t

/**
 * One byte of string content (not the closing quote). Returns the new progress and whether a
 * whole character was completed, or null if the byte is not allowed here.
 */
function stringByte(p: StrProgress, b: number, roomForChar: boolean): { p: StrProgress; chars: number } | null {
  if (p.cont > 0) {
    if (b < p.lo || b > p.hi) return null;
    const cont = p.cont - 1;
    return { p: cont === 0 ? FRESH : { esc: 0, hex: 0, cont, lo: 0x80, hi: 0xbf }, chars: cont === 0 ? 1 : 0 };
  }
  if (p.hex > 0) {
    if (!isHex(b)) return null;
    const hex = p.hex - 1;
    return { p: hex === 0 ? FRESH : { esc: 0, hex, cont: 0, lo: 0x80, hi: 0xbf }, chars: hex === 0 ? 1 : 0 };
  }
  if (p.esc) {
    if (b === 0x75) return { p: { esc: 0, hex: 4, cont: 0, lo: 0x80, hi: 0xbf }, chars: 0 };
    return ESCAPES.has(b) ? { p: FRESH, chars: 1 } : null;
  }
  if (!roomForChar || b < 0x20 || b === 0x22) return null;
  if (b === 0x5c) return { p: { esc: 1, hex: 0, cont: 0, lo: 0x80, hi: 0xbf }, chars: 0 };
  if (b < 0x80) return { p: FRESH, chars: 1 };
  // UTF-8 lead bytes, excluding overlong forms, surrogates and code points past U+10FFFF.
  let cont: number,
    lo = 0x80,
    hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) cont = 1;
  else if (b === 0xe0) {
    cont = 2;
    lo = 0xa0;
  } else if (b >= 0xe1 && b <= 0xef) {
    cont = 2;
    if (b === 0xed) hi = 0x9f;
  } else if (b === 0xf0) {
    cont = 3;
    lo = 0x90;
  } else if (b >= 0xf1 && b <= 0xf3) cont = 3;
  else if (b === 0xf4) {
    cont = 3;
    hi = 0x8f;
  } else return null;
  return { p: { esc: 0, hex: 0, cont, lo, hi }, chars: 0 };
}

function midString(p: StrProgress): boolean {
  return p.esc !== 0 || p.hex !== 0 || p.cont !== 0;
}

/** The parent stack after its child value completed. */
function completeChild(parent: Stack | null): Stack | null {
  if (!parent) return null;
  const f = parent.frame;
  switch (f.t) {
    case 'root':
      return push({ t: 'root', done: true }, parent.parent);
    case 'obj':
      return push(
        { t: 'obj', schema: f.schema, phase: 'after', seen: [...f.seen, f.key!], key: null, ws: 0 },
        parent.parent,
      );
    case 'arr':
      return push({ t: 'arr', schema: f.schema, phase: 'after', count: f.count + 1, ws: 0 }, parent.parent);
    default:
      return null;
  }
}

function numCanEnd(phase: NumPhase): boolean {
  return phase === 'zero' || phase === 'int' || phase === 'frac' || phase === 'exp';
}

/** A number frame may end here: its text is a number, within its bounds if it has any. */
function numEnds(f: Extract<Frame, { t: 'num' }>): boolean {
  if (f.ends === undefined) f.ends = numCanEnd(f.phase) && (!f.bd || numInBounds(f.bd, f.txt));
  return f.ends;
}

/** True when the top frame holds a value that may be complete (and also extensible). */
function canEnd(f: Frame): boolean {
  if (f.t === 'num') return numEnds(f);
  if (f.t === 'lit') return f.alive.some((i) => f.texts[i]!.length === f.pos);
  return false;
}

function objCanClose(f: { schema: ObjectNode; seen: readonly string[] }): boolean {
  if (f.seen.length < f.schema.minProperties) return false;
  for (const r of f.schema.required) if (!f.seen.includes(r)) return false;
  return true;
}

function unseenRequired(o: ObjectNode, seen: readonly string[]): number {
  let n = 0;
  for (const r of o.required) if (!seen.includes(r)) n++;
  return n;
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/**
 * The keys an object may take next, as latin1 strings of their JSON-escaped bytes, or null when
 * any new key is allowed; undefined when no key may be added at all.
 */
function keyCandidates(o: ObjectNode, seen: readonly string[]): readonly string[] | null | undefined {
  if (seen.length >= o.maxProperties) return undefined;
  const slack = o.maxProperties - seen.length - unseenRequired(o, seen);
  if (o.additional !== null && slack >= 1) return null;
  const out: string[] = [];
  for (const [name, bytes] of o.propertyBytes) {
    if (seen.includes(name)) continue;
    if (slack < 1 && !o.required.has(name)) continue;
    out.push(latin1(bytes));
  }
  return out.length ? out : undefined;
}

function startKey(o: ObjectNode, seen: readonly string[], parent: Stack): Stack | null {
  const cands = keyCandidates(o, seen);
  if (cands === undefined) return null;
  return push({ t: 'key', schema: o, seen, raw: '', p: FRESH, cands }, parent);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeKey(raw: string): string | null {
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  try {
    return JSON.parse(`"${utf8.decode(bytes)}"`) as string;
  } catch {
    return null;
  }
}

/** Starts a value of `schema` with its first byte `b` (not whitespace). */
function startValue(schema: SchemaNode, b: number, parent: Stack, out: Stack[]): void {
  const s = deref(schema);
  switch (s.kind) {
    case 'never':
      return;
    case 'any':
      if (parent.depth < MAX_ANY_DEPTH) {
        startValue(ANY_OBJECT, b, parent, out);
        startValue(ANY_ARRAY, b, parent, out);
      }
      startValue(ANY_STRING, b, parent, out);
      startValue(ANY_NUMBER, b, parent, out);
      startValue(ANY_LITERALS, b, parent, out);
      return;
    case 'union':
      for (const o of s.options) startValue(o, b, parent, out);
      return;
    case 'object':
      if (b === 0x7b) out.push(push({ t: 'obj', schema: s, phase: 'open', seen: [], key: null, ws: 0 }, parent));
      return;
    case 'array':
      if (b === 0x5b) out.push(push({ t: 'arr', schema: s, phase: 'open', count: 0, ws: 0 }, parent));
      return;
    case 'string':
      if (b !== 0x22) return;
      if (s.lang) {
        out.push(
          push(
            { t: 'str', min: s.minLength, max: s.maxLength, len: 0, p: FRESH, lang: s.lang, ls: s.lang.dfa.start },
            parent,
          ),
        );
      } else out.push(push({ t: 'str', min: s.minLength, max: s.maxLength, len: 0, p: FRESH, ls: -1 }, parent));
      return;
    case 'number': {
      const phase: NumPhase | null = b === 0x2d ? 'sign' : b === 0x30 ? 'zero' : isDigit(b) ? 'int' : null;
      if (!phase) return;
      const n = phase === 'sign' ? 0 : 1;
      if (!s.bounds) out.push(push({ t: 'num', integer: s.integer, phase, n, txt: '' }, parent));
      else {
        const txt = String.fromCharCode(b);
        if (numFeasible(s.bounds, txt))
          out.push(push({ t: 'num', integer: s.integer, phase, n, bd: s.bounds, txt }, parent));
      }
      return;
    }
    case 'literal': {
      const alive: number[] = [];
      for (let i = 0; i < s.texts.length; i++) if (s.texts[i]![0] === b) alive.push(i);
      if (!alive.length) return;
      litAdvance({ t: 'lit', schemaId: s.id, texts: s.texts, alive, pos: 1 }, parent, out);
      return;
    }
    case 'ref':
      return; // deref never returns a ref
  }
}

/** Places a literal frame that consumed a byte, popping it at once when nothing can follow. */
function litAdvance(f: Extract<Frame, { t: 'lit' }>, parent: Stack, out: Stack[]): void {
  if (f.alive.every((i) => f.texts[i]!.length === f.pos)) {
    const p = completeChild(parent);
    if (p) out.push(p);
  } else out.push(push(f, parent));
}

function itemSchema(a: ArrayNode, index: number): SchemaNode {
  return index < a.prefixItems.length ? a.prefixItems[index]! : a.items!;
}

/** Feeds one byte to one stack, appending every resulting stack to `out`. */
export function feedStack(st: Stack, b: number, out: Stack[]): void {
  const f = st.frame;
  switch (f.t) {
    case 'root':
      return;
    case 'value':
      if (isWs(b)) {
        const ws = wsNext(f.ws, b);
        if (ws >= 0) out.push(push({ t: 'value', schema: f.schema, ws }, st.parent));
        return;
      }
      startValue(f.schema, b, st.parent!, out);
      return;
    case 'obj': {
      if (isWs(b) && f.phase !== 'value') {
        const ws = wsNext(f.ws, b);
        if (ws >= 0) out.push(push({ ...f, ws }, st.parent));
        return;
      }
      const parent = st.parent;
      switch (f.phase) {
        case 'open':
        case 'comma':
          if (b === 0x22) {
            const k = startKey(f.schema, f.seen, st);
            if (k) out.push(k);
          } else if (b === 0x7d && f.phase === 'open' && objCanClose(f)) {
            const p = completeChild(parent);
            if (p) out.push(p);
          }
          return;
        case 'colon':
          if (b === 0x3a) {
            const name = f.key!;
            const schema = f.schema.properties.get(name) ?? f.schema.additional!;
            out.push(push({ t: 'value', schema, ws: 0 }, push({ ...f, phase: 'value', ws: 0 }, parent)));
          }
          return;
        case 'after':
          if (b === 0x2c) {
            if (keyCandidates(f.schema, f.seen) !== undefined) out.push(push({ ...f, phase: 'comma', ws: 0 }, parent));
          } else if (b === 0x7d && objCanClose(f)) {
            const p = completeChild(parent);
            if (p) out.push(p);
          }
          return;
        case 'value':
          return;
      }
      return;
    }
    case 'key': {
      const objStack = st.parent!;
      if (b === 0x22 && !midString(f.p)) {
        const name = decodeKey(f.raw);
        if (name === null || f.seen.includes(name)) return;
        if (f.cands !== null && !f.cands.includes(f.raw)) return;
        if (!f.schema.properties.has(name)) {
          if (f.schema.additional === null) return;
          // A key outside the required set must leave room for the required keys still missing.
          if (f.seen.length + 1 + unseenRequired(f.schema, f.seen) > f.schema.maxProperties) return;
        }
        const obj = objStack.frame as Extract<Frame, { t: 'obj' }>;
        out.push(push({ ...obj, phase: 'colon', key: name, ws: 0 }, objStack.parent));
        return;
      }
      const r = stringByte(f.p, b, true);
      if (!r) return;
      const raw = f.raw + String.fromCharCode(b);
      if (f.cands !== null && !f.cands.some((c) => c.startsWith(raw))) return;
      out.push(push({ ...f, raw, p: r.p }, objStack));
      return;
    }
    case 'arr': {
      if (isWs(b) && f.phase !== 'value') {
        const ws = wsNext(f.ws, b);
        if (ws >= 0) out.push(push({ ...f, ws }, st.parent));
        return;
      }
      const a = f.schema;
      switch (f.phase) {
        case 'open':
          if (b === 0x5d) {
            if (a.minItems === 0) {
              const p = completeChild(st.parent);
              if (p) out.push(p);
            }
            return;
          }
          if (a.maxItems === 0) return;
          startValue(itemSchema(a, 0), b, push({ ...f, phase: 'value', ws: 0 }, st.parent), out);
          return;
        case 'comma':
          if (b === 0x5d) return;
          startValue(itemSchema(a, f.count), b, push({ ...f, phase: 'value', ws: 0 }, st.parent), out);
          return;
        case 'after':
          if (b === 0x2c) {
            if (f.count < a.maxItems) out.push(push({ ...f, phase: 'comma', ws: 0 }, st.parent));
          } else if (b === 0x5d && f.count >= a.minItems) {
            const p = completeChild(st.parent);
            if (p) out.push(p);
          }
          return;
        case 'value':
          return;
      }
      return;
    }
    case 'str': {
      if (f.lang) {
        if (b === 0x22) {
          if (f.lang.accepts(f.ls, f.len)) {
            const p = completeChild(st.parent);
            if (p) out.push(p);
          }
          return;
        }
        const ls = patternByte(f.lang, f.ls, f.len, b);
        if (ls >= 0) out.push(push({ ...f, len: f.len + 1, ls }, st.parent));
        return;
      }
      if (b === 0x22 && !midString(f.p)) {
        if (f.len >= f.min) {
          const p = completeChild(st.parent);
          if (p) out.push(p);
        }
        return;
      }
      const r = stringByte(f.p, b, f.len < f.max);
      if (r) out.push(push({ t: 'str', min: f.min, max: f.max, len: f.len + r.chars, p: r.p, ls: -1 }, st.parent));
      return;
    }
    case 'num': {
      const bd = f.bd;
      const next = (phase: NumPhase, n: number) => {
        if (!bd) {
          out.push(push({ t: 'num', integer: f.integer, phase, n, txt: '' }, st.parent));
          return;
        }
        // A bounded number has no exponent; each prefix must still reach a number in bounds.
        const txt = f.txt + String.fromCharCode(b);
        if (phase === 'e' || !numFeasible(bd, txt)) return;
        out.push(push({ t: 'num', integer: f.integer, phase, n, bd, txt }, st.parent));
      };
      const digit = isDigit(b);
      const maxInt = bd ? MAX_BOUNDED_INT_DIGITS : MAX_INT_DIGITS;
      switch (f.phase) {
        case 'sign':
          if (b === 0x30) next('zero', 1);
          else if (digit) next('int', 1);
          break;
        case 'zero':
        case 'int':
          if (digit && f.phase === 'int' && f.n < maxInt) next('int', f.n + 1);
          else if (!f.integer && b === 0x2e) next('dot', 0);
          else if (!f.integer && (b === 0x65 || b === 0x45)) next('e', 0);
          break;
        case 'dot':
          if (digit) next('frac', 1);
          break;
        case 'frac':
          if (digit && f.n < MAX_FRAC_DIGITS) next('frac', f.n + 1);
          else if (b === 0x65 || b === 0x45) next('e', 0);
          break;
        case 'e':
          if (b === 0x2b || b === 0x2d) next('esign', 0);
          else if (digit) next('exp', 1);
          break;
        case 'esign':
          if (digit) next('exp', 1);
          break;
        case 'exp':
          if (digit && f.n < MAX_EXP_DIGITS) next('exp', f.n + 1);
          break;
      }
      if (numEnds(f)) {
        // The number may have ended: the byte then belongs to the enclosing value.
        const p = completeChild(st.parent);
        if (p) feedStack(p, b, out);
      }
      return;
    }
    case 'lit': {
      const alive = f.alive.filter((i) => f.texts[i]!.length > f.pos && f.texts[i]![f.pos] === b);
      if (alive.length) litAdvance({ ...f, alive, pos: f.pos + 1 }, st.parent!, out);
      if (canEnd(f)) {
        const p = completeChild(st.parent);
        if (p) feedStack(p, b, out);
      }
      return;
    }
  }
}

/** Distinct ids of the bounds and languages frames refer to (two schemas' frames must not share keys). */
const objectIds = new WeakMap<object, number>();
let nextObjectId = 0;
function objectId(o: object): number {
  let id = objectIds.get(o);
  if (id === undefined) {
    id = nextObjectId++;
    objectIds.set(o, id);
  }
  return id;
}

function progressKey(p: StrProgress): string {
  return p === FRESH ? '' : `${p.esc}${p.hex}${p.cont}.${p.lo}.${p.hi}`;
}

function frameKey(f: Frame): string {
  switch (f.t) {
    case 'root':
      return f.done ? 'R1' : 'R0';
    case 'value':
      return `V${f.schema.id},${f.ws}`;
    case 'obj':
      return `O${f.schema.id},${f.phase},${f.ws},${JSON.stringify(f.seen)},${f.key === null ? '' : JSON.stringify(f.key)}`;
    case 'key':
      return `K${JSON.stringify(f.raw)},${progressKey(f.p)}`;
    case 'arr':
      return `A${f.schema.id},${f.phase},${f.count},${f.ws}`;
    case 'str': {
      const len = f.max === Infinity && f.min <= f.len ? '' : f.len;
      if (f.lang) return `P${objectId(f.lang)},${f.min},${f.max === Infinity ? '' : f.max},${len},${f.ls}`;
      return `S${f.min},${f.max === Infinity ? '' : f.max},${len},${progressKey(f.p)}`;
    }
    case 'num':
      return `N${f.integer ? 1 : 0}${f.phase}${f.n}${f.bd ? `,${objectId(f.bd)},${f.txt}` : ''}`;
    case 'lit':
      return `L${f.schemaId},${f.pos},${f.alive.join('.')}`;
  }
}

/** A string that is equal for two stacks exactly when they accept the same continuations. */
export function stackKey(s: Stack): string {
  if (s.k === undefined) s.k = frameKey(s.frame) + (s.parent ? `|${stackKey(s.parent)}` : '');
  return s.k;
}

/** An immutable automaton state: the parses still alive. */
export class JsonAutomatonState {
  private keyCache?: string;

  private constructor(readonly stacks: readonly Stack[]) {}

  /** The state before the first byte of a value of `schema`. */
  static initial(schema: SchemaNode): JsonAutomatonState {
    const root = push({ t: 'root', done: false }, null);
    return new JsonAutomatonState([push({ t: 'value', schema, ws: 0 }, root)]);
  }

  /** Feeds one byte; returns null when no parse accepts it. */
  feed(b: number): JsonAutomatonState | null {
    const next = feedStacks(this.stacks, b);
    return next.length ? new JsonAutomatonState(next) : null;
  }

  /** Feeds bytes; null as soon as one is rejected. */
  feedBytes(bytes: ArrayLike<number>): JsonAutomatonState | null {
    let stacks: readonly Stack[] = this.stacks;
    for (let i = 0; i < bytes.length; i++) {
      stacks = feedStacks(stacks, bytes[i]!);
      if (!stacks.length) return null;
    }
    return new JsonAutomatonState(stacks);
  }

  /** The text so far is a complete value (it may still be extensible, e.g. a number). */
  get accepting(): boolean {
    return this.stacks.some(stackAccepts);
  }

  /** The value is complete and nothing more can follow: generation must stop here. */
  get finished(): boolean {
    return this.stacks.every((s) => s.frame.t === 'root' && s.frame.done);
  }

  get key(): string {
    if (this.keyCache === undefined) this.keyCache = this.stacks.map(stackKey).sort().join('\n');
    return this.keyCache;
  }
}

/**
 * How many characters of plain string text (no quote, backslash or control byte; whole UTF-8
 * characters) the state accepts next, when that count alone decides whether it accepts such a
 * text: every parse is inside a free string or a free object key, between characters. Infinity
 * for no limit; null when some parse is elsewhere (a pattern, key candidates, mid-character, …).
 * Each parse takes a plain byte to at most one parse, so a state accepts a plain text of c
 * characters iff one of its parses does, iff c <= the room returned.
 */
export function plainTextRoom(state: JsonAutomatonState): number | null {
  let room = -1;
  for (const s of state.stacks) {
    const f = s.frame;
    // A character may start while len < max: a text of c characters needs len + c <= max.
    if (f.t === 'str' && !f.lang && f.p === FRESH) room = Math.max(room, f.max - f.len);
    else if (f.t === 'key' && f.cands === null && f.p === FRESH) room = Infinity;
    else return null;
  }
  return room < 0 ? null : room;
}

/** Where the only parse of a state is: inside a pattern string, between characters. */
export interface PatternPosition {
  lang: StringLanguage;
  /** DFA state and characters so far. */
  ls: number;
  len: number;
  /** The stacks after the closing quote, when the language accepts the text so far. */
  closed: Stack[];
}

/**
 * The pattern string a state's only parse is in, or null (several parses, or elsewhere). Inside
 * it a byte is a character (a pattern's strings are printable ASCII): `patternByte` follows it
 * with integers, the way `feedStack` does with frames.
 */
export function patternPosition(state: JsonAutomatonState): PatternPosition | null {
  if (state.stacks.length !== 1) return null;
  const st = state.stacks[0]!;
  const f = st.frame;
  if (f.t !== 'str' || !f.lang) return null;
  const p = completeChild(st.parent);
  return { lang: f.lang, ls: f.ls, len: f.len, closed: p ? [p] : [] };
}

/**
 * The DFA state after string byte `b` (not the closing quote) in DFA state `ls` with `len`
 * characters, or -1 where `feedStack` rejects it.
 */
export function patternByte(lang: StringLanguage, ls: number, len: number, b: number): number {
  if (!inAlphabet(b)) return -1;
  const next = lang.step(ls, b);
  return next >= 0 && lang.alive(next, len + 1) ? next : -1;
}

/** The state inside a free string, right after its opening quote (for classifying tokens). */
export function freeStringState(): JsonAutomatonState {
  return JsonAutomatonState.initial(ANY_STRING).feed(0x22)!;
}

/** Feeds a byte to every stack of a state; deduplicates when the set grows large. */
export function feedStacks(stacks: readonly Stack[], b: number): Stack[] {
  const out: Stack[] = [];
  for (const s of stacks) feedStack(s, b, out);
  if (out.length > 8) {
    const seen = new Set<string>();
    const uniq: Stack[] = [];
    for (const s of out) {
      const k = stackKey(s);
      if (seen.has(k)) continue;
      seen.add(k);
      uniq.push(s);
      if (uniq.length >= MAX_STACKS) break;
    }
    return uniq;
  }
  return out;
}

export function stackAccepts(s: Stack): boolean {
  let cur: Stack | null = s;
  for (;;) {
    if (!cur) return false;
    const f = cur.frame;
    if (f.t === 'root') return f.done;
    if (!canEnd(f)) return false;
    cur = completeChild(cur.parent);
  }
}
