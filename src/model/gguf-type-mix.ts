/**
 * Which ggml type each tensor of a converted file gets: one type for every matrix, or
 * llama-quantize's per-tensor mix for the q4_k_m / q5_k_m presets, with its fallbacks for rows
 * that are not whole blocks.
 */
import { GGML_TYPES, QUANTIZABLE_TYPES, type QuantizableType } from '../formats/ggml-quants.js';
import { byteLengthOf } from '../formats/ggml-types.js';
import type { DType, TensorInfo } from '../formats/tensor-source.js';
import type { MptConfig } from './config.js';
import { ggufTensorName } from './gguf-names.js';

/**
 * What `mpt convert` writes (1-D tensors always stay F32):
 * - a plain type (f32 … q6_k): every matrix in that type, as `llama-quantize --pure` does;
 * - a preset (q4_k_m, q5_k_m): llama-quantize's per-tensor mix for that file type, without
 *   `--pure` (see ggufTensorType).
 */
export type GgufOutType = QuantizableType | 'q4_k_m' | 'q5_k_m';
export const GGUF_OUT_TYPES: readonly GgufOutType[] = [...QUANTIZABLE_TYPES, 'q4_k_m', 'q5_k_m'];

/**
 * llama.cpp's `general.file_type` (`enum llama_ftype`) for each output type. q4_k and q5_k get
 * what llama-quantize writes when asked for "Q4_K" / "Q5_K" (aliases of the _M presets), even
 * with --pure; readers must take each tensor's own type (llama.cpp does).
 */
export const FILE_TYPE: Record<GgufOutType, number> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  bf16: 32,
  q4_k: 15,
  q5_k: 17,
  q6_k: 18,
  q4_k_m: 15,
  q5_k_m: 17,
};

const K_TYPES: ReadonlySet<DType> = new Set(['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k']);

/**
 * llama-quantize's fallback for a matrix whose rows do not split into the chosen type's blocks
 * (llama-quant.cpp): Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16 when even 32-value blocks
 * do not fit. The 32-block types fall back to F16 directly (this converter's rule for them).
 */
function fallbackType(type: DType, cols: number): DType {
  if (cols % GGML_TYPES[type].blockSize === 0) return type;
  const next: DType = type === 'q4_k' ? 'q5_0' : type === 'q5_k' ? 'q5_1' : type === 'q6_k' ? 'q8_0' : 'f16';
  return cols % GGML_TYPES[next].blockSize === 0 ? next : 'f16';
}

/** llama-quantize's `use_more_bits`: the first and last eighth of the layers, and every third between. */
function useMoreBits(layer: number, nLayers: number): boolean {
  const e = Math.floor(nLayers / 8);
  return layer < e || layer >= Math.floor((7 * nLayers) / 8) || (layer - e) % 3 === 2;
}

/**
 * The storage type of one tensor (llama.cpp name, GGUF dims {cols, rows, …}) in a file of
 * `out`. 1-D tensors: F32. Plain types: that type for every matrix, with llama-quantize's
 * fallback for rows that are not a whole number of blocks. Presets follow llama-quantize's
 * `llama_tensor_get_type` for the mpt architecture as of the llama.cpp build that made the
 * test fixtures (b4747): the output matrix — `token_embd` when the embedding is tied — Q6_K
 * (Q8_0 if its rows are not 256-multiples); `attn_qkv` Q5_K in q4_k_m, Q6_K in q5_k_m;
 * `ffn_down` Q6_K in the layers `use_more_bits` picks; everything else the preset's base type
 * (Q4_K / Q5_K); `position_embd` is never quantized by llama-quantize and stays F32.
 * (Later llama.cpp treats `attn_qkv` like `attn_v`: Q6_K in the `use_more_bits` layers, else
 * the base type. Both mixes load everywhere; this one matches the fixture files byte for byte.)
 */
export function ggufTensorType(
  out: GgufOutType,
  name: string,
  dims: readonly number[],
  c: MptConfig,
  hasOutputTensor: boolean,
): DType {
  if (dims.length < 2) return 'f32';
  const cols = dims[0]!;
  const preset = out === 'q4_k_m' || out === 'q5_k_m';
  if (name === 'position_embd.weight' && (preset || K_TYPES.has(out))) return 'f32';
  if (!preset) return fallbackType(out, cols);
  const base: DType = out === 'q4_k_m' ? 'q4_k' : 'q5_k';
  let t: DType = base;
  if (name === 'output.weight' || (!hasOutputTensor && name === 'token_embd.weight')) {
    t = cols % 256 !== 0 ? 'q8_0' : 'q6_k';
  } else if (name.endsWith('.attn_qkv.weight')) {
    t = out === 'q4_k_m' ? 'q5_k' : 'q6_k';
  } else if (name.endsWith('.ffn_down.weight')) {
    const layer = Number(/^blk\.(\d+)\./.exec(name)?.[1] ?? -1);
    if (layer >= 0 && useMoreBits(layer, c.nLayers)) t = 'q6_k';
  }
  return fallbackType(t, cols);
}

/** One tensor of a converted file: the checkpoint's tensor, its llama.cpp name, GGUF dims and type. */
export interface GgufTensorPlan {
  info: TensorInfo;
  /** llama.cpp's name, or undefined when its MPT architecture has no such tensor. */
  name: string | undefined;
  /** GGUF order, {cols, rows, …}. */
  dims: number[];
  dtype: DType;
  /** Bytes of the tensor's data in the file. */
  bytes: number;
}

/**
 * What a file of `out` holds for each tensor of a checkpoint, in `list`'s order: what `mpt convert`
 * writes and `mpt info --type` plans for. A head tied to the embedding is left out (llama.cpp
 * reuses token_embd when `output` is absent).
 */
export function ggufTensorPlan(list: readonly TensorInfo[], c: MptConfig, out: GgufOutType): GgufTensorPlan[] {
  const hasOutputTensor = !c.tieWordEmbeddings && list.some((t) => t.name === 'lm_head.weight');
  const plan: GgufTensorPlan[] = [];
  for (const info of list) {
    if (info.name === 'lm_head.weight' && c.tieWordEmbeddings) continue;
    const name = ggufTensorName(info.name);
    const dims = [...info.shape].reverse();
    const dtype = ggufTensorType(out, name ?? info.name, dims, c, hasOutputTensor);
    plan.push({
      info,
      name,
      dims,
      dtype,
      bytes: byteLengthOf(
        dtype,
        dims.reduce((a, b) => a * b, 1),
      ),
    });
  }
  return plan;
}
