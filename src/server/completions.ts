/**
 * POST /v1/completions and POST /v1/chat/completions: a validated request becomes one
 * generation sequence per choice (prompts × n), submitted together to the scheduler; their
 * output is written back as OpenAI's JSON objects, or streamed as its SSE chunks.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { MptError } from '../errors.js';
import type { SamplingOptions } from '../runtime/sampling.js';
import type { MptTokenizer } from '../runtime/tokenizer.js';
import { ApiError, badRequest } from './api-error.js';
import { JsonGrammar, type JsonConstraint } from './constrain/json-constraint.js';
import { SchemaError } from './constrain/schema.js';
import type { Metrics } from './metrics.js';
import type { ServedModel } from './model-host.js';
import type { PromptEncoder } from './prompt-encoder.js';
import { ChatRequest, CompletionRequest, checkRefusedChatFields, parseBody } from './request-schema.js';
import { QueueFullError, type EndReason, type Scheduler, type SequenceHandle } from './scheduler.js';
import { ServerSequence, type FinishReason, type TokenLogprobInfo } from './sequence.js';
import { sendError, sendJson } from './respond.js';
import { SseWriter } from './sse.js';
import { parseToolCall, renderToolCall, toolCallSchema } from './tools.js';

/** What the endpoints share with the HTTP layer. */
export interface GenerationContext {
  model: ServedModel;
  scheduler: Scheduler;
  metrics: Metrics;
  grammars: GrammarCache;
  /** Tokenizes prompts off the event loop. */
  encoder: PromptEncoder;
  /** Per-request time limit (ms), 0 for none. */
  timeoutMs: number;
  /** Headers every response carries (CORS). */
  headers: Record<string, string>;
  /** Registers an in-flight request so shutdown can finish or cancel it. */
  track(job: { cancel(reason: 'shutdown'): void; done: Promise<void> }): void;
}

/** Compiled schemas by their JSON text (compiling is cheap, the mask cache inside is not). */
export class GrammarCache {
  private readonly map = new Map<string, JsonGrammar>();
  constructor(private readonly limit = 32) {}

  get(model: ServedModel, schema: unknown): JsonGrammar {
    const key = JSON.stringify(schema);
    let g = this.map.get(key);
    if (g) {
      this.map.delete(key);
    } else {
      g = new JsonGrammar(schema, model.constraintVocabulary());
    }
    this.map.set(key, g);
    if (this.map.size > this.limit) this.map.delete(this.map.keys().next().value!);
    return g;
  }
}

interface CommonFields {
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

function samplingOf(req: CommonFields, choice: number, vocabSize: number): SamplingOptions {
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
    // Each choice of a seeded request gets its own reproducible stream.
    seed: req.seed === undefined || req.seed === null ? undefined : req.seed + choice,
    logitBias: Object.keys(bias).length ? bias : undefined,
  };
}

function stopStringsOf(req: CommonFields): string[] {
  if (req.stop === undefined || req.stop === null) return [];
  return (typeof req.stop === 'string' ? [req.stop] : req.stop).filter((s) => s.length > 0);
}

const SCHEMA_PARAM = 'response_format.json_schema.schema';

/** The request's compiled response_format; 400 for a schema that cannot be enforced or that no value satisfies. */
function grammarOf(ctx: GenerationContext, req: CommonFields): JsonGrammar | null {
  const rf = req.response_format;
  if (!rf || rf.type === 'text') return null;
  const schema = rf.type === 'json_object' ? { type: 'object' } : (rf.json_schema.schema ?? {});
  return compileSchema(ctx, schema, SCHEMA_PARAM);
}

function compileSchema(ctx: GenerationContext, schema: unknown, param: string): JsonGrammar {
  try {
    return ctx.grammars.get(ctx.model, schema);
  } catch (e) {
    // RangeError: a schema nested deep enough to overflow the stack while being read.
    if (e instanceof SchemaError || e instanceof RangeError) {
      const why = e instanceof SchemaError ? e.message : 'the schema is nested too deeply';
      throw badRequest(`Invalid '${param}': ${why}.`, param, 'invalid_json_schema');
    }
    throw e;
  }
}

/** The grammar of the tool call a chat request asks for (tools.ts), or null for plain text. */
function toolGrammarOf(ctx: GenerationContext, req: ChatRequest): JsonGrammar | null {
  const schema = toolCallSchema(req.tools, req.tool_choice);
  if (!schema) return null;
  if (req.response_format && req.response_format.type !== 'text') {
    const message =
      "'response_format' cannot be combined with a tool call ('tools' with 'tool_choice' other than \"none\").";
    throw badRequest(message, 'response_format', 'invalid_value');
  }
  return compileSchema(ctx, schema, 'tools');
}

/** 400 when even the shortest value the grammar allows cannot fit in `maxTokens` tokens. */
function checkGrammarFits(grammar: JsonGrammar | null, maxTokens: number, limit: string): void {
  if (!grammar || maxTokens === 0) return;
  const perToken = grammar.vocab.maxTokenBytes;
  if (grammar.minBytes <= maxTokens * perToken) return;
  throw badRequest(
    `Invalid '${SCHEMA_PARAM}': the shortest JSON value it allows is ${grammar.minBytes} bytes, ` +
      `more than the completion can hold (${limit}: ${maxTokens} tokens of at most ${perToken} bytes).`,
    SCHEMA_PARAM,
    'invalid_json_schema',
  );
}

function contextError(ctx: number, prompt: number, completion: number, what: string): ApiError {
  return badRequest(
    `This model's maximum context length is ${ctx} tokens. However, you requested ${prompt + completion} tokens (${prompt} in the ${what}, ${completion} in the completion). Please reduce the length of the ${what} or completion.`,
    what === 'messages' ? 'messages' : 'prompt',
    'context_length_exceeded',
  );
}

/** A context overflow known before tokenizing: `least` is a lower bound on the prompt's tokens. */
function contextBoundError(
  ctx: number,
  least: number,
  completion: number | null,
  what: string,
  param: string,
): ApiError {
  const more = completion ? `, and ${completion} more are asked for the completion` : '';
  return badRequest(
    `This model's maximum context length is ${ctx} tokens. However, the ${what} alone is at least ${least} tokens long ` +
      `(judged from its length, before tokenizing)${more}. Please reduce the length of the ${what}.`,
    param,
    'context_length_exceeded',
  );
}

export function timeoutError(timeoutMs: number): ApiError {
  const message = `the request did not finish within ${timeoutMs / 1000} s (server --timeout)`;
  return new ApiError(504, message, 'timeout_error', null, 'timeout');
}

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('base64url')}`;
}

const tokenTexts = new WeakMap<MptTokenizer, (string | undefined)[]>();

/**
 * The text of one token, as logprobs show it, decoded once per tokenizer: a response with echoed
 * prompts' logprobs names up to 128 × context × 6 tokens.
 */
function tokenText(tok: MptTokenizer, id: number): string {
  let texts = tokenTexts.get(tok);
  if (!texts) {
    texts = [];
    tokenTexts.set(tok, texts);
  }
  let text = texts[id];
  if (text === undefined) {
    text = tok.decode([id]);
    texts[id] = text;
  }
  return text;
}

/** Finite for JSON (a -Infinity logprob would serialize as null). */
function finite(x: number): number {
  return Number.isFinite(x) ? x : -9999;
}

interface ChoiceState {
  text: string;
  finish: FinishReason | null;
  ended: boolean;
  logprobs: TokenLogprobInfo[];
  /** With echo and logprobs: the prompt tokens' log probabilities (all but the first token). */
  promptLogprobs: TokenLogprobInfo[] | null;
  tokens: number;
}

/** One request in flight: its sequences, its response, its clean-up. */
class Job {
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
    private readonly onComplete: (job: Job, error: ApiError | null) => void,
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
      this.onComplete(this, this.failed);
    } finally {
      this.resolveDone();
    }
  }
}

/** A generation request reduced to what both endpoints have in common. */
interface Plan {
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

/** Submits every sequence of a plan; throws 429 when the queue is full. */
function launch(ctx: GenerationContext, plan: Plan, job: Job): void {
  const seqs: ServerSequence[] = [];
  const vocab = ctx.model.runner.config.vocabSize;
  const stops = [...new Set([...stopStringsOf(plan.req), ...plan.formatStops])];
  plan.prompts.forEach((prompt, p) => {
    for (let j = 0; j < plan.n; j++) {
      const index = p * plan.n + j;
      const constraint: JsonConstraint | null = plan.grammar ? plan.grammar.start() : null;
      const seq = new ServerSequence(
        ctx.model,
        {
          index,
          prompt,
          maxTokens: plan.maxTokens[p]!,
          sampling: samplingOf(plan.req, index, vocab),
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
  });
  try {
    job.handles.push(...ctx.scheduler.submitAll(seqs));
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
  ctx.metrics.promptTokens += plan.prompts.reduce((a, p) => a + p.length, 0);
}

/** Cancels the job when the client goes away before the response is complete. */
function cancelOnDisconnect(res: ServerResponse, job: Job): void {
  res.on('close', () => {
    if (!res.writableFinished) job.cancel('cancelled');
  });
  // Gone already (while the body was read or the request validated): no 'close' will come.
  if (res.destroyed || !res.socket || res.socket.destroyed) job.cancel('cancelled');
}

function checkStreamOptions(req: { stream?: boolean | null; stream_options?: unknown }): void {
  if (req.stream_options != null && req.stream !== true) {
    throw badRequest(
      "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
      'stream_options',
      'invalid_value',
    );
  }
}

export function checkModel(ctx: GenerationContext, model: string): void {
  if (model !== ctx.model.id) {
    throw new ApiError(
      404,
      `The model \`${model}\` does not exist. This server serves \`${ctx.model.id}\`.`,
      'invalid_request_error',
      'model',
      'model_not_found',
    );
  }
}

/**
 * Tokenizes a request's prompt texts, off the event loop when they are long; given up (with the
 * 504, or silently) when the request's time runs out or its client leaves meanwhile.
 */
export async function encodePrompts(
  ctx: GenerationContext,
  res: ServerResponse,
  receivedAt: number,
  texts: readonly string[],
): Promise<number[][]> {
  const ac = new AbortController();
  const gone = () => {
    // Nobody will read the answer: the reason only ends the work.
    if (!res.writableFinished) ac.abort(new ApiError(499, 'the client closed the connection', 'invalid_request_error'));
  };
  res.on('close', gone);
  let timer: NodeJS.Timeout | undefined;
  if (ctx.timeoutMs > 0) {
    const left = Math.max(0, ctx.timeoutMs - (performance.now() - receivedAt));
    timer = setTimeout(() => ac.abort(timeoutError(ctx.timeoutMs)), left);
    timer.unref();
  }
  try {
    if (res.destroyed) gone();
    const out: number[][] = [];
    for (const t of texts) out.push(await ctx.encoder.encode(t, ac.signal));
    return out;
  } finally {
    clearTimeout(timer);
    res.off('close', gone);
  }
}

function usageOf(plan: Plan, job: Job) {
  const prompt = plan.prompts.reduce((a, p) => a + p.length, 0);
  const completion = job.completionTokens;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

// ---------------------------------------------------------------------------------------------
// Chat

function chatLogprobs(ctx: GenerationContext, list: TokenLogprobInfo[]) {
  const tok = ctx.model.tokenizer;
  const entry = (id: number, logprob: number) => {
    const token = tokenText(tok, id);
    const bytes = Array.from(tok.isByteLevel ? tok.tokenBytes(id) : new TextEncoder().encode(token));
    return { token, logprob: finite(logprob), bytes };
  };
  return {
    content: list.map((l) => ({
      ...entry(l.token, l.logprob),
      top_logprobs: l.top.map((t) => entry(t.token, t.logprob)),
    })),
    refusal: null,
  };
}

function messageText(content: ChatRequest['messages'][number]['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join('');
}

type ChatMessage = ChatRequest['messages'][number];

function renderMessages(ctx: GenerationContext, list: readonly ChatMessage[]): string {
  // A past tool call is rendered as the JSON the model writes for one (tools.ts); a tool's
  // result as a turn of role "tool" (ChatML: <|im_start|>tool\n…<|im_end|>).
  const messages = list.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: [messageText(m.content), ...(m.tool_calls ?? []).map(renderToolCall)].filter((t) => t !== '').join('\n'),
  }));
  try {
    return ctx.model.format.render(messages, { addGenerationPrompt: true });
  } catch (e) {
    throw badRequest(`Invalid 'messages': ${(e as Error).message}`, 'messages', 'invalid_value');
  }
}

/** The whole conversation as the prompt; an explicit max_tokens that does not fit is a 400 (as OpenAI gives). */
async function fullPrompt(
  ctx: GenerationContext,
  res: ServerResponse,
  receivedAt: number,
  list: readonly ChatMessage[],
  asked: number | null,
): Promise<{ prompt: number[]; maxTokens: number }> {
  const C = ctx.model.contextLength;
  const promptText = renderMessages(ctx, list);
  const least = ctx.encoder.minTokens(promptText);
  if (least >= C || (asked != null && least + asked > C)) {
    throw contextBoundError(C, least, asked, 'messages', 'messages');
  }
  const [prompt] = (await encodePrompts(ctx, res, receivedAt, [promptText])) as [number[]];
  if (prompt.length === 0)
    throw badRequest("Invalid 'messages': the rendered prompt is empty.", 'messages', 'invalid_value');
  if (prompt.length >= C || (asked != null && prompt.length + asked > C))
    throw contextError(C, prompt.length, asked ?? 1, 'messages');
  return { prompt, maxTokens: asked ?? C - prompt.length };
}

/**
 * `truncate: "oldest_turns"`: drops the oldest messages after the leading system messages, one at
 * a time, until the prompt leaves room for the reply (max_tokens, at most half the context), then
 * caps max_tokens at what the context has left. The latest message is always kept.
 */
async function truncatedPrompt(
  ctx: GenerationContext,
  res: ServerResponse,
  receivedAt: number,
  list: readonly ChatMessage[],
  asked: number | null,
): Promise<{ prompt: number[]; maxTokens: number }> {
  const C = ctx.model.contextLength;
  const reserve = Math.min(asked ?? C, Math.floor(C / 2));
  let system = 0;
  while (system < list.length - 1 && (list[system]!.role === 'system' || list[system]!.role === 'developer')) system++;
  let kept = [...list];
  const droppable = () => kept.length - system > 1;
  const drop = () => {
    kept = [...kept.slice(0, system), ...kept.slice(system + 1)];
  };
  // Cheaply first: a conversation whose length alone shows it cannot fit (no tokenizing).
  while (droppable() && ctx.encoder.minTokens(renderMessages(ctx, kept)) + reserve > C) drop();
  for (;;) {
    const text = renderMessages(ctx, kept);
    const [prompt] = (await encodePrompts(ctx, res, receivedAt, [text])) as [number[]];
    if (prompt.length === 0)
      throw badRequest("Invalid 'messages': the rendered prompt is empty.", 'messages', 'invalid_value');
    if (prompt.length + reserve <= C || !droppable()) {
      if (prompt.length >= C) throw contextError(C, prompt.length, 1, 'messages');
      return { prompt, maxTokens: Math.min(asked ?? C, C - prompt.length) };
    }
    drop();
  }
}

export async function handleChat(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const receivedAt = performance.now();
  const r = parseBody(ChatRequest, body);
  checkRefusedChatFields(r);
  checkModel(ctx, r.model);
  checkStreamOptions(r);
  if (r.top_logprobs !== undefined && r.top_logprobs !== null && r.top_logprobs > 0 && !r.logprobs) {
    throw badRequest(
      "Invalid value for 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is set.",
      'top_logprobs',
      'invalid_value',
    );
  }
  const asked = r.max_completion_tokens ?? r.max_tokens;
  const toolGrammar = toolGrammarOf(ctx, r);
  const grammar = toolGrammar ?? grammarOf(ctx, r);
  const { prompt, maxTokens } =
    r.truncate === 'oldest_turns'
      ? await truncatedPrompt(ctx, res, receivedAt, r.messages, asked ?? null)
      : await fullPrompt(ctx, res, receivedAt, r.messages, asked ?? null);
  checkGrammarFits(grammar, maxTokens, asked != null ? `max_tokens ${asked}` : 'the rest of the context');
  const n = r.n ?? 1;
  // A choice's text is a call when tools are in use; one cut short by max_tokens stays text.
  const callOf = (c: ChoiceState) => (toolGrammar && c.finish !== 'length' ? parseToolCall(c.text) : null);
  const plan: Plan = {
    prompts: [prompt],
    n,
    maxTokens: [maxTokens],
    req: r,
    stream: r.stream === true,
    includeUsage: r.stream_options?.include_usage === true,
    logprobs: r.logprobs ? (r.top_logprobs ?? 0) : null,
    grammar,
    formatStops: ctx.model.format.stopStrings,
  };
  const id = newId('chatcmpl');
  const created = Math.floor(Date.now() / 1000);
  const model = ctx.model.id;
  const fingerprint = `mpt-ts-${ctx.model.runner.backendName}`;

  if (!plan.stream) {
    const job = new Job(
      ctx,
      receivedAt,
      n,
      () => {},
      (j, err) => {
        if (err) return sendError(res, err, ctx.headers);
        sendJson(
          res,
          200,
          {
            id,
            object: 'chat.completion',
            created,
            model,
            system_fingerprint: fingerprint,
            choices: j.choices.map((c, index) => {
              const call = callOf(c);
              return {
                index,
                message: call
                  ? { role: 'assistant', content: null, refusal: null, tool_calls: [call] }
                  : { role: 'assistant', content: c.text, refusal: null },
                logprobs: plan.logprobs === null ? null : chatLogprobs(ctx, c.logprobs),
                finish_reason: call ? 'tool_calls' : (c.finish ?? 'stop'),
              };
            }),
            usage: usageOf(plan, j),
          },
          ctx.headers,
        );
      },
    );
    launch(ctx, plan, job);
    cancelOnDisconnect(res, job);
    job.start(ctx.timeoutMs);
    ctx.track(job);
    return job.done;
  }

  const sse = new SseWriter(res, ctx.headers);
  const chunk = (choices: unknown[], usage?: unknown) => ({
    id,
    object: 'chat.completion.chunk',
    created,
    model,
    system_fingerprint: fingerprint,
    choices,
    ...(plan.includeUsage ? { usage: usage ?? null } : {}),
  });
  const job = new Job(
    ctx,
    receivedAt,
    n,
    (index, text, lp) => {
      // A call is sent whole once it is complete (and parses), as delta.tool_calls.
      if (toolGrammar) return;
      sse.send(
        chunk([
          { index, delta: { content: text }, logprobs: lp ? chatLogprobs(ctx, [lp]) : null, finish_reason: null },
        ]),
      );
    },
    (j, err) => {
      if (err) return sse.fail(err.toBody());
      for (let index = 0; index < j.choices.length; index++) {
        const c = j.choices[index]!;
        const call = callOf(c);
        if (call) {
          // OpenAI's order: id, type and name with empty arguments first, then the arguments.
          const head = {
            index: 0,
            id: call.id,
            type: 'function',
            function: { name: call.function.name, arguments: '' },
          };
          sse.send(chunk([{ index, delta: { tool_calls: [head] }, logprobs: null, finish_reason: null }]));
          const rest = { index: 0, function: { arguments: call.function.arguments } };
          sse.send(chunk([{ index, delta: { tool_calls: [rest] }, logprobs: null, finish_reason: null }]));
        } else if (toolGrammar && c.text) {
          sse.send(chunk([{ index, delta: { content: c.text }, logprobs: null, finish_reason: null }]));
        }
        const finish = call ? 'tool_calls' : (c.finish ?? 'stop');
        sse.send(chunk([{ index, delta: {}, logprobs: null, finish_reason: finish }]));
      }
      if (plan.includeUsage) sse.send(chunk([], usageOf(plan, j)));
      sse.done();
    },
  );
  launch(ctx, plan, job);
  // The role comes first, in a chunk of its own per choice, as OpenAI sends it.
  for (let index = 0; index < n; index++)
    sse.send(
      chunk([{ index, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }]),
    );
  cancelOnDisconnect(res, job);
  job.start(ctx.timeoutMs);
  ctx.track(job);
  return job.done;
}

// ---------------------------------------------------------------------------------------------
// Completions

/**
 * OpenAI's completion logprobs object. With `firstPromptToken` (echo), the entries start with the
 * prompt's first token, which has no log probability (null, as OpenAI gives it).
 */
function completionLogprobs(
  ctx: GenerationContext,
  list: TokenLogprobInfo[],
  offset0: number,
  firstPromptToken?: number,
) {
  const tok = ctx.model.tokenizer;
  let offset = offset0;
  const tokens: string[] = [];
  const tokenLogprobs: (number | null)[] = [];
  const top: (Record<string, number> | null)[] = [];
  const textOffset: number[] = [];
  if (firstPromptToken !== undefined) {
    const s = tokenText(tok, firstPromptToken);
    tokens.push(s);
    tokenLogprobs.push(null);
    top.push(null);
    textOffset.push(offset);
    offset += s.length;
  }
  for (const l of list) {
    const s = tokenText(tok, l.token);
    tokens.push(s);
    tokenLogprobs.push(finite(l.logprob));
    const d: Record<string, number> = {};
    for (const t of l.top) {
      const k = tokenText(tok, t.token);
      if (!(k in d)) d[k] = finite(t.logprob);
    }
    top.push(d);
    textOffset.push(offset);
    offset += s.length;
  }
  return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: textOffset };
}

/** The decoded length of a prompt's tokens (where generated tokens' text_offset starts with echo). */
function decodedLength(ctx: GenerationContext, ids: readonly number[]): number {
  let n = 0;
  for (const id of ids) n += tokenText(ctx.model.tokenizer, id).length;
  return n;
}

export async function handleCompletion(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const receivedAt = performance.now();
  const r = parseBody(CompletionRequest, body);
  checkModel(ctx, r.model);
  checkStreamOptions(r);
  if (r.suffix) throw badRequest("'suffix' is not supported by this server.", 'suffix', 'unsupported_parameter');
  const n = r.n ?? 1;
  if (r.best_of != null && r.best_of !== n)
    throw badRequest("'best_of' is supported only equal to 'n'.", 'best_of', 'unsupported_parameter');
  if (r.max_tokens === 0 && !r.echo)
    throw badRequest(
      "Invalid 'max_tokens': 0 is allowed only with 'echo' (the prompt alone).",
      'max_tokens',
      'invalid_value',
    );
  const echoLogprobs = r.echo === true && r.logprobs != null;
  const vocab = ctx.model.runner.config.vocabSize;
  // Prompt texts (tokenized below) or token ids.
  const p = r.prompt;
  const given: string[] | number[][] =
    typeof p === 'string' ? [p] : typeof p[0] === 'number' ? [p as number[]] : (p as string[] | number[][]);
  const paramOf = (i: number) => (given.length > 1 ? `prompt[${i}]` : 'prompt');
  // Everything that bounds the work comes before any of it.
  if (given.length * n > 128) throw badRequest("Invalid 'n': prompts × n must be at most 128.", 'n', 'invalid_value');
  const C = ctx.model.contextLength;
  const asked = r.max_tokens ?? 16;
  given.forEach((g, i) => {
    const least = typeof g === 'string' ? ctx.encoder.minTokens(g) : 0;
    if (least + asked > C) throw contextBoundError(C, least, asked, 'prompt', paramOf(i));
  });
  const grammar = grammarOf(ctx, r);
  const texts: (string | null)[] = given.map((g) => (typeof g === 'string' ? g : null));
  const prompts =
    typeof given[0] === 'string' ? await encodePrompts(ctx, res, receivedAt, given as string[]) : (given as number[][]);
  prompts.forEach((ids, i) => {
    const param = paramOf(i);
    if (ids.length === 0) throw badRequest(`Invalid '${param}': the prompt is empty.`, param, 'invalid_value');
    const bad = ids.find((t) => t >= vocab);
    if (bad !== undefined)
      throw badRequest(
        `Invalid '${param}': token id ${bad} is outside the vocabulary (0..${vocab - 1}).`,
        param,
        'invalid_value',
      );
  });
  const maxTokens = prompts.map((ids) => {
    if (ids.length + asked > C) throw contextError(C, ids.length, asked, 'prompt');
    return asked;
  });
  checkGrammarFits(grammar, asked, `max_tokens ${asked}`);
  const plan: Plan = {
    prompts,
    n,
    maxTokens,
    req: r,
    stream: r.stream === true,
    includeUsage: r.stream_options?.include_usage === true,
    logprobs: r.logprobs ?? null,
    promptLogprobs: echoLogprobs,
    grammar,
    formatStops: [],
  };
  const echoText = (i: number) =>
    r.echo ? (texts[Math.floor(i / n)] ?? ctx.model.tokenizer.decode(prompts[Math.floor(i / n)]!)) : '';
  const promptOf = (i: number) => prompts[Math.floor(i / n)]!;
  /** Logprobs of a choice's echoed prompt then its generated tokens (offsets from the prompt's start). */
  const echoedLogprobs = (i: number, c: ChoiceState) => {
    const p = promptOf(i);
    const head = completionLogprobs(ctx, c.promptLogprobs ?? [], 0, p[0]);
    const tail = completionLogprobs(ctx, c.logprobs, decodedLength(ctx, p));
    return {
      tokens: [...head.tokens, ...tail.tokens],
      token_logprobs: [...head.token_logprobs, ...tail.token_logprobs],
      top_logprobs: [...head.top_logprobs, ...tail.top_logprobs],
      text_offset: [...head.text_offset, ...tail.text_offset],
    };
  };
  const id = newId('cmpl');
  const created = Math.floor(Date.now() / 1000);
  const model = ctx.model.id;
  const fingerprint = `mpt-ts-${ctx.model.runner.backendName}`;
  const total = prompts.length * n;

  if (!plan.stream) {
    const job = new Job(
      ctx,
      receivedAt,
      total,
      () => {},
      (j, err) => {
        if (err) return sendError(res, err, ctx.headers);
        sendJson(
          res,
          200,
          {
            id,
            object: 'text_completion',
            created,
            model,
            system_fingerprint: fingerprint,
            choices: j.choices.map((c, index) => ({
              text: echoText(index) + c.text,
              index,
              logprobs:
                plan.logprobs === null
                  ? null
                  : echoLogprobs
                    ? echoedLogprobs(index, c)
                    : completionLogprobs(ctx, c.logprobs, 0),
              finish_reason: c.finish ?? 'stop',
            })),
            usage: usageOf(plan, j),
          },
          ctx.headers,
        );
      },
    );
    launch(ctx, plan, job);
    cancelOnDisconnect(res, job);
    job.start(ctx.timeoutMs);
    ctx.track(job);
    return job.done;
  }

  const sse = new SseWriter(res, ctx.headers);
  const chunk = (choices: unknown[], usage?: unknown) => ({
    id,
    object: 'text_completion',
    created,
    model,
    system_fingerprint: fingerprint,
    choices,
    ...(plan.includeUsage ? { usage: usage ?? null } : {}),
  });
  const offsets = new Array<number>(total).fill(0);
  if (echoLogprobs) for (let i = 0; i < total; i++) offsets[i] = decodedLength(ctx, promptOf(i));
  const job = new Job(
    ctx,
    receivedAt,
    total,
    (index, text, lp) => {
      const logprobs = lp ? completionLogprobs(ctx, [lp], offsets[index]!) : null;
      offsets[index]! += text.length;
      sse.send(chunk([{ text, index, logprobs, finish_reason: null }]));
    },
    (j, err) => {
      if (err) return sse.fail(err.toBody());
      for (let index = 0; index < j.choices.length; index++) {
        sse.send(chunk([{ text: '', index, logprobs: null, finish_reason: j.choices[index]!.finish ?? 'stop' }]));
      }
      if (plan.includeUsage) sse.send(chunk([], usageOf(plan, j)));
      sse.done();
    },
    (index, infos) => {
      // With logprobs, a choice's echo waits for its prompt to be scored (before its first token).
      sse.send(
        chunk([
          {
            text: echoText(index),
            index,
            logprobs: completionLogprobs(ctx, infos, 0, promptOf(index)[0]),
            finish_reason: null,
          },
        ]),
      );
    },
  );
  launch(ctx, plan, job);
  sse.start();
  if (r.echo && !echoLogprobs)
    for (let index = 0; index < total; index++)
      sse.send(chunk([{ text: echoText(index), index, logprobs: null, finish_reason: null }]));
  cancelOnDisconnect(res, job);
  job.start(ctx.timeoutMs);
  ctx.track(job);
  return job.done;
}
