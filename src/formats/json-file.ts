/**
 * How JSON files of a model folder on disk are read (config.json, generation_config.json, weight
 * indexes, tokenizer.json and its side files): the path is checked before anything is read — it
 * must be a regular file (not a folder, FIFO or device) no bigger than what its kind can sensibly
 * be — then read whole and parsed. Every failure is an error naming the path and what it was.
 * (Node only: json-source.ts reads them from any ByteSource, with the same limits and messages.)
 */
import { closeSync, fstatSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { FormatError, type MptError } from '../errors.js';
import { checkJsonSize, parseJsonBytes, type ErrorClass } from './json-source.js';

export { JSON_FILE_LIMITS, type ErrorClass } from './json-source.js';

function checkStats(st: Stats, path: string, what: string, maxBytes: number, Err: ErrorClass): void {
  if (!st.isFile()) throw new Err(`${what} ${path} is not a regular file`);
  checkJsonSize(st.size, path, what, maxBytes, Err);
}

function cannotRead(e: unknown, path: string, what: string, Err: ErrorClass): MptError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new Err(`${what} ${path} does not exist`, { cause: e });
  return new Err(`cannot read ${what} ${path}: ${(e as Error).message}`, { cause: e });
}

/**
 * Reads and parses the JSON file at `path`, described as `what` in errors (e.g. "model config"),
 * refusing anything that is not a regular file of at most `maxBytes` (see JSON_FILE_LIMITS).
 */
export async function readJsonFile(
  path: string,
  what: string,
  maxBytes: number,
  Err: ErrorClass = FormatError,
): Promise<unknown> {
  let bytes: Uint8Array;
  try {
    checkStats(await stat(path), path, what, maxBytes, Err);
    const handle = await open(path, 'r');
    try {
      // The open file is checked again, and only the size it has then is read: it may have been swapped or grown.
      const st = await handle.stat();
      checkStats(st, path, what, maxBytes, Err);
      bytes = new Uint8Array(st.size);
      let done = 0;
      while (done < bytes.length) {
        const { bytesRead } = await handle.read(bytes, done, bytes.length - done, done);
        if (bytesRead === 0) break;
        done += bytesRead;
      }
      bytes = bytes.subarray(0, done);
    } finally {
      await handle.close();
    }
  } catch (e) {
    throw e instanceof Err ? e : cannotRead(e, path, what, Err);
  }
  return parseJsonBytes(bytes, path, what, Err);
}

/** readJsonFile for synchronous callers (the tokenizer loader). */
export function readJsonFileSync(path: string, what: string, maxBytes: number, Err: ErrorClass = FormatError): unknown {
  let bytes: Uint8Array;
  try {
    checkStats(statSync(path), path, what, maxBytes, Err);
    const fd = openSync(path, 'r');
    try {
      const st = fstatSync(fd);
      checkStats(st, path, what, maxBytes, Err);
      bytes = new Uint8Array(st.size);
      let done = 0;
      while (done < bytes.length) {
        const n = readSync(fd, bytes, done, bytes.length - done, done);
        if (n === 0) break;
        done += n;
      }
      bytes = bytes.subarray(0, done);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    throw e instanceof Err ? e : cannotRead(e, path, what, Err);
  }
  return parseJsonBytes(bytes, path, what, Err);
}
