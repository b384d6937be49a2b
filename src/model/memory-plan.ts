/**
 * The memory planner: before anything is allocated, add up weights + KV cache + activations for
 * the requested context and refuse, with the options that would fit, what the machine cannot
 * hold (instead of dying with an out-of-memory error halfway through a 65k-token prompt).
 */
import { MemoryPlanError } from '../errors.js';
import { GGML_TYPES, paddedByteLengthOf } from '../formats/ggml-types.js';
import { platform } from '../platform/index.js';
import type { MptConfig } from './config.js';
import { mptFacts } from './facts.js';

/** Storage type of a KV cache (its bytes per element are below, in kvBytesPerElement). */
export type KvType = 'f32' | 'f16' | 'q8_0';

export interface MemoryPlanInput {
  config: MptConfig;
  /** Bytes of the weights as the backend will hold them. */
  weightBytes: number;
  ctx: number;
  kvType: KvType;
  /** Tokens per prefill chunk (ubatch). */
  batchSize?: number;
  /** Sequences decoded together (server slots). */
  sequences?: number;
  /** Bytes available; default: total RAM minus 10% for the OS and Node itself. */
  availableBytes?: number;
}

export interface MemoryPlan {
  weightBytes: number;
  kvBytes: number;
  activationBytes: number;
  overheadBytes: number;
  totalBytes: number;
  availableBytes: number;
  fits: boolean;
  /** Largest context that fits with this KV type (0 when even the weights do not fit). */
  maxCtxThatFits: number;
  kvType: KvType;
  ctx: number;
}

export function kvBytesPerElement(t: KvType): number {
  return t === 'f32' ? 4 : t === 'f16' ? 2 : GGML_TYPES.q8_0.typeSize / GGML_TYPES.q8_0.blockSize;
}

/** Bytes of one position's keys (or values) in one layer: q8_0 blocks of 32 along the row, the last one possibly short. */
export function kvRowBytes(c: MptConfig, kvType: KvType): number {
  const kvd = mptFacts(c).kvDim;
  return kvType === 'q8_0' ? paddedByteLengthOf('q8_0', kvd) : kvd * kvBytesPerElement(kvType);
}

export function kvCacheBytes(c: MptConfig, ctx: number, kvType: KvType, sequences = 1): number {
  return 2 * c.nLayers * ctx * kvRowBytes(c, kvType) * sequences;
}

/** Activations of one prefill chunk: residual stream, qkv, MLP hidden, attention tiles, one logits row. */
export function activationBytes(c: MptConfig, batchSize: number): number {
  const d = c.dModel;
  const perToken = 4 * (4 * d + mptFacts(c).qkvDim + 2 * c.ffn.hiddenSize);
  const tiles = 4 * c.nHeads * 64 * 64 * 4;
  return batchSize * perToken + tiles + 4 * c.vocabSize * 2;
}

const NODE_OVERHEAD = 150 * 2 ** 20;

export function planMemory(input: MemoryPlanInput): MemoryPlan {
  const c = input.config;
  const batch = input.batchSize ?? 512;
  const seqs = input.sequences ?? 1;
  // A browser does not say how much memory the machine has: no limit from here.
  const available = input.availableBytes ?? Math.floor((platform.totalMemory() ?? Infinity) * 0.9);
  const kvBytes = kvCacheBytes(c, input.ctx, input.kvType, seqs);
  const act = activationBytes(c, Math.min(batch, input.ctx));
  const total = input.weightBytes + kvBytes + act + NODE_OVERHEAD;
  const perPos = kvCacheBytes(c, 1, input.kvType, seqs);
  const room = available - input.weightBytes - act - NODE_OVERHEAD;
  const maxCtx = room > 0 ? Math.floor(room / perPos) : 0;
  return {
    weightBytes: input.weightBytes,
    kvBytes,
    activationBytes: act,
    overheadBytes: NODE_OVERHEAD,
    totalBytes: total,
    availableBytes: available,
    fits: total <= available,
    maxCtxThatFits: maxCtx,
    kvType: input.kvType,
    ctx: input.ctx,
  };
}

export function formatBytes(n: number): string {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(1)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toFixed(1)} KiB`;
  return `${n} B`;
}

/** Throws MemoryPlanError with the options that would fit when the plan does not. */
export function assertFits(plan: MemoryPlan, input: MemoryPlanInput): void {
  if (plan.fits) return;
  const hints: string[] = [];
  for (const t of ['f16', 'q8_0'] as KvType[]) {
    if (kvBytesPerElement(t) >= kvBytesPerElement(plan.kvType)) continue;
    const p = planMemory({ ...input, kvType: t });
    if (p.fits) hints.push(`--kv-type ${t} (needs ${formatBytes(p.totalBytes)})`);
  }
  if (plan.maxCtxThatFits > 0) hints.push(`--ctx ${plan.maxCtxThatFits} or less with --kv-type ${plan.kvType}`);
  if (plan.maxCtxThatFits <= 0) hints.push('a smaller weight type (mpt quantize --type q4_0 or q8_0)');
  throw new MemoryPlanError(
    `not enough memory for context ${plan.ctx}: weights ${formatBytes(plan.weightBytes)} + KV cache (${plan.kvType}) ${formatBytes(plan.kvBytes)} + activations ${formatBytes(plan.activationBytes)} = ${formatBytes(plan.totalBytes)}, but only ${formatBytes(plan.availableBytes)} is available. ` +
      (hints.length
        ? `Options that fit: ${hints.join('; ')}.`
        : 'Nothing smaller fits: use a machine with more memory.'),
  );
}
