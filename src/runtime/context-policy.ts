/**
 * What happens when a sequence outgrows its context (KV cache capacity). The policy, as
 * documented for users:
 *
 *  - Generation (`mpt generate`, `generateWithContextPolicy`), `--context-overflow`:
 *      'stop' (default): generation ends with finish reason "length" when prompt + new tokens
 *        reach the context; a prompt longer than the context is an error that says how long it
 *        is and which context would hold it (ALiBi models can be given a larger `--ctx`).
 *      'shift': the first `keep` tokens (e.g. a system prompt or the title of a book) stay, the
 *        oldest half of the rest is dropped, and the window that remains is run through the
 *        model again (re-prefill, exact: no cached key of a dropped token survives), then
 *        generation goes on. A prompt longer than the context is shifted the same way before
 *        it starts. Repetition penalties only see the current window; a stop string that
 *        straddles a shift is not detected.
 *  - Chat (`mpt chat`, `ChatSession`): the oldest turns (a user message and the reply to it)
 *      are dropped, the system prompt is kept, and the conversation is re-rendered and
 *      re-prefilled from the first token that changed (`dropOldestTurns` is the rule).
 *
 * With ALiBi the context may exceed the trained max_seq_len (MPT-7B-StoryWriter was trained at
 * 65k and extrapolates past it); models with learned position embeddings cannot go past it.
 */
import type { KvCache, KvType, ModelRunner } from '../backends/backend.js';
import { InputError } from '../errors.js';
import type { ChatMessage } from './chat-template.js';
import {
  DEFAULT_MAX_TOKENS,
  GenerationStream,
  generateTokens,
  resolveContextLength,
  type GenerateOptions,
  type GenerateResult,
  type GenerationChunk,
  type RunGenerationOptions,
} from './generate.js';
import type { MptModel } from './model.js';

export type ContextOverflowPolicy = 'stop' | 'shift';

export const CONTEXT_OVERFLOW_POLICIES: readonly ContextOverflowPolicy[] = ['stop', 'shift'];

export interface ContextPolicyOptions {
  /** What to do when the context is full (default 'stop'). */
  overflow?: ContextOverflowPolicy;
  /** Tokens at the start that a shift never drops (default 0; at most half the context). */
  keep?: number;
  /** KV type of the cache created for the generation (default: the backend's, f32). */
  kvType?: KvType;
}

/** Checks a policy name from the command line. */
export function parseOverflowPolicy(name: string | undefined): ContextOverflowPolicy {
  if (name === undefined) return 'stop';
  if ((CONTEXT_OVERFLOW_POLICIES as readonly string[]).includes(name)) return name as ContextOverflowPolicy;
  throw new InputError(`--context-overflow must be ${CONTEXT_OVERFLOW_POLICIES.join(' or ')}, got "${name}"`);
}

/** The `keep` actually used for a context: at most half of it, so a shift always frees room. */
export function effectiveKeep(keep: number | undefined, contextLength: number): number {
  const k = keep ?? 0;
  if (!Number.isInteger(k) || k < 0) throw new InputError(`keep must be an integer >= 0, got ${k}`);
  return Math.min(k, Math.floor(contextLength / 2));
}

/**
 * The window a shift leaves of `ids` for a context of `contextLength`: the first `keep` ids,
 * then the newest ids, dropping the oldest half of the rest (as llama.cpp's context shift) so
 * that at least a quarter of the context is free for new tokens.
 */
export function shiftWindow(ids: readonly number[], contextLength: number, keep = 0): number[] {
  const k = effectiveKeep(keep, contextLength);
  if (ids.length < contextLength) return [...ids];
  const room = contextLength - k; // positions available after the kept prefix
  const tail = Math.max(1, Math.floor(room / 2));
  return [...ids.slice(0, k), ...ids.slice(ids.length - tail)];
}

/** The message for a generation that stopped because the context was full. */
export function contextFullMessage(contextLength: number, maxSeqLen: number, alibi: boolean): string {
  const more = alibi
    ? `ask for a larger --ctx (ALiBi extrapolates${contextLength < maxSeqLen ? `; trained at ${maxSeqLen}` : ''}) or use --context-overflow shift`
    : `use --context-overflow shift (this model cannot go past max_seq_len ${maxSeqLen})`;
  return `context full (${contextLength} tokens): generation stopped; ${more}`;
}

/**
 * Drops the oldest non-system turns until `fits(messages)` holds: a turn is a user message and
 * the assistant reply after it (or a lone message). System messages are kept. Returns the kept
 * messages and how many were dropped; throws when even the last turn alone does not fit.
 */
export function dropOldestTurns(
  messages: readonly ChatMessage[],
  fits: (m: readonly ChatMessage[]) => boolean,
): { messages: ChatMessage[]; dropped: number } {
  let msgs = [...messages];
  let dropped = 0;
  for (;;) {
    if (fits(msgs)) return { messages: msgs, dropped };
    const first = msgs.findIndex((m) => m.role !== 'system');
    const turns = first < 0 ? 0 : msgs.slice(first).filter((m) => m.role !== 'system').length;
    if (turns <= 1)
      throw new InputError('the last message alone does not fit the context: shorten it or ask for a larger context');
    let n = 1;
    if (msgs[first]!.role === 'user' && msgs[first + 1]?.role === 'assistant' && turns > 2) n = 2;
    msgs = [...msgs.slice(0, first), ...msgs.slice(first + n)];
    dropped += n;
  }
}

/** A generation's result with the number of context shifts it went through. */
export interface PolicyGenerateResult extends GenerateResult {
  /** Times the window was shifted (0 under 'stop'). */
  shifts: number;
  /** True when generation ended because the context was full ('stop' policy). */
  contextFull: boolean;
}

/**
 * `generateTokens` with a context overflow policy: the same chunks and result, but under
 * 'shift' generation goes on past a full context (see the file comment). `options.cache` may be
 * a cache already holding `options.cachedIds` (e.g. from a prompt cache file).
 */
export async function* generateWithContextPolicy(
  runner: ModelRunner,
  promptIds: readonly number[],
  options: RunGenerationOptions & ContextPolicyOptions = {},
): AsyncGenerator<GenerationChunk, PolicyGenerateResult, undefined> {
  const ctx = resolveContextLength(runner.config, options.contextLength);
  const policy = options.overflow ?? 'stop';
  const keep = effectiveKeep(options.keep, ctx);
  const maxTokens = options.maxTokens ?? DEFAULT_MAX_TOKENS;
  let window = [...promptIds];
  if (window.length > ctx) {
    if (policy !== 'shift') {
      throw new InputError(
        `the prompt has ${window.length} tokens, more than the context length ${ctx}: ${runner.config.attn.alibi ? 'ask for a larger --ctx (ALiBi extrapolates) or ' : ''}use --context-overflow shift`,
      );
    }
    window = shiftWindow(window, ctx, keep);
  }
  const ownCache = options.cache === undefined;
  const cache: KvCache = options.cache ?? runner.createCache({ capacity: ctx, kvType: options.kvType });
  let cachedIds: readonly number[] | undefined = options.cachedIds;
  const tokens: number[] = [];
  let text = '';
  let shifts = 0;
  let last: GenerateResult | undefined;
  let prefillMs = 0,
    decodeMs = 0;
  const started = performance.now();
  let finished = false;
  const final = (): PolicyGenerateResult => {
    const r = last;
    const finishReason = r?.finishReason ?? 'abort';
    const contextFull = policy === 'stop' && finishReason === 'length' && tokens.length < maxTokens;
    return {
      text,
      tokens: [...tokens],
      finishReason,
      usage: {
        promptTokens: promptIds.length,
        completionTokens: tokens.length,
        totalTokens: promptIds.length + tokens.length,
      },
      timings: {
        prefillMs,
        decodeMs,
        promptTokensPerSecond: prefillMs > 0 ? promptIds.length / (prefillMs / 1000) : NaN,
        tokensPerSecond: tokens.length > 1 && decodeMs > 0 ? (tokens.length - 1) / (decodeMs / 1000) : NaN,
      },
      seed: r?.seed ?? options.seed ?? 0,
      ...(r?.stoppedBy ? { stoppedBy: r.stoppedBy } : {}),
      shifts,
      contextFull,
    };
  };
  let it: AsyncGenerator<GenerationChunk, GenerateResult, undefined> | undefined;
  try {
    for (;;) {
      it = generateTokens(runner, window, {
        ...options,
        contextLength: ctx,
        maxTokens: maxTokens - tokens.length,
        // A fixed seed stays reproducible across shifts without replaying the same draws.
        seed: options.seed === undefined ? undefined : options.seed + shifts,
        cache,
        cachedIds,
        onFinish: undefined,
      });
      for (;;) {
        const step = await it.next();
        if (step.done) {
          last = step.value;
          break;
        }
        tokens.push(step.value.token);
        text += step.value.text;
        yield step.value;
      }
      if (shifts === 0) prefillMs = last.timings.prefillMs;
      decodeMs = performance.now() - started - prefillMs;
      if (policy !== 'shift' || last.finishReason !== 'length' || tokens.length >= maxTokens) break;
      // The context is full: keep the prefix and the newest half, re-prefill from the first change.
      const all = [...window, ...last.tokens];
      cachedIds = all.slice(0, cache.length);
      window = shiftWindow(all, ctx, keep);
      shifts++;
    }
    finished = true;
    const result = final();
    options.onFinish?.(result);
    return result;
  } finally {
    if (!finished) {
      await it?.return(undefined as never).catch(() => undefined);
      options.onFinish?.({ ...final(), finishReason: 'abort' });
    }
    if (ownCache) cache.dispose();
  }
}

/** `model.stream(ids, options)` with a context overflow policy and KV type. */
export function streamWithContextPolicy(
  model: MptModel,
  ids: readonly number[],
  options: GenerateOptions & ContextPolicyOptions & { cache?: KvCache; cachedIds?: readonly number[] } = {},
): GenerationStream {
  const tokenizer = model.hasTokenizer ? model.tokenizer : null;
  return new GenerationStream((onFinish) =>
    generateWithContextPolicy(model.runner, ids, {
      contextLength: model.contextLength,
      ...options,
      tokenizer,
      onFinish,
    }),
  );
}
