/**
 * OpenAI's response objects: ids, the fields every response and chunk carries, usage, and the
 * logprobs objects of both endpoints (token texts decoded once per tokenizer).
 */
import { randomBytes } from 'node:crypto';
import type { MptTokenizer } from '../runtime/tokenizer.js';
import type { GenerationContext, Job, Plan } from './generation-job.js';
import { SlicedArray } from './respond.js';
import type { TokenLogprobInfo } from './sequence.js';

function newId(prefix: string): string {
  return `${prefix}-${randomBytes(12).toString('base64url')}`;
}

const tokenTexts = new WeakMap<MptTokenizer, (string | undefined)[]>();

/**
 * The text of one token, as logprobs show it, decoded once per tokenizer: a response with echoed
 * prompts' logprobs names up to 128 × context × 6 tokens.
 */
export function tokenText(tok: MptTokenizer, id: number): string {
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
export function finite(x: number): number {
  return Number.isFinite(x) ? x : -9999;
}

/** Who answers: the fields every response object and stream chunk of one request carries. */
export interface ResponseIdentity {
  id: string;
  created: number;
  model: string;
  fingerprint: string;
}

export function responseIdentity(ctx: GenerationContext, idPrefix: string): ResponseIdentity {
  return {
    id: newId(idPrefix),
    created: Math.floor(Date.now() / 1000),
    model: ctx.model.id,
    fingerprint: `mpt-ts-${ctx.model.runner.backendName}`,
  };
}

/** A response object or stream chunk, in OpenAI's field order. */
export function responseBody(
  who: ResponseIdentity,
  object: string,
  choices: unknown[] | SlicedArray,
  rest: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    id: who.id,
    object,
    created: who.created,
    model: who.model,
    system_fingerprint: who.fingerprint,
    choices,
    ...rest,
  };
}

/** A stream's chunk maker: `usage` is present (null until the last chunk) when the client asked for it. */
export function chunkMaker(who: ResponseIdentity, object: string, includeUsage: boolean) {
  return (choices: unknown[], usage?: unknown) =>
    responseBody(who, object, choices, includeUsage ? { usage: usage ?? null } : {});
}

export function usageOf(plan: Plan, job: Job) {
  const prompt = plan.prompts.reduce((a, p) => a + p.length, 0);
  const completion = job.completionTokens;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

export function chatLogprobs(ctx: GenerationContext, list: TokenLogprobInfo[]) {
  const tok = ctx.model.tokenizer;
  const entry = (id: number, logprob: number) => {
    const token = tokenText(tok, id);
    const bytes = Array.from(tok.isByteLevel ? tok.tokenBytes(id) : new TextEncoder().encode(token));
    return { token, logprob: finite(logprob), bytes };
  };
  return {
    // Made as the answer is written: 64 choices × 20 alternatives per token are megabytes.
    content: new SlicedArray(list.length, (i) => {
      const l = list[i]!;
      return { ...entry(l.token, l.logprob), top_logprobs: l.top.map((t) => entry(t.token, t.logprob)) };
    }),
    refusal: null,
  };
}

/**
 * OpenAI's completion logprobs object. With `firstPromptToken` (echo), the entries start with the
 * prompt's first token, which has no log probability (null, as OpenAI gives it).
 */
export function completionLogprobs(
  ctx: GenerationContext,
  list: TokenLogprobInfo[],
  offset0: number,
  firstPromptToken?: number,
) {
  const tok = ctx.model.tokenizer;
  let offset = offset0;
  const tokens: string[] = [];
  const tokenLogprobs: (number | null)[] = [];
  const textOffset: number[] = [];
  if (firstPromptToken !== undefined) {
    const s = tokenText(tok, firstPromptToken);
    tokens.push(s);
    tokenLogprobs.push(null);
    textOffset.push(offset);
    offset += s.length;
  }
  for (const l of list) {
    const s = tokenText(tok, l.token);
    tokens.push(s);
    tokenLogprobs.push(finite(l.logprob));
    textOffset.push(offset);
    offset += s.length;
  }
  const skip = firstPromptToken === undefined ? 0 : 1;
  // Made as the answer is written: an echoed prompt's alternatives are 128 × context × 5 entries.
  const top = new SlicedArray(list.length + skip, (i): Record<string, number> | null => {
    if (i < skip) return null;
    const d: Record<string, number> = {};
    for (const t of list[i - skip]!.top) {
      const k = tokenText(tok, t.token);
      if (!(k in d)) d[k] = finite(t.logprob);
    }
    return d;
  });
  return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: textOffset };
}

/** The decoded length of a prompt's tokens (where generated tokens' text_offset starts with echo). */
export function decodedLength(ctx: GenerationContext, ids: readonly number[]): number {
  let n = 0;
  for (const id of ids) n += tokenText(ctx.model.tokenizer, id).length;
  return n;
}
