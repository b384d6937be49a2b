/**
 * Opening a checkpoint from a local path (Node): a GGUF file, or a model folder whose config.json
 * is read with the file-system checks of json-file.ts. load.ts loads this module only for a path.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { openDirFolder, RandomAccessFile } from '../formats/file-reader.js';
import { JSON_FILE_LIMITS, readJsonFile } from '../formats/json-file.js';
import { type Checkpoint, ggufCheckpoint, hfCheckpoint } from './checkpoint.js';

async function readConfigJson(dir: string): Promise<unknown> {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) throw new InputError(`${dir} has no config.json: is it an MPT model folder?`);
  return readJsonFile(p, 'model config', JSON_FILE_LIMITS.config, ConfigError);
}

/** Opens the model folder or GGUF file at `path` (see openCheckpoint). */
export async function openPathCheckpoint(path: string): Promise<Checkpoint> {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new InputError(`model not found: ${path}`);
  const st = statSync(abs);
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
