/**
 * safetensors: `u64 LE header length N`, N bytes of JSON (`{"__metadata__": {str: str}, name:
 * {"dtype", "shape", "data_offsets": [begin, end]}}`, offsets relative to the data section that
 * follows), then the raw little-endian tensor bytes. The reader loads the header only and serves
 * each tensor with one positioned read of its ByteSource (a local file, a URL, a Blob); the writer
 * (Node) streams tensor by tensor into a temp file and renames it into place.
 */
import { boundedText, FormatError, nameForMessage, quoteValue } from '../errors.js';
import { readIntoFrom, type ByteSource } from './byte-source.js';
import { FLOAT_DTYPE_BYTES, shapeElements } from './dtypes.js';
import { jsonNestsDeeperThan, MAX_JSON_DEPTH } from './json-source.js';
import type { DType, TensorInfo, TensorSource } from './tensor-source.js';

/** Headers larger than this are refused rather than allocated (real ones are well under 1 MB). */
export const MAX_SAFETENSORS_HEADER_BYTES = 100 * 1024 * 1024;

const FROM_FILE_DTYPE: Readonly<Record<string, DType>> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };
const TO_FILE_DTYPE: Readonly<Partial<Record<DType, string>>> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/** A safetensors file opened for lazy reading. */
export interface SafetensorsSource extends TensorSource {
  /** The byte source's name: the path, URL or file name. */
  readonly path: string;
  /** The header's `__metadata__` (string → string), empty when absent. */
  readonly metadata: Readonly<Record<string, string>>;
}

interface Entry {
  info: TensorInfo;
  /** Absolute file offset of the first byte. */
  start: number;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Opens the safetensors file at `path` (Node); see openSafetensorsSource. */
export async function openSafetensors(path: string): Promise<SafetensorsSource> {
  const { RandomAccessFile } = await import('./file-reader.js');
  return openSafetensorsSource(await RandomAccessFile.open(path));
}

/**
 * Reads and validates the header of the safetensors file `file`; tensor bytes are read on demand.
 * The source is the returned one's to close (and is closed here when the header is refused).
 */
export async function openSafetensorsSource(file: ByteSource): Promise<SafetensorsSource> {
  try {
    const { entries, metadata } = await readHeader(file);
    return makeSource(file, entries, metadata);
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}

async function readHeader(
  file: ByteSource,
): Promise<{ entries: Map<string, Entry>; metadata: Record<string, string> }> {
  const path = file.name;
  if (file.size < 8)
    throw new FormatError(
      `${path} is not a safetensors file: ${file.size} bytes is shorter than the 8-byte header length`,
    );
  const lenBytes = await file.read(0, 8, 'the header length');
  const headerLen64 = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLen64 > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
    throw new FormatError(
      `${path} is not a valid safetensors file: header length ${headerLen64} is absurd (over ${MAX_SAFETENSORS_HEADER_BYTES} bytes)`,
    );
  }
  const headerLen = Number(headerLen64);
  if (8 + headerLen > file.size) {
    throw new FormatError(
      `${path} is truncated or not safetensors: header length ${headerLen} runs past the end of the ${file.size}-byte file`,
    );
  }
  const headerBytes = await file.read(8, headerLen, 'the JSON header');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
  } catch {
    throw new FormatError(`${path}: the safetensors header is not valid UTF-8`);
  }
  if (jsonNestsDeeperThan(text, MAX_JSON_DEPTH)) {
    throw new FormatError(
      `${path}: the safetensors header nests more than ${MAX_JSON_DEPTH} deep (corrupt or hostile)`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${path}: malformed safetensors header JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(header)) throw new FormatError(`${path}: the safetensors header is not a JSON object`);
  // The reference implementation refuses a header that does not open with the brace (leading spaces included).
  if (!text.startsWith('{')) throw new FormatError(`${path}: the safetensors header does not start with "{"`);
  const repeated = repeatedTopLevelKey(text);
  if (repeated !== undefined) {
    throw new FormatError(`${path}: the safetensors header names ${quoteValue(repeated)} twice`);
  }

  const dataStart = 8 + headerLen;
  const dataSize = file.size - dataStart;
  const metadata: Record<string, string> = {};
  const entries = new Map<string, Entry>();
  const ranges: { name: string; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isPlainObject(value)) throw new FormatError(`${path}: __metadata__ must be an object of strings`);
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new FormatError(`${path}: __metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const where = `${path}: tensor ${nameForMessage(name)}`;
    if (!isPlainObject(value)) throw new FormatError(`${where}: header entry is not an object`);
    const { dtype: fileDtype, shape, data_offsets: offsets } = value;
    if (fileDtype === undefined) throw new FormatError(`${where}: the header entry has no "dtype" (F32, F16 or BF16)`);
    if (typeof fileDtype !== 'string')
      throw new FormatError(`${where}: "dtype" is ${quoteValue(fileDtype)}, not a string (F32, F16 or BF16)`);
    const dtype = FROM_FILE_DTYPE[fileDtype];
    if (dtype === undefined) {
      throw new FormatError(
        `${where} has dtype ${nameForMessage(fileDtype)}; only F32, F16 and BF16 tensors are supported`,
      );
    }
    if (shape === undefined) {
      throw new FormatError(`${where}: the header entry has no "shape" (a list of non-negative integers)`);
    }
    if (offsets === undefined) {
      throw new FormatError(`${where}: the header entry has no "data_offsets" (a pair of non-negative integers)`);
    }
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw new FormatError(`${where}: shape ${quoteValue(shape)} is not a list of non-negative integers`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount)) {
      throw new FormatError(`${where}: data_offsets ${quoteValue(offsets)} is not a pair of non-negative integers`);
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) throw new FormatError(`${where}: data_offsets [${begin}, ${end}] run backwards`);
    if (end > dataSize) {
      throw new FormatError(
        `${where}: data_offsets [${begin}, ${end}] run past the end of the data section (${dataSize} bytes): the file is truncated or corrupt`,
      );
    }
    const elements = shapeElements(shape as number[]);
    const byteLength = elements * FLOAT_DTYPE_BYTES[dtype]!;
    if (!Number.isSafeInteger(byteLength) || byteLength !== end - begin) {
      throw new FormatError(
        `${where}: shape ${boundedText(`[${shape.join(', ')}]`)} of ${fileDtype} needs ${byteLength} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
      );
    }
    entries.set(name, {
      info: { name, dtype, shape: (shape as number[]).slice(), byteLength },
      start: dataStart + begin,
    });
    ranges.push({ name, begin, end });
  }
  // The tensors must tile the data section exactly, in offset order: no overlap, no gap, nothing
  // after the last one (as the reference implementation requires). A header length off by a few
  // bytes shifts every tensor and is caught here, instead of yielding garbage weights.
  ranges.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let last: { name: string; begin: number; end: number } | undefined;
  for (const cur of ranges) {
    if (cur.begin < covered) {
      const prev = `${last!.name} [${last!.begin}, ${last!.end})`;
      throw new FormatError(`${path}: tensors ${prev} and ${cur.name} [${cur.begin}, ${cur.end}) overlap`);
    }
    if (cur.begin > covered) {
      throw new FormatError(
        `${path}: data bytes [${covered}, ${cur.begin}) before tensor ${cur.name} belong to no tensor (a gap)`,
      );
    }
    covered = cur.end;
    last = cur;
  }
  if (covered !== dataSize) {
    const after = last === undefined ? 'the header' : `tensor ${last.name}`;
    throw new FormatError(
      `${path}: data bytes [${covered}, ${dataSize}) after ${after} belong to no tensor (wrong header length?)`,
    );
  }
  return { entries, metadata };
}

/** JSON's whitespace characters (space, tab, line feed, carriage return). */
function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/**
 * The first name that the top-level object of `text` (valid JSON) spells twice, or undefined.
 * JSON.parse silently keeps the last of repeated names, so they have to be found in the text.
 */
function repeatedTopLevelKey(text: string): string | undefined {
  const seen = new Set<string>();
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      for (i++; text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (depth !== 1) continue;
      let j = i + 1;
      while (isJsonSpace(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) !== 0x3a) continue; // a string value, not a name
      const name = JSON.parse(text.slice(start, i + 1)) as string;
      if (seen.has(name)) return name;
      seen.add(name);
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return undefined;
}

function makeSource(
  file: ByteSource,
  entries: Map<string, Entry>,
  metadata: Record<string, string>,
): SafetensorsSource {
  const infos = [...entries.values()].map((e) => e.info);
  const path = file.name;
  return {
    path,
    metadata,
    list: () => infos.map((i) => ({ ...i, shape: i.shape.slice() })),
    info: (name) => {
      const e = entries.get(name);
      return e && { ...e.info, shape: e.info.shape.slice() };
    },
    read: async (name) => {
      const e = entries.get(name);
      if (e === undefined) throw new FormatError(`${path} has no tensor named ${name}`);
      return file.read(e.start, e.info.byteLength, `tensor ${name}`);
    },
    // Positioned reads straight into the caller's memory (the wasm backend loads weights this way).
    readInto: async (name, dest, start = 0) => {
      const e = entries.get(name);
      if (e === undefined) throw new FormatError(`${path} has no tensor named ${name}`);
      if (!Number.isSafeInteger(start) || start < 0 || start + dest.length > e.info.byteLength) {
        throw new FormatError(
          `${path}: bytes [${start}, ${start + dest.length}) are outside tensor ${name} (${e.info.byteLength} bytes)`,
        );
      }
      await readIntoFrom(file, e.start + start, dest, `tensor ${name}`);
    },
    close: () => file.close(),
  };
}

/** One tensor to write: its bytes, or a function producing them (so big tensors can stream from a source). */
export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array | (() => Uint8Array | Promise<Uint8Array>);
}

const utf8Encoder = new TextEncoder();

/** Orders names as the official library does (by their UTF-8 bytes). */
function compareUtf8(a: string, b: string): number {
  const x = utf8Encoder.encode(a);
  const y = utf8Encoder.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}

/**
 * Writes a safetensors file atomically (temp file in the same folder, fsync, rename). Tensors are
 * laid out sorted by name, the header is padded with spaces to a multiple of 8, and `metadata`
 * defaults to `{"format": "pt"}` (what transformers expects). Data is written tensor by tensor, so a
 * tensor given as a function is produced only when its turn comes.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata: Readonly<Record<string, string>> = { format: 'pt' },
): Promise<void> {
  const sorted = [...tensors].sort((a, b) => compareUtf8(a.name, b.name));
  const header: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== 'string') throw new FormatError(`safetensors metadata ${k} must be a string`);
  }
  if (Object.keys(metadata).length > 0) header['__metadata__'] = { ...metadata };
  let offset = 0;
  const sizes: number[] = [];
  for (const t of sorted) {
    if (t.name === '__metadata__') throw new FormatError('a tensor cannot be named __metadata__ in safetensors');
    if (Object.hasOwn(header, t.name)) throw new FormatError(`tensor ${t.name} is listed twice`);
    const fileDtype = TO_FILE_DTYPE[t.dtype];
    if (fileDtype === undefined)
      throw new FormatError(`tensor ${t.name}: safetensors cannot store ${t.dtype}; use f32, f16 or bf16`);
    if (!t.shape.every((d) => isCount(d))) throw new FormatError(`tensor ${t.name}: bad shape [${t.shape.join(', ')}]`);
    const size = shapeElements(t.shape) * FLOAT_DTYPE_BYTES[t.dtype]!;
    if (t.data instanceof Uint8Array && t.data.byteLength !== size) {
      throw new FormatError(
        `tensor ${t.name}: ${t.data.byteLength} bytes given for shape [${t.shape.join(', ')}] of ${t.dtype} (${size} expected)`,
      );
    }
    header[t.name] = { dtype: fileDtype, shape: t.shape.slice(), data_offsets: [offset, offset + size] };
    sizes.push(size);
    offset += size;
  }
  const unpadded = utf8Encoder.encode(JSON.stringify(header));
  const json = new Uint8Array(Math.ceil(unpadded.length / 8) * 8).fill(0x20); // padded with spaces
  json.set(unpadded);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);

  const { writeFileAtomically } = await import('./atomic-write.js');
  await writeFileAtomically(path, async (write) => {
    await write(prefix);
    await write(json);
    for (let i = 0; i < sorted.length; i++) {
      const t = sorted[i]!;
      const data = typeof t.data === 'function' ? await t.data() : t.data;
      if (data.byteLength !== sizes[i]) {
        throw new FormatError(
          `tensor ${t.name}: ${data.byteLength} bytes produced for shape [${t.shape.join(', ')}] of ${t.dtype} (${sizes[i]} expected)`,
        );
      }
      await write(data);
    }
  });
}
