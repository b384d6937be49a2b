/**
 * The memory planner (model/memory-plan.ts) applied to a checkpoint before it is loaded: the
 * weights as the chosen backend will hold them, the KV cache of the requested context and KV
 * type, and one prefill chunk of activations. A request that cannot fit is refused with a
 * MemoryPlanError that lists what would fit, instead of dying of an out-of-memory error in the
 * middle of a 65k-token prompt.
 */
import type { KvType } from '../backends/backend.js';
import { GGML_TYPES } from '../formats/ggml-quants.js';
import type { TensorInfo } from '../formats/tensor-source.js';
import type { MptConfig } from '../model/config.js';
import type { BackendName } from '../backends/registry.js';
import { openCheckpoint } from '../model/load.js';
import { assertFits, planMemory, type MemoryPlan } from '../model/memory-plan.js';

/** Types the wasm kernels compute on directly; other quantized matrices become q8_0 at load. */
const WASM_NATIVE = new Set(['f32', 'f16', 'bf16', 'q8_0', 'q4_0']);

/** Bytes of the weights once a backend has loaded them. */
export function loadedWeightBytes(tensors: readonly TensorInfo[], backend: BackendName): number {
  let bytes = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (backend === 'reference' || t.shape.length < 2)
      bytes += 4 * n; // the reference backend widens everything to f32
    else if (WASM_NATIVE.has(t.dtype)) bytes += t.byteLength;
    else bytes += (n / GGML_TYPES.q8_0.blockSize) * GGML_TYPES.q8_0.typeSize;
  }
  return bytes;
}

export interface ContextMemoryRequest {
  /** Context length (KV cache capacity) asked for. */
  ctx: number;
  kvType?: KvType;
  /** Prompt tokens per prefill chunk (default 512). */
  batchSize?: number;
  /** Sequences with a cache each (default 1). */
  sequences?: number;
  /** Default 'wasm'. */
  backend?: BackendName;
  /** Bytes available (default: 90% of the machine's memory). */
  availableBytes?: number;
}

/** Plans a request for a config and its tensors; throws MemoryPlanError when it does not fit. */
export function assertContextFits(
  config: MptConfig,
  tensors: readonly TensorInfo[],
  r: ContextMemoryRequest,
): MemoryPlan {
  const input = {
    config,
    weightBytes: loadedWeightBytes(tensors, r.backend ?? 'wasm'),
    ctx: r.ctx,
    kvType: r.kvType ?? 'f32',
    batchSize: r.batchSize,
    sequences: r.sequences,
    availableBytes: r.availableBytes,
  };
  const plan = planMemory(input);
  assertFits(plan, input);
  return plan;
}

/**
 * Opens a checkpoint (headers only), plans the request and throws MemoryPlanError when it does
 * not fit. `ctx` defaults to the model's max_seq_len (the context a model is loaded with).
 */
export async function checkContextMemory(
  path: string,
  r: Omit<ContextMemoryRequest, 'ctx'> & { ctx?: number },
): Promise<MemoryPlan> {
  const ck = await openCheckpoint(path);
  try {
    return assertContextFits(ck.config, ck.tensors.list(), { ...r, ctx: r.ctx ?? ck.config.maxSeqLen });
  } finally {
    await ck.tensors.close();
  }
}
