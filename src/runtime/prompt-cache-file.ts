/**
 * The prompt cache file format: the KV cache of a processed prompt on disk (prompt-cache.ts saves
 * and restores runners' caches through it).
 *
 * Damage is a `PromptCacheError` whose `reason` says what is wrong; whether a sound file fits a
 * model (fingerprint, shape, KV type, tokens) is prompt-cache.ts's check.
 *
 * File layout (little-endian):
 *
 *   0    8 bytes  magic "MPTKVC\r\n"
 *   8    u32      format version (PROMPT_CACHE_VERSION)
 *   12   u32      header length H (bytes of JSON, padded with spaces to a multiple of 8)
 *   16   H bytes  header JSON: modelHash, kvType, nLayers, kvDim, length, nTokens, dataBytes, ...
 *        u32 × nTokens     token ids of the cached positions
 *        u8  × length      pad mask (1 = real token)
 *        per layer: keys then values, each `length` rows of kvDim values encoded as kvType:
 *          f32: 4 bytes a value; f16: 2 bytes; q8_0: per 32 values (last block may be shorter)
 *          an f16 scale then one int8 per value
 *        32 bytes sha256 of everything before it
 *        8 bytes  end magic "MPTKVEND"
 *
 * Rows are position-major, so a prefix of the positions is a prefix of each layer's rows. Files
 * are written to a temporary name and renamed into place, so a crash never leaves half a file
 * under the real name.
 *
 * The path comes from a user: anything but a regular file (a folder, a named pipe, a device) is
 * refused before it is opened, and it is opened without blocking, so a FIFO cannot hang the
 * reader. Nothing is read before the header says how much there is and the file's size agrees;
 * the token ids are read only once the header's model and shape match.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync,
  constants as fsConstants,
  fstatSync,
  fsyncSync,
  openSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { dirname } from 'node:path';
import type { KvSnapshot, KvType } from '../backends/backend.js';
import { InputError, MptError } from '../errors.js';
import { f16ToF32, f32ToF16 } from '../formats/dtypes.js';
import { decodeQ8_0, encodeQ8_0, q8_0ByteLength } from '../formats/ggml-quants.js';

export const PROMPT_CACHE_VERSION = 1;
const MAGIC = Buffer.from('MPTKVC\r\n', 'latin1');
const END_MAGIC = Buffer.from('MPTKVEND', 'latin1');
const TRAILER_BYTES = 32 + 8;
/** The header is a small JSON object; a larger length is damage, not something to allocate. */
const MAX_HEADER_BYTES = 2 ** 20;
const KV_TYPES: readonly KvType[] = ['f32', 'f16', 'q8_0'];

/** What made a prompt cache file unusable. */
export type PromptCacheRejection =
  | 'not-a-cache' // wrong magic, or not a regular file (a folder, a FIFO): not a prompt cache file
  | 'truncated' // shorter than its header says
  | 'corrupt' // checksum or header content wrong
  | 'version' // written by another format version
  | 'model' // made with another model (weights or config)
  | 'kv-type' // stored in another KV type than asked for
  | 'shape' // layers / kv dims differ from the model
  | 'tokens' // its tokens are not a prefix of the prompt
  | 'capacity'; // more positions than the context holds

export class PromptCacheError extends MptError {
  constructor(
    readonly reason: PromptCacheRejection,
    message: string,
  ) {
    super(message);
  }
}

/** The header of a prompt cache file. */
export interface PromptCacheInfo {
  version: number;
  modelHash: string;
  kvType: KvType;
  nLayers: number;
  kvDim: number;
  /** Positions stored. */
  length: number;
  /** Token ids of the stored positions. */
  tokens: number[];
  /** Backend that computed the cache (informational). */
  backend: string;
  /** ISO time of writing (informational). */
  createdAt: string;
  /** Total file size in bytes. */
  fileBytes: number;
}

// ---------------------------------------------------------------------------------------------
// Row encodings

/** Bytes of one encoded row of n values. */
export function encodedRowBytes(kvType: KvType, n: number): number {
  if (kvType === 'f32') return 4 * n;
  if (kvType === 'f16') return 2 * n;
  return q8_0ByteLength(n);
}

/** Encodes `rows` rows of n values (f32) into `out` at `o`. */
function encodeRows(kvType: KvType, src: Float32Array, rows: number, n: number, out: Buffer, o: number): void {
  if (kvType === 'f32') {
    Buffer.from(src.buffer, src.byteOffset, rows * n * 4).copy(out, o);
    return;
  }
  if (kvType === 'f16') {
    for (let i = 0; i < rows * n; i++) out.writeUInt16LE(f32ToF16(src[i]!), o + 2 * i);
    return;
  }
  // q8_0 with ggml's rounding, each row on its own (its last block may be short). The caches'
  // own q8_0 values come back bit for bit.
  const rowBytes = q8_0ByteLength(n);
  for (let r = 0; r < rows; r++) encodeQ8_0(src, r * n, n, out, o + r * rowBytes);
}

function decodeRows(kvType: KvType, buf: Buffer, rows: number, n: number): Float32Array {
  const out = new Float32Array(rows * n);
  if (kvType === 'f32') {
    Buffer.from(out.buffer).set(buf.subarray(0, rows * n * 4));
  } else if (kvType === 'f16') {
    for (let i = 0; i < rows * n; i++) out[i] = f16ToF32(buf.readUInt16LE(2 * i));
  } else {
    const rowBytes = q8_0ByteLength(n);
    for (let r = 0; r < rows; r++) decodeQ8_0(buf, r * rowBytes, n, out, r * n);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

export function checkTokens(tokens: readonly number[], n: number): void {
  if (tokens.length !== n)
    throw new InputError(
      `a prompt cache needs one token id per cached position: ${tokens.length} ids for ${n} positions`,
    );
  for (const t of tokens)
    if (!Number.isInteger(t) || t < 0 || t > 0xffffffff)
      throw new InputError(`token id ${t} cannot be stored in a prompt cache`);
}

/**
 * Writes a snapshot and its token ids (one per position) to `path` atomically: a temporary file,
 * fsynced, then renamed. Returns the file size.
 */
export function writePromptCacheFile(
  path: string,
  snap: KvSnapshot,
  tokens: readonly number[],
  modelHash: string,
  backend: string,
): number {
  const n = snap.length,
    kvd = snap.kvDim;
  const rowBytes = encodedRowBytes(snap.kvType, kvd);
  const dataBytes = 4 * n + n + 2 * snap.nLayers * n * rowBytes;
  const header = {
    modelHash,
    kvType: snap.kvType,
    nLayers: snap.nLayers,
    kvDim: kvd,
    length: n,
    nTokens: tokens.length,
    dataBytes,
    backend,
    createdAt: new Date().toISOString(),
  };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const head = Buffer.alloc(16 + Buffer.byteLength(json));
  MAGIC.copy(head, 0);
  head.writeUInt32LE(PROMPT_CACHE_VERSION, 8);
  head.writeUInt32LE(Buffer.byteLength(json), 12);
  head.write(json, 16, 'utf8');

  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw new InputError(`cannot write the prompt cache ${path}: ${(e as Error).message}`, { cause: e });
  }
  const hash = createHash('sha256');
  let pos = 0;
  const put = (b: Buffer, hashed = true) => {
    if (hashed) hash.update(b);
    for (let off = 0; off < b.length; ) off += writeSync(fd, b, off, b.length - off, pos + off);
    pos += b.length;
  };
  try {
    put(head);
    const ids = Buffer.alloc(4 * n);
    tokens.forEach((t, i) => {
      ids.writeUInt32LE(t, 4 * i);
    });
    put(ids);
    put(Buffer.from(snap.padMask.buffer, snap.padMask.byteOffset, n));
    // Encode a layer in pieces of at most ~64 MiB, so memory stays bounded for long contexts.
    const rowsPerPiece = Math.max(1, Math.floor((64 * 2 ** 20) / Math.max(1, rowBytes)));
    for (let l = 0; l < snap.nLayers; l++) {
      const { keys, values } = snap.layer(l);
      for (const rows of [keys, values]) {
        if (rows.length < n * kvd) throw new InputError(`KV snapshot layer ${l} holds fewer than ${n} positions`);
        for (let r0 = 0; r0 < n; r0 += rowsPerPiece) {
          const m = Math.min(rowsPerPiece, n - r0);
          const piece = Buffer.alloc(m * rowBytes);
          encodeRows(snap.kvType, rows.subarray(r0 * kvd, (r0 + m) * kvd), m, kvd, piece, 0);
          put(piece);
        }
      }
    }
    const digest = hash.digest();
    put(Buffer.concat([digest, END_MAGIC]), false);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    try {
      unlinkSync(tmp);
    } catch {
      /* best effort */
    }
    if (typeof (e as NodeJS.ErrnoException).code === 'string') {
      throw new InputError(`cannot write the prompt cache ${path}: ${(e as Error).message}`, { cause: e });
    }
    throw e;
  }
  return pos;
}

// ---------------------------------------------------------------------------------------------
// Reading

export interface OpenedCache {
  fd: number;
  info: PromptCacheInfo;
  tokensAt: number;
  maskAt: number;
  layersAt: number;
  rowBytes: number;
  dataEnd: number;
}

function readExactly(fd: number, buf: Buffer, pos: number): void {
  let off = 0;
  while (off < buf.length) {
    const got = readSync(fd, buf, off, buf.length - off, pos + off);
    if (got === 0) throw new PromptCacheError('truncated', `prompt cache ends early (at byte ${pos + off})`);
    off += got;
  }
}

function isInt(x: unknown, min = 0): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= min;
}

function notAFile(path: string, st: Stats): PromptCacheError {
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a named pipe (FIFO)' : 'not a regular file';
  return new PromptCacheError('not-a-cache', `the prompt cache ${path} is ${kind}, not a prompt cache file`);
}

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch (e) {
    throw new InputError(`cannot use the prompt cache ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Checks a prompt cache path before any work: 'exists' for a regular file, 'absent' when it can
 * be created (its folder exists); a folder, FIFO or device at the path, or a missing folder, is
 * an error naming the path.
 */
export function checkPromptCachePath(path: string): 'exists' | 'absent' {
  const st = statOrUndefined(path);
  if (st) {
    if (!st.isFile()) throw notAFile(path, st);
    return 'exists';
  }
  const dir = statOrUndefined(dirname(path));
  if (!dir?.isDirectory()) {
    throw new InputError(`cannot write the prompt cache ${path}: the folder ${dirname(path)} does not exist`);
  }
  return 'absent';
}

/**
 * Opens a prompt cache file and reads its header and token ids. `check` sees the header (with no
 * tokens yet) first and may reject the file before more is read.
 */
export function openPromptCacheFile(path: string, check?: (header: PromptCacheInfo) => void): OpenedCache {
  if (checkPromptCachePath(path) === 'absent') throw new InputError(`prompt cache not found: ${path}`);
  let fd: number;
  try {
    // Non-blocking, so that a FIFO put in the file's place after the check cannot hang us.
    fd = openSync(path, fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0));
  } catch (e) {
    throw new InputError(`cannot read the prompt cache ${path}: ${(e as Error).message}`, { cause: e });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notAFile(path, st);
    const size = st.size;
    if (size < 16)
      throw new PromptCacheError(
        size >= 8 ? 'truncated' : 'not-a-cache',
        `${path} is too short to be a prompt cache (${size} bytes)`,
      );
    const fixed = Buffer.alloc(16);
    readExactly(fd, fixed, 0);
    if (!fixed.subarray(0, 8).equals(MAGIC))
      throw new PromptCacheError('not-a-cache', `${path} is not a prompt cache file (wrong magic bytes)`);
    const version = fixed.readUInt32LE(8);
    if (version !== PROMPT_CACHE_VERSION) {
      throw new PromptCacheError(
        'version',
        `${path} is a version ${version} prompt cache; this mpt-ts reads version ${PROMPT_CACHE_VERSION}: delete it and let it be rebuilt`,
      );
    }
    const hlen = fixed.readUInt32LE(12);
    if (hlen > MAX_HEADER_BYTES) {
      throw new PromptCacheError('corrupt', `${path}: the header claims ${hlen} bytes (at most ${MAX_HEADER_BYTES})`);
    }
    if (16 + hlen > size)
      throw new PromptCacheError(
        'truncated',
        `${path} is truncated: its header needs ${hlen} bytes, the file has ${size}`,
      );
    const hbuf = Buffer.alloc(hlen);
    readExactly(fd, hbuf, 16);
    let h: Record<string, unknown>;
    try {
      h = JSON.parse(hbuf.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new PromptCacheError('corrupt', `${path}: the prompt cache header is not valid JSON`);
    }
    const kvType = h['kvType'] as KvType;
    if (
      typeof h['modelHash'] !== 'string' ||
      !KV_TYPES.includes(kvType) ||
      !isInt(h['nLayers'], 1) ||
      !isInt(h['kvDim'], 1) ||
      !isInt(h['length']) ||
      h['nTokens'] !== h['length'] ||
      !isInt(h['dataBytes'])
    ) {
      throw new PromptCacheError('corrupt', `${path}: the prompt cache header is incomplete or inconsistent`);
    }
    const n = h['length'] as number,
      nLayers = h['nLayers'] as number,
      kvDim = h['kvDim'] as number;
    const rowBytes = encodedRowBytes(kvType, kvDim);
    const dataBytes = 4 * n + n + 2 * nLayers * n * rowBytes;
    if (dataBytes !== h['dataBytes'])
      throw new PromptCacheError('corrupt', `${path}: the prompt cache header is inconsistent (data size)`);
    const expected = 16 + hlen + dataBytes + TRAILER_BYTES;
    if (size < expected)
      throw new PromptCacheError('truncated', `${path} is truncated: ${size} bytes, the header promises ${expected}`);
    if (size > expected)
      throw new PromptCacheError('corrupt', `${path} has ${size - expected} bytes more than its header describes`);
    const info: PromptCacheInfo = {
      version,
      modelHash: h['modelHash'] as string,
      kvType,
      nLayers,
      kvDim,
      length: n,
      tokens: [],
      backend: String(h['backend'] ?? ''),
      createdAt: String(h['createdAt'] ?? ''),
      fileBytes: size,
    };
    check?.(info);
    const tokensAt = 16 + hlen;
    const ids = Buffer.alloc(4 * n);
    readExactly(fd, ids, tokensAt);
    info.tokens = Array.from({ length: n }, (_, i) => ids.readUInt32LE(4 * i));
    return {
      fd,
      info,
      tokensAt,
      maskAt: tokensAt + 4 * n,
      layersAt: tokensAt + 5 * n,
      rowBytes,
      dataEnd: tokensAt + dataBytes,
    };
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

export function verifyChecksum(path: string, o: OpenedCache): void {
  const hash = createHash('sha256');
  const chunk = Buffer.alloc(16 * 2 ** 20);
  for (let pos = 0; pos < o.dataEnd; ) {
    const m = Math.min(chunk.length, o.dataEnd - pos);
    const b = chunk.subarray(0, m);
    readExactly(o.fd, b, pos);
    hash.update(b);
    pos += m;
  }
  const trailer = Buffer.alloc(TRAILER_BYTES);
  readExactly(o.fd, trailer, o.dataEnd);
  if (!trailer.subarray(32).equals(END_MAGIC))
    throw new PromptCacheError('corrupt', `${path}: the prompt cache has no end marker (damaged file)`);
  if (!trailer.subarray(0, 32).equals(hash.digest()))
    throw new PromptCacheError(
      'corrupt',
      `${path}: the prompt cache checksum does not match its contents (damaged file)`,
    );
}

/** Reads and checks the header and token ids of a prompt cache file (not the KV data). */
export function readPromptCacheInfo(path: string): PromptCacheInfo {
  const o = openPromptCacheFile(path);
  closeSync(o.fd);
  return o.info;
}

export function closePromptCacheFile(o: OpenedCache): void {
  closeSync(o.fd);
}

/**
 * The first `keep` positions of an opened file as a KV snapshot: the pad mask now, each layer's
 * rows read and decoded when the restoring backend asks for them (the file must stay open until then).
 */
export function readSnapshot(o: OpenedCache, keep: number): KvSnapshot {
  const info = o.info;
  const mask = Buffer.alloc(keep);
  readExactly(o.fd, mask, o.maskAt);
  const n = info.length;
  return {
    kvType: info.kvType,
    length: keep,
    nLayers: info.nLayers,
    kvDim: info.kvDim,
    padMask: new Uint8Array(mask.buffer, mask.byteOffset, keep),
    layer: (l) => {
      const read = (which: 0 | 1) => {
        const at = o.layersAt + (2 * l + which) * n * o.rowBytes;
        const buf = Buffer.alloc(keep * o.rowBytes);
        readExactly(o.fd, buf, at);
        return decodeRows(info.kvType, buf, keep, info.kvDim);
      };
      return { keys: read(0), values: read(1) };
    },
  };
}
