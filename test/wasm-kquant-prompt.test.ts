// The q4_K prompt tile (gemm_q4_kx4_prompt, src/backends/wasm/assembly/gemm-k-prompt.ts: 4 packed
// weight rows × up to 8 tokens) gives every value exactly the bits gemm_k gives on the plain
// matrix (same exact integers, same f32 steps, same order of super-blocks), for token counts that
// leave every tail (8, 4, 3, 2, 1), K with and without leftover super-blocks after the chains of 4,
// weight rows not a multiple of 4 (plain rows after the groups), row ranges cut inside a group,
// accumulation into Y and rows of Y wider than N, in both kernel builds; and values within float64
// rounding of llama.cpp's arithmetic. One matrix holds the extreme sums (quants 15, scale 63, all
// activations -127), where the tile's i16 lanes reach 30480.
import { test } from 'node:test';
import { f32ToF16 } from '../src/formats/dtypes.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { QuantMatrix } from './helpers/llamacpp-dot.js';
import { kquantWeights } from './helpers/kquant-weights.js';
import { checkBitsAndFloat64, checkSplitAdds, checkWideY, Q4K } from './helpers/kquant-x4-checks.js';
import { Heap, rand } from './helpers/wasm-heap.js';

const Q8K_BYTES = 368;

/** [weight rows, K]: one group, groups and leftover rows, 1-9 super-blocks (chains of 4 and leftovers). */
const SHAPES: ReadonlyArray<readonly [number, number]> = [
  [4, 256],
  [7, 512],
  [8, 1024],
  [13, 1280],
  [16, 2304],
  [20, 768],
];
const TOKENS = [1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 15, 16, 17, 20];

/** Weight row 0's super-blocks as large as q4_K goes: every quant 15, every scale and min 63. */
function extremeRow(plain: Uint8Array, K: number): void {
  const nb = K / 256;
  const dv = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  for (let b = 0; b < nb; b++) {
    const o = b * 144;
    dv.setUint16(o, f32ToF16(0.01), true);
    dv.setUint16(o + 2, f32ToF16(0.002), true);
    plain.fill(0xff, o + 4, o + 144); // 6-bit scales and mins 63, quants 15
  }
}

for (const variant of ['shared', 'shared-base'] as const)
  test(`gemm_q4_kx4_prompt: every value has gemm_k's bits on the plain matrix, any tokens, rows and row split (${variant === 'shared' ? 'relaxed SIMD' : 'plain SIMD'})`, () => {
    const h = new Heap(variant);
    for (const [N, K] of SHAPES) {
      const nb = K / 256;
      const plain = kquantWeights('q4_k', N, K, 17 * N + K);
      if (N === 16) extremeRow(plain, K);
      const packed = repackX4('q4_k', plain, N, K);
      const Mmax = TOKENS[TOKENS.length - 1]!;
      const x = rand(Mmax * K, 3 * N + K, 2);
      x.fill(0, 2 * K, 2 * K + 256); // an all-zero super-block (d_x = 0) in token 2
      x[5 * K + 3] = 40; // an outlier
      x.fill(-1, 9 * K, 10 * K); // token 9: every q8_K value -127 (d_x = 1/127)
      const px = h.putF32(x),
        pa = h.alloc(Mmax * nb * Q8K_BYTES);
      h.k.quantize_act_q8k(px, K, 0, Mmax, K, pa);
      const pw = h.putU8(plain),
        pp = h.putU8(packed);
      const tag = `${N}×${K}`;
      const qm = new QuantMatrix('q4_k', plain, N, K);
      const ref64 = Array.from({ length: Mmax }, (_, m) => qm.matvec(x.subarray(m * K, (m + 1) * K)));
      for (const M of TOKENS) {
        const got = h.alloc(M * N * 4);
        const y = checkBitsAndFloat64(h, h.k.gemm_q4_kx4_prompt, { pa, pw, pp, got, M, N, K, tag }, (m) => ref64[m]!);
        // added onto a base, the weight rows split at a place inside a group (as threads may)
        checkSplitAdds(h, h.k.gemm_q4_kx4_prompt, { pa, pp, got, y, M, N, K, seed: 5 * M + N, tag });
      }
      // rows of Y wider than N, starting in the middle of the activations, rows from 1
      checkWideY(
        h,
        h.k.gemm_q4_kx4_prompt,
        (a, py, ldy, M, from, to) => h.k.gemm_k(Q4K, a, pw, py, ldy, M, from, to, K, 0),
        {
          pa: pa + 2 * nb * Q8K_BYTES,
          pp,
          M: 9,
          N,
          K,
          tag,
        },
      );
    }
  });
