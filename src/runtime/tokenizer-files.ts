/**
 * Loading a tokenizer from local paths (Node only): a tokenizer.json file or a model folder, read
 * synchronously with the file-system checks of json-file.ts (a regular file, of bounded size), for
 * the CLI and the trainer. The same rules as tokenizer-source.ts, which loads from a model's
 * folder source anywhere (loadModel uses that one).
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, InputError } from '../errors.js';
import { JSON_FILE_LIMITS, readJsonFileSync } from '../formats/json-file.js';
import type { Checkpoint } from '../model/load.js';
import {
  asObject,
  checkTokenizerFitsModel,
  consoleNote,
  ggufTokenizerOf,
  MptTokenizer,
  neoxFallbackApplies,
  neoxFallbackNote,
  tokenizerHintsOf,
  TOKENIZER_SIDE_FILES,
  type LoadTokenizerOptions,
  type TokenizerSideFiles,
} from './tokenizer.js';

/** Path of the GPT-NeoX-20B tokenizer.json shipped in assets/ (source and compiled layouts). */
export function shippedNeoxTokenizerPath(): string {
  for (const rel of ['../../assets/gpt-neox-20b/tokenizer.json', '../../../assets/gpt-neox-20b/tokenizer.json']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new ConfigError(
    'the shipped GPT-NeoX-20B tokenizer (assets/gpt-neox-20b/tokenizer.json) is missing from this installation',
  );
}

function readJsonIfExists(path: string, limit: number): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  return asObject(readJsonFileSync(path, 'tokenizer', limit), path);
}

/** Reads tokenizer_config.json, special_tokens_map.json and generation_config.json from a folder. */
export function readTokenizerSideFiles(dir: string): TokenizerSideFiles {
  const side: TokenizerSideFiles = {};
  for (const [key, file] of Object.entries(TOKENIZER_SIDE_FILES) as [keyof TokenizerSideFiles, string][]) {
    const json = readJsonIfExists(join(dir, file), JSON_FILE_LIMITS.tokenizer);
    if (json !== undefined) side[key] = json;
  }
  return side;
}

/** `vocab_size` and `tokenizer_name` of the config.json in the model folder `dir`, where it has them. */
export function folderTokenizerHints(dir: string): LoadTokenizerOptions {
  return tokenizerHintsOf(readJsonIfExists(join(dir, 'config.json'), JSON_FILE_LIMITS.config));
}

/**
 * Loads the tokenizer of a model folder, or a tokenizer.json file given directly. A folder
 * without tokenizer.json falls back to the shipped GPT-NeoX-20B tokenizer when the model's
 * vocabulary fits it (neoxFallbackApplies), with a note. Returns null when the folder has no
 * tokenizer and the fallback does not apply.
 */
export function loadTokenizer(path: string, options: LoadTokenizerOptions = {}): MptTokenizer | null {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new InputError(`tokenizer not found: ${path}`);
  const note = options.onNote ?? consoleNote;
  const st = statSync(abs);
  if (!st.isFile() && !st.isDirectory()) throw new InputError(`${path} is neither a tokenizer file nor a folder`);
  if (st.isFile()) {
    const json = readJsonIfExists(abs, JSON_FILE_LIMITS.tokenizer)!;
    const side = basename(abs) === 'tokenizer.json' ? readTokenizerSideFiles(dirname(abs)) : {};
    return new MptTokenizer(json, side, abs);
  }
  const side = readTokenizerSideFiles(abs);
  const own = join(abs, 'tokenizer.json');
  if (existsSync(own)) return new MptTokenizer(readJsonIfExists(own, JSON_FILE_LIMITS.tokenizer)!, side, own);

  const hints = folderTokenizerHints(abs);
  const vocabSize = options.vocabSize ?? hints.vocabSize;
  const tokenizerName = options.tokenizerName ?? hints.tokenizerName;
  if (!neoxFallbackApplies(vocabSize, tokenizerName)) return null;
  const shipped = shippedNeoxTokenizerPath();
  const tok = new MptTokenizer(readJsonIfExists(shipped, JSON_FILE_LIMITS.tokenizer)!, side, shipped);
  if (tok.size > vocabSize!) return null;
  note(neoxFallbackNote(path, tokenizerName));
  return tok;
}

/**
 * The tokenizer of a checkpoint opened from a local path, read synchronously (the trainer): the
 * same choice as the runtime's loadCheckpointTokenizer (runtime/model.ts), with `tokenizer` a path.
 */
export function checkpointTokenizer(
  ck: Pick<Checkpoint, 'kind' | 'path' | 'dir' | 'config' | 'ggufTokenizer' | 'ggufMetadata'>,
  options: { tokenizer?: string | MptTokenizer | null; onNote?: (message: string) => void } = {},
): MptTokenizer | null {
  let tokenizer: MptTokenizer | null;
  if (options.tokenizer instanceof MptTokenizer || options.tokenizer === null) tokenizer = options.tokenizer;
  else if (typeof options.tokenizer === 'string') {
    tokenizer = loadTokenizer(options.tokenizer, { vocabSize: ck.config.vocabSize, onNote: options.onNote });
  } else if (ck.kind === 'gguf' && ck.ggufTokenizer) {
    tokenizer = ggufTokenizerOf(ck.ggufTokenizer, ck.ggufMetadata, ck.path);
  } else {
    const { tokenizerName } = tokenizerHintsOf(ck.config.raw);
    tokenizer = loadTokenizer(ck.dir, { vocabSize: ck.config.vocabSize, tokenizerName, onNote: options.onNote });
  }
  if (tokenizer) checkTokenizerFitsModel(tokenizer, ck.config.vocabSize, ck.path);
  return tokenizer;
}
