/**
 * One choice of one request, as the scheduler steps it: turns each row of logits into a token
 * (constraint mask → sampler), detokenizes UTF-8-safely, holds back possible stop strings,
 * records log probabilities, and reports text and the end to its request.
 */
import { Sampler, chooseToken, topLogprobs, type SampleRequest, type SamplingOptions } from '../runtime/sampling.js';
import { StopStringMatcher } from '../runtime/stop-strings.js';
import { StreamDecoder } from '../runtime/stream-decoder.js';
import type { JsonConstraint } from './constrain/json-constraint.js';
import type { ServedModel } from './model-host.js';
import type { EndReason, SequenceClient } from './scheduler.js';

export type FinishReason = 'stop' | 'length';

/** A token's log probability and the most likely alternatives (OpenAI logprobs). */
export interface TokenLogprobInfo {
  token: number;
  logprob: number;
  top: { token: number; logprob: number }[];
}

/** What a sequence tells its request, in order. */
export interface SequenceEvents {
  /** New text (may be '' when only a logprob entry is new). */
  onDelta(index: number, text: string, logprob: TokenLogprobInfo | null): void;
  /**
   * With `promptLogprobs`: the log probability of each prompt token after the first, given the
   * tokens before it, once the whole prompt is read (before any generated text).
   */
  onPromptLogprobs?(index: number, infos: TokenLogprobInfo[]): void;
  /** The sequence is done; `finish` is null when it was cancelled or failed. */
  onFinish(index: number, finish: FinishReason | null, reason: EndReason, error?: unknown): void;
}

export interface SequenceParams {
  /** Choice index within the request. */
  index: number;
  prompt: readonly number[];
  maxTokens: number;
  sampling: SamplingOptions;
  stopStrings: readonly string[];
  /** Number of top alternatives to report per token, or null for no logprobs. */
  logprobs: number | null;
  /** Also report the prompt tokens' log probabilities (needs `logprobs`; completions' `echo`). */
  promptLogprobs?: boolean;
  constraint: JsonConstraint | null;
}

export class ServerSequence implements SequenceClient {
  readonly prompt: readonly number[];
  readonly capacity: number;
  /** Generated ids (the stop token included when one ended the sequence). */
  readonly tokens: number[] = [];
  firstTokenAt: number | undefined;
  private readonly history: number[];
  private readonly sampler: Sampler;
  private readonly decoder: StreamDecoder;
  private readonly stopper: StopStringMatcher;
  private readonly stopIds: Set<number>;
  private finish: FinishReason | null = null;
  /** The request handed to the runner for the step in flight (its uniform is drawn). */
  private request: SampleRequest | null = null;
  readonly promptLogits?: (rows: Float32Array, first: number) => void;
  private readonly promptInfos: TokenLogprobInfo[] = [];

  constructor(
    private readonly model: ServedModel,
    private readonly params: SequenceParams,
    private readonly events: SequenceEvents,
  ) {
    this.prompt = params.prompt;
    this.capacity = params.prompt.length + params.maxTokens;
    this.history = [...params.prompt];
    this.sampler = new Sampler({ ...params.sampling, vocabLimit: model.vocabLimit });
    this.decoder = new StreamDecoder(model.tokenizer, { skipSpecialTokens: true });
    this.stopper = new StopStringMatcher(params.stopStrings);
    this.stopIds = new Set(model.stopIds);
    if (params.promptLogprobs && params.logprobs !== null)
      this.promptLogits = (rows, first) => this.readPromptLogits(rows, first);
  }

  /** Row r holds the logits after prompt position first + r: they score the token after it. */
  private readPromptLogits(rows: Float32Array, first: number): void {
    const V = this.model.runner.config.vocabSize,
      P = this.prompt.length;
    for (let r = 0; r * V < rows.length; r++) {
      const pos = first + r;
      if (pos + 1 >= P) break;
      const token = this.prompt[pos + 1]!;
      // Over the whole vocabulary, padding ids included: the log-softmax MosaicML's and Hugging
      // Face's code (and lm-evaluation-harness on them) score a text with.
      this.promptInfos.push(this.logprobInfo(rows.subarray(r * V, (r + 1) * V), token, this.params.logprobs!, V));
    }
    if (first + rows.length / V >= P) this.events.onPromptLogprobs?.(this.params.index, this.promptInfos);
  }

  /** Log probabilities over the first `vocab` ids (default: those the tokenizer can decode, which sampling draws from). */
  private logprobInfo(logits: Float32Array, token: number, k: number, vocab = this.model.vocabLimit): TokenLogprobInfo {
    const lp = topLogprobs(logits, k, { vocabLimit: vocab, chosen: token });
    return {
      token,
      logprob: lp.chosen?.logprob ?? -Infinity,
      top: lp.top.map((t) => ({ token: t.id, logprob: t.logprob })),
    };
  }

  /**
   * Lets the runner choose the next token where the logits are (not with a JSON constraint: its
   * mask is applied here first).
   */
  sampleRequest(): SampleRequest | null {
    this.request = this.params.constraint ? null : this.sampler.request(this.history, this.prompt.length);
    return this.request;
  }

  next(logits: Float32Array, chosen?: number): number | null {
    this.firstTokenAt ??= performance.now();
    if (this.params.maxTokens === 0) {
      // echo with max_tokens 0: the prompt (and its log probabilities) only.
      this.finish = 'length';
      return null;
    }
    const c = this.params.constraint;
    let token: number;
    if (c) {
      const work = new Float32Array(logits);
      if (c.apply(work) === 0) {
        // No token can continue the value (cannot happen with a byte-level vocabulary): stop.
        this.finish = 'stop';
        return null;
      }
      token = this.sampler.sample(work, this.history, this.prompt.length);
    } else {
      // The runner's token is chooseToken(logits, request): the same as choosing it here.
      const request = this.request ?? this.sampler.request(this.history, this.prompt.length);
      this.request = null;
      token = chosen ?? chooseToken(logits, request);
    }
    this.tokens.push(token);
    this.history.push(token);
    const info = this.params.logprobs !== null ? this.logprobInfo(logits, token, this.params.logprobs) : null;
    if (this.stopIds.has(token)) {
      this.emit(this.release(), info);
      this.finish = 'stop';
      return null;
    }
    c?.accept(token);
    const check = this.stopper.push(this.decoder.push(token));
    if (check.stopped) {
      this.emit(check.text, info);
      this.finish = 'stop';
      return null;
    }
    if (c?.finished) {
      this.emit(check.text + this.release(), info);
      this.finish = 'stop';
      return null;
    }
    if (this.tokens.length >= this.params.maxTokens) {
      this.emit(check.text + this.release(), info);
      this.finish = 'length';
      return null;
    }
    this.emit(check.text, info);
    return token;
  }

  onEnd(reason: EndReason, error?: unknown): void {
    this.events.onFinish(this.params.index, reason === 'finished' ? (this.finish ?? 'stop') : null, reason, error);
  }

  private emit(text: string, info: TokenLogprobInfo | null): void {
    if (text.length || info) this.events.onDelta(this.params.index, text, info);
  }

  /** Text still held by the UTF-8 decoder and the stop matcher at a normal end. */
  private release(): string {
    const check = this.stopper.push(this.decoder.flush());
    return check.stopped ? check.text : check.text + this.stopper.flush();
  }
}
