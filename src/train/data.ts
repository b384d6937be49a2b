/**
 * Training data: text files tokenized with the model's tokenizer, EOS after each document,
 * concatenated and cut into max_seq_len windows (llm-foundry's "concat_tokens"; the tail that
 * does not fill a window is dropped); a seeded, resumable shuffled iterator over the windows; and
 * instruction data (JSONL prompt/response) as padded rows with the loss on response tokens only.
 */
import { readFileSync, statSync } from 'node:fs';
import { InputError, systemErrorText } from '../errors.js';
import { IGNORE_INDEX, type Batch } from './model.js';
import { Rng } from './rng.js';

export interface TextTokenizer {
  encode(text: string): number[];
}

/** Document separator inside a text file (TinyStories' convention). */
export const DOC_SEPARATOR = '<|endoftext|>';

/** Splits a text file into documents: on `<|endoftext|>` when present, else the whole file. */
export function splitDocuments(text: string): string[] {
  return text
    .split(DOC_SEPARATOR)
    .map((d) => d.trim())
    .filter((d) => d.length > 0);
}

/** Tokenizes documents and concatenates them, each followed by `eosId`. */
export function tokenizeDocuments(docs: readonly string[], tok: TextTokenizer, eosId: number): Int32Array {
  const parts: number[][] = docs.map((d) => tok.encode(d));
  const out = new Int32Array(parts.reduce((a, p) => a + p.length + 1, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
    out[o++] = eosId;
  }
  return out;
}

/**
 * The longest text file read as one string: V8's string limit (in UTF-16 units; a file of at most
 * this many bytes always fits). Longer files fail with a message that says to split them.
 */
export const MAX_TEXT_FILE_BYTES = 0x1fffffe8;

/**
 * Reads a user's text file whole, refusing (before opening it) anything but a regular file, and
 * one larger than `maxBytes` (by default, too large to be a string).
 */
export function readTextFile(path: string, what: string, maxBytes = MAX_TEXT_FILE_BYTES): string {
  try {
    const st = statSync(path);
    // A named pipe or device would block the read forever (or never end): only regular files.
    if (!st.isFile()) throw new InputError(`${what} ${path} is not a regular file`);
    const size = st.size;
    if (size > maxBytes) {
      const mib = (n: number) => Math.floor(n / 2 ** 20);
      throw new InputError(
        `${what} ${path} is ${mib(size)} MiB; a text file is read whole, at most ` +
          `${mib(maxBytes)} MiB: split it into smaller files`,
      );
    }
    return readFileSync(path, 'utf8');
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`cannot read ${what} ${path}: ${systemErrorText(e)}`);
  }
}

/** Reads and tokenizes text files (documents as in splitDocuments), concatenated in order. */
export function tokenizeFiles(paths: readonly string[], tok: TextTokenizer, eosId: number): Int32Array {
  const arrays = paths.map((p) => tokenizeDocuments(splitDocuments(readTextFile(p, 'training data')), tok, eosId));
  const out = new Int32Array(arrays.reduce((a, x) => a + x.length, 0));
  let o = 0;
  for (const a of arrays) {
    out.set(a, o);
    o += a.length;
  }
  return out;
}

/** Cuts a token stream into windows of `seqLen` tokens ([n, seqLen] row-major); the remainder is dropped. */
export function packWindows(tokens: Int32Array, seqLen: number): { windows: Int32Array; count: number } {
  const count = Math.floor(tokens.length / seqLen);
  return { windows: tokens.slice(0, count * seqLen), count };
}

/**
 * Splits windows into train and eval sets: every k-th window goes to eval so that both sample the
 * whole corpus (k = round(1 / fraction)).
 */
export function splitWindows(
  windows: Int32Array,
  count: number,
  seqLen: number,
  evalFraction: number,
): { train: Int32Array; eval: Int32Array } {
  if (evalFraction <= 0) return { train: windows, eval: new Int32Array(0) };
  const every = Math.max(2, Math.round(1 / evalFraction));
  const tr: number[] = [],
    ev: number[] = [];
  for (let i = 0; i < count; i++) (i % every === every - 1 ? ev : tr).push(i);
  const take = (idx: number[]) => {
    const out = new Int32Array(idx.length * seqLen);
    idx.forEach((w, j) => {
      out.set(windows.subarray(w * seqLen, (w + 1) * seqLen), j * seqLen);
    });
    return out;
  };
  return { train: take(tr), eval: take(ev) };
}

/** A language-modelling batch from windows: targets are the inputs shifted left, last column ignored. */
export function lmBatch(windows: Int32Array, seqLen: number, rows: readonly number[]): Batch {
  const B = rows.length,
    T = seqLen;
  const inputs = new Int32Array(B * T),
    targets = new Int32Array(B * T);
  rows.forEach((w, b) => {
    const src = windows.subarray(w * T, (w + 1) * T);
    inputs.set(src, b * T);
    for (let t = 0; t < T - 1; t++) targets[b * T + t] = src[t + 1]!;
    targets[b * T + T - 1] = IGNORE_INDEX;
  });
  return { inputs, targets, B, T };
}

/** Where a shuffled iterator stands: resume from it exactly. */
export interface IteratorPosition {
  epoch: number;
  index: number;
}

/**
 * Endless iterator over `count` samples in a seeded shuffled order, reshuffled each epoch (the
 * order of epoch e depends only on seed and e, so a position is all that resuming needs).
 */
export class ShuffledIterator {
  private order: Uint32Array;
  private pos: IteratorPosition;

  constructor(
    readonly count: number,
    readonly seed: number,
    start: IteratorPosition = { epoch: 0, index: 0 },
  ) {
    if (count <= 0) throw new InputError('no training samples: the data is shorter than one max_seq_len window');
    this.pos = { ...start };
    this.order = this.orderOf(this.pos.epoch);
  }

  private orderOf(epoch: number): Uint32Array {
    const o = new Uint32Array(this.count);
    for (let i = 0; i < this.count; i++) o[i] = i;
    new Rng(this.seed * 1000003 + epoch).shuffle(o);
    return o;
  }

  position(): IteratorPosition {
    return { ...this.pos };
  }

  /** Samples consumed so far in units of epochs (fractional). */
  epochs(): number {
    return this.pos.epoch + this.pos.index / this.count;
  }

  next(n: number): number[] {
    const out: number[] = [];
    while (out.length < n) {
      if (this.pos.index >= this.count) {
        this.pos = { epoch: this.pos.epoch + 1, index: 0 };
        this.order = this.orderOf(this.pos.epoch);
      }
      out.push(this.order[this.pos.index++]!);
    }
    return out;
  }
}

/** One instruction example: the prompt (no loss) and the response (loss), tokenized. */
export interface InstructExample {
  prompt: number[];
  response: number[];
}

/**
 * Characters of text tokenized per token of context, at most. BPE tokens average about 4
 * characters of English and rarely exceed 16, so a prefix this long yields more tokens than the
 * context holds; the rest of a longer text is never tokenized (megabytes would cost minutes and gigabytes).
 */
export const CHARS_PER_CONTEXT_TOKEN = 32;

/** The first `n` UTF-16 units of `s`, not splitting a surrogate pair. */
function prefix(s: string, n: number): string {
  if (s.length <= n) return s;
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}

/** How many examples something happened to, and the (1-based) line of the first. */
export interface LineTally {
  count: number;
  firstLine: number;
}

export interface InstructData {
  examples: InstructExample[];
  /** Examples longer than the context, cut to it. */
  truncated: LineTally;
  /** Examples left out because their prompt fills the context (no response token to train on). */
  skipped: LineTally;
}

/**
 * Reads JSONL instruction data for a context of `contextTokens`. Each line is an object with a
 * prompt (`prompt`, `instruction` or `question`) and a response (`response`, `answer`,
 * `completion` or `output`); an optional `context`/`input` is appended to the prompt. EOS ends
 * each response. Examples longer than the context keep their first `contextTokens` tokens, and
 * only a bounded prefix of each text is tokenized (CHARS_PER_CONTEXT_TOKEN).
 */
export function readInstructJsonl(
  path: string,
  tok: TextTokenizer,
  eosId: number,
  contextTokens: number,
): InstructData {
  const text = readTextFile(path, 'instruction data');
  const examples: InstructExample[] = [];
  const truncated: LineTally = { count: 0, firstLine: 0 },
    skipped: LineTally = { count: 0, firstLine: 0 };
  const tally = (t: LineTally, line: number) => {
    if (t.count++ === 0) t.firstLine = line;
  };
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch (e) {
      throw new InputError(`${path}:${i + 1}: not JSON: ${(e as Error).message}`);
    }
    const pick = (keys: string[]) => {
      for (const k of keys) if (typeof obj[k] === 'string') return obj[k] as string;
      return undefined;
    };
    let prompt = pick(['prompt', 'instruction', 'question']);
    const response = pick(['response', 'answer', 'completion', 'output']);
    if (prompt === undefined || response === undefined) {
      throw new InputError(`${path}:${i + 1}: needs a "prompt" and a "response" (or "answer") string field`);
    }
    const ctx = pick(['context', 'input']);
    if (ctx) prompt = `${prompt}\n${ctx}`;
    const promptCap = contextTokens * CHARS_PER_CONTEXT_TOKEN;
    const promptIds = tok.encode(prefix(prompt, promptCap));
    // A prompt that fills the context leaves no response token to predict.
    if (promptIds.length >= contextTokens) {
      tally(skipped, i + 1);
      return;
    }
    const room = contextTokens - promptIds.length,
      responseCap = room * CHARS_PER_CONTEXT_TOKEN;
    const responseIds = tok.encode(prefix(response, responseCap));
    responseIds.push(eosId);
    const cut = responseIds.length > room || prompt.length > promptCap || response.length > responseCap;
    if (cut) tally(truncated, i + 1);
    examples.push({ prompt: promptIds, response: responseIds.slice(0, room) });
  });
  if (examples.length === 0) {
    if (skipped.count) {
      throw new InputError(
        `${path}: every example's prompt fills the ${contextTokens}-token context ` +
          `(e.g. line ${skipped.firstLine}); shorten the prompts or raise --max-seq-len`,
      );
    }
    throw new InputError(`${path} holds no examples`);
  }
  return { examples, truncated, skipped };
}

/**
 * A padded batch of instruction examples, right-padded to the longest row (at most seqLen):
 * loss only where the next token is a response token. Long examples keep their first seqLen tokens.
 */
export function instructBatch(
  examples: readonly InstructExample[],
  rows: readonly number[],
  seqLen: number,
  padId: number,
): Batch {
  const seqs = rows.map((r) => {
    const e = examples[r]!;
    const ids = [...e.prompt, ...e.response].slice(0, seqLen);
    return { ids, promptLen: e.prompt.length };
  });
  const T = Math.max(2, ...seqs.map((s) => s.ids.length));
  const B = rows.length;
  const inputs = new Int32Array(B * T).fill(padId),
    targets = new Int32Array(B * T).fill(IGNORE_INDEX);
  seqs.forEach((s, b) => {
    inputs.set(s.ids, b * T);
    for (let t = 0; t + 1 < s.ids.length; t++) if (t + 1 >= s.promptLen) targets[b * T + t] = s.ids[t + 1]!;
  });
  return { inputs, targets, B, T };
}
