// k-quant weight matrices for kernel tests: realistic blocks from ggml's quantizer next to random
// bytes that reach every bit pattern of quants, 6-bit scales / mins and q5_K high bits.
import { quantize } from '../../src/formats/ggml-quants.js';
import { f32ToF16 } from '../../src/formats/dtypes.js';
import { rand } from './wasm-heap.js';

export const KQUANT_BLOCK_BYTES = { q4_k: 144, q5_k: 176, q6_k: 210 } as const;
export type KDtype = keyof typeof KQUANT_BLOCK_BYTES;

/**
 * N×K weights: the first rows from ggml's quantizer (realistic scales), the rest random bytes
 * (every bit pattern of quants, 6-bit scales / mins and q5_K high bits) with sane fp16 factors.
 */
export function kquantWeights(dtype: KDtype, N: number, K: number, seed: number): Uint8Array {
  const bs = KQUANT_BLOCK_BYTES[dtype],
    nb = K / 256;
  const half = Math.ceil(N / 2);
  const out = new Uint8Array(N * nb * bs);
  out.set(quantize(dtype, rand(half * K, seed, 0.7)));
  const noise = rand(N * nb * bs, seed + 1);
  const dv = new DataView(out.buffer);
  for (let i = half * nb * bs; i < out.length; i++) out[i] = Math.floor((noise[i]! + 1) * 128) & 255;
  for (let b = half * nb; b < N * nb; b++) {
    const o = b * bs;
    if (dtype === 'q6_k') {
      dv.setUint16(o + 208, f32ToF16(0.002 + 0.001 * (b % 3)), true);
    } else {
      dv.setUint16(o, f32ToF16(0.004 + 0.001 * (b % 5)), true);
      dv.setUint16(o + 2, f32ToF16(0.003 + 0.0005 * (b % 7)), true);
    }
  }
  return out;
}
