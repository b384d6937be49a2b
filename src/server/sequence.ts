/**
 * One choice of one request, as the scheduler steps it: the runtime's `GenerationSequence`
 * (runtime/generation-sequence.ts), which holds all per-token logic (grammar mask, sampling,
 * penalties, stop ids and strings, UTF-8-safe detokenizing, log probabilities, max tokens, finish
 * reasons), behind the scheduler's client interface, its chunks reported to the request.
 */
import type { SamplingOptions } from '../runtime/sampling.js';
import { GenerationSequence, type TokenConstraint, type TokenLogprobInfo } from '../runtime/generation-sequence.js';
import type { ServedModel } from './model-host.js';
import type { EndReason, SequenceClient } from './scheduler.js';

export type { TokenLogprobInfo } from '../runtime/generation-sequence.js';

/** How a choice ended normally (OpenAI's finish_reason; "tool_calls" is decided by the endpoint). */
export type FinishReason = 'stop' | 'length';

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
  constraint: TokenConstraint | null;
}

export class ServerSequence implements SequenceClient {
  readonly sequence: GenerationSequence;
  readonly promptLogits?: (rows: Float32Array, first: number) => void;

  constructor(
    model: ServedModel,
    private readonly params: SequenceParams,
    private readonly events: SequenceEvents,
  ) {
    this.sequence = new GenerationSequence({
      ...params.sampling,
      // Ids the tokenizer cannot decode (embedding padding) are never sampled.
      vocabLimit: model.vocabLimit,
      promptIds: params.prompt,
      // The scheduler owns the caches and feeds the prompt (kept and copied caches included).
      cache: null,
      config: model.runner.config,
      tokenizer: model.tokenizer,
      contextLength: model.contextLength,
      maxTokens: params.maxTokens,
      stopTokenIds: model.stopIds,
      stopStrings: params.stopStrings,
      skipSpecialTokens: true,
      constraint: params.constraint,
      logprobs: params.logprobs,
      promptLogprobs: params.promptLogprobs === true,
    });
    if (this.sequence.scoresPrompt) this.promptLogits = (rows, first) => this.readPromptLogits(rows, first);
  }

  /** The request's own list (the same ids as the sequence's copy), one list for its n choices. */
  get prompt(): readonly number[] {
    return this.params.prompt;
  }

  get capacity(): number {
    return this.sequence.capacity;
  }

  /** Generated ids (the stop token included when one ended the sequence). */
  get tokens(): readonly number[] {
    return this.sequence.tokens;
  }

  private readPromptLogits(rows: Float32Array, first: number): void {
    const scores = this.sequence.scorePrompt(rows, first);
    if (scores) this.events.onPromptLogprobs?.(this.params.index, [...scores]);
  }

  /** Lets the runner choose the step's token where the logits are (null with a grammar: it masks them here first). */
  sampleRequest() {
    return this.sequence.sampleRequest(this.sequence.unfed);
  }

  /** Null when `next` can take logits now; else a promise settled once the grammar's mask is computed. */
  ready(): Promise<void> | null {
    return this.sequence.ready();
  }

  /** Called once the whole input is fed (the scheduler chunks the prompt itself). */
  next(logits: Float32Array, chosen?: number): number | null {
    const seq = this.sequence;
    const chunk = seq.accept(logits, seq.unfed, chosen);
    if (chunk && (chunk.text.length > 0 || chunk.logprob))
      this.events.onDelta(this.params.index, chunk.text, chunk.logprob ?? null);
    return chunk && !seq.done ? chunk.token : null;
  }

  onEnd(reason: EndReason, error?: unknown): void {
    const seq = this.sequence;
    if (reason !== 'finished') seq.abort();
    const finish = reason === 'finished' ? (seq.finishReason === 'length' ? 'length' : 'stop') : null;
    this.events.onFinish(this.params.index, finish, reason, error);
  }
}
