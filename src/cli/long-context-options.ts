/**
 * The long-context options of `mpt generate`: KV cache type, prefill chunk size, prompt cache
 * file, context overflow policy, and the memory check that refuses (with what would fit) a
 * context the machine cannot hold, before any weight is loaded.
 */
import type { KvType } from '../backends/backend.js';
import { InputError } from '../errors.js';
import { defaultModelPath } from '../model/default-model.js';
import type { MemoryPlan } from '../model/memory-plan.js';
import {
  contextFullMessage,
  parseOverflowPolicy,
  streamWithContextPolicy,
  type ContextOverflowPolicy,
  type PolicyGenerateResult,
} from '../runtime/context-policy.js';
import type { GenerateOptions, GenerateResult, GenerationStream } from '../runtime/generate.js';
import { checkContextMemory } from '../runtime/memory-check.js';
import { resolveBackendName, type MptModel } from '../runtime/model.js';
import { streamWithPromptCache } from '../runtime/prompt-cache.js';
import type { OptionSpec, ParsedArgs } from './args.js';

export const LONG_CONTEXT_OPTIONS: Record<string, OptionSpec> = {
  'kv-type': { type: 'string' },
  'batch-size': { type: 'number', short: 'b' },
  'prompt-cache': { type: 'string' },
  'context-overflow': { type: 'string' },
  keep: { type: 'number' },
};

export const LONG_CONTEXT_HELP = `long context:
      --kv-type T           KV cache type: f32 (default), f16, q8_0 (f16 halves the cache, q8_0 ~quarters it)
  -b, --batch-size N        prompt tokens per forward pass while reading the prompt (default 512;
                            llama.cpp's -b; mpt finetune's --batch-size counts examples instead)
      --prompt-cache FILE   reuse the prompt's KV cache from FILE (same model, KV type and
                            prompt prefix; otherwise refused); FILE is written after the prompt
                            when it does not exist (delete it to rebuild)
      --context-overflow P  when prompt + output fill the context: stop (default: finish
                            "length") or shift (keep the first --keep tokens, drop the oldest
                            half of the rest, re-read the window, go on)
      --keep N              tokens at the start that a shift keeps (default 0)
Before loading, the memory needed for --ctx (weights + KV cache + activations) is checked;
a context that does not fit is refused with the options that would.`;

export interface LongContextArgs {
  kvType?: KvType;
  batchSize: number;
  promptCache?: string;
  overflow: ContextOverflowPolicy;
  keep: number;
}

export function parseLongContextArgs(o: ParsedArgs['options']): LongContextArgs {
  const kv = o['kv-type'] as string | undefined;
  if (kv !== undefined && !['f32', 'f16', 'q8_0'].includes(kv))
    throw new InputError(`--kv-type must be f32, f16 or q8_0, got "${kv}"`);
  const batch = (o['batch-size'] as number | undefined) ?? 512;
  if (!Number.isInteger(batch) || batch < 1)
    throw new InputError(`--batch-size must be a positive integer, got ${batch}`);
  const keep = (o['keep'] as number | undefined) ?? 0;
  if (!Number.isInteger(keep) || keep < 0) throw new InputError(`--keep must be an integer >= 0, got ${keep}`);
  return {
    kvType: kv as KvType | undefined,
    batchSize: batch,
    promptCache: o['prompt-cache'] as string | undefined,
    overflow: parseOverflowPolicy(o['context-overflow'] as string | undefined),
    keep,
  };
}

/** The memory check for `--ctx` (default max_seq_len) before loading; throws MemoryPlanError. */
export async function checkLongContextMemory(
  modelPath: string | undefined,
  o: ParsedArgs['options'],
  lc: LongContextArgs,
): Promise<MemoryPlan> {
  const b = o['backend'];
  const backend = await resolveBackendName(b === 'wasm' || b === 'reference' ? b : undefined);
  return checkContextMemory(modelPath ?? defaultModelPath(), {
    ctx: o['ctx'] as number | undefined,
    kvType: lc.kvType,
    batchSize: lc.batchSize,
    backend,
  });
}

/** Streams a generation with the long-context options. */
export async function streamLongContext(
  model: MptModel,
  ids: readonly number[],
  gen: GenerateOptions,
  lc: LongContextArgs,
  onNote: (m: string) => void,
): Promise<GenerationStream> {
  const options = { ...gen, prefillChunk: lc.batchSize, kvType: lc.kvType, overflow: lc.overflow, keep: lc.keep };
  if (lc.promptCache !== undefined)
    return streamWithPromptCache(model, ids, options, { file: lc.promptCache, batchSize: lc.batchSize, onNote });
  return streamWithContextPolicy(model, ids, options);
}

/** A line for stderr when the context ended or reshaped the generation, else undefined. */
export function longContextNote(model: MptModel, result: GenerateResult): string | undefined {
  const r = result as Partial<PolicyGenerateResult>;
  if (r.contextFull) return contextFullMessage(model.contextLength, model.config.maxSeqLen, model.config.attn.alibi);
  if (r.shifts) return `context full ${r.shifts} time(s): shifted the window and went on`;
  return undefined;
}
