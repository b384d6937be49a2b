/**
 * Autoregressive generation over any backend's `ModelRunner`, with the KV cache always on.
 *
 * The unit is `GenerationSequence`: the state of one sequence (its cache, sampler, stop rules,
 * streaming decoder) that says which tokens to feed next and consumes one row of logits per
 * step. It does not call the model itself: `generateTokens` drives a single one, and
 * `stepSequences` steps a fixed set of them together in one batched `forward` (a library user's
 * batch). Streaming output is UTF-8-safe and never contains any part of a stop string.
 *
 * The server does not step its requests this way. Its scheduler (server/scheduler.ts) batches
 * continuously (sequences join and leave at every step, long prompts are read in chunks beside
 * others' decoding, prompt caches are shared between choices) and its sequences
 * (server/sequence.ts) add what only the API needs: grammar masks, logprobs of the choices and of
 * the prompt, sampling on the runner. Both sides build on the same pieces (Sampler, chooseToken,
 * StreamDecoder, StopStringMatcher in this layer); making ServerSequence a GenerationSequence plus
 * those additions is known debt (issue #19, item 3), not done yet.
 *
 * Limits: generation ends when `maxTokens` new tokens exist or when prompt + new tokens reach
 * the context length (finish reason "length"); the last token is sampled but never fed, so the
 * cache never holds more than context − 1 positions. A prompt longer than the
 * context is an InputError. The context defaults to the model's max_seq_len; a larger one is
 * accepted for ALiBi models only (extrapolation, at the caller's request).
 */
import type { KvCache, ModelRunner } from '../backends/backend.js';
import { InputError } from '../errors.js';
import type { MptConfig } from '../model/config.js';
import { platform } from '../platform/index.js';
import { Sampler, chooseToken, type SampleRequest, type SamplingOptions } from './sampling.js';
import { StopStringMatcher } from './stop-strings.js';
import { StreamDecoder } from './stream-decoder.js';
import type { MptTokenizer } from './tokenizer.js';

/** Why generation ended: a stop token or stop string, a length limit, or cancellation. */
export type FinishReason = 'stop' | 'length' | 'abort';

/** One streamed step: the token chosen and the text it completed (may be ''). */
export interface GenerationChunk {
  token: number;
  /** New text: UTF-8-safe and stop-string-safe (held back pieces arrive with later tokens). */
  text: string;
}

export interface GenerationUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface GenerationTimings {
  /** Milliseconds from the start until the first new token was chosen (prompt processing). */
  prefillMs: number;
  /** Milliseconds spent after the first token. */
  decodeMs: number;
  /** Prompt tokens fed per second of prefill. */
  promptTokensPerSecond: number;
  /** New tokens per second after the first one (NaN with fewer than two tokens). */
  tokensPerSecond: number;
}

export interface GenerateResult {
  /** The generated text (stop string and everything after it left out). */
  text: string;
  /** The generated token ids, the final stop token included when one ended generation. */
  tokens: number[];
  finishReason: FinishReason;
  usage: GenerationUsage;
  timings: GenerationTimings;
  /** The sampler's seed (to reproduce a sampled run). */
  seed: number;
  /** What stopped it when finishReason is "stop": the stop token id or the stop string. */
  stoppedBy?: { token: number } | { string: string };
}

/** Options of one generation. Sampling options are documented in `SamplingOptions`. */
export interface GenerateOptions extends SamplingOptions {
  /** Most new tokens to generate. Default 256. */
  maxTokens?: number;
  /** Ids that end generation. Default: the tokenizer's stop ids (generation_config eos_token_id). */
  stopTokenIds?: readonly number[];
  /** Strings that end generation; never part of the output, even when spread over tokens. */
  stopStrings?: readonly string[];
  /** Cancels generation between steps (finish reason "abort"). */
  signal?: AbortSignal;
  /** Called with every chunk as it is produced. */
  onToken?: (chunk: GenerationChunk) => void;
  /**
   * Context length (KV cache capacity). Default: the model's max_seq_len. Larger values are
   * accepted for ALiBi models only (they extrapolate).
   */
  contextLength?: number;
  /** Leave special tokens that are not stop tokens out of the text. Default true. */
  skipSpecialTokens?: boolean;
  /** Tokens fed per forward call while processing the prompt. Default 256. */
  prefillChunk?: number;
}

export const DEFAULT_MAX_TOKENS = 256;

/** Checks a requested context length against the model; returns the one to use. */
export function resolveContextLength(config: MptConfig, requested?: number): number {
  if (requested === undefined) return config.maxSeqLen;
  if (!Number.isInteger(requested) || requested < 1)
    throw new InputError(`context length must be a positive integer, got ${requested}`);
  if (requested > config.maxSeqLen && !config.attn.alibi) {
    throw new InputError(
      `context length ${requested} exceeds max_seq_len ${config.maxSeqLen}, and this model has learned position embeddings (no ALiBi), so it cannot extrapolate`,
    );
  }
  return requested;
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Everything a `GenerationSequence` needs besides the model. */
export interface SequenceOptions extends GenerateOptions {
  promptIds: readonly number[];
  /** A KV cache of the runner that will step this sequence (capacity >= the context length). */
  cache: KvCache;
  /** The model config (vocab size, max_seq_len). */
  config: MptConfig;
  tokenizer?: MptTokenizer | null;
  /**
   * The ids already in `cache` (from an earlier turn): the common prefix with the prompt is
   * kept and only the rest is fed. Default: the cache is cleared.
   */
  cachedIds?: readonly number[];
}

/**
 * The state of one generating sequence. Call `nextInput()` for the tokens to feed, run them
 * through the runner with this sequence's cache, and pass the last row of logits to `accept()`,
 * until `done`.
 */
export class GenerationSequence {
  readonly promptIds: readonly number[];
  readonly cache: KvCache;
  readonly sampler: Sampler;
  /** The request drawn for the step in flight (sampleRequest), consumed by accept. */
  private request: SampleRequest | null = null;
  readonly contextLength: number;
  readonly maxTokens: number;
  /** Generated ids (the final stop token included). */
  readonly tokens: number[] = [];
  /** Generated text emitted so far. */
  text = '';
  finishReason: FinishReason | undefined;
  stoppedBy: GenerateResult['stoppedBy'];
  /** Times in ms (performance.now()) of the start and of the first token. */
  readonly startedAt = performance.now();
  firstTokenAt: number | undefined;
  finishedAt: number | undefined;

  private readonly history: number[];
  private readonly stopIds: Set<number>;
  private readonly stopper: StopStringMatcher;
  private readonly decoder: StreamDecoder | undefined;
  private readonly prefillChunk: number;
  /** Prompt tokens not yet fed. */
  private pending: number[];
  private readonly onToken: ((c: GenerationChunk) => void) | undefined;
  private readonly tokenizer: MptTokenizer | null;
  private readonly skipSpecial: boolean;

  constructor(o: SequenceOptions) {
    const V = o.config.vocabSize;
    const prompt = Array.from(o.promptIds);
    if (prompt.length === 0) throw new InputError('the prompt is empty: give at least one token');
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new InputError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
    }
    this.contextLength = resolveContextLength(o.config, o.contextLength);
    if (o.cache.capacity < this.contextLength)
      throw new InputError(
        `the KV cache holds ${o.cache.capacity} positions, less than the context length ${this.contextLength}`,
      );
    if (prompt.length > this.contextLength) {
      throw new InputError(
        `the prompt has ${prompt.length} tokens, more than the context length ${this.contextLength}${o.config.attn.alibi ? ' (ALiBi models can extrapolate: ask for a larger context)' : ''}`,
      );
    }
    const maxTokens = o.maxTokens ?? DEFAULT_MAX_TOKENS;
    if (!Number.isInteger(maxTokens) || maxTokens < 0)
      throw new InputError(`max tokens must be an integer >= 0, got ${maxTokens}`);
    this.maxTokens = maxTokens;
    this.promptIds = prompt;
    this.history = [...prompt];
    this.cache = o.cache;
    this.tokenizer = o.tokenizer ?? null;
    const vocabLimit = o.vocabLimit ?? (this.tokenizer && this.tokenizer.size < V ? this.tokenizer.size : undefined);
    this.sampler = new Sampler({ ...o, vocabLimit });
    this.stopIds = new Set(o.stopTokenIds ?? this.tokenizer?.stopIds ?? []);
    this.stopper = new StopStringMatcher(o.stopStrings ?? []);
    if (this.stopper.empty === false && !this.tokenizer) throw new InputError('stop strings need a tokenizer');
    this.skipSpecial = o.skipSpecialTokens ?? true;
    this.decoder = this.tokenizer
      ? new StreamDecoder(this.tokenizer, { skipSpecialTokens: this.skipSpecial })
      : undefined;
    this.prefillChunk = Math.max(1, o.prefillChunk ?? 256);
    this.onToken = o.onToken;

    // Reuse the cached prefix shared with an earlier turn; always feed at least one token.
    let keep = o.cachedIds ? Math.min(commonPrefix(o.cachedIds, prompt), o.cache.length) : 0;
    if (keep >= prompt.length) keep = prompt.length - 1;
    if (o.cache.length !== keep) o.cache.truncate(keep);
    this.pending = prompt.slice(keep);
    if (maxTokens === 0 || prompt.length >= this.contextLength) this.finish('length');
  }

  get done(): boolean {
    return this.finishReason !== undefined;
  }

  /** Every id of the sequence so far (prompt + generated). */
  get ids(): readonly number[] {
    return this.history;
  }

  /** The tokens to feed next: a chunk of the prompt, or the last sampled token; [] when done. */
  nextInput(): number[] {
    if (this.done) return [];
    if (this.pending.length > 0) return this.pending.slice(0, this.prefillChunk);
    return [this.history[this.history.length - 1]!];
  }

  /** True while the next input is part of the prompt but not its last chunk (its logits are not needed). */
  get midPrefill(): boolean {
    return this.pending.length > this.prefillChunk;
  }

  /**
   * The sampling request for the token the next step ends with (draws its uniform), or null when
   * the next input is a non-final prompt chunk or the sequence is done. A runner given it
   * (`ForwardOptions.sample`) may choose the token itself; `accept` then takes it.
   */
  sampleRequest(): SampleRequest | null {
    this.request = this.done || this.midPrefill ? null : this.sampler.request(this.history, this.promptIds.length);
    return this.request;
  }

  /**
   * Consumes the forward's output for the tokens of `nextInput()`: `logits` is the last
   * position's row, `chosen` the token the runner chose for `sampleRequest()` (if it did).
   * Returns the chunk produced, or undefined when the input was a non-final prompt chunk.
   */
  accept(logits: Float32Array | undefined, fed: number, chosen?: number): GenerationChunk | undefined {
    if (this.done) return undefined;
    if (this.pending.length > 0) {
      this.pending = this.pending.slice(fed);
      if (this.pending.length > 0) return undefined;
    }
    if (!logits) throw new InputError('accept() needs the logits of the last position');
    // The runner's token is chooseToken(logits, request): the same as choosing it here.
    const request = this.request ?? this.sampler.request(this.history, this.promptIds.length);
    this.request = null;
    const token = chosen ?? chooseToken(logits, request);
    if (this.firstTokenAt === undefined) this.firstTokenAt = performance.now();
    this.history.push(token);
    this.tokens.push(token);
    let text = '';
    if (this.stopIds.has(token)) {
      text = this.release();
      this.finish('stop');
      this.stoppedBy = { token };
    } else {
      const piece = this.decoder ? this.decoder.push(token) : '';
      const check = this.stopper.push(piece);
      text = check.text;
      if (check.stopped) {
        this.finish('stop');
        this.stoppedBy = { string: check.match! };
      } else if (this.tokens.length >= this.maxTokens || this.history.length >= this.contextLength) {
        text += this.release();
        this.finish('length');
      }
    }
    this.text += text;
    const chunk = { token, text };
    this.onToken?.(chunk);
    return chunk;
  }

  /** Ends the sequence early (finish reason "abort"); held-back text is dropped. */
  abort(): void {
    if (!this.done) this.finish('abort');
  }

  /** Flushes the decoder and the stop matcher at a normal end. */
  private release(): string {
    if (!this.decoder) return '';
    const tail = this.decoder.flush();
    const check = this.stopper.push(tail);
    if (check.stopped) {
      this.stoppedBy = { string: check.match! };
      return check.text;
    }
    return check.text + this.stopper.flush();
  }

  private finish(reason: FinishReason): void {
    this.finishReason = reason;
    this.finishedAt = performance.now();
  }

  /** The result so far (final once `done`). */
  result(): GenerateResult {
    const end = this.finishedAt ?? performance.now();
    const first = this.firstTokenAt ?? end;
    const prefillMs = first - this.startedAt;
    const decodeMs = end - first;
    return {
      text: this.text,
      tokens: [...this.tokens],
      finishReason: this.finishReason ?? 'length',
      usage: {
        promptTokens: this.promptIds.length,
        completionTokens: this.tokens.length,
        totalTokens: this.promptIds.length + this.tokens.length,
      },
      timings: {
        prefillMs,
        decodeMs,
        promptTokensPerSecond: prefillMs > 0 ? this.promptIds.length / (prefillMs / 1000) : NaN,
        tokensPerSecond: this.tokens.length > 1 && decodeMs > 0 ? (this.tokens.length - 1) / (decodeMs / 1000) : NaN,
      },
      seed: this.sampler.seed,
      ...(this.stoppedBy ? { stoppedBy: this.stoppedBy } : {}),
    };
  }
}

/**
 * One batched step over several sequences: feeds each unfinished sequence its next input in a
 * single `forward` call and lets each consume its logits row. A fixed set in lock step; for
 * sequences that come and go, see the server's scheduler (this file's header). Returns the chunk of each sequence
 * (undefined for finished ones and for non-final prompt chunks).
 */
export async function stepSequences(
  runner: ModelRunner,
  seqs: readonly GenerationSequence[],
): Promise<(GenerationChunk | undefined)[]> {
  const active: { seq: GenerationSequence; index: number; input: number[] }[] = [];
  seqs.forEach((seq, index) => {
    const input = seq.nextInput();
    if (input.length > 0) active.push({ seq, index, input });
  });
  const out: (GenerationChunk | undefined)[] = new Array(seqs.length).fill(undefined);
  if (active.length === 0) return out;
  const needLogits = active.some((a) => !a.seq.midPrefill);
  // Each sequence's token is chosen where the logits are when the runner can (wasm: its worker threads).
  const requests = active.map((a) => a.seq.sampleRequest());
  const results = await runner.forward(
    active.map((a) => ({ cache: a.seq.cache, tokens: a.input })),
    {
      logits: needLogits ? 'last' : 'none',
      reuseLogits: true,
      ...(needLogits ? { sample: requests } : {}),
    },
  );
  active.forEach((a, k) => {
    const logits = results[k]?.logits;
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
