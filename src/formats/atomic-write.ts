/**
 * Writing a file so that it appears complete or not at all (Node): the bytes go to a temporary
 * file in the same folder (so that the rename cannot cross file systems), are flushed to disk,
 * and the temporary file is renamed onto `path`. On any failure the temporary file is removed; a
 * failure of the file system itself (a full disk, a file-size limit) is an OutputError naming
 * `path` (Node's own error names neither: "ENOSPC: no space left on device, write").
 * The writers of the formats load this module only when they write (a dynamic import), so that
 * the formats themselves stay importable where there is no file system.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { OutputError, systemErrorText } from '../errors.js';

/** Writes at most this much per write call, to stay well under Node's per-call limit (2^31 - 1). */
const MAX_WRITE_CHUNK = 1 << 30;

/** Temporary outputs (files or folders) being written now: what an interrupted command removes. */
const unfinished = new Set<string>();

/** Marks `path` as a temporary output being written; the function returned unmarks it. */
export function markUnfinished(path: string): () => void {
  unfinished.add(path);
  return () => {
    unfinished.delete(path);
  };
}

/**
 * Removes every temporary output still being written (for Ctrl-C: the process exits right after,
 * so this is synchronous; an open file is removed as well, its handle closes at exit).
 */
export function removeUnfinished(): string[] {
  const removed = [...unfinished];
  for (const path of removed) rmSync(path, { recursive: true, force: true });
  unfinished.clear();
  return removed;
}

/** Calls `produce` with a function that appends bytes to the file, then puts the file in place. */
export async function writeFileAtomically(
  path: string,
  produce: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fsp.open(tmp, 'wx').catch((e: unknown) => {
    throw writeError(path, e);
  });
  const unmark = markUnfinished(tmp);
  let position = 0;
  const write = async (bytes: Uint8Array) => {
    try {
      for (let done = 0; done < bytes.byteLength; ) {
        const n = Math.min(bytes.byteLength - done, MAX_WRITE_CHUNK);
        const { bytesWritten } = await handle.write(bytes, done, n, position);
        done += bytesWritten;
        position += bytesWritten;
      }
    } catch (e) {
      throw writeError(path, e);
    }
  };
  try {
    await produce(write);
    try {
      await handle.sync();
      await handle.close();
      await fsp.rename(tmp, path);
    } catch (e) {
      throw writeError(path, e);
    }
  } catch (e) {
    await handle.close().catch(() => {});
    await fsp.unlink(tmp).catch(() => {});
    throw e;
  } finally {
    unmark();
  }
}

/**
 * A file-system failure while writing `path` (or a file inside it, itself already an OutputError)
 * as an OutputError that names `path`; other errors as they are.
 */
export function writeError(path: string, e: unknown): unknown {
  const cause = e instanceof OutputError ? e.cause : e;
  if (typeof (cause as { code?: unknown } | null)?.code !== 'string') return e;
  return new OutputError(`cannot write ${path}: ${systemErrorText(cause)} (nothing was written there)`, { cause });
}
