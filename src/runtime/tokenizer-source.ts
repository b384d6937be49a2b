/**
 * Loading a tokenizer from a model's folder source (formats/folder-source.ts): a folder on disk, at
 * a URL, or the files a user chose — the same in Node and a browser, asynchronously, every file's
 * size checked before it is read (JSON_FILE_LIMITS). The shipped GPT-NeoX-20B tokenizer, the
 * fallback, is read next to this module (a file in Node, fetched in a browser).
 */
import { ConfigError, FormatError, InputError } from '../errors.js';
import type { FolderSource } from '../formats/folder-source.js';
import { JSON_FILE_LIMITS, parseJsonBytes, readJsonSource } from '../formats/json-source.js';
import { platform } from '../platform/index.js';
import { packageFileUrl } from '../platform/package-url.js';
import {
  asObject,
  consoleNote,
  MptTokenizer,
  neoxFallbackApplies,
  neoxFallbackNote,
  tokenizerHintsOf,
  TOKENIZER_SIDE_FILES,
  type LoadTokenizerOptions,
  type TokenizerSideFiles,
} from './tokenizer.js';

/** The shipped tokenizer.json, from the compiled module (dist/src/runtime/) to assets/ at the package root. */
export function shippedNeoxTokenizerUrl(): URL {
  return packageFileUrl(
    'assets/gpt-neox-20b/tokenizer.json',
    new URL('../../../assets/gpt-neox-20b/tokenizer.json', import.meta.url),
  );
}

/**
 * The JSON object in `folder`'s file `file` and the name of what was read, or undefined when the
 * folder has no such file. A name the folder lists but cannot open (a folder or named pipe on
 * disk) is an error, not an absent file.
 */
async function readFolderJson(
  folder: FolderSource,
  file: string,
  maxBytes: number,
): Promise<{ json: Record<string, unknown>; name: string } | undefined> {
  const source = await folder.open(file);
  if (source === undefined) {
    if ((await folder.list?.())?.includes(file)) {
      throw new FormatError(`tokenizer ${file} in ${folder.name} is not a regular file`);
    }
    return undefined;
  }
  try {
    return { json: asObject(await readJsonSource(source, 'tokenizer', maxBytes), source.name), name: source.name };
  } finally {
    await source.close();
  }
}

/** The side files (tokenizer_config.json, special_tokens_map.json, generation_config.json) of a folder. */
export async function readFolderSideFiles(folder: FolderSource): Promise<TokenizerSideFiles> {
  const side: TokenizerSideFiles = {};
  for (const [key, file] of Object.entries(TOKENIZER_SIDE_FILES) as [keyof TokenizerSideFiles, string][]) {
    const read = await readFolderJson(folder, file, JSON_FILE_LIMITS.tokenizer);
    if (read !== undefined) side[key] = read.json;
  }
  return side;
}

/** The shipped GPT-NeoX-20B tokenizer, with `side` files from the model's folder. */
async function shippedNeoxTokenizer(side: TokenizerSideFiles): Promise<MptTokenizer> {
  const url = shippedNeoxTokenizerUrl();
  const name = url.protocol === 'file:' ? decodeURIComponent(url.pathname) : url.href;
  let bytes: Uint8Array;
  try {
    bytes = await platform.readBytes(url);
  } catch (e) {
    throw new ConfigError(`the shipped GPT-NeoX-20B tokenizer (${name}) cannot be read: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return new MptTokenizer(asObject(parseJsonBytes(bytes, name, 'tokenizer', ConfigError), name), side, name);
}

export interface FolderTokenizerOptions extends LoadTokenizerOptions {
  /**
   * The tokenizer file to read instead of the folder's tokenizer.json (a tokenizer given by URL);
   * its side files are read only when it is called tokenizer.json, and there is no fallback.
   */
  file?: string;
}

/**
 * Loads the tokenizer of a model folder: its tokenizer.json with the side files; without one, the
 * shipped GPT-NeoX-20B tokenizer when the model's vocabulary fits it (neoxFallbackApplies), with a
 * note. Null when the folder has no tokenizer and the fallback does not apply.
 */
export async function loadFolderTokenizer(
  folder: FolderSource,
  options: FolderTokenizerOptions = {},
): Promise<MptTokenizer | null> {
  const file = options.file ?? 'tokenizer.json';
  const side = file === 'tokenizer.json' ? await readFolderSideFiles(folder) : {};
  const own = await readFolderJson(folder, file, JSON_FILE_LIMITS.tokenizer);
  if (own !== undefined) return new MptTokenizer(own.json, side, own.name);
  if (options.file !== undefined) throw new InputError(`tokenizer ${file} not found in ${folder.name}`);

  let { vocabSize, tokenizerName } = options;
  if (vocabSize === undefined || tokenizerName === undefined) {
    const hints = tokenizerHintsOf((await readFolderJson(folder, 'config.json', JSON_FILE_LIMITS.config))?.json);
    vocabSize ??= hints.vocabSize;
    tokenizerName ??= hints.tokenizerName;
  }
  if (!neoxFallbackApplies(vocabSize, tokenizerName)) return null;
  const tok = await shippedNeoxTokenizer(side);
  if (tok.size > vocabSize!) return null;
  (options.onNote ?? consoleNote)(neoxFallbackNote(folder.name, tokenizerName));
  return tok;
}
