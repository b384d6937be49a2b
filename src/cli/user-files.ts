/**
 * Paths the CLI takes from a user. Each is checked before it is used, so that a wrong one is one
 * line naming it: a folder where a file is needed, a named pipe or device that would block
 * forever, a folder to write into that does not exist.
 */
import { randomBytes } from 'node:crypto';
import { renameSync, statSync, unlinkSync, writeFileSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import { InputError, systemErrorText } from '../errors.js';

/** What a path is, for messages ("a directory", "a named pipe (FIFO)", ...). */
export function kindOf(st: Stats): string {
  if (st.isFile()) return 'a file';
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

/** stat() that returns undefined for a missing path and turns other failures into InputError. */
export function statPath(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch (e) {
    // OUT/x.gguf where OUT is a file: name the file that stands where a folder must be.
    if ((e as { code?: unknown }).code === 'ENOTDIR') {
      for (let up = dirname(path); up !== dirname(up); up = dirname(up)) {
        let st: Stats | undefined;
        try {
          st = statSync(up, { throwIfNoEntry: false });
        } catch {
          continue; // below the file too
        }
        if (st && !st.isDirectory()) throw new InputError(`cannot use ${path}: ${up} is ${kindOf(st)}, not a folder`);
      }
    }
    throw new InputError(`cannot use ${path}: ${systemErrorText(e)}`, { cause: e });
  }
}

/**
 * Writes a whole file the user named (`/save FILE`): refused when the path is a folder, FIFO
 * or device; written to a temporary name and renamed, so a failure never leaves half a file.
 */
export function writeUserFile(path: string, data: string): void {
  const st = statPath(path);
  if (st && !st.isFile()) throw new InputError(`${path} is ${kindOf(st)}, not a file`);
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    writeFileSync(tmp, data, { flag: 'wx' });
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* not created */
    }
    const dir = statPath(dirname(path));
    const why = dir?.isDirectory() ? (e as Error).message : `the folder ${dirname(path)} does not exist`;
    throw new InputError(`cannot write ${path}: ${why}`, { cause: e });
  }
}
