/**
 * q4_0 and q8_0 products through the kernels of one Heap, for comparing kernel builds across engines
 * (test/web-dot-add.test.ts runs them in Chromium, on whatever build the tab chose, and in Node on
 * the relaxed build): the x4 prompt tiles (q4_0: 8-token tiles, q8_0: 16 and 8; leftover tokens),
 * the 4-row x4 products and the decode rows, at shapes with leftover plain weight rows. Nothing of
 * Node here.
 */
import { actQ8Bytes } from '../../src/backends/wasm/kernels.js';
import { repackX4 } from '../../src/backends/wasm/repack.js';
import { quantize } from '../../src/formats/ggml-quants.js';
import { type Heap, rand } from './wasm-heap.js';

/** [activation rows, weight rows, K]. */
const SHAPES = [
  [13, 22, 256],
  [8, 64, 2048],
  [3, 9, 96],
  [21, 12, 128],
] as const;

/** Each case's outputs, in a fixed order. */
export function dotAddCases(h: Heap): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const [M, N, K] of SHAPES) {
    const plain = quantize('q4_0', rand(N * K, N * 7 + K, 0.5));
    const pw = h.putU8(repackX4('q4_0', plain, N, K));
    const x = rand(M * K, M + K, 2);
    const qa = h.alloc(actQ8Bytes(M, K)),
      row = h.alloc(actQ8Bytes(1, K));
    const px = h.putF32(x);
    h.k.quantize_act_q8(px, K, 0, M, K, qa);
    h.k.quantize_act_q8_row(px, K, row);
    const y = h.alloc(M * N * 4);
    const take = (name: string, n: number) => {
      out[`${name} M${M} N${N} K${K}`] = Array.from(h.f32(y, n));
    };
    h.k.gemm_q4_0x4_prompt(qa, pw, y, N, M, N, 0, N, K, 0);
    take('gemm_q4_0x4_prompt', M * N);
    h.k.gemm_q4_0x4(qa, pw, y, N, M, N, 0, N, K, 0);
    take('gemm_q4_0x4', M * N);
    h.k.gemv_q4_0x4(row, pw, y, N, 0, N, K, 0);
    take('gemv_q4_0x4', N);
    const p8 = h.putU8(repackX4('q8_0', quantize('q8_0', rand(N * K, N * 5 + K, 0.5)), N, K));
    h.k.gemm_q8_0x4_prompt(qa, p8, y, N, M, N, 0, N, K, 0);
    take('gemm_q8_0x4_prompt', M * N);
    h.k.gemm_q8_0x4(qa, p8, y, N, M, N, 0, N, K, 0);
    take('gemm_q8_0x4', M * N);
    h.k.gemm_q8_0x4(qa, p8, y, N, 1, N, 0, N, K, 0); // one activation row: the decode tile
    take('gemm_q8_0x4 one row', N);
  }
  return out;
}
