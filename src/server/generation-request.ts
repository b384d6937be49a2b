/**
 * The checks and preparation every generation request goes through before any work: the model
 * it names, stream options, prompt texts tokenized within the request's time limit, and the
 * context-length errors in OpenAI's wording.
 */
import type { ServerResponse } from 'node:http';
import type * as z from 'zod';
import { ApiError, badRequest } from './api-error.js';
import { timeoutError, type GenerationContext } from './generation-job.js';
import type { Encoded } from './prompt-worker.js';
import { parseBody } from './request-schema.js';

export function contextError(ctx: number, prompt: number, completion: number, what: string): ApiError {
  return badRequest(
    `This model's maximum context length is ${ctx} tokens. However, you requested ${prompt + completion} tokens (${prompt} in the ${what}, ${completion} in the completion). Please reduce the length of the ${what} or completion.`,
    what === 'messages' ? 'messages' : 'prompt',
    'context_length_exceeded',
  );
}

/** A context overflow known before tokenizing: `least` is a lower bound on the prompt's tokens. */
export function contextBoundError(
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

function checkStreamOptions(req: { stream?: boolean | null; stream_options?: unknown }): void {
  if (req.stream_options != null && req.stream !== true) {
    throw badRequest(
      "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
      'stream_options',
      'invalid_value',
    );
  }
}

/** What a request's `model` field may be, for the errors about it ("This server serves `mpt-7b`."). */
export function servedModelNote(id: string): string {
  return `This server serves \`${id}\` (GET /v1/models lists it).`;
}

export function checkModel(ctx: GenerationContext, model: string): void {
  if (model !== ctx.model.id) {
    throw new ApiError(
      404,
      `The model \`${model}\` does not exist. ${servedModelNote(ctx.model.id)}`,
      'invalid_request_error',
      'model',
      'model_not_found',
    );
  }
}

/**
 * parseBody for a request that names the model: an error about its `model` field (missing, not a
 * string) also says which model this server serves, so that the client can fix the request.
 */
export function parseModelRequest<T extends z.ZodType>(ctx: GenerationContext, schema: T, body: unknown): z.infer<T> {
  try {
    return parseBody(schema, body);
  } catch (e) {
    if (!(e instanceof ApiError) || e.param !== 'model') throw e;
    throw new ApiError(e.status, `${e.message} ${servedModelNote(ctx.model.id)}`, e.type, e.param, e.code, e.headers);
  }
}

/**
 * A signal that aborts when the request's time runs out (with the 504) or its client leaves
 * (silently: nobody reads the answer), for the prompt work done before generation starts;
 * `release` stops watching.
 */
export function requestSignal(
  ctx: GenerationContext,
  res: ServerResponse,
  receivedAt: number,
): { signal: AbortSignal; release(): void } {
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
  if (res.destroyed) gone();
  return {
    signal: ac.signal,
    release() {
      clearTimeout(timer);
      res.off('close', gone);
    },
  };
}

/**
 * Tokenizes a request's prompt texts, off the event loop when they are long, given up when
 * `signal` aborts: each one's token count, and its ids when there are at most `keep` (a prompt
 * with more is refused, and only its count is needed for the message).
 */
export async function encodePrompts(
  ctx: GenerationContext,
  texts: readonly string[],
  keep: number,
  signal: AbortSignal,
): Promise<Encoded[]> {
  const out: Encoded[] = [];
  for (const t of texts) out.push(await ctx.prompts.encodeUpTo(t, keep, signal));
  return out;
}

/** The checks both generation endpoints make first: the model named, stream_options only with stream. */
export function checkGenerationRequest(
  ctx: GenerationContext,
  req: { model: string; stream?: boolean | null; stream_options?: unknown },
): void {
  checkModel(ctx, req.model);
  checkStreamOptions(req);
}
