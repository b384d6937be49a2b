/**
 * One generating sequence, token by token: the state (sampler, stop rules, grammar, streaming
 * decoder, log probabilities) that says which tokens to feed next and turns each row of logits
 * into the next token, the text it completes and, at the end, the finish reason. This is the only
 * place that logic lives: `generate()` steps one sequence (generate.ts), `stepSequences` a fixed
 * batch, and the server's scheduler (server/scheduler.ts) any number that join and leave between
 * steps. A sequence does not call the model; whoever steps it feeds its input and hands back logits.
 *
 * Limits: a sequence ends when `maxTokens` new tokens exist or when prompt + new tokens reach
 * the context length (finish reason "length"); the last token is sampled but never fed, so the
 * cache never holds more than context − 1 positions. A prompt longer than the context is an
 * InputError. The context defaults to the model's max_seq_len; a larger one is accepted for ALiBi
 * models only (extrapolation, at the caller's request).
 */
import type { KvCache } from '../backends/backend.js';
import { InputError } from '../errors.js';
import type { MptConfig } from '../model/config.js';
import { Sampler, chooseToken, topLogprobs, type SampleRequest, type SamplingOptions } from './sampling.js';
import { StopStringMatcher } from './stop-strings.js';
import { StreamDecoder } from './stream-decoder.js';
import type { MptTokenizer } from './tokenizer.js';

/** Why generation ended: a stop token or stop string, a length limit, or cancellation. */
export type FinishReason = 'stop' | 'length' | 'abort';

/** A token's log probability and the most likely alternatives (OpenAI's logprobs). */
export interface TokenLogprobInfo {
  token: number;
  logprob: number;
  top: { token: number; logprob: number }[];
}

/** One streamed step: the token chosen and the text it completed (may be ''). */
export interface GenerationChunk {
  token: number;
  /** New text: UTF-8-safe and stop-string-safe (held back pieces arrive with later tokens). */
  text: string;
  /** With `logprobs`: the token's log probability and the top alternatives. */
  logprob?: TokenLogprobInfo;
}

/**
 * A rule on which tokens may come next (a grammar: the server's JSON constraint implements it).
 * The sequence masks each row of logits with it before sampling, so the token is chosen here
 * rather than by the runner.
 */
export interface TokenConstraint {
  /** Sets the logits of tokens that cannot come next to -Infinity (in place); returns how many can. */
  apply(logits: Float32Array): number;
  /** Advances past the chosen token. */
  accept(token: number): unknown;
  /** True once the constrained value is complete: the sequence ends there ("stop"). */
  readonly finished: boolean;
  /**
   * Optional: null when `apply` can run at once; else a promise that settles (never rejects) once
   * the tokens allowed next have been worked out elsewhere (a server computes its grammar masks
   * on another thread). Called before `apply`, `apply` would otherwise do that work in place.
   */
  ready?(): Promise<void> | null;
}

/** Prompt tokens a step for a sequence that wants every prompt position's logits: bounds that buffer (rows × vocab floats). */
export const PROMPT_LOGITS_CHUNK = 64;

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
  /** With `promptLogprobs`: the score of each prompt token after the first, given those before it. */
  promptLogprobs?: TokenLogprobInfo[];
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
  /** Only tokens this constraint allows are sampled; the sequence stops when it is finished. */
  constraint?: TokenConstraint | null;
  /** Report each token's log probability and this many top alternatives (`GenerationChunk.logprob`). */
  logprobs?: number | null;
  /** With `logprobs`: also score the prompt (each token after the first, given those before it). */
  promptLogprobs?: boolean;
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
  /**
   * The KV cache `stepSequences` feeds it through (capacity >= `capacity`). Null when the caller
   * owns the caches and only hands logits back (the server's scheduler).
   */
  cache: KvCache | null;
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
  readonly cache: KvCache | null;
  readonly sampler: Sampler;
  /** The request drawn for the step in flight (sampleRequest), consumed by accept. */
  private request: SampleRequest | null = null;
  readonly contextLength: number;
  readonly maxTokens: number;
  /** KV positions the sequence may need: prompt + new tokens, at most the context length. */
  readonly capacity: number;
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
  private readonly constraint: TokenConstraint | null;
  /** Top alternatives per token's logprob entry, or null for none. */
  private readonly logprobs: number | null;
  /** Ids at or past this are never sampled (nor ranked in logprobs). */
  private readonly vocabLimit: number;
  private readonly vocabSize: number;
  /** The prompt's scores so far (promptLogprobs), null when not asked for. */
  private readonly promptScores: TokenLogprobInfo[] | null;

  constructor(o: SequenceOptions) {
    const V = o.config.vocabSize;
    const prompt = Array.from(o.promptIds);
    if (prompt.length === 0) throw new InputError('the prompt is empty: give at least one token');
    for (const id of prompt) {
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new InputError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
    }
    this.contextLength = resolveContextLength(o.config, o.contextLength);
    if (prompt.length > this.contextLength) {
      throw new InputError(
        `the prompt has ${prompt.length} tokens, more than the context length ${this.contextLength}${o.config.attn.alibi ? ' (ALiBi models can extrapolate: ask for a larger context)' : ''}`,
      );
    }
    const maxTokens = o.maxTokens ?? DEFAULT_MAX_TOKENS;
    if (!Number.isInteger(maxTokens) || maxTokens < 0)
      throw new InputError(`max tokens must be an integer >= 0, got ${maxTokens}`);
    this.maxTokens = maxTokens;
    this.capacity = Math.min(this.contextLength, prompt.length + maxTokens);
    if (o.cache && o.cache.capacity < this.capacity)
      throw new InputError(
        `the KV cache holds ${o.cache.capacity} positions, fewer than this sequence may need (${this.capacity}: prompt + max tokens, at most the context length)`,
      );
    this.promptIds = prompt;
    this.history = [...prompt];
    this.cache = o.cache;
    this.tokenizer = o.tokenizer ?? null;
    const vocabLimit = o.vocabLimit ?? (this.tokenizer && this.tokenizer.size < V ? this.tokenizer.size : undefined);
    this.sampler = new Sampler({ ...o, vocabLimit });
    this.vocabLimit = Math.min(vocabLimit ?? V, V);
    this.vocabSize = V;
    this.constraint = o.constraint ?? null;
    this.logprobs = o.logprobs ?? null;
    if (this.logprobs !== null && !(Number.isInteger(this.logprobs) && this.logprobs >= 0))
      throw new InputError(`logprobs must be an integer >= 0, got ${this.logprobs}`);
    this.promptScores = o.promptLogprobs && this.logprobs !== null ? [] : null;
    this.stopIds = new Set(o.stopTokenIds ?? this.tokenizer?.stopIds ?? []);
    this.stopper = new StopStringMatcher(o.stopStrings ?? []);
    if (this.stopper.empty === false && !this.tokenizer) throw new InputError('stop strings need a tokenizer');
    this.skipSpecial = o.skipSpecialTokens ?? true;
    this.decoder = this.tokenizer
      ? new StreamDecoder(this.tokenizer, { skipSpecialTokens: this.skipSpecial })
      : undefined;
    const chunk = Math.max(1, o.prefillChunk ?? 256);
    this.prefillChunk = this.promptScores ? Math.min(chunk, PROMPT_LOGITS_CHUNK) : chunk;
    this.onToken = o.onToken;

    // Reuse the cached prefix shared with an earlier turn; always feed at least one token. A
    // sequence scoring its prompt needs every position's logits, so it reads the whole prompt.
    let keep =
      o.cachedIds && o.cache && !this.promptScores ? Math.min(commonPrefix(o.cachedIds, prompt), o.cache.length) : 0;
    if (keep >= prompt.length) keep = prompt.length - 1;
    if (o.cache && o.cache.length !== keep) o.cache.truncate(keep);
    this.pending = prompt.slice(keep);
    // With no room for a token, a sequence scoring its prompt still reads it (then ends, "length").
    if (this.full && !this.promptScores) this.finish('length');
  }

  get done(): boolean {
    return this.finishReason !== undefined;
  }

  /** True when no more tokens may be generated: max tokens reached, or the context full. */
  private get full(): boolean {
    return this.tokens.length >= this.maxTokens || this.history.length >= this.contextLength;
  }

  /** Every id of the sequence so far (prompt + generated). */
  get ids(): readonly number[] {
    return this.history;
  }

  /**
   * The tokens to feed next: a chunk of the prompt (at most `limit` tokens, default the prefill
   * chunk), or the last sampled token; [] when done.
   */
  nextInput(limit = this.prefillChunk): number[] {
    if (this.done) return [];
    if (this.pending.length > 0) return this.pending.slice(0, Math.max(1, limit));
    return [this.history[this.history.length - 1]!];
  }

  /**
   * Tokens still to feed before the sequence needs logits again: the rest of the prompt, or 1
   * (the last sampled token); 0 when done.
   */
  get unfed(): number {
    if (this.done) return 0;
    return this.pending.length > 0 ? this.pending.length : 1;
  }

  /** True while the next input is part of the prompt but not its last chunk (its logits are not needed). */
  get midPrefill(): boolean {
    return this.pending.length > this.prefillChunk;
  }

  /** True while prompt tokens remain to be fed. */
  get prefilling(): boolean {
    return !this.done && this.pending.length > 0;
  }

  /**
   * Null when the sequence can take its next logits at once; else a promise that settles when it
   * can (its constraint is working out, on another thread, which tokens may come next).
   */
  ready(): Promise<void> | null {
    return this.done ? null : (this.constraint?.ready?.() ?? null);
  }

  /** True when the sequence wants the logits of every prompt position (`scorePrompt`). */
  get scoresPrompt(): boolean {
    return this.promptScores !== null;
  }

  /**
   * The sampling request for the token the step ends with (draws its uniform), or null when that
   * step feeds `inputLength` tokens (default: the next input's) that do not finish the prompt,
   * when the sequence is done, or when a constraint masks the logits first (the token is then
   * chosen here). A runner given it (`ForwardOptions.sample`) may choose the token itself;
   * `accept` then takes it.
   */
  sampleRequest(inputLength = this.nextInput().length): SampleRequest | null {
    const mid = this.pending.length > inputLength;
    this.request =
      this.done || mid || this.constraint || this.full
        ? null
        : this.sampler.request(this.history, this.promptIds.length);
    return this.request;
  }

  /**
   * With `promptLogprobs`: reads the logits of prompt positions `first`, `first + 1`, … (rows of
   * vocab_size floats, valid during the call only); row r scores prompt token first + r + 1 given
   * the tokens before it. Returns the prompt's scores once the last position is read.
   */
  scorePrompt(rows: Float32Array, first: number): readonly TokenLogprobInfo[] | undefined {
    const scores = this.promptScores;
    if (!scores) return undefined;
    const V = this.vocabSize,
      P = this.promptIds.length;
    for (let r = 0; r * V < rows.length; r++) {
      const pos = first + r;
      if (pos + 1 >= P) break;
      // Over the whole vocabulary, padding ids included: the log-softmax MosaicML's and Hugging
      // Face's code (and lm-evaluation-harness on them) score a text with.
      scores.push(this.logprobInfo(rows.subarray(r * V, (r + 1) * V), this.promptIds[pos + 1]!, V));
    }
    return first + rows.length / V >= P ? scores : undefined;
  }

  /** The log probability of `token` and the top alternatives, over the first `vocab` ids. */
  private logprobInfo(logits: Float32Array, token: number, vocab: number): TokenLogprobInfo {
    const lp = topLogprobs(logits, this.logprobs ?? 0, { vocabLimit: vocab, chosen: token });
    return {
      token,
      logprob: lp.chosen?.logprob ?? -Infinity,
      top: lp.top.map((t) => ({ token: t.id, logprob: t.logprob })),
    };
  }

  /**
   * Consumes the forward's output for `fed` tokens of `nextInput()`: `logits` is the last
   * position's row, `chosen` the token the runner chose for `sampleRequest()` (if it did).
   * Returns the chunk produced, or undefined when the input was a non-final prompt chunk or the
   * sequence ended without a token (max tokens 0 after scoring the prompt; a constraint that
   * allows no token).
   */
  accept(logits: Float32Array | undefined, fed: number, chosen?: number): GenerationChunk | undefined {
    if (this.done) return undefined;
    if (this.pending.length > 0) {
      this.pending = this.pending.slice(fed);
      if (this.pending.length > 0) return undefined;
    }
    if (!logits) throw new InputError('accept() needs the logits of the last position');
    if (this.full) {
      // No room for a token (max tokens 0): the prompt was read only to be scored.
      this.request = null;
      this.finish('length');
      return undefined;
    }
    const token = this.choose(logits, chosen);
    if (token === undefined) {
      // No token can continue the constrained value (not with a byte-level vocabulary): stop.
      this.finish('stop');
      return undefined;
    }
    if (this.firstTokenAt === undefined) this.firstTokenAt = performance.now();
    this.history.push(token);
    this.tokens.push(token);
    // Of the model's distribution (the raw logits, before penalties and constraint masks).
    const logprob = this.logprobs !== null ? this.logprobInfo(logits, token, this.vocabLimit) : undefined;
    let text = '';
    if (this.stopIds.has(token)) {
      text = this.release();
      this.finish('stop');
      this.stoppedBy = { token };
    } else {
      this.constraint?.accept(token);
      const piece = this.decoder ? this.decoder.push(token) : '';
      const check = this.stopper.push(piece);
      text = check.text;
      if (check.stopped) {
        this.finish('stop');
        this.stoppedBy = { string: check.match! };
      } else if (this.constraint?.finished) {
        text += this.release();
        this.finish('stop');
      } else if (this.full) {
        text += this.release();
        this.finish('length');
      }
    }
    this.text += text;
    const chunk: GenerationChunk = logprob ? { token, text, logprob } : { token, text };
    this.onToken?.(chunk);
    return chunk;
  }

  /** The next token from a row of logits (or the runner's choice); undefined when a constraint allows none. */
  private choose(logits: Float32Array, chosen: number | undefined): number | undefined {
    const request = this.request;
    this.request = null;
    if (this.constraint) {
      const masked = new Float32Array(logits);
      if (this.constraint.apply(masked) === 0) return undefined;
      return this.sampler.sample(masked, this.history, this.promptIds.length);
    }
    // The runner's token is chooseToken(logits, request): the same as choosing it here.
    return chosen ?? chooseToken(logits, request ?? this.sampler.request(this.history, this.promptIds.length));
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
      ...(this.promptScores ? { promptLogprobs: [...this.promptScores] } : {}),
    };
  }
}
