/**
 * Crash-safe file handling for training runs: files and folders are written under a temporary
 * name `<name>.tmp-<pid>`, flushed to disk (fsync of the file, then of the folder that names it)
 * and only then renamed into place, so a crash or power cut at any instant leaves either the old
 * version or the complete new one. Temporaries of killed runs are removed once their process is gone.
 */
import { open, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Called after each step of a multi-step write; tests throw from it to simulate a crash there. */
export type AfterStep = (what: string) => void | Promise<void>;

/** Whether a process with this id exists (one we may not signal counts as existing). */
function isLiveProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The temporary name of `path` for this process. */
export const tempPathOf = (path: string): string => `${path.replace(/[/\\]+$/, '')}.tmp-${process.pid}`;

/**
 * Removes the temporaries `<path>.tmp-<pid>` (files or folders) that no running process is
 * writing: those of dead processes, and this process's own (left by an earlier run that had
 * the same pid, or by a failed write of ours). Returns the paths removed.
 */
export async function removeStaleTemps(path: string): Promise<string[]> {
  const dir = dirname(path),
    prefix = `${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix) || !/^\d+$/.test(name.slice(prefix.length))) continue;
    const pid = Number(name.slice(prefix.length));
    if (pid !== process.pid && isLiveProcess(pid)) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(join(dir, name));
  }
  return removed;
}

/** Flushes a file, or a folder's entries, to disk. */
export async function syncPath(path: string, isDir = false): Promise<void> {
  let h: FileHandle;
  try {
    h = await open(path, isDir ? 'r' : 'r+');
  } catch (e) {
    // Some platforms (Windows) cannot open a folder to flush it; their renames are durable anyway.
    if (isDir) return;
    throw e;
  }
  try {
    await h.sync();
  } catch (e) {
    if (!isDir) throw e;
  } finally {
    await h.close();
  }
}

/** Writes a file and flushes it (inside a folder that is itself published by rename). */
export async function writeSynced(path: string, data: string | Uint8Array): Promise<void> {
  await writeFile(path, data);
  await syncPath(path);
}

/** Replaces `path` with `data` atomically and durably (temporary file, fsync, rename, fsync of the folder). */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await removeStaleTemps(path);
  const tmp = tempPathOf(path);
  await writeSynced(tmp, data);
  await rename(tmp, path);
  await syncPath(dirname(path), true);
}

/**
 * Moves every file of the folder `staged` (flushing each first) into `dest`, keeping the files of
 * `dest` that `staged` does not replace. `last` is the file that makes a folder look complete to
 * readers (config.json of a model): it is removed from `dest` first and moved in last, so after a
 * crash at any step `dest` either lacks it or holds the whole new set. Removes `staged` at the end.
 */
export async function publishFiles(
  staged: string,
  dest: string,
  last: string,
  afterStep: AfterStep = () => {},
): Promise<void> {
  const all = (await readdir(staged)).sort();
  for (const n of all) await syncPath(join(staged, n));
  const names = all.filter((n) => n !== last);
  await rm(join(dest, last), { force: true });
  await syncPath(dest, true);
  await afterStep(`removed ${last}`);
  for (const n of names) {
    await rename(join(staged, n), join(dest, n));
    await afterStep(`moved ${n}`);
  }
  // The others must be on disk before the file that declares the folder complete.
  await syncPath(dest, true);
  if (all.includes(last)) {
    await rename(join(staged, last), join(dest, last));
    await syncPath(dest, true);
    await afterStep(`moved ${last}`);
  }
  await rm(staged, { recursive: true, force: true });
}
