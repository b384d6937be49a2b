/**
 * POST /tokenize and POST /detokenize in llama-server's shapes:
 * `{"content": "...", "add_special": bool, "with_pieces": bool}` → `{"tokens": [...]}` (ids, or
 * `{"id", "piece"}` objects with with_pieces); `{"tokens": [...]}` → `{"content": "..."}`.
 * MPT's GPT-NeoX tokenizers add no BOS/EOS, so `add_special` changes nothing here.
 */
import type { ServerResponse } from 'node:http';
import * as z from 'zod';
import { badRequest } from './api-error.js';
import type { GenerationContext } from './generation-job.js';
import { requestSignal } from './generation-request.js';
import { tokenIds } from './list-schema.js';
import { parseBody } from './request-schema.js';
import { sendJson, sendJsonBytes, sendJsonInTurns, SlicedArray } from './respond.js';

const TokenizeRequest = z.strictObject({
  content: z.string(),
  add_special: z.boolean().optional(),
  parse_special: z.boolean().optional(),
  with_pieces: z.boolean().optional(),
});

const DetokenizeRequest = z.strictObject({ tokens: tokenIds() });

export async function handleTokenize(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const r = parseBody(TokenizeRequest, body);
  const watch = requestSignal(ctx, res, performance.now());
  try {
    const ids = await ctx.prompts.encode(r.content, watch.signal);
    if (!r.with_pieces) return sendJson(res, 200, { tokens: ids }, ctx.headers);
    const pieces = await ctx.prompts.pieces(ids, watch.signal);
    // 200,000 {id, piece} objects: made and written a turn of the event loop at a time.
    const tokens = new SlicedArray(ids.length, (i) => ({ id: ids[i]!, piece: pieces[i]! }), {
      perTurn: 4096,
    });
    await sendJsonInTurns(res, 200, { tokens }, ctx.headers);
  } finally {
    watch.release();
  }
}

/** The detokenize answer's JSON around its text: {"content": …}. */
const CONTENT_OPEN = Buffer.from('{"content":');
const CONTENT_CLOSE = Buffer.from('}');

export async function handleDetokenize(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const r = parseBody(DetokenizeRequest, body);
  const limit = ctx.model.vocabLimit;
  let bad = 0;
  while (bad < r.tokens.length && r.tokens[bad]! < limit) bad++;
  if (bad < r.tokens.length) {
    throw badRequest(
      `Invalid 'tokens[${bad}]': token id ${r.tokens[bad]} is outside the vocabulary (0..${limit - 1}).`,
      `tokens[${bad}]`,
      'invalid_value',
    );
  }
  const watch = requestSignal(ctx, res, performance.now());
  try {
    // The text's JSON is made off the event loop: as much work as decoding it, for a megabyte.
    const content = await ctx.prompts.decodeJson(r.tokens, watch.signal);
    sendJsonBytes(res, 200, [CONTENT_OPEN, content, CONTENT_CLOSE], ctx.headers);
  } finally {
    watch.release();
  }
}
