/**
 * POST /v1/embeddings in OpenAI's shape. The vector of an input is the model's final hidden
 * states (after norm_f, what the LM head reads) averaged over the input's tokens and scaled to
 * unit L2 norm. Each input is one scheduler sequence that only reads its prompt, in chunks
 * beside other requests' decode steps, so embeddings never stall generation.
 */
import type { ServerResponse } from 'node:http';
import * as z from 'zod';
import { MptError } from '../errors.js';
import { ApiError, badRequest } from './api-error.js';
import { idLists, strings, tokenIds } from './list-schema.js';
import { submitAll, timeoutError, type GenerationContext } from './generation-job.js';
import {
  checkModel,
  contextBoundError,
  encodePrompts,
  parseModelRequest,
  requestSignal,
} from './generation-request.js';
import type { Encoded } from './prompt-worker.js';
import { sendError, sendJson } from './respond.js';
import type { EndReason, SequenceClient, SequenceHandle } from './scheduler.js';

const EmbeddingRequest = z.strictObject({
  model: z.string(),
  input: z.union([z.string(), strings({ min: 1, max: 2048 }), tokenIds(1), idLists(0, { min: 1, max: 2048 })]),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: z.number().int().min(1).nullish(),
  user: z.string().optional(),
});

/** Sums an input's rows of final hidden states, then gives their mean scaled to unit length. */
class PooledSequence implements SequenceClient {
  readonly capacity: number;
  private readonly sum: Float64Array;
  vector: Float32Array | null = null;

  constructor(
    readonly prompt: readonly number[],
    private readonly d: number,
    private readonly onEnd_: (reason: EndReason, error?: unknown) => void,
  ) {
    this.capacity = prompt.length;
    this.sum = new Float64Array(d);
  }

  readonly promptHidden = (rows: Float32Array): void => {
    const d = this.d;
    for (let r = 0; r < rows.length; r += d) for (let j = 0; j < d; j++) this.sum[j]! += rows[r + j]!;
  };

  next(): null {
    return null;
  }

  onEnd(reason: EndReason, error?: unknown): void {
    if (reason === 'finished') {
      let norm = 0;
      for (const v of this.sum) norm += v * v;
      // The mean's direction is the sum's: scaling by 1/T first changes nothing after normalising.
      const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
      this.vector = Float32Array.from(this.sum, (v) => v * inv);
    }
    this.onEnd_(reason, error);
  }
}

/** Token ids of every input; 400 for an empty one, one past the context, or an id outside the vocabulary. */
async function inputIds(
  ctx: GenerationContext,
  res: ServerResponse,
  receivedAt: number,
  input: z.infer<typeof EmbeddingRequest>['input'],
): Promise<number[][]> {
  let inputs: Encoded[];
  const C = ctx.model.contextLength,
    limit = ctx.model.vocabLimit;
  const many = typeof input !== 'string' && typeof input[0] !== 'number';
  const paramOf = (i: number) => (many ? `input[${i}]` : 'input');
  const texts = typeof input === 'string' ? [input] : input.every((x) => typeof x === 'string') ? input : null;
  if (texts) {
    const watch = requestSignal(ctx, res, receivedAt);
    try {
      // Every text that cannot fit is refused from its length before any is tokenized (a
      // megabyte of text is seconds of tokenizing).
      for (const [i, t] of (texts as string[]).entries()) {
        const least = await ctx.prompts.leastTokens(t, watch.signal);
        if (least > C) throw contextBoundError(C, least, null, 'input', paramOf(i));
      }
      inputs = await encodePrompts(ctx, texts as string[], C, watch.signal);
    } finally {
      watch.release();
    }
  } else {
    const lists = (input as unknown[]).every((x) => typeof x === 'number')
      ? [input as number[]]
      : (input as number[][]);
    inputs = lists.map((ids) => ({ count: ids.length, ids }));
  }
  return inputs.map(({ count, ids }, i) => {
    const param = paramOf(i);
    if (count === 0)
      throw badRequest(
        `Invalid '${param}': the input is empty (it has no tokens); an embedding needs at least one.`,
        param,
        'invalid_value',
      );
    if (ids === null || count > C) {
      throw badRequest(
        `Invalid '${param}': this model's maximum context length is ${C} tokens, but the input has ${count}. Please shorten it.`,
        param,
        'context_length_exceeded',
      );
    }
    const bad = ids.findIndex((id) => id >= limit);
    if (bad >= 0)
      throw badRequest(
        `Invalid '${param}': token id ${ids[bad]} is outside the vocabulary (0..${limit - 1}).`,
        param,
        'invalid_value',
      );
    return ids;
  });
}

/** OpenAI's base64 encoding: the float32 values' little-endian bytes. */
function littleEndianBase64(v: Float32Array): string {
  const bytes = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => {
    bytes.writeFloatLE(x, i * 4);
  });
  return bytes.toString('base64');
}

export async function handleEmbeddings(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const receivedAt = performance.now();
  const r = parseModelRequest(ctx, EmbeddingRequest, body);
  checkModel(ctx, r.model);
  const d = ctx.model.runner.config.dModel;
  if (r.dimensions != null && r.dimensions !== d) {
    throw badRequest(
      `Invalid 'dimensions': this model's embeddings have ${d} dimensions (d_model); got ${r.dimensions}.`,
      'dimensions',
      'invalid_value',
    );
  }
  const ids = await inputIds(ctx, res, receivedAt, r.input);
  let failed: ApiError | null = null;
  let remaining = ids.length;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  const handles: SequenceHandle[] = [];
  const cancel = (reason: 'cancelled' | 'shutdown') => {
    for (const h of handles) h.cancel(reason);
  };
  let timer: NodeJS.Timeout | undefined;
  const ended = (reason: EndReason, error?: unknown) => {
    if (reason === 'error')
      failed ??= new ApiError(
        500,
        error instanceof MptError ? error.message : 'embedding failed',
        'server_error',
        null,
        'embedding_failed',
      );
    if (reason === 'shutdown')
      failed ??= new ApiError(503, 'the server is shutting down', 'server_error', null, 'shutting_down');
    if (reason === 'cancelled') failed ??= timeoutError(ctx.timeoutMs);
    if (--remaining > 0) return;
    clearTimeout(timer);
    try {
      if (failed) sendError(res, failed, ctx.headers);
      else sendJson(res, 200, responseOf(), ctx.headers);
    } finally {
      resolveDone();
    }
  };
  const seqs = ids.map((t) => new PooledSequence(t, d, ended));
  const base64 = r.encoding_format === 'base64';
  const responseOf = () => {
    const tokens = ids.reduce((a, t) => a + t.length, 0);
    return {
      object: 'list',
      data: seqs.map((s, index) => ({
        object: 'embedding',
        index,
        embedding: base64 ? littleEndianBase64(s.vector!) : Array.from(s.vector!),
      })),
      model: ctx.model.id,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
  };
  handles.push(...submitAll(ctx, seqs));
  ctx.metrics.promptTokens += ids.reduce((a, t) => a + t.length, 0);
  res.on('close', () => {
    if (!res.writableFinished) cancel('cancelled');
  });
  if (ctx.timeoutMs > 0) {
    timer = setTimeout(() => cancel('cancelled'), Math.max(0, ctx.timeoutMs - (performance.now() - receivedAt)));
    timer.unref();
  }
  ctx.track({ cancel, done });
  return done;
}
