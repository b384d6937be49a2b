/**
 * Opening a checkpoint from a local path (Node): a GGUF file, or a model folder whose config.json
 * is read with the file-system checks of json-file.ts. load.ts loads this module only for a path.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, InputError, systemErrorText } from '../errors.js';
import { openDirFolder, RandomAccessFile } from '../formats/file-reader.js';
import { JSON_FILE_LIMITS, readJsonFile } from '../formats/json-file.js';
import { type Checkpoint, ggufCheckpoint, hfCheckpoint } from './checkpoint.js';

async function readConfigJson(dir: string): Promise<unknown> {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) throw new InputError(`${dir} has no config.json: is it an MPT model folder?`);
  return readJsonFile(p, 'model config', JSON_FILE_LIMITS.config, ConfigError);
}

/** The path's status; a missing path or a symbolic-link loop is an InputError that says which. */
function statOf(abs: string, path: string): ReturnType<typeof statSync> & object {
  try {
    return statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new InputError(`${path}: too many symbolic links (a link that leads back to itself?)`);
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new InputError(`model not found: ${path}`);
    throw new InputError(`cannot open ${path}: ${systemErrorText(e)}`);
  }
}

/** Opens the model folder or GGUF file at `path` (see openCheckpoint). */
export async function openPathCheckpoint(path: string): Promise<Checkpoint> {
  const abs = resolve(path);
  const st = statOf(abs, path);
  // A device or FIFO would be read as a folder (no config.json) or, named .gguf, read forever.
  if (!st.isFile() && !st.isDirectory())
    throw new InputError(
      `${path} is not a regular file or a folder (a device, FIFO or socket): give a model folder or a GGUF file`,
    );
  if (st.isFile()) {
    if (!abs.endsWith('.gguf')) {
      throw new InputError(
        `${path} is a file but not a .gguf: give a model folder (config.json + weights) or a GGUF file`,
      );
    }
    const dir = resolve(abs, '..');
    const folder = await openDirFolder(dir);
    return ggufCheckpoint(await RandomAccessFile.open(abs), abs, folder, dir);
  }
  const raw = await readConfigJson(abs);
  return hfCheckpoint(raw, await openDirFolder(abs), abs);
}
