/**
 * POST /v1/chat/completions: messages rendered through the model's chat format (oldest turns
 * dropped when asked and needed), tool calls and response formats as grammars, the answer as
 * OpenAI's chat.completion object or its stream of chunks.
 */
import type { ServerResponse } from 'node:http';
import { InputError } from '../errors.js';
import { badRequest } from './api-error.js';
import { answerWhenDone, Job, startJob, type GenerationContext, type Plan } from './generation-job.js';
import {
  checkGenerationRequest,
  contextBoundError,
  contextError,
  parseModelRequest,
  requestSignal,
} from './generation-request.js';
import { checkGrammarFits, grammarOf, toolGrammarOf } from './grammar.js';
import { chatLogprobs, chunkMaker, responseBody, responseIdentity, usageOf } from './openai-format.js';
import type { Conversation, Encoded } from './prompt-worker.js';
import { ChatRequest, checkRefusedChatFields } from './request-schema.js';
import { SlicedArray } from './respond.js';
import { SseWriter } from './sse.js';
import { parseToolCall, renderToolCall } from './tools.js';

function messageText(content: ChatRequest['messages'][number]['content']): string {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  return content.map((p) => p.text).join('');
}

type ChatMessage = ChatRequest['messages'][number];
type PlainMessage = { role: string; content: string };

/** The request's messages as the chat format takes them: a role and a text. */
function plainMessages(list: readonly ChatMessage[]): PlainMessage[] {
  // A past tool call is rendered as the JSON the model writes for one (tools.ts); a tool's
  // result as a turn of role "tool" (ChatML: <|im_start|>tool\n…<|im_end|>).
  return list.map((m) => ({
    role: m.role === 'developer' ? 'system' : m.role,
    content: [messageText(m.content), ...(m.tool_calls ?? []).map(renderToolCall)].filter((t) => t !== '').join('\n'),
  }));
}

/**
 * Runs `probe` (a render of the conversation, then its bound or its ids): an error of the chat
 * format (a template's own refusal, its work budget) is the request's, a 400 on 'messages'.
 */
async function rendered<T>(probe: Promise<T>): Promise<T> {
  try {
    return await probe;
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    throw badRequest(`Invalid 'messages': ${e.message}`, 'messages', 'invalid_value');
  }
}

/** What building a chat prompt takes: the request's messages and max_tokens (null: not given). */
interface PromptAsk {
  ctx: GenerationContext;
  /** Aborts when the request's time runs out or its client leaves. */
  signal: AbortSignal;
  list: readonly ChatMessage[];
  asked: number | null;
}

/** The prompt's tokens and the completion's token limit. */
interface ChatPrompt {
  prompt: number[];
  maxTokens: number;
}

/** The whole conversation as the prompt; an explicit max_tokens that does not fit is a 400 (as OpenAI gives). */
async function fullPrompt(p: PromptAsk, conv: Conversation): Promise<ChatPrompt> {
  const { ctx, signal, asked } = p;
  const C = ctx.model.contextLength;
  const least = await rendered(conv.leastTokens(0, signal));
  if (least >= C || (asked != null && least + asked > C)) {
    throw contextBoundError(C, least, asked, 'messages', 'messages');
  }
  const { count, ids: prompt } = await rendered(conv.encodeUpTo(0, C - 1, signal));
  if (count === 0) throw badRequest("Invalid 'messages': the rendered prompt is empty.", 'messages', 'invalid_value');
  if (prompt === null || (asked != null && count + asked > C)) throw contextError(C, count, asked ?? 1, 'messages');
  return { prompt, maxTokens: asked ?? C - count };
}

/**
 * The smallest d in [lo, hi] for which `fits(d)` holds (hi when none does): lo first (a
 * conversation that fits costs one try), then lo + 1, lo + 3, lo + 7, ... until one fits, then
 * bisection below it, so about 2 log2(d - lo) tries. Assumes that fitting, once reached, holds for
 * every larger d; where a template breaks that, the answer still fits or is hi, only perhaps not
 * the smallest.
 */
async function fewestDrops(lo: number, hi: number, fits: (d: number) => Promise<boolean>): Promise<number> {
  let low = lo;
  let high = hi;
  for (let step = 0; low < high; step = 2 * step + 1) {
    const probe = Math.min(lo + step, high);
    if (await fits(probe)) {
      high = probe;
      break;
    }
    low = probe + 1;
  }
  while (low < high) {
    const mid = (low + high) >>> 1;
    if (await fits(mid)) high = mid;
    else low = mid + 1;
  }
  return high;
}

/**
 * `truncate: "oldest_turns"`: drops the fewest oldest messages after the leading system messages
 * so that the prompt leaves room for the reply (max_tokens, at most half the context), then caps
 * max_tokens at what the context has left. The latest message is always kept.
 *
 * Dropping a turn only removes text, so the prompt's length falls as more are dropped and the
 * fewest drops that fit are found by a doubling search: one render and one tokenizing when the
 * whole conversation fits, about 2 log2(drops) of each otherwise, a Jinja template's renders (and
 * a long conversation's) in the prompt worker, which is sent the messages once and keeps the texts
 * (each probe sends and receives a few numbers, not a megabyte each way). (Dropping one at a time rendered up to 2,048 conversations: 26-39 s of
 * MPT-7B-Chat's template on the server's main thread for one request at the body limit.)
 */
async function truncatedPrompt(p: PromptAsk, conv: Conversation, system: number): Promise<ChatPrompt> {
  const { ctx, signal, list, asked } = p;
  const C = ctx.model.contextLength;
  const reserve = Math.min(asked ?? C, Math.floor(C / 2));
  const most = list.length - system - 1;
  // Ids only of prompts shorter than the context: the others are probes that do not fit.
  const prompts = new Map<number, Encoded>();
  const promptAfter = async (drops: number): Promise<Encoded> => {
    let prompt = prompts.get(drops);
    if (prompt === undefined) {
      prompt = await rendered(conv.encodeUpTo(drops, C - 1, signal));
      prompts.set(drops, prompt);
    }
    return prompt;
  };
  // Cheaply first: the drops that the conversation's length alone shows are needed (no tokenizing).
  const least = await fewestDrops(0, most, async (d) => (await rendered(conv.leastTokens(d, signal))) + reserve <= C);
  const drops = await fewestDrops(least, most, async (d) => (await promptAfter(d)).count + reserve <= C);
  const { count, ids: prompt } = await promptAfter(drops);
  if (count === 0) throw badRequest("Invalid 'messages': the rendered prompt is empty.", 'messages', 'invalid_value');
  if (prompt === null) throw contextError(C, count, 1, 'messages');
  return { prompt, maxTokens: Math.min(asked ?? C, C - count) };
}

export async function handleChat(ctx: GenerationContext, body: unknown, res: ServerResponse): Promise<void> {
  const receivedAt = performance.now();
  const r = parseModelRequest(ctx, ChatRequest, body);
  checkRefusedChatFields(r);
  checkGenerationRequest(ctx, r);
  if (r.top_logprobs !== undefined && r.top_logprobs !== null && r.top_logprobs > 0 && !r.logprobs) {
    throw badRequest(
      "Invalid value for 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is set.",
      'top_logprobs',
      'invalid_value',
    );
  }
  const asked = r.max_completion_tokens ?? r.max_tokens;
  const toolGrammar = await toolGrammarOf(ctx, r);
  const grammar = toolGrammar ?? (await grammarOf(ctx, r));
  const watch = requestSignal(ctx, res, receivedAt);
  let chatPrompt: ChatPrompt;
  try {
    const list = r.messages;
    const ask: PromptAsk = { ctx, signal: watch.signal, list, asked: asked ?? null };
    // The leading system messages are kept by a truncation.
    let system = 0;
    while (system < list.length - 1 && (list[system]!.role === 'system' || list[system]!.role === 'developer'))
      system++;
    const conv = ctx.prompts.conversation(plainMessages(list), system);
    try {
      chatPrompt =
        r.truncate === 'oldest_turns' ? await truncatedPrompt(ask, conv, system) : await fullPrompt(ask, conv);
    } finally {
      conv.release();
    }
  } finally {
    watch.release();
  }
  const { prompt, maxTokens } = chatPrompt;
  checkGrammarFits(grammar, maxTokens, asked != null ? `max_tokens ${asked}` : 'the rest of the context');
  const n = r.n ?? 1;
  // A choice's text is a call when tools are in use; one cut short by max_tokens stays text.
  const callOf = (c: Job['choices'][number]) => (toolGrammar && c.finish !== 'length' ? parseToolCall(c.text) : null);
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
  const who = responseIdentity(ctx, 'chatcmpl');

  if (!plan.stream) {
    return answerWhenDone(ctx, plan, res, receivedAt, n, (j) =>
      responseBody(
        who,
        'chat.completion',
        new SlicedArray(
          j.choices.length,
          (index) => {
            const c = j.choices[index]!;
            const call = callOf(c);
            return {
              index,
              message: call
                ? { role: 'assistant', content: null, refusal: null, tool_calls: [call] }
                : { role: 'assistant', content: c.text, refusal: null },
              logprobs: plan.logprobs === null ? null : chatLogprobs(ctx, c.logprobs),
              finish_reason: call ? 'tool_calls' : (c.finish ?? 'stop'),
            };
          },
          { nested: true },
        ),
        { usage: usageOf(plan, j) },
      ),
    );
  }

  const sse = new SseWriter(res, ctx.headers);
  const chunk = chunkMaker(who, 'chat.completion.chunk', plan.includeUsage);
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
  return startJob(ctx, plan, res, job, () => {
    // The role comes first, in a chunk of its own per choice, as OpenAI sends it.
    for (let index = 0; index < n; index++)
      sse.send(
        chunk([
          { index, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null },
        ]),
      );
  });
}
