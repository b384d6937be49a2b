// The k-quant products (gemm_k: q4_K, q5_K, q6_K weights × q8_K activations) for every number of
// activation rows: the multi-row tiles (4 rows, tails of 1-3) must give llama.cpp's arithmetic
// (ggml-quants' QuantMatrix: exact integer sums, the same f32 factors per super-block) and the
// same bits as one row at a time, whatever the split of the weight rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QuantMatrix } from './helpers/llamacpp-dot.js';
import { KQUANT_BLOCK_BYTES as BLOCK_BYTES, type KDtype, kquantWeights as weights } from './helpers/kquant-weights.js';
import { Heap, rand } from './helpers/wasm-heap.js';

const KINDS = { q4_k: 5, q5_k: 6, q6_k: 7 } as const;
const Q8K_BYTES = 368;

/**
 * y[m][n] in the kernel's summation order, from llama.cpp's per-super-block values (QuantMatrix
 * on one super-block): four f32 chains over blocks mod 4, joined ((0 + 2) + (1 + 3)), then the
 * leftover blocks in order.
 */
function blockwiseRef(dtype: KDtype, w: Uint8Array, x: Float32Array, M: number, N: number, K: number): Float32Array {
  const nb = K / 256,
    bs = BLOCK_BYTES[dtype],
    f = Math.fround;
  const y = new Float32Array(M * N);
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < M; m++) {
      const v: number[] = [];
      for (let b = 0; b < nb; b++) {
        const qm = new QuantMatrix(dtype, w.subarray((n * nb + b) * bs, (n * nb + b + 1) * bs), 1, 256);
        v.push(qm.dotRow(0, qm.prepare(x.subarray(m * K + b * 256, m * K + b * 256 + 256))));
      }
      const a = [0, 0, 0, 0];
      let b = 0;
      for (; b + 4 <= nb; b += 4) for (let j = 0; j < 4; j++) a[j] = f(a[j]! + v[b + j]!);
      let s = f(f(a[0]! + a[2]!) + f(a[1]! + a[3]!));
      for (; b < nb; b++) s = f(s + v[b]!);
      y[m * N + n] = s;
    }
  }
  return y;
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) assert.fail(`${what}: [${i}] ${a[i]} vs ${b[i]}`);
}

for (const variant of ['shared', 'shared-base'] as const) {
  test(`gemm_k tiles of 1-9 activation rows equal llama.cpp arithmetic and the one-row results (${variant === 'shared' ? 'relaxed SIMD' : 'plain SIMD'})`, () => {
    const h = new Heap(variant);
    for (const dtype of ['q4_k', 'q5_k', 'q6_k'] as const) {
      const kind = KINDS[dtype];
      for (const [nb, N] of [
        [1, 7],
        [2, 13],
        [3, 6],
        [5, 5],
      ] as const) {
        const K = 256 * nb;
        const w = weights(dtype, N, K, 1000 * nb + N + kind);
        const pw = h.putU8(w);
        const Mmax = 9;
        const x = rand(Mmax * K, 31 * nb + kind, 2);
        x.fill(0, 2 * K + (nb - 1) * 256, 2 * K + nb * 256); // an all-zero super-block (d = 0) in row 2
        x[5 * K + 3] = 40; // an outlier: most quants of that block round to small values
        const px = h.putF32(x),
          pa = h.alloc(Mmax * nb * Q8K_BYTES);
        h.k.quantize_act_q8k(px, K, 0, Mmax, K, pa);
        const qm = new QuantMatrix(dtype, w, N, K);
        const ref = blockwiseRef(dtype, w, x, Mmax, N, K);
        // one row at a time: the reference tile every multi-row result must reproduce bit for bit
        const one = new Float32Array(Mmax * N);
        const p1 = h.alloc(N * 4);
        for (let m = 0; m < Mmax; m++) {
          h.k.gemm_k(kind, pa + m * nb * Q8K_BYTES, pw, p1, N, 1, 0, N, K, 0);
          one.set(h.f32(p1, N), m * N);
        }
        const tag = `${dtype} K=${K} N=${N}`;
        sameBits(one, ref, `${tag} one row vs llama.cpp's super-block values`);
        for (let m = 0; m < Mmax; m++) {
          const r = qm.matvec(x.subarray(m * K, (m + 1) * K)); // float64 sums of the same block values
          for (let n = 0; n < N; n++) {
            const i = m * N + n;
            assert.ok(
              Math.abs(one[i]! - r[n]!) <= 1e-6 * (1 + Math.abs(r[n]!)),
              `${tag} [${m},${n}] ${one[i]} vs ${r[n]}`,
            );
          }
        }
        for (let M = 1; M <= Mmax; M++) {
          const py = h.alloc(M * N * 4);
          h.k.gemm_k(kind, pa, pw, py, N, M, 0, N, K, 0);
          sameBits(h.f32(py, M * N), one.subarray(0, M * N), `${tag} M=${M}`);
          // accumulate, with the weight rows split in two calls at an odd place
          const base = rand(M * N, 7 * M + nb);
          h.f32(py, M * N).set(base);
          const cut = Math.floor(N / 2) + 1;
          h.k.gemm_k(kind, pa, pw, py, N, M, cut, N, K, 1);
          h.k.gemm_k(kind, pa, pw, py, N, M, 0, cut, K, 1);
          sameBits(
            h.f32(py, M * N),
            base.map((b, i) => Math.fround(b + one[i]!)),
            `${tag} M=${M} accumulate`,
          );
        }
        // rows of Y wider than N (ldy > N), starting at a row in the middle of the activations
        const ldy = N + 3,
          M = 6,
          py = h.alloc(M * ldy * 4);
        h.f32(py, M * ldy).fill(-1);
        h.k.gemm_k(kind, pa + 2 * nb * Q8K_BYTES, pw, py, ldy, M, 1, N, K, 0);
        const y = h.f32(py, M * ldy);
        for (let m = 0; m < M; m++) {
          for (let n = 0; n < ldy; n++) {
            const want = n >= 1 && n < N ? one[(m + 2) * N + n]! : -1;
            assert.ok(Object.is(y[m * ldy + n], want), `${tag} ldy: [${m},${n}] ${y[m * ldy + n]} vs ${want}`);
          }
        }
      }
    }
  });
}

/**
 * Six weight rows of five super-blocks (four through the one-row path's four-block step, one
 * leftover; block b of row n filled by `fill(w, dv, offset, n, b)`) times three activation rows at
 * the extremes (every q8_K value −127, +127, alternating ±127), one activation row at a time: each
 * value must have llama.cpp's arithmetic, bit for bit.
 */
function oneRowExtremes(
  variant: 'shared' | 'shared-base',
  dtype: 'q5_k' | 'q6_k',
  fill: (w: Uint8Array, dv: DataView, o: number, n: number, b: number) => void,
): void {
  const h = new Heap(variant);
  const nb = 5,
    K = 256 * nb,
    N = 6,
    bs = BLOCK_BYTES[dtype];
  const w = new Uint8Array(N * nb * bs);
  const dv = new DataView(w.buffer);
  for (let n = 0; n < N; n++) for (let b = 0; b < nb; b++) fill(w, dv, (n * nb + b) * bs, n, b);
  const pw = h.putU8(w);
  const M = 3;
  const x = new Float32Array(M * K);
  x.fill(1, 0, K); // q = −127 everywhere
  x.fill(-1, K, 2 * K); // q = +127
  for (let i = 0; i < K; i++) x[2 * K + i] = i % 2 ? 1 : -1; // alternating ±127
  const px = h.putF32(x),
    pa = h.alloc(M * nb * Q8K_BYTES),
    py = h.alloc(N * 4);
  h.k.quantize_act_q8k(px, K, 0, M, K, pa);
  const ref = blockwiseRef(dtype, w, x, M, N, K);
  for (let m = 0; m < M; m++) {
    h.k.gemm_k(KINDS[dtype], pa + m * nb * Q8K_BYTES, pw, py, N, 1, 0, N, K, 0);
    sameBits(h.f32(py, N), ref.subarray(m * N, (m + 1) * N), `${dtype} extremes, activation row ${m}`);
  }
}

for (const variant of ['shared', 'shared-base'] as const) {
  const build = variant === 'shared' ? 'relaxed SIMD' : 'plain SIMD';
  // The one-row q5_K path (gemm-k.ts sb5_sum) adds two sub-blocks' i16 pair sums before scaling
  // them: with every quant 31 (fifth bits set), scales and mins 63 and activations ±127 a lane
  // holds 2·2·2·31·127 = 31496.
  test(`gemm_k q5_K one row at the i16 extremes equals llama.cpp arithmetic (${build})`, () =>
    oneRowExtremes(variant, 'q5_k', (w, dv, o, n, b) => {
      // rows 0-2: every quant 31, scales and mins 63; rows 3-5: quants 0, scales and mins mixed
      w.fill(n < 3 ? 0xff : 0, o + 4, o + BLOCK_BYTES.q5_k);
      if (n >= 3) for (let k = 0; k < 12; k++) w[o + 4 + k] = (n * 37 + b * 11 + k * 53) & 255;
      dv.setUint16(o, 0x3c00 + 16 * (n + b), true); // d: fp16 near 1
      dv.setUint16(o + 2, 0x3800 + 8 * n, true); // dmin: near 0.5
    }));
  // The one-row q6_K path (gemm-k.ts sb6_sum) adds two groups' i16 pair sums before scaling them:
  // at the extremes (every weight 63, activations ±127, scales ±127 / −128) a lane holds
  // 2·2·63·127 = 32004 — within i16 only just.
  test(`gemm_k q6_K one row at the i16 extremes equals llama.cpp arithmetic (${build})`, () =>
    oneRowExtremes(variant, 'q6_k', (w, dv, o, n, b) => {
      // rows 0-2: every quant 63 (ql and qh all ones); rows 3-5: every quant 0 (offset −32 only)
      w.fill(n < 3 ? 0xff : 0, o, o + 192);
      for (let k = 0; k < 16; k++) w[o + 192 + k] = (n + b + k) % 3 === 0 ? 0x80 : (n + k) % 2 ? 127 : 0x81;
      dv.setUint16(o + 208, 0x3c00 + 16 * (n + b), true); // fp16 near 1
    }));
}
