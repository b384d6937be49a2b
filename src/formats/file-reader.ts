/**
 * Local files as byte sources (Node): positioned reads from a checkpoint file, and a model folder
 * on disk as a FolderSource. Only the path-taking entry points of the readers load this module
 * (by a dynamic import), so that the readers themselves run where there is no file system.
 * Offsets are plain numbers (exact below 2^53, far beyond any real file).
 */
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { FormatError } from '../errors.js';
import { checkRange, closedError, type ByteSource } from './byte-source.js';
import { checkFileName, type FolderSource } from './folder-source.js';

/** Largest length handed to one fs read call (Node refuses more than 2^31 - 1). */
const MAX_READ_CHUNK = 1 << 30;

/** An open file that serves byte ranges; safe to use from several concurrent reads. */
export class RandomAccessFile implements ByteSource {
  private handle: fsp.FileHandle | undefined;

  private constructor(
    /** The path the file was opened with (used in error messages). */
    readonly path: string,
    handle: fsp.FileHandle,
    /** File size in bytes at open time. */
    readonly size: number,
  ) {
    this.handle = handle;
  }

  /** The path, as ByteSource names it. */
  get name(): string {
    return this.path;
  }

  /** Opens `path` for reading; a missing or unreadable file is a FormatError naming it. */
  static async open(path: string): Promise<RandomAccessFile> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(path, 'r');
    } catch (e) {
      throw new FormatError(`cannot open ${path}: ${(e as Error).message}`, { cause: e });
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new FormatError(`${path} is not a regular file`);
      return new RandomAccessFile(path, handle, st.size);
    } catch (e) {
      await handle.close().catch(() => {});
      throw e;
    }
  }

  /**
   * Reads exactly `length` bytes at `offset` into a new Uint8Array (its own ArrayBuffer, byteOffset
   * 0, so it is aligned for any typed-array view). A range past the end is a FormatError that
   * says what was being read (`what`, e.g. "tensor x").
   */
  async read(offset: number, length: number, what = 'data'): Promise<Uint8Array> {
    this.checkRange(offset, length, what);
    // allocUnsafeSlow: unpooled (own ArrayBuffer) and not zero-filled, since every byte gets overwritten.
    const buf = Buffer.allocUnsafeSlow(length);
    const out = new Uint8Array(buf.buffer, buf.byteOffset, length);
    await this.readInto(offset, out, what);
    return out;
  }

  /**
   * Reads exactly `dest.length` bytes at `offset` straight into `dest` (any Uint8Array, also a
   * view of a shared wasm memory): no intermediate buffer. Same errors as `read`.
   */
  async readInto(offset: number, dest: Uint8Array, what = 'data'): Promise<void> {
    const handle = this.handle;
    if (handle === undefined) throw closedError(this.path, what);
    const length = dest.length;
    this.checkRange(offset, length, what);
    let done = 0;
    while (done < length) {
      const want = Math.min(length - done, MAX_READ_CHUNK);
      const { bytesRead } = await handle.read(dest, done, want, offset + done);
      if (bytesRead === 0) {
        throw new FormatError(
          `${this.path} is truncated: ${what} ends at byte ${offset + length} but reading stopped at ${offset + done}` +
            ' (was the file changed while open?)',
        );
      }
      done += bytesRead;
    }
  }

  private checkRange(offset: number, length: number, what: string): void {
    if (this.handle === undefined) throw closedError(this.path, what);
    checkRange(this, offset, length, what);
  }

  /** Closes the file; later reads throw. Closing twice is harmless. */
  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = undefined;
    if (handle !== undefined) await handle.close();
  }
}

/**
 * The folder `dir` on disk as a FolderSource (file names are joined to it, so sources are named
 * by their paths). A missing folder, or a path that is not one, is a FormatError naming it.
 */
export async function openDirFolder(dir: string): Promise<FolderSource> {
  let st: Awaited<ReturnType<typeof fsp.stat>>;
  try {
    st = await fsp.stat(dir);
  } catch (e) {
    throw new FormatError(`model folder ${dir} does not exist`, { cause: e });
  }
  if (!st.isDirectory()) throw new FormatError(`${dir} is not a folder`);
  return {
    name: dir,
    async open(file) {
      checkFileName(dir, file);
      const path = join(dir, file);
      // Only a regular file counts as present; a folder or a FIFO of that name is no weight file.
      const isFile = await fsp.stat(path).then(
        (s) => s.isFile(),
        () => false,
      );
      return isFile ? RandomAccessFile.open(path) : undefined;
    },
    list: () => fsp.readdir(dir).catch(() => []),
  };
}
