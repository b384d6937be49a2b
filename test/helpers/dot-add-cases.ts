/**
 * q4_0 products through the kernels of one Heap, for comparing kernel builds across engines
 * (test/web-dot-add.test.ts runs them in Chromium, on whatever build the tab chose, and in Node on
 * the relaxed build): the x4 prompt tile (8-token tiles and leftover tokens), the 4-row x4 product
 * and the decode row, at shapes with leftover plain weight rows. Nothing of Node here.
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
  }
  return out;
}
