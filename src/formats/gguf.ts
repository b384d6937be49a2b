/**
 * GGUF (llama.cpp's model file format), versions 2 and 3, little-endian: a header with typed
 * key/value metadata and tensor infos, then aligned tensor data.
 *
 * Layout: "GGUF" u32:version u64:n_tensors u64:n_kv, n_kv × (string key, u32 type, value),
 * n_tensors × (string name, u32 n_dims, u64 ne[n_dims], u32 ggml_type, u64 offset), padding to
 * `general.alignment` (default 32), then the data section. Strings are u64 length + UTF-8 bytes;
 * arrays are u32 item type + u64 count + items (arrays of arrays nest). Tensor dims are ggml's
 * order: ne[0] is the contiguous (column) dimension.
 *
 * The reader never trusts a count: every length is checked against the bytes left in the file
 * before anything is allocated, so a corrupt header is a FormatError, not an out-of-memory.
 * Tensor data is read lazily, one tensor at a time, with positioned reads of a ByteSource (a local
 * file, a URL, a Blob; files may exceed 4 GB). The writer (Node) streams tensor data to a
 * temporary file and renames it into place.
 */
import { FormatError, InputError, MptError, quoteValue } from '../errors.js';
import { readIntoFrom, type ByteSource } from './byte-source.js';
import { byteLengthOf, dtypeOfGgmlType, GGML_TYPES, ggmlTypeName } from './ggml-quants.js';
import type { DType } from './tensor-source.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** GGML_MAX_DIMS */
const MAX_DIMS = 4;
/** GGML_MAX_NAME: llama.cpp refuses tensor names of this many bytes or more. */
export const GGUF_MAX_TENSOR_NAME = 64;
/** Deepest array nesting we accept (real files use 1). */
const MAX_ARRAY_DEPTH = 8;
/**
 * Longest string and most array items accepted in the header. Real files stay far below (chat
 * templates are kilobytes; the largest vocabularies 256k tokens); a length that merely fits a big
 * file would otherwise be allocated whole before anything could be said about it.
 */
const MAX_STRING_BYTES = 16 << 20;
const MAX_ARRAY_ITEMS = 1 << 24;

export type GgufNumberType = 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64';
export type GgufBigType = 'u64' | 'i64';
export type GgufItemType = GgufNumberType | GgufBigType | 'bool' | 'string' | 'array';

/** One metadata value with its GGUF type (kept so that files can be rewritten faithfully). */
export type GgufValue =
  | { type: GgufNumberType; value: number }
  | { type: GgufBigType; value: bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | GgufArray;

export type GgufArrayItems =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | boolean[]
  | string[]
  | GgufArray[];

/** An array value: numeric items as a typed array, strings/bools as JS arrays, nested arrays as GgufArray[]. */
export interface GgufArray {
  type: 'array';
  itemType: GgufItemType;
  value: GgufArrayItems;
}

/** GGUF's value type codes (gguf.h `enum gguf_type`). */
const TYPE_CODES: Record<GgufItemType, number> = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
};
const TYPE_BY_CODE = new Map<number, GgufItemType>(Object.entries(TYPE_CODES).map(([k, v]) => [v, k as GgufItemType]));
/** Fixed item sizes; strings and arrays have a minimum encoded size instead. */
const ITEM_SIZE: Record<GgufItemType, number> = {
  u8: 1,
  i8: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  bool: 1,
  string: 8,
  array: 12,
  u64: 8,
  i64: 8,
  f64: 8,
};

/** Builders for metadata values (for writers). */
export const gguf = {
  u8: (value: number): GgufValue => ({ type: 'u8', value }),
  i8: (value: number): GgufValue => ({ type: 'i8', value }),
  u16: (value: number): GgufValue => ({ type: 'u16', value }),
  i16: (value: number): GgufValue => ({ type: 'i16', value }),
  u32: (value: number): GgufValue => ({ type: 'u32', value }),
  i32: (value: number): GgufValue => ({ type: 'i32', value }),
  f32: (value: number): GgufValue => ({ type: 'f32', value }),
  f64: (value: number): GgufValue => ({ type: 'f64', value }),
  u64: (value: bigint | number): GgufValue => ({ type: 'u64', value: BigInt(value) }),
  i64: (value: bigint | number): GgufValue => ({ type: 'i64', value: BigInt(value) }),
  bool: (value: boolean): GgufValue => ({ type: 'bool', value }),
  str: (value: string): GgufValue => ({ type: 'string', value }),
  strings: (value: string[]): GgufArray => ({ type: 'array', itemType: 'string', value }),
  i32s: (value: ArrayLike<number>): GgufArray => ({ type: 'array', itemType: 'i32', value: Int32Array.from(value) }),
  u32s: (value: ArrayLike<number>): GgufArray => ({ type: 'array', itemType: 'u32', value: Uint32Array.from(value) }),
  f32s: (value: ArrayLike<number>): GgufArray => ({ type: 'array', itemType: 'f32', value: Float32Array.from(value) }),
};

/** A tensor as the GGUF header describes it. */
export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the contiguous dimension (columns of a matrix). */
  dims: number[];
  /** ggml type id as stored. */
  ggmlType: number;
  dtype: DType;
  /** Offset relative to the start of the data section. */
  offset: number;
  byteLength: number;
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true });
const HEADER_CHUNK = 1 << 20;

/** Sequential reader over the header region, fetching the file in chunks on demand. */
class HeaderCursor {
  pos = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private view = new DataView(this.buf.buffer, 0, 0);
  private bufStart = 0;

  constructor(private readonly file: ByteSource) {}

  get remaining(): number {
    return this.file.size - this.pos;
  }

  /** Makes `n` bytes at `pos` available, or throws a FormatError saying what was cut off. */
  async need(n: number, what: string): Promise<void> {
    if (this.pos + n <= this.bufStart + this.buf.length) return;
    if (n > this.remaining) {
      throw new FormatError(
        `${this.file.name}: file is truncated in the GGUF header (${what} needs ${n} bytes at offset ${this.pos}, the file has ${this.file.size})`,
      );
    }
    const len = Math.min(Math.max(n, HEADER_CHUNK), this.remaining);
    this.buf = await this.file.read(this.pos, len, `GGUF header (${what})`);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.bufStart = this.pos;
  }

  private at(n: number): number {
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }

  u8(): number {
    return this.view.getUint8(this.at(1));
  }
  i8(): number {
    return this.view.getInt8(this.at(1));
  }
  u16(): number {
    return this.view.getUint16(this.at(2), true);
  }
  i16(): number {
    return this.view.getInt16(this.at(2), true);
  }
  u32(): number {
    return this.view.getUint32(this.at(4), true);
  }
  i32(): number {
    return this.view.getInt32(this.at(4), true);
  }
  f32(): number {
    return this.view.getFloat32(this.at(4), true);
  }
  f64(): number {
    return this.view.getFloat64(this.at(8), true);
  }
  u64(): bigint {
    return this.view.getBigUint64(this.at(8), true);
  }
  i64(): bigint {
    return this.view.getBigInt64(this.at(8), true);
  }
  bytes(n: number): Uint8Array {
    const o = this.at(n);
    return this.buf.subarray(o, o + n);
  }
}

/** An open GGUF file: parsed header plus lazy access to each tensor's bytes. */
export class GgufFile {
  private readonly byName: Map<string, GgufTensorInfo>;

  constructor(
    private readonly file: ByteSource,
    /** The byte source's name: the path, URL or file name. */
    readonly path: string,
    readonly version: number,
    readonly metadata: Map<string, GgufValue>,
    readonly tensors: GgufTensorInfo[],
    /** Absolute file offset of the data section. */
    readonly dataOffset: number,
    readonly alignment: number,
    readonly fileSize: number,
  ) {
    this.byName = new Map(tensors.map((t) => [t.name, t]));
  }

  tensor(name: string): GgufTensorInfo | undefined {
    return this.byName.get(name);
  }

  /** Reads one tensor's stored bytes (a fresh buffer). */
  async readTensor(t: GgufTensorInfo | string): Promise<Uint8Array> {
    const info = typeof t === 'string' ? this.byName.get(t) : t;
    if (!info) throw new FormatError(`${this.path}: no tensor named ${quoteValue(t)}`);
    return this.file.read(this.dataOffset + info.offset, info.byteLength, `tensor ${info.name}`);
  }

  /**
   * Reads `dest.length` bytes of one tensor's stored bytes, starting `start` bytes into the
   * tensor, straight into `dest` (e.g. a view of wasm memory): no intermediate buffer.
   */
  async readTensorInto(t: GgufTensorInfo | string, dest: Uint8Array, start = 0): Promise<void> {
    const info = typeof t === 'string' ? this.byName.get(t) : t;
    if (!info) throw new FormatError(`${this.path}: no tensor named ${quoteValue(t)}`);
    if (!Number.isSafeInteger(start) || start < 0 || start + dest.length > info.byteLength) {
      throw new FormatError(
        `${this.path}: bytes [${start}, ${start + dest.length}) are outside tensor ${info.name} (${info.byteLength} bytes)`,
      );
    }
    await readIntoFrom(this.file, this.dataOffset + info.offset + start, dest, `tensor ${info.name}`);
  }

  async close(): Promise<void> {
    await this.file.close();
  }
}

function safeCount(v: bigint, what: string, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new FormatError(`${path}: ${what} ${v} is absurd (corrupt GGUF header?)`);
  return Number(v);
}

async function readString(c: HeaderCursor, what: string, path: string): Promise<string> {
  await c.need(8, what);
  const len = c.u64();
  if (len > BigInt(MAX_STRING_BYTES)) {
    throw new FormatError(
      `${path}: ${what} claims ${len} bytes, more than the ${MAX_STRING_BYTES} a GGUF string may have (corrupt GGUF)`,
    );
  }
  if (len > BigInt(c.remaining)) {
    throw new FormatError(
      `${path}: ${what} claims ${len} bytes but only ${c.remaining} remain (corrupt or truncated GGUF)`,
    );
  }
  const n = Number(len);
  await c.need(n, what);
  try {
    return utf8.decode(c.bytes(n));
  } catch {
    throw new FormatError(`${path}: ${what} is not valid UTF-8`);
  }
}

async function readValue(
  c: HeaderCursor,
  type: GgufItemType,
  key: string,
  path: string,
  depth: number,
): Promise<GgufValue> {
  switch (type) {
    case 'string':
      return { type, value: await readString(c, `value of ${key}`, path) };
    case 'array':
      return readArray(c, key, path, depth + 1);
    case 'bool': {
      await c.need(1, key);
      const b = c.u8();
      if (b > 1) throw new FormatError(`${path}: ${key} holds bool value ${b} (must be 0 or 1)`);
      return { type, value: b === 1 };
    }
    case 'u64':
      await c.need(8, key);
      return { type, value: c.u64() };
    case 'i64':
      await c.need(8, key);
      return { type, value: c.i64() };
    default: {
      await c.need(ITEM_SIZE[type], key);
      const v =
        type === 'u8'
          ? c.u8()
          : type === 'i8'
            ? c.i8()
            : type === 'u16'
              ? c.u16()
              : type === 'i16'
                ? c.i16()
                : type === 'u32'
                  ? c.u32()
                  : type === 'i32'
                    ? c.i32()
                    : type === 'f32'
                      ? c.f32()
                      : c.f64();
      return { type, value: v };
    }
  }
}

async function readArray(c: HeaderCursor, key: string, path: string, depth: number): Promise<GgufArray> {
  if (depth > MAX_ARRAY_DEPTH) throw new FormatError(`${path}: ${key} nests arrays deeper than ${MAX_ARRAY_DEPTH}`);
  await c.need(12, key);
  const code = c.u32();
  const itemType = TYPE_BY_CODE.get(code);
  if (itemType === undefined) throw new FormatError(`${path}: array ${key} has unknown item type ${code}`);
  const n64 = c.u64();
  if (n64 > BigInt(MAX_ARRAY_ITEMS)) {
    throw new FormatError(
      `${path}: array ${key} claims ${n64} items, more than the ${MAX_ARRAY_ITEMS} a GGUF array may have (corrupt)`,
    );
  }
  // Every item takes at least ITEM_SIZE bytes: refuse counts the rest of the file cannot hold.
  if (n64 * BigInt(ITEM_SIZE[itemType]) > BigInt(c.remaining)) {
    throw new FormatError(
      `${path}: array ${key} claims ${n64} items but only ${c.remaining} bytes remain (corrupt or truncated GGUF)`,
    );
  }
  const n = Number(n64);
  if (itemType === 'string') {
    const out: string[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = await readString(c, `${key}[${i}]`, path);
    return { type: 'array', itemType, value: out };
  }
  if (itemType === 'array') {
    const out: GgufArray[] = [];
    for (let i = 0; i < n; i++) out.push(await readArray(c, `${key}[${i}]`, path, depth + 1));
    return { type: 'array', itemType, value: out };
  }
  const size = ITEM_SIZE[itemType];
  await c.need(n * size, key);
  const raw = c.bytes(n * size);
  // Copy into an aligned buffer before viewing it as a typed array.
  const copy = new Uint8Array(raw).buffer;
  let value: GgufArrayItems;
  switch (itemType) {
    case 'u8':
      value = new Uint8Array(copy);
      break;
    case 'i8':
      value = new Int8Array(copy);
      break;
    case 'u16':
      value = new Uint16Array(copy);
      break;
    case 'i16':
      value = new Int16Array(copy);
      break;
    case 'u32':
      value = new Uint32Array(copy);
      break;
    case 'i32':
      value = new Int32Array(copy);
      break;
    case 'f32':
      value = new Float32Array(copy);
      break;
    case 'f64':
      value = new Float64Array(copy);
      break;
    case 'u64':
      value = new BigUint64Array(copy);
      break;
    case 'i64':
      value = new BigInt64Array(copy);
      break;
    default: {
      const bytes = new Uint8Array(copy);
      const out: boolean[] = new Array(n);
      for (let i = 0; i < n; i++) {
        if (bytes[i]! > 1) throw new FormatError(`${path}: ${key}[${i}] holds bool value ${bytes[i]}`);
        out[i] = bytes[i] === 1;
      }
      value = out;
    }
  }
  return { type: 'array', itemType, value };
}

/** Opens the GGUF file at `path` (Node); see readGgufSource. */
export async function readGguf(path: string): Promise<GgufFile> {
  const { RandomAccessFile } = await import('./file-reader.js');
  return readGgufSource(await RandomAccessFile.open(path));
}

/**
 * Parses the header of the GGUF file `file`. Tensor data stays where it is until `readTensor`
 * asks for it. Any inconsistency is a FormatError naming the file. The source is the returned
 * file's to close (and is closed here when the header is refused).
 */
export async function readGgufSource(file: ByteSource): Promise<GgufFile> {
  try {
    return await parseHeader(file, file.name);
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}

async function parseHeader(file: ByteSource, path: string): Promise<GgufFile> {
  const c = new HeaderCursor(file);
  if (file.size < 4) throw new FormatError(`${path} is not a GGUF file (only ${file.size} bytes)`);
  await c.need(4, 'magic');
  const magic = c.u32();
  if (magic !== GGUF_MAGIC) {
    const shown = Array.from(new Uint8Array(new Uint32Array([magic]).buffer), (b) =>
      b.toString(16).padStart(2, '0'),
    ).join(' ');
    throw new FormatError(`${path} is not a GGUF file (magic bytes ${shown}, expected "GGUF")`);
  }
  await c.need(4, 'version');
  const version = c.u32();
  if (version !== 2 && version !== 3) {
    const swapped =
      ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24);
    if (version === 1)
      throw new FormatError(
        `${path} is GGUF version 1, which is not supported (versions 2 and 3 are); re-convert it with a current llama.cpp`,
      );
    if (swapped >= 1 && swapped <= 3)
      throw new FormatError(`${path} is a big-endian GGUF file; only little-endian files are supported`);
    throw new FormatError(`${path} has unknown GGUF version ${version} (versions 2 and 3 are supported)`);
  }
  await c.need(16, 'counts');
  const nTensors64 = c.u64();
  const nKv64 = c.u64();
  // A tensor info takes at least 8 (name) + 4 + 4 + 8 = 24 bytes; a key/value at least 8 + 4 + 1.
  if (nTensors64 * 24n > BigInt(c.remaining)) {
    throw new FormatError(
      `${path}: header claims ${nTensors64} tensors, more than the ${c.remaining} remaining bytes can describe (corrupt GGUF)`,
    );
  }
  if (nKv64 * 13n > BigInt(c.remaining)) {
    throw new FormatError(
      `${path}: header claims ${nKv64} metadata entries, more than the ${c.remaining} remaining bytes can hold (corrupt GGUF)`,
    );
  }
  const nTensors = Number(nTensors64);
  const nKv = Number(nKv64);

  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = await readString(c, `metadata key #${i}`, path);
    if (metadata.has(key)) throw new FormatError(`${path}: metadata key ${key} appears twice`);
    await c.need(4, key);
    const code = c.u32();
    const type = TYPE_BY_CODE.get(code);
    if (type === undefined) throw new FormatError(`${path}: metadata ${key} has unknown value type ${code}`);
    metadata.set(key, await readValue(c, type, key, path, 0));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (al.type !== 'u32' || al.value === 0 || (al.value & (al.value - 1)) !== 0) {
      throw new FormatError(`${path}: general.alignment must be a u32 power of two, got ${describeValue(al)}`);
    }
    alignment = al.value;
  }

  const tensors: GgufTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = await readString(c, `tensor name #${i}`, path);
    if (names.has(name)) throw new FormatError(`${path}: tensor ${name} appears twice`);
    names.add(name);
    await c.need(4, name);
    const nDims = c.u32();
    if (nDims < 1 || nDims > MAX_DIMS)
      throw new FormatError(`${path}: tensor ${name} has ${nDims} dimensions (1 to ${MAX_DIMS} allowed)`);
    await c.need(8 * nDims + 12, name);
    const dims: number[] = [];
    let count = 1;
    for (let d = 0; d < nDims; d++) {
      const ne = c.i64();
      if (ne < 0n || ne > BigInt(Number.MAX_SAFE_INTEGER))
        throw new FormatError(`${path}: tensor ${name} has invalid dimension ${ne}`);
      dims.push(Number(ne));
      count *= Number(ne);
      if (!Number.isSafeInteger(count))
        throw new FormatError(`${path}: tensor ${name} has an absurd element count (dims ${dims.join('×')}…)`);
    }
    const ggmlType = c.u32();
    const offset = safeCount(c.u64(), `offset of tensor ${name}`, path);
    const dtype = dtypeOfGgmlType(ggmlType);
    if (dtype === undefined) {
      throw new FormatError(
        `${path}: tensor ${name} has type ${ggmlTypeName(ggmlType)}, which this engine cannot read (supported: ${Object.values(
          GGML_TYPES,
        )
          .map((t) => t.name)
          .join(', ')})`,
      );
    }
    const bs = GGML_TYPES[dtype].blockSize;
    if (dims[0]! % bs !== 0) {
      throw new FormatError(
        `${path}: tensor ${name} is ${GGML_TYPES[dtype].name} with rows of ${dims[0]} values, not a multiple of its block size ${bs}`,
      );
    }
    if (offset % alignment !== 0)
      throw new FormatError(
        `${path}: tensor ${name} starts at data offset ${offset}, not a multiple of the alignment ${alignment}`,
      );
    tensors.push({ name, dims, ggmlType, dtype, offset, byteLength: byteLengthOf(dtype, count) });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const dataSize = file.size - dataOffset;
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let prev: GgufTensorInfo | undefined;
  for (const t of byOffset) {
    if (t.offset + t.byteLength > dataSize) {
      throw new FormatError(
        `${path} is truncated: tensor ${t.name} needs data bytes [${t.offset}, ${t.offset + t.byteLength}) but the data section has ${Math.max(0, dataSize)} bytes`,
      );
    }
    if (prev && t.offset < prev.offset + prev.byteLength) {
      throw new FormatError(
        `${path}: tensors ${prev.name} and ${t.name} overlap in the data section (offsets ${prev.offset} and ${t.offset})`,
      );
    }
    prev = t;
  }
  return new GgufFile(file, path, version, metadata, tensors, dataOffset, alignment, file.size);
}

// ---------------------------------------------------------------------------------------------
// Metadata accessors
// ---------------------------------------------------------------------------------------------

/** A short description of a value for error messages. */
export function describeValue(v: GgufValue): string {
  if (v.type === 'array') return `array of ${v.value.length} ${v.itemType}`;
  if (v.type === 'string') return quoteValue(v.value);
  return `${v.type} ${String(v.value)}`;
}

function missing(key: string, where: string): never {
  throw new FormatError(`${where}: required metadata key ${key} is missing`);
}

/** A numeric value (any integer or float type; 64-bit integers must fit in a double exactly). */
export function metaNumber(meta: Map<string, GgufValue>, key: string, where: string): number;
export function metaNumber(
  meta: Map<string, GgufValue>,
  key: string,
  where: string,
  optional: true,
): number | undefined;
export function metaNumber(
  meta: Map<string, GgufValue>,
  key: string,
  where: string,
  optional = false,
): number | undefined {
  const v = meta.get(key);
  if (v === undefined) return optional ? undefined : missing(key, where);
  if (v.type === 'u64' || v.type === 'i64') {
    if (v.value > BigInt(Number.MAX_SAFE_INTEGER) || v.value < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(`${where}: ${key} = ${v.value} is out of range`);
    }
    return Number(v.value);
  }
  if (v.type === 'string' || v.type === 'array' || v.type === 'bool') {
    throw new FormatError(`${where}: ${key} must be a number, got ${describeValue(v)}`);
  }
  return v.value as number;
}

/** A non-negative integer value. */
export function metaUint(meta: Map<string, GgufValue>, key: string, where: string): number;
export function metaUint(meta: Map<string, GgufValue>, key: string, where: string, optional: true): number | undefined;
export function metaUint(
  meta: Map<string, GgufValue>,
  key: string,
  where: string,
  optional = false,
): number | undefined {
  const v = optional ? metaNumber(meta, key, where, true) : metaNumber(meta, key, where);
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 0) throw new FormatError(`${where}: ${key} must be a non-negative integer, got ${v}`);
  return v;
}

export function metaString(meta: Map<string, GgufValue>, key: string, where: string): string;
export function metaString(
  meta: Map<string, GgufValue>,
  key: string,
  where: string,
  optional: true,
): string | undefined;
export function metaString(
  meta: Map<string, GgufValue>,
  key: string,
  where: string,
  optional = false,
): string | undefined {
  const v = meta.get(key);
  if (v === undefined) return optional ? undefined : missing(key, where);
  if (v.type !== 'string') throw new FormatError(`${where}: ${key} must be a string, got ${describeValue(v)}`);
  return v.value;
}

export function metaBool(meta: Map<string, GgufValue>, key: string, where: string): boolean | undefined {
  const v = meta.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'bool') throw new FormatError(`${where}: ${key} must be a bool, got ${describeValue(v)}`);
  return v.value;
}

export function metaStringArray(meta: Map<string, GgufValue>, key: string, where: string): string[];
export function metaStringArray(
  meta: Map<string, GgufValue>,
  key: string,
  where: string,
  optional: true,
): string[] | undefined;
export function metaStringArray(
  meta: Map<string, GgufValue>,
  key: string,
  where: string,
  optional = false,
): string[] | undefined {
  const v = meta.get(key);
  if (v === undefined) return optional ? undefined : missing(key, where);
  if (v.type !== 'array' || v.itemType !== 'string')
    throw new FormatError(`${where}: ${key} must be an array of strings, got ${describeValue(v)}`);
  return v.value as string[];
}

/** An integer array of any integer item type, as numbers. */
export function metaIntArray(meta: Map<string, GgufValue>, key: string, where: string): number[] | undefined {
  const v = meta.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'array' || !['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'u64', 'i64'].includes(v.itemType)) {
    throw new FormatError(`${where}: ${key} must be an array of integers, got ${describeValue(v)}`);
  }
  return Array.from(v.value as ArrayLike<number | bigint>, (x) => Number(x));
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/** A tensor to write: dims in ggml order, and its bytes (or a function producing them when needed). */
export interface GgufTensorToWrite {
  name: string;
  dims: number[];
  dtype: DType;
  data: Uint8Array | (() => Promise<Uint8Array>);
}

export interface WriteGgufOptions {
  /** Data alignment; written as general.alignment when not 32. */
  alignment?: number;
  /** Called after each tensor with bytes of tensor data written so far and in total. */
  onProgress?: (done: number, total: number, tensor: string) => void;
}

const utf8Enc = new TextEncoder();

/** A growable little-endian byte builder for the header. */
class ByteWriter {
  private buf: Uint8Array = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  /** Reserves n bytes and returns their offset; may replace buf and view, so call it before using them. */
  private grow(n: number): number {
    if (this.length + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.length + n) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const o = this.length;
    this.length += n;
    return o;
  }

  u8(v: number): void {
    const o = this.grow(1);
    this.view.setUint8(o, v);
  }
  i8(v: number): void {
    const o = this.grow(1);
    this.view.setInt8(o, v);
  }
  u16(v: number): void {
    const o = this.grow(2);
    this.view.setUint16(o, v, true);
  }
  i16(v: number): void {
    const o = this.grow(2);
    this.view.setInt16(o, v, true);
  }
  u32(v: number): void {
    const o = this.grow(4);
    this.view.setUint32(o, v, true);
  }
  i32(v: number): void {
    const o = this.grow(4);
    this.view.setInt32(o, v, true);
  }
  f32(v: number): void {
    const o = this.grow(4);
    this.view.setFloat32(o, v, true);
  }
  f64(v: number): void {
    const o = this.grow(8);
    this.view.setFloat64(o, v, true);
  }
  u64(v: bigint | number): void {
    const o = this.grow(8);
    this.view.setBigUint64(o, BigInt(v), true);
  }
  i64(v: bigint | number): void {
    const o = this.grow(8);
    this.view.setBigInt64(o, BigInt(v), true);
  }
  bytes(b: Uint8Array): void {
    const o = this.grow(b.length);
    this.buf.set(b, o);
  }
  string(s: string): void {
    const b = utf8Enc.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.grow(n); // new bytes are zero: the buffer is zero-filled and never reused
  }
  result(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

function checkInt(v: number, lo: number, hi: number, key: string): void {
  if (!Number.isInteger(v) || v < lo || v > hi)
    throw new InputError(`GGUF metadata ${key}: ${v} does not fit its type`);
}

function writeScalar(w: ByteWriter, type: GgufItemType, value: unknown, key: string): void {
  switch (type) {
    case 'u8':
      checkInt(value as number, 0, 0xff, key);
      w.u8(value as number);
      break;
    case 'i8':
      checkInt(value as number, -0x80, 0x7f, key);
      w.i8(value as number);
      break;
    case 'u16':
      checkInt(value as number, 0, 0xffff, key);
      w.u16(value as number);
      break;
    case 'i16':
      checkInt(value as number, -0x8000, 0x7fff, key);
      w.i16(value as number);
      break;
    case 'u32':
      checkInt(value as number, 0, 0xffffffff, key);
      w.u32(value as number);
      break;
    case 'i32':
      checkInt(value as number, -0x80000000, 0x7fffffff, key);
      w.i32(value as number);
      break;
    case 'f32':
      w.f32(value as number);
      break;
    case 'f64':
      w.f64(value as number);
      break;
    case 'u64':
      w.u64(value as bigint);
      break;
    case 'i64':
      w.i64(value as bigint);
      break;
    case 'bool':
      w.u8(value ? 1 : 0);
      break;
    case 'string':
      w.string(value as string);
      break;
    default:
      throw new InputError(`GGUF metadata ${key}: cannot write ${type} as a scalar`);
  }
}

function writeValue(w: ByteWriter, v: GgufValue, key: string): void {
  if (v.type !== 'array') {
    writeScalar(w, v.type, v.value, key);
    return;
  }
  w.u32(TYPE_CODES[v.itemType]);
  w.u64(v.value.length);
  if (v.itemType === 'array') {
    for (const item of v.value as GgufArray[]) writeValue(w, item, key);
    return;
  }
  const items = v.value as ArrayLike<unknown>;
  for (let i = 0; i < items.length; i++) writeScalar(w, v.itemType, items[i], key);
}

/**
 * Writes a GGUF v3 file: metadata in the map's order, tensors in the given order, each tensor's
 * data aligned. The file appears at `path` only when complete (see atomic-write.ts).
 */
export async function writeGguf(
  path: string,
  metadata: Map<string, GgufValue> | Iterable<[string, GgufValue]>,
  tensors: GgufTensorToWrite[],
  options: WriteGgufOptions = {},
): Promise<void> {
  const meta = metadata instanceof Map ? new Map(metadata) : new Map(metadata);
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new InputError(`GGUF alignment must be a power of two, got ${alignment}`);
  }
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) meta.set('general.alignment', gguf.u32(alignment));
  else if (meta.has('general.alignment') && (meta.get('general.alignment') as { value: unknown }).value !== alignment) {
    throw new InputError('general.alignment in the metadata disagrees with the alignment option');
  }

  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(tensors.length);
  w.u64(meta.size);
  for (const [key, value] of meta) {
    w.string(key);
    w.u32(TYPE_CODES[value.type]);
    writeValue(w, value, key);
  }
  const names = new Set<string>();
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (names.has(t.name)) throw new InputError(`tensor ${t.name} is listed twice`);
    names.add(t.name);
    if (utf8Enc.encode(t.name).length >= GGUF_MAX_TENSOR_NAME) {
      throw new InputError(`tensor name ${t.name} is too long for GGUF (at most ${GGUF_MAX_TENSOR_NAME - 1} bytes)`);
    }
    if (t.dims.length < 1 || t.dims.length > MAX_DIMS)
      throw new InputError(`tensor ${t.name}: ${t.dims.length} dims (1 to ${MAX_DIMS} allowed)`);
    const info = GGML_TYPES[t.dtype];
    if (t.dims[0]! % info.blockSize !== 0) {
      throw new InputError(
        `tensor ${t.name}: rows of ${t.dims[0]} values cannot be stored as ${info.name} (blocks of ${info.blockSize})`,
      );
    }
    const size = byteLengthOf(
      t.dtype,
      t.dims.reduce((a, b) => a * b, 1),
    );
    sizes.push(size);
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.i64(d);
    w.u32(info.id);
    w.u64(offset);
    offset += Math.ceil(size / alignment) * alignment;
  }
  w.pad(alignment);
  const total = sizes.reduce((a, b) => a + b, 0);

  const { writeFileAtomically } = await import('./atomic-write.js');
  await writeFileAtomically(path, async (write) => {
    await write(w.result());
    const zeros = new Uint8Array(alignment);
    let done = 0;
    for (let i = 0; i < tensors.length; i++) {
      const t = tensors[i]!;
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      if (data.length !== sizes[i]) {
        throw new MptError(`tensor ${t.name}: got ${data.length} bytes of data, its dims and type need ${sizes[i]}`);
      }
      await write(data);
      const pad = (alignment - (data.length % alignment)) % alignment;
      if (pad) await write(zeros.subarray(0, pad));
      done += data.length;
      options.onProgress?.(done, total, t.name);
    }
  });
}
