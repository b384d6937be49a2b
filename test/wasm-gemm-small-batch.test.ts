// Small-batch matrix products of the wasm kernels (gemm-f32.ts, gemm-half.ts): f32, fp16 and bf16
// weights with 1..20 activation rows, in both kernel builds (relaxed SIMD with fused multiply-add,
// and plain SIMD128), against float64 loops written here. Sizes are deliberately not multiples of
// the vector width (4), the register tiles (4 rows of X, 2 or 4 rows of W) or the step of 8.
//
// Every tile, both half-precision paths (widening in registers, the f32 panel) and every split of
// the output rows compute an element with the same operations in the same order, so a row's
// result must not depend on the rows it is batched with: checked bit for bit (a sequence's
// logits are the same in every batched decode step of 4 or more). The exception: fp16 / bf16
// weights with 1-3 rows go row by row through their own kernel, which rounds differently (to
// float tolerance) but equally for each of those rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HALF_PANEL_BYTES } from '../src/backends/wasm/kernels.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../src/formats/dtypes.js';
import { Heap, rand } from './helpers/wasm-heap.js';

type DType = 'f32' | 'f16' | 'bf16';

/** Weights as stored (bytes in the heap) and as the exact values they stand for. */
function putWeights(h: Heap, dtype: DType, w: Float32Array): { ptr: number; values: Float64Array } {
  if (dtype === 'f32') return { ptr: h.putF32(w), values: Float64Array.from(w) };
  const bits = Uint16Array.from(w, (v) => (dtype === 'f16' ? f32ToF16(v) : f32ToBf16(v)));
  return {
    ptr: h.putU16(bits),
    values: Float64Array.from(bits, (b) => (dtype === 'f16' ? f16ToF32(b) : bf16ToF32(b))),
  };
}

/**
 * Worst-case error of an f32 dot product summed as the kernels sum it (4 lanes over ceil(K/4)
 * steps, 2 more adds for the lanes, the tail, one more for accumulation), relative to Σ|x·w|.
 */
function bound(K: number, mag: number): number {
  return (Math.ceil(K / 4) + 8) * 2 ** -24 * mag;
}

class Product {
  constructor(
    readonly h: Heap,
    readonly dtype: DType,
    readonly W: number,
    readonly N: number,
    readonly K: number,
    readonly panel: number,
  ) {}
  /** Y (leading dimension N) (=|+=) rows of X · W[n0, n1)ᵀ. */
  run(X: number, M: number, Y: number, n0: number, n1: number, acc: number, panel = this.panel): void {
    const { h, N, K, W } = this;
    if (this.dtype === 'f32') h.k.gemm_f32(X, K, W, K, Y, N, M, n0, n1, K, acc);
    else if (this.dtype === 'f16') h.k.gemm_f16(X, K, W, K, Y, N, M, n0, n1, K, acc, panel);
    else h.k.gemm_bf16(X, K, W, K, Y, N, M, n0, n1, K, acc, panel);
  }
}

const SIZES: ReadonlyArray<readonly [number, number]> = [
  [7, 5],
  [10, 13],
  [37, 67],
  [9, 258],
  [6, 130],
]; // [N, K]
const ROWS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 20];

for (const variant of ['shared', 'shared-base'] as const) {
  test(`${variant} build: f32 / f16 / bf16 products for 1..20 rows match float64, and each row is independent of its batch`, () => {
    const h = new Heap(variant);
    const panel = h.alloc(HALF_PANEL_BYTES);
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      for (const [N, K] of SIZES) {
        const { ptr: W, values: wd } = putWeights(h, dtype, rand(N * K, N * 31 + K, 0.8));
        const p = new Product(h, dtype, W, N, K, panel);
        const Mmax = ROWS[ROWS.length - 1]!;
        const x = rand(Mmax * K, K + 7, 2);
        const X = h.putF32(x);
        // each row alone (M = 1), and rows four at a time (M = 4): against float64
        const alone = h.alloc(Mmax * N * 4),
          quads = h.alloc(Mmax * N * 4);
        for (let m = 0; m < Mmax; m++) p.run(X + m * K * 4, 1, alone + m * N * 4, 0, N, 0);
        for (let m = 0; m < Mmax; m += 4) p.run(X + m * K * 4, 4, quads + m * N * 4, 0, N, 0);
        for (const [what, at] of [
          ['alone', alone],
          ['in fours', quads],
        ] as const) {
          const got = h.f32(at, Mmax * N);
          for (let m = 0; m < Mmax; m++) {
            for (let n = 0; n < N; n++) {
              let s = 0,
                mag = 0;
              for (let k = 0; k < K; k++) {
                s += x[m * K + k]! * wd[n * K + k]!;
                mag += Math.abs(x[m * K + k]! * wd[n * K + k]!);
              }
              assert.ok(
                Math.abs(got[m * N + n]! - s) <= bound(K, mag),
                `${variant} ${dtype} N${N} K${K} [${m},${n}] ${what}: ${got[m * N + n]} vs ${s}`,
              );
            }
          }
        }
        // The bits every batch must reproduce. Half-precision weights with 1-3 rows (decode of a
        // few sequences) go row by row through their own kernel, which rounds differently from
        // the tiles; f32 has one arithmetic for all.
        const rowwise = h.f32(alone, Mmax * N).slice(),
          tiled = h.f32(quads, Mmax * N).slice();
        if (dtype === 'f32') assert.deepEqual(rowwise, tiled, `f32 N${N} K${K}: rows alone differ from rows in fours`);
        const Y = h.alloc(Mmax * N * 4);
        for (const M of ROWS) {
          const single = M < 4 ? rowwise : tiled;
          p.run(X, M, Y, 0, N, 0);
          assert.deepEqual(
            h.f32(Y, M * N),
            single.subarray(0, M * N),
            `${variant} ${dtype} M${M} N${N} K${K}: batched rows differ from rows alone`,
          );
          // two threads' row ranges, accumulated onto a base: the sums of the same values
          const base = rand(M * N, M * 5 + N, 3);
          h.f32(Y, M * N).set(base);
          const cut = Math.max(1, Math.floor(N / 3));
          p.run(X, M, Y, cut, N, 1);
          p.run(X, M, Y, 0, cut, 1);
          const y = h.f32(Y, M * N);
          for (let i = 0; i < M * N; i++)
            assert.equal(y[i], Math.fround(base[i]! + single[i]!), `${variant} ${dtype} M${M} accumulate [${i}]`);
        }
        if (dtype !== 'f32') {
          // no panel scratch: weights widened exactly in registers, the same bits
          p.run(X, 9, Y, 0, N, 0, 0);
          assert.deepEqual(
            h.f32(Y, 9 * N),
            tiled.subarray(0, 9 * N),
            `${variant} ${dtype} N${N} K${K} without a panel`,
          );
          p.run(X, 20, Y, 0, N, 0, 0);
          assert.deepEqual(
            h.f32(Y, 20 * N),
            tiled.subarray(0, 20 * N),
            `${variant} ${dtype} N${N} K${K} 20 rows without a panel`,
          );
        }
      }
    }
  });

  test(`${variant} build: fp16 weights with activations too large for the scaled fast path (|x| >= 2^15)`, () => {
    const h = new Heap(variant);
    const panel = h.alloc(HALF_PANEL_BYTES);
    const N = 11,
      K = 29,
      M = 6;
    const { ptr: W, values: wd } = putWeights(h, 'f16', rand(N * K, 3, 0.5));
    const x = rand(M * K, 4, 1);
    x[2 * K + 3] = 40000;
    x[5 * K + 28] = -1e6; // rows 2 and 5
    const X = h.putF32(x),
      Y = h.alloc(M * N * 4),
      Y1 = h.alloc(N * 4),
      Y4 = h.alloc(4 * N * 4);
    const p = new Product(h, 'f16', W, N, K, panel);
    p.run(X, M, Y, 0, N, 0);
    const y = h.f32(Y, M * N).slice();
    for (let m = 0; m < M; m++) {
      if (m + 4 <= M) {
        p.run(X + m * K * 4, 4, Y4, 0, N, 0);
        assert.deepEqual(h.f32(Y4, 4 * N), y.subarray(m * N, (m + 4) * N), `rows ${m}..${m + 3} as a batch of 4`);
      }
      p.run(X + m * K * 4, 1, Y1, 0, N, 0);
      const y1 = h.f32(Y1, N);
      for (let n = 0; n < N; n++) {
        let s = 0,
          mag = 0;
        for (let k = 0; k < K; k++) {
          s += x[m * K + k]! * wd[n * K + k]!;
          mag += Math.abs(x[m * K + k]! * wd[n * K + k]!);
        }
        assert.ok(Math.abs(y[m * N + n]! - s) <= bound(K, mag), `[${m},${n}] ${y[m * N + n]} vs ${s}`);
        assert.ok(Math.abs(y1[n]! - s) <= bound(K, mag), `[${m},${n}] alone: ${y1[n]} vs ${s}`);
      }
    }
  });
}
