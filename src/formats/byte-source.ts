/**
 * Where a checkpoint's bytes come from. The format readers need nothing but positioned reads of a
 * file of known size, so a local file (Node, file-reader.ts), a URL (HTTP Range requests,
 * url-source.ts), a dropped File or any Blob, and bytes already in memory all serve them alike.
 * Checkpoints can be tens of gigabytes: callers ask for byte ranges, never for the whole.
 */
import { FormatError, MptError } from '../errors.js';

/** A read-only file of known size that serves byte ranges; several reads may be in flight at once. */
export interface ByteSource {
  /** What the bytes are called in error messages: a path, a URL, a file name. */
  readonly name: string;
  /** Size in bytes, known when the source is opened. */
  readonly size: number;
  /**
   * Reads exactly `length` bytes at `offset` into a fresh Uint8Array over its own ArrayBuffer
   * (byteOffset 0, so aligned for any typed-array view). A range past the end is a FormatError
   * that says what was being read (`what`, e.g. "tensor x").
   */
  read(offset: number, length: number, what?: string): Promise<Uint8Array>;
  /**
   * Optional: reads exactly `dest.length` bytes at `offset` straight into `dest` (any
   * Uint8Array, also a view of wasm memory), with no intermediate buffer. Same errors as `read`.
   */
  readInto?(offset: number, dest: Uint8Array, what?: string): Promise<void>;
  /** Releases the file; later reads throw. Closing twice is harmless. */
  close(): Promise<void>;
}

/**
 * Checks a requested range against the source's size, as every implementation must before
 * reading: a bad range or one past the end is a FormatError naming the source and `what`.
 */
export function checkRange(
  source: { readonly name: string; readonly size: number },
  offset: number,
  length: number,
  what: string,
): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new FormatError(`${source.name}: invalid byte range for ${what} (offset ${offset}, length ${length})`);
  }
  if (offset + length > source.size) {
    throw new FormatError(
      `${source.name} is truncated: ${what} needs bytes [${offset}, ${offset + length}) but the file has ${source.size} bytes`,
    );
  }
}

/** Reads into `dest` with the source's own `readInto` where it has one, else with `read` and a copy. */
export async function readIntoFrom(source: ByteSource, offset: number, dest: Uint8Array, what = 'data'): Promise<void> {
  if (source.readInto) return source.readInto(offset, dest, what);
  dest.set(await source.read(offset, dest.length, what));
}

/** The error for a read of a source already closed (every ByteSource says it so). */
export function closedError(name: string, what: string): MptError {
  return new MptError(`${name} was already closed (reading ${what})`);
}

/** Bytes already in memory (an ArrayBuffer, or a view of one) as a source. */
class MemorySource implements ByteSource {
  private bytes: Uint8Array | undefined;
  readonly size: number;

  constructor(
    bytes: Uint8Array,
    readonly name: string,
  ) {
    this.bytes = bytes;
    this.size = bytes.length;
  }

  async read(offset: number, length: number, what = 'data'): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(offset, out, what);
    return out;
  }

  async readInto(offset: number, dest: Uint8Array, what = 'data'): Promise<void> {
    if (this.bytes === undefined) throw closedError(this.name, what);
    checkRange(this, offset, dest.length, what);
    dest.set(this.bytes.subarray(offset, offset + dest.length));
  }

  async close(): Promise<void> {
    this.bytes = undefined;
  }
}

/** A source over bytes in memory (not copied: they must not change while the source is in use). */
export function bytesSource(data: ArrayBuffer | Uint8Array, name = 'bytes in memory'): ByteSource {
  return new MemorySource(data instanceof Uint8Array ? data : new Uint8Array(data), name);
}

/** A Blob (a File a user chose or dropped, say): each read is one `slice().arrayBuffer()`. */
class BlobSource implements ByteSource {
  private blob: Blob | undefined;
  readonly size: number;

  constructor(
    blob: Blob,
    readonly name: string,
  ) {
    this.blob = blob;
    this.size = blob.size;
  }

  async read(offset: number, length: number, what = 'data'): Promise<Uint8Array> {
    const blob = this.blob;
    if (blob === undefined) throw closedError(this.name, what);
    checkRange(this, offset, length, what);
    let buffer: ArrayBuffer;
    try {
      buffer = await blob.slice(offset, offset + length).arrayBuffer();
    } catch (e) {
      // A File whose underlying file changed or vanished since it was chosen fails here.
      throw new FormatError(`cannot read ${what} of ${this.name}: ${(e as Error).message}`, { cause: e });
    }
    if (buffer.byteLength !== length) {
      throw new FormatError(
        `${this.name}: reading ${what} gave ${buffer.byteLength} bytes instead of ${length} (was the file changed?)`,
      );
    }
    return new Uint8Array(buffer);
  }

  async close(): Promise<void> {
    this.blob = undefined;
  }
}

/** A source over a Blob or File; `name` defaults to the File's name. */
export function blobSource(blob: Blob, name?: string): ByteSource {
  const fileName = (blob as { name?: unknown }).name;
  return new BlobSource(blob, name ?? (typeof fileName === 'string' && fileName !== '' ? fileName : 'blob'));
}

/** Whether `v` is a Blob (a File included); false where the platform has no Blob. */
export function isBlob(v: unknown): v is Blob {
  return typeof Blob !== 'undefined' && v instanceof Blob;
}
