/**
 * Writing a file so that it appears complete or not at all (Node): the bytes go to a temporary
 * file in the same folder (so that the rename cannot cross file systems), are flushed to disk,
 * and the temporary file is renamed onto `path`. On any failure the temporary file is removed.
 * The writers of the formats load this module only when they write (a dynamic import), so that
 * the formats themselves stay importable where there is no file system.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Writes at most this much per write call, to stay well under Node's per-call limit (2^31 - 1). */
const MAX_WRITE_CHUNK = 1 << 30;

/** Calls `produce` with a function that appends bytes to the file, then puts the file in place. */
export async function writeFileAtomically(
  path: string,
  produce: (write: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await fsp.open(tmp, 'wx');
  let position = 0;
  const write = async (bytes: Uint8Array) => {
    for (let done = 0; done < bytes.byteLength; ) {
      const n = Math.min(bytes.byteLength - done, MAX_WRITE_CHUNK);
      const { bytesWritten } = await handle.write(bytes, done, n, position);
      done += bytesWritten;
      position += bytesWritten;
    }
  };
  try {
    await produce(write);
    await handle.sync();
    await handle.close();
    await fsp.rename(tmp, path);
  } catch (e) {
    await handle.close().catch(() => {});
    await fsp.unlink(tmp).catch(() => {});
    throw e;
  }
}
