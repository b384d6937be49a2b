/**
 * JSON files of a model folder (config.json, weight indexes, tokenizer files) read from any
 * ByteSource: the size is checked against what the kind of file can sensibly be before anything
 * is read, then the whole file is read and parsed. The same limits and messages as the local-file
 * reader (json-file.ts, Node), which shares them from here.
 */
import { FormatError, type MptError } from '../errors.js';
import type { ByteSource } from './byte-source.js';

/** Largest accepted size, in bytes, per kind of file (real ones are far smaller). */
export const JSON_FILE_LIMITS = {
  /** config.json, generation_config.json, special_tokens_map.json: kilobytes. */
  config: 1 << 20,
  /** model.safetensors.index.json, pytorch_model.bin.index.json: ~100 bytes per tensor. */
  index: 16 << 20,
  /** tokenizer.json, tokenizer_config.json: GPT-NeoX-20B's is 2 MB, 250k-token vocabularies ~20 MB. */
  tokenizer: 64 << 20,
} as const;

/**
 * Deepest nesting of arrays and objects accepted in JSON from outside (model files, request
 * bodies). Real files nest 3 to 6 deep; JSON.parse builds any depth, but what reads the value
 * next (JSON.stringify in an error message, a recursive walk) overflows the stack on thousands.
 */
export const MAX_JSON_DEPTH = 64;

/** Whether the JSON text `text` nests arrays or objects more than `max` deep (strings are skipped). */
export function jsonNestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: skip to its closing quote (indexOf: a megabyte of text is most of a chat request),
      // one not escaped by an odd run of backslashes before it.
      for (;;) {
        const q = text.indexOf('"', i + 1);
        if (q < 0) return false;
        let slashes = 0;
        while (text.charCodeAt(q - 1 - slashes) === 0x5c) slashes++;
        i = q;
        if (slashes % 2 === 0) break;
      }
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** The error class a caller wants (FormatError by default; ConfigError for config.json). */
export type ErrorClass = new (message: string, options?: { cause?: unknown }) => MptError;

/** Refuses a file of `size` bytes that is bigger than its kind allows. */
export function checkJsonSize(size: number, name: string, what: string, maxBytes: number, Err: ErrorClass): void {
  if (size > maxBytes) {
    throw new Err(`${what} ${name} is ${size} bytes, more than the ${maxBytes} allowed for a ${what}`);
  }
}

/** Parses UTF-8 JSON bytes; invalid JSON, or JSON nested beyond MAX_JSON_DEPTH, is an error naming the file. */
export function parseJsonBytes(bytes: Uint8Array, name: string, what: string, Err: ErrorClass): unknown {
  const text = new TextDecoder('utf-8').decode(bytes);
  if (jsonNestsDeeperThan(text, MAX_JSON_DEPTH)) {
    throw new Err(`${what} ${name} nests arrays or objects more than ${MAX_JSON_DEPTH} deep: it is not a ${what}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Err(`${what} ${name} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Reads and parses the JSON file `source`, described as `what` in errors (e.g. "model config"),
 * refusing one bigger than `maxBytes` (see JSON_FILE_LIMITS) before reading it.
 */
export async function readJsonSource(
  source: ByteSource,
  what: string,
  maxBytes: number,
  Err: ErrorClass = FormatError,
): Promise<unknown> {
  checkJsonSize(source.size, source.name, what, maxBytes, Err);
  let bytes: Uint8Array;
  try {
    bytes = await source.read(0, source.size, what);
  } catch (e) {
    if (e instanceof Err) throw e;
    throw new Err(`cannot read ${what} ${source.name}: ${(e as Error).message}`, { cause: e });
  }
  return parseJsonBytes(bytes, source.name, what, Err);
}
