/**
 * Where the model shipped with mpt-ts lives: `models/default/` at the package root. Commands
 * use it when no MODEL argument is given.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.js';

/** Absolute path of the shipped default model folder (src and dist are both two levels down). */
export function defaultModelPath(): string {
  for (const rel of ['../../models/default', '../../../models/default']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(`${p}/config.json`)) return p;
  }
  throw new InputError(
    'no default model is installed (models/default/ is missing): give a model folder or GGUF file as MODEL',
  );
}
