/**
 * Autoregressive generation over any backend's `ModelRunner`, with the KV cache always on, built
 * on `GenerationSequence` (generation-sequence.ts: one sequence's state and its per-token logic).
 * `generateTokens` drives a single one, and `stepSequences` steps a set of them together in one
 * batched `forward`. The server's scheduler (server/scheduler.ts) steps the same sequences with
 * continuous batching, building its own batches and owning the caches (its header says why), and
 * hands each sequence its logits through `accept` as this file does.
 * Streaming output is UTF-8-safe and never contains any part of a stop string.
 */
import type { KvCache, ModelRunner, SequenceInput } from '../backends/backend.js';
import { InputError } from '../errors.js';
import { platform } from '../platform/index.js';
import {
  GenerationSequence,
  resolveContextLength,
  type GenerateOptions,
  type GenerateResult,
  type GenerationChunk,
} from './generation-sequence.js';
import type { MptTokenizer } from './tokenizer.js';

// The sequence and its types are part of this module's API (library users import them from here).
export * from './generation-sequence.js';

/**
 * One batched step over several sequences: feeds each unfinished sequence its next input in a
 * single `forward` call and lets each consume its logits row (every prompt row, for a sequence
 * scoring its prompt). Returns the chunk of each sequence (undefined for finished ones and for
 * non-final prompt chunks).
 */
export async function stepSequences(
  runner: ModelRunner,
  seqs: readonly GenerationSequence[],
): Promise<(GenerationChunk | undefined)[]> {
  const active: { seq: GenerationSequence; index: number; input: number[]; cache: KvCache; all: boolean }[] = [];
  seqs.forEach((seq, index) => {
    const input = seq.nextInput();
    if (input.length === 0) return;
    if (!seq.cache) throw new InputError('stepSequences needs sequences made with a KV cache');
    active.push({ seq, index, input, cache: seq.cache, all: seq.scoresPrompt && seq.prefilling });
  });
  const out: (GenerationChunk | undefined)[] = new Array(seqs.length).fill(undefined);
  if (active.length === 0) return out;
  const needLogits = active.some((a) => !a.seq.midPrefill);
  // Each sequence's token is chosen where the logits are when the runner can (wasm: its worker threads).
  const requests = active.map((a) => (a.all ? null : a.seq.sampleRequest(a.input.length)));
  const results = await runner.forward(
    active.map((a): SequenceInput => ({ cache: a.cache, tokens: a.input, ...(a.all ? { logits: 'all' } : {}) })),
    {
      logits: needLogits ? 'last' : 'none',
      reuseLogits: true,
      ...(needLogits ? { sample: requests } : {}),
    },
  );
  active.forEach((a, k) => {
    let logits = results[k]?.logits;
    if (a.all && logits) {
      a.seq.scorePrompt(logits, a.seq.promptIds.length - a.seq.unfed);
      logits = logits.subarray(logits.length - logits.length / a.input.length);
    }
    out[a.index] = a.seq.accept(logits && logits.length > 0 ? logits : undefined, a.input.length, results[k]?.token);
  });
  return out;
}

/** Options of `generateTokens`. */
export interface RunGenerationOptions extends GenerateOptions {
  tokenizer?: MptTokenizer | null;
  /** Reuse this cache (ids already in it given by `cachedIds`); default: a new one, disposed at the end. */
  cache?: KvCache;
  cachedIds?: readonly number[];
  /** Called once with the final result, also when the caller stops iterating early ("abort"). */
  onFinish?: (result: GenerateResult) => void;
}

/**
 * Generates from prompt ids with one runner: an async iterator of chunks whose return value is
 * the final result. `onToken` (if given) sees the same chunks.
 */
export async function* generateTokens(
  runner: ModelRunner,
  promptIds: readonly number[],
  options: RunGenerationOptions = {},
): AsyncGenerator<GenerationChunk, GenerateResult, undefined> {
  const ctx = resolveContextLength(runner.config, options.contextLength);
  const ownCache = options.cache === undefined;
  const cache = options.cache ?? runner.createCache({ capacity: ctx });
  let seq: GenerationSequence | undefined;
  try {
    seq = new GenerationSequence({
      ...options,
      contextLength: ctx,
      promptIds,
      cache,
      config: runner.config,
      tokenizer: options.tokenizer,
    });
    const signal = options.signal;
    while (!seq.done) {
      // Let timers, I/O and signal handlers run between steps: a backend that computes
      // synchronously would otherwise starve them (and an AbortSignal fired from them).
      await platform.yieldToEventLoop();
      if (signal?.aborted) {
        seq.abort();
        break;
      }
      const [chunk] = await stepSequences(runner, [seq]);
      if (chunk) yield chunk;
    }
    return seq.result();
  } catch (e) {
    seq = undefined;
    throw e;
  } finally {
    if (seq) {
      seq.abort();
      options.onFinish?.(seq.result());
    }
    if (ownCache) cache.dispose();
  }
}

/** Runs `generateTokens` to the end and returns the result. */
export async function generate(
  runner: ModelRunner,
  promptIds: readonly number[],
  options: RunGenerationOptions = {},
): Promise<GenerateResult> {
  const it = generateTokens(runner, promptIds, options);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

/**
 * An async iterable of chunks that also exposes the final result: iterate it for the text as
 * it comes, then `await stream.result`.
 */
export class GenerationStream implements AsyncIterable<GenerationChunk> {
  private readonly done: Promise<GenerateResult>;
  private resolve!: (r: GenerateResult) => void;
  private reject!: (e: unknown) => void;
  private started = false;

  /**
   * `source` receives the function to call with the final result (pass it as `onFinish`).
   */
  constructor(
    private readonly source: (
      onFinish: (r: GenerateResult) => void,
    ) => AsyncGenerator<GenerationChunk, GenerateResult, undefined>,
  ) {
    this.done = new Promise<GenerateResult>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    // Avoid an unhandled rejection when the caller only iterates.
    this.done.catch(() => {});
  }

  /**
   * The final result. Awaiting it without iterating runs the generation to the end (the chunks
   * are then only seen by `onToken`).
   */
  get result(): Promise<GenerateResult> {
    if (!this.started) {
      void (async () => {
        try {
          for await (const _chunk of this) {
            /* drain */
          }
        } catch {
          // Rejected through `done` already.
        }
      })();
    }
    return this.done;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<GenerationChunk, void, undefined> {
    if (this.started) throw new InputError('a generation stream can be iterated only once');
    this.started = true;
    const it = this.source((r) => this.resolve(r));
    try {
      for (;;) {
        const r = await it.next();
        if (r.done) return;
        yield r.value;
      }
    } catch (e) {
      this.reject(e);
      throw e;
    } finally {
      // Leaving the loop early (break) ends generation and frees its cache.
      await it.return(undefined as never).catch(() => {});
    }
  }
}
