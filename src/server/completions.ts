/**
 * POST /v1/completions: prompts as texts or token ids, n choices each, echo (with the prompt's
 * logprobs when asked), the answer as OpenAI's text_completion object or its stream of chunks.
 * The job both endpoints run is generation-job.ts; chat is chat-completions.ts.
 */
import type { ServerResponse } from 'node:http';
import { badRequest } from './api-error.js';
import {
  answerWhenDone,
  Job,
  startJob,
  type ChoiceState,
  type GenerationContext,
  type Plan,
} from './generation-job.js';
import type { JsonGrammar } from './constrain/json-constraint.js';
import {
  checkGenerationRequest,
  contextBoundError,
  contextError,
  encodePrompts,
  parseModelRequest,
  requestSignal,
} from './generation-request.js';
import { checkGrammarFits, grammarOf } from './grammar.js';
import {
  chunkMaker,
  completionLogprobs,
  decodedLength,
  responseBody,
  responseIdentity,
  usageOf,
} from './openai-format.js';
import { CompletionRequest } from './request-schema.js';
import { SlicedArray } from './respond.js';
import { SseWriter } from './sse.js';

export async function handleCompletion(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const receivedAt = performance.now();
  const r = parseModelRequest(ctx, CompletionRequest, body);
  checkGenerationRequest(ctx, r);
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
  const texts: (string | null)[] = given.map((g) => (typeof g === 'string' ? g : null));
  let grammar: JsonGrammar | null;
  let prompts: number[][];
  const watch = requestSignal(ctx, res, receivedAt);
  try {
    for (const [i, g] of texts.entries()) {
      const least = g === null ? 0 : await ctx.prompts.leastTokens(g, watch.signal);
      if (least + asked > C) throw contextBoundError(C, least, asked, 'prompt', paramOf(i));
    }
    grammar = await grammarOf(ctx, r);
    const encoded =
      typeof given[0] === 'string'
        ? await encodePrompts(ctx, given as string[], C - asked, watch.signal)
        : (given as number[][]).map((ids) => ({ count: ids.length, ids }));
    // A prompt too long for the context is refused with its length alone (its ids were not kept).
    encoded.forEach((e, i) => {
      if (e.count === 0) throw badRequest(`Invalid '${paramOf(i)}': the prompt is empty.`, paramOf(i), 'invalid_value');
      if (e.ids === null) throw contextError(C, e.count, asked, 'prompt');
    });
    prompts = encoded.map((e) => e.ids!);
  } finally {
    watch.release();
  }
  prompts.forEach((ids, i) => {
    const param = paramOf(i);
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
      top_logprobs: SlicedArray.concat(head.top_logprobs, tail.top_logprobs),
      text_offset: [...head.text_offset, ...tail.text_offset],
    };
  };
  const who = responseIdentity(ctx, 'cmpl');
  const total = prompts.length * n;

  if (!plan.stream) {
    return answerWhenDone(ctx, plan, res, receivedAt, total, (j) =>
      responseBody(
        who,
        'text_completion',
        new SlicedArray(
          j.choices.length,
          (index) => {
            const c = j.choices[index]!;
            return {
              text: echoText(index) + c.text,
              index,
              logprobs:
                plan.logprobs === null
                  ? null
                  : echoLogprobs
                    ? echoedLogprobs(index, c)
                    : completionLogprobs(ctx, c.logprobs, 0),
              finish_reason: c.finish ?? 'stop',
            };
          },
          { nested: true },
        ),
        { usage: usageOf(plan, j) },
      ),
    );
  }

  const sse = new SseWriter(res, ctx.headers);
  const chunk = chunkMaker(who, 'text_completion', plan.includeUsage);
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
  return startJob(ctx, plan, res, job, () => {
    sse.start();
    if (r.echo && !echoLogprobs)
      for (let index = 0; index < total; index++)
        sse.send(chunk([{ text: echoText(index), index, logprobs: null, finish_reason: null }]));
  });
}
