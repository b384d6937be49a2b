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
import { parseBody } from './request-schema.js';
import { sendJson } from './respond.js';

const TokenizeRequest = z.strictObject({
  content: z.string(),
  add_special: z.boolean().optional(),
  parse_special: z.boolean().optional(),
  with_pieces: z.boolean().optional(),
});

const DetokenizeRequest = z.strictObject({ tokens: z.array(z.number().int().min(0)) });

export async function handleTokenize(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const r = parseBody(TokenizeRequest, body);
  const ids = await ctx.encoder.encode(r.content);
  const tok = ctx.model.tokenizer;
  const tokens = r.with_pieces ? ids.map((id) => ({ id, piece: tok.decode([id]) })) : ids;
  sendJson(res, 200, { tokens }, ctx.headers);
}

export function handleDetokenize(ctx: GenerationContext, body: unknown, res: ServerResponse): void {
  const r = parseBody(DetokenizeRequest, body);
  const limit = ctx.model.vocabLimit;
  const bad = r.tokens.findIndex((t) => t >= limit);
  if (bad >= 0) {
    throw badRequest(
      `Invalid 'tokens[${bad}]': token id ${r.tokens[bad]} is outside the vocabulary (0..${limit - 1}).`,
      `tokens[${bad}]`,
      'invalid_value',
    );
  }
  sendJson(res, 200, { content: ctx.model.tokenizer.decode(r.tokens) }, ctx.headers);
}
