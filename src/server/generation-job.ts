/**
 * The generation job behind both endpoints: a request reduced to a plan (prompts × n choices),
 * one server sequence per choice submitted to the scheduler together, their output gathered per
 * choice, the time limit, cancellation when the client leaves, shutdown.
 */
import type { ServerResponse } from 'node:http';
import { MptError } from '../errors.js';
import type { SamplingOptions } from '../runtime/sampling.js';
import { ApiError, badRequest } from './api-error.js';
import type { JsonConstraint, JsonGrammar } from './constrain/json-constraint.js';
import type { GrammarCache } from './grammar.js';
import type { Metrics } from './metrics.js';
import type { ServedModel } from './model-host.js';
import type { PromptWorker } from './prompt-worker.js';
import type { ChatRequest } from './request-schema.js';
import { sendError, sendJsonInTurns } from './respond.js';
import {
  QueueFullError,
  type EndReason,
  type Scheduler,
  type SequenceClient,
  type SequenceHandle,
} from './scheduler.js';
import { ServerSequence, type FinishReason, type TokenLogprobInfo } from './sequence.js';

/** What the endpoints share with the HTTP layer. */
export interface GenerationContext {
  model: ServedModel;
  scheduler: Scheduler;
  metrics: Metrics;
  grammars: GrammarCache;
  /** Renders, bounds, tokenizes and detokenizes prompts off the event loop. */
  prompts: PromptWorker;
  /** Per-request time limit (ms), 0 for none. */
  timeoutMs: number;
  /** Headers every response carries (CORS). */
  headers: Record<string, string>;
  /** Registers an in-flight request so shutdown can finish or cancel it. */
  track(job: { cancel(reason: 'shutdown'): void; done: Promise<void> }): void;
}

/** The request fields that shape generation, common to both endpoints. */
export interface CommonFields {
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  stop?: string | string[] | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  n?: number | null;
  logit_bias?: Record<string, number> | null;
  response_format?: ChatRequest['response_format'];
}

/**
 * The request's sampling options for its choice 0 (choice i's seed is i more): the logit_bias
 * record is read once per request, and its entries shared by the choices (the sampler only reads them).
 */
function samplingOf(req: CommonFields, vocabSize: number): SamplingOptions {
  const bias: Record<number, number> = {};
  for (const [k, v] of Object.entries(req.logit_bias ?? {})) {
    const id = Number(k);
    if (id >= vocabSize)
      throw badRequest(
        `Invalid 'logit_bias': token id ${id} is outside the vocabulary (0..${vocabSize - 1}).`,
        'logit_bias',
        'invalid_value',
      );
    bias[id] = v;
  }
  const topP = req.top_p ?? 1;
  return {
    // OpenAI's defaults: temperature 1, no truncation. top_p 0 keeps only the top token.
    temperature: topP === 0 ? 0 : (req.temperature ?? 1),
    topP: topP === 0 ? 1 : topP,
    topK: req.top_k === undefined || req.top_k === null || req.top_k < 0 ? 0 : req.top_k,
    minP: req.min_p ?? 0,
    presencePenalty: req.presence_penalty ?? 0,
    frequencyPenalty: req.frequency_penalty ?? 0,
    repetitionPenalty: req.repetition_penalty ?? 1,
    seed: req.seed === undefined || req.seed === null ? undefined : req.seed,
    logitBias: Object.keys(bias).length ? bias : undefined,
  };
}

function stopStringsOf(req: CommonFields): string[] {
  if (req.stop === undefined || req.stop === null) return [];
  return (typeof req.stop === 'string' ? [req.stop] : req.stop).filter((s) => s.length > 0);
}

export function timeoutError(timeoutMs: number): ApiError {
  const message = `the request did not finish within ${timeoutMs / 1000} s (server --timeout)`;
  return new ApiError(504, message, 'timeout_error', null, 'timeout');
}

export interface ChoiceState {
  text: string;
  finish: FinishReason | null;
  ended: boolean;
  logprobs: TokenLogprobInfo[];
  /** With echo and logprobs: the prompt tokens' log probabilities (all but the first token). */
  promptLogprobs: TokenLogprobInfo[] | null;
  tokens: number;
}

/** One request in flight: its sequences, its response, its clean-up. */
export class Job {
  readonly choices: ChoiceState[];
  readonly handles: SequenceHandle[] = [];
  private readonly sequences: ServerSequence[] = [];
  private remaining: number;
  private timer: NodeJS.Timeout | undefined;
  private failed: ApiError | null = null;
  private firstToken = false;
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    readonly ctx: GenerationContext,
    readonly receivedAt: number,
    count: number,
    private readonly onDelta: (index: number, text: string, lp: TokenLogprobInfo | null) => void,
    /** A promise it returns (an answer still being written) is part of `done`. */
    private readonly onComplete: (job: Job, error: ApiError | null) => void | Promise<void>,
    private readonly onPromptLogprobs?: (index: number, infos: TokenLogprobInfo[]) => void,
  ) {
    this.choices = Array.from({ length: count }, () => ({
      text: '',
      finish: null,
      ended: false,
      logprobs: [],
      promptLogprobs: null,
      tokens: 0,
    }));
    this.remaining = count;
    this.done = new Promise((r) => {
      this.resolveDone = r;
    });
  }

  add(seq: ServerSequence): void {
    this.sequences.push(seq);
  }

  delta(index: number, text: string, lp: TokenLogprobInfo | null): void {
    if (!this.firstToken) {
      this.firstToken = true;
      this.ctx.metrics.observeTtft((performance.now() - this.receivedAt) / 1000);
    }
    const c = this.choices[index]!;
    c.text += text;
    if (lp) c.logprobs.push(lp);
    this.onDelta(index, text, lp);
  }

  promptRead(index: number, infos: TokenLogprobInfo[]): void {
    this.choices[index]!.promptLogprobs = infos;
    this.onPromptLogprobs?.(index, infos);
  }

  finish(index: number, finish: FinishReason | null, reason: EndReason, error?: unknown): void {
    const c = this.choices[index]!;
    if (c.ended) return;
    c.ended = true;
    c.finish = finish;
    c.tokens = this.sequences[index]?.tokens.length ?? 0;
    if (reason === 'error' && !this.failed) {
      // Our own typed errors carry messages meant for users; anything else stays private.
      const msg = error instanceof MptError ? error.message : 'generation failed';
      this.failed = new ApiError(500, msg, 'server_error', null, 'generation_failed');
    }
    if (reason === 'shutdown' && !this.failed)
      this.failed = new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
    if (--this.remaining === 0) this.complete();
  }

  /** Starts the request's time limit, counted from when it was received. */
  start(timeoutMs: number): void {
    if (timeoutMs > 0) {
      this.timer = setTimeout(
        () => {
          this.failed ??= timeoutError(timeoutMs);
          this.cancel('cancelled');
        },
        Math.max(0, timeoutMs - (performance.now() - this.receivedAt)),
      );
      this.timer.unref();
    }
  }

  cancel(reason: 'cancelled' | 'shutdown'): void {
    for (const h of this.handles) h.cancel(reason);
  }

  get completionTokens(): number {
    return this.choices.reduce((a, c) => a + c.tokens, 0);
  }

  private complete(): void {
    clearTimeout(this.timer);
    this.ctx.metrics.completionTokens += this.completionTokens;
    try {
      // Shutdown waits for `done` before it closes the connections: the answer is written by then.
      void Promise.resolve(this.onComplete(this, this.failed)).then(this.resolveDone, this.resolveDone);
    } catch (e) {
      this.resolveDone();
      throw e;
    }
  }
}

/** A generation request reduced to what both endpoints have in common. */
export interface Plan {
  prompts: number[][];
  n: number;
  maxTokens: number[];
  req: CommonFields;
  stream: boolean;
  includeUsage: boolean;
  logprobs: number | null;
  /** Completions with echo and logprobs: every choice also scores its prompt. */
  promptLogprobs?: boolean;
  grammar: JsonGrammar | null;
  /** Stop strings of the prompt format (chat), besides the request's own. */
  formatStops: readonly string[];
}

/**
 * Sequences made per turn of the event loop: each copies its prompt (up to the context's length)
 * and sets up its sampler and decoder, and 64 choices of a long prompt held the loop 7-20 ms busy.
 */
const SEQUENCES_PER_TURN = 8;

/** Submits every sequence of a plan, made a few per turn of the event loop; throws 429 when the queue is full. */
async function launch(ctx: GenerationContext, plan: Plan, job: Job): Promise<void> {
  const seqs: ServerSequence[] = [];
  const vocab = ctx.model.runner.config.vocabSize;
  const stops = [...new Set([...stopStringsOf(plan.req), ...plan.formatStops])];
  const sampling = samplingOf(plan.req, vocab);
  for (const [p, prompt] of plan.prompts.entries()) {
    for (let j = 0; j < plan.n; j++) {
      if (seqs.length > 0 && seqs.length % SEQUENCES_PER_TURN === 0) await new Promise((r) => setImmediate(r));
      const index = p * plan.n + j;
      const constraint: JsonConstraint | null = plan.grammar ? plan.grammar.start() : null;
      const seq = new ServerSequence(
        ctx.model,
        {
          index,
          prompt,
          maxTokens: plan.maxTokens[p]!,
          // Each choice of a seeded request gets its own reproducible stream.
          sampling: sampling.seed === undefined ? sampling : { ...sampling, seed: sampling.seed + index },
          stopStrings: stops,
          logprobs: plan.logprobs,
          promptLogprobs: plan.promptLogprobs === true,
          constraint,
        },
        {
          onDelta: (i, text, lp) => job.delta(i, text, lp),
          onPromptLogprobs: (i, infos) => job.promptRead(i, infos),
          onFinish: (i, finish, reason, error) => job.finish(i, finish, reason, error),
        },
      );
      seqs.push(seq);
      job.add(seq);
    }
  }
  job.handles.push(...submitAll(ctx, seqs));
  ctx.metrics.promptTokens += plan.prompts.reduce((a, p) => a + p.length, 0);
}

/** Submits sequences to the scheduler together: all of them, or a 429 when its queue is full. */
export function submitAll(ctx: GenerationContext, seqs: SequenceClient[]): SequenceHandle[] {
  try {
    return ctx.scheduler.submitAll(seqs);
  } catch (e) {
    if (e instanceof QueueFullError) {
      throw new ApiError(
        429,
        `The server is busy: ${e.queued} sequences are waiting (--queue). Retry shortly.`,
        'rate_limit_error',
        null,
        'queue_full',
        { 'Retry-After': '1' },
      );
    }
    throw e;
  }
}

/** Cancels the job when the client goes away before the response is complete. */
function cancelOnDisconnect(res: ServerResponse, job: Job): void {
  res.on('close', () => {
    if (!res.writableFinished) job.cancel('cancelled');
  });
  // Gone already (while the body was read or the request validated): no 'close' will come.
  if (res.destroyed || !res.socket || res.socket.destroyed) job.cancel('cancelled');
}

/**
 * Submits the plan's sequences (429 when the queue is full), runs `beforeStart` (a stream's first
 * chunks), then starts the job: its time limit, cancellation when the client leaves, shutdown.
 */
export async function startJob(
  ctx: GenerationContext,
  plan: Plan,
  res: ServerResponse,
  job: Job,
  beforeStart?: () => void,
): Promise<void> {
  await launch(ctx, plan, job);
  beforeStart?.();
  cancelOnDisconnect(res, job);
  job.start(ctx.timeoutMs);
  ctx.track(job);
  return job.done;
}

/** Runs the plan and answers with one JSON body (`body` of the finished job) or the error. */
export function answerWhenDone(
  ctx: GenerationContext,
  plan: Plan,
  res: ServerResponse,
  receivedAt: number,
  choices: number,
  body: (job: Job) => unknown,
): Promise<void> {
  const job = new Job(
    ctx,
    receivedAt,
    choices,
    () => {},
    (j, err) => {
      if (err) return sendError(res, err, ctx.headers);
      // Made and written a turn of the event loop at a time (64 choices' logprobs are megabytes).
      return sendJsonInTurns(res, 200, body(j), ctx.headers).catch((e: unknown) => {
        const msg = e instanceof MptError ? e.message : 'the answer could not be written';
        sendError(res, new ApiError(500, msg, 'server_error', null, 'generation_failed'), ctx.headers);
      });
    },
  );
  return startJob(ctx, plan, res, job);
}
