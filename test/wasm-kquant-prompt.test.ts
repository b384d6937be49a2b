// The q4_K / q5_K prompt tiles (src/backends/wasm/assembly/gemm-k-prompt.ts: 4 weight rows × up to
// 16 tokens; gemm_q4_kx4_prompt over packed q4_Kx4 groups, gemm_q4_k_prompt / gemm_q5_k_prompt /
// gemm_q6_k_prompt over plain rows; gemm_q6_kx4 over q6_Kx4 groups, whose 1-3 tokens take its decode
// tile) give
// every value exactly the bits gemm_k gives on the plain matrix (same exact integers, same f32
// steps, same order of super-blocks), for token counts that leave every tail (16, 8, 4, 3, 2, 1),
// K with and without leftover super-blocks after the chains of 4, weight rows not a multiple of 4
// (plain rows after the groups; plain: the 1-3 rows left to gemm_k), row ranges cut inside a group
// of 4 (plain: tiles starting at any row), accumulation into Y and rows of Y wider than N, in every
// kernel build; and values within float64 rounding of llama.cpp's arithmetic. One matrix holds the
// extreme sums (quants 15, q5_K 31, scale 63, all activations -127), where the tile's i16 lanes
// reach 30480 (q5_K: 31496 a stage of 4 chunks; q6_K, quants 63 and scales ±127/-128: 32004 a
// pair of chunks).
import { test } from 'node:test';
import { f16ToF32, f32ToF16 } from '../src/formats/dtypes.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { QuantMatrix } from './helpers/llamacpp-dot.js';
import { kquantWeights } from './helpers/kquant-weights.js';
import { checkBitsAndFloat64, checkSplitAdds, checkWideY, Q4K, type X4Product } from './helpers/kquant-x4-checks.js';
import { BUILDS, buildName, Heap, rand } from './helpers/wasm-heap.js';

const Q8K_BYTES = 368;
/** gemm_k's codes for q5_K and q6_K. */
const Q5K = 6,
  Q6K = 7;

/** [weight rows, K]: one group, groups and leftover rows, 1-9 super-blocks (chains of 4 and leftovers). */
const SHAPES: ReadonlyArray<readonly [number, number]> = [
  [4, 256],
  [7, 512],
  [8, 1024],
  [13, 1280],
  [16, 2304],
  [20, 768],
];
/** Token counts: every tail after the 16-token tiles (16 + 8 + 4 + 3 = 31) and two 16-token tiles. */
const TOKENS = [1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 15, 16, 17, 20, 24, 31, 33];

/** Weight row 0's super-blocks as large as the type goes: every quant 15 (q5_K: 31), every scale and min 63. */
function extremeRow(plain: Uint8Array, K: number, blockBytes: number): void {
  const nb = K / 256;
  const dv = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  for (let b = 0; b < nb; b++) {
    const o = b * blockBytes;
    dv.setUint16(o, f32ToF16(0.01), true);
    dv.setUint16(o + 2, f32ToF16(0.002), true);
    plain.fill(0xff, o + 4, o + blockBytes); // 6-bit scales and mins 63, quants 15 (q5_K: every fifth bit set)
  }
}

/** q6_K: weight row 0's super-blocks at the extremes: every quant 63 (ql and qh all ones), scales 127 and -128 in turn. */
function extremeRow6(plain: Uint8Array, K: number): void {
  const nb = K / 256;
  const dv = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  for (let b = 0; b < nb; b++) {
    const o = b * 210;
    plain.fill(0xff, o, o + 192);
    for (let k = 0; k < 16; k++) plain[o + 192 + k] = (k + b) % 2 ? 0x7f : 0x80;
    dv.setUint16(o + 208, f32ToF16(0.01), true);
  }
}

/**
 * q6_K: Σ |w|·|x| per weight row, w = d·scale·(q − 32) as ggml's dequantize_row_q6_K (the size of
 * the f32 terms a row's sum is made of).
 */
function magnitudes6(plain: Uint8Array, N: number, K: number, x: Float32Array): Float64Array {
  const nb = K / 256;
  const dv = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++)
    for (let b = 0; b < nb; b++) {
      let s = 0;
      const o = (n * nb + b) * 210;
      const d = Math.abs(f16ToF32(dv.getUint16(o + 208, true)));
      for (let i = 0; i < 256; i++) {
        const h = i >> 7,
          q = (i >> 5) & 3,
          l = i & 31;
        const lo = (plain[o + 64 * h + 32 * (q & 1) + l]! >> (4 * (q >> 1))) & 15;
        const hi = (plain[o + 128 + 32 * h + l]! >> (2 * q)) & 3;
        const sc = Math.abs(dv.getInt8(o + 192 + 8 * h + 2 * q + (l >> 4)));
        s += d * sc * Math.abs((lo | (hi << 4)) - 32) * Math.abs(x[b * 256 + i]!);
      }
      out[n] = out[n]! + s;
    }
  return out;
}

/**
 * The weights' two parts as matrices of the same type: d·scale·q (dmin set to 0) and dmin·min (d set
 * to 0, scales' values unchanged), whose products with |x| bound the f32 terms of a super-block.
 */
function parts(plain: Uint8Array, N: number, K: number, blockBytes: number, dtype: 'q4_k' | 'q5_k') {
  const pos = plain.slice(),
    neg = plain.slice();
  for (let o = 0; o < N * (K / 256) * blockBytes; o += blockBytes) {
    pos[o + 2] = pos[o + 3] = 0;
    neg[o] = neg[o + 1] = 0;
  }
  return [new QuantMatrix(dtype, pos, N, K), new QuantMatrix(dtype, neg, N, K)] as const;
}

/** A plain-row tile as an X4Product: its "packed" weights are the plain matrix. */
function plainProduct(tile: Heap['k']['gemm_q4_k_prompt']): X4Product {
  return (pa, pw, py, ldy, M, _N, from, to, K, add) => tile(pa, pw, py, ldy, M, from, to, K, add);
}

const LAYOUTS = {
  x4: { fn: 'gemm_q4_kx4_prompt', dtype: 'q4_k', kind: Q4K, blockBytes: 144 },
  plain: { fn: 'gemm_q4_k_prompt', dtype: 'q4_k', kind: Q4K, blockBytes: 144 },
  'plain q5_K': { fn: 'gemm_q5_k_prompt', dtype: 'q5_k', kind: Q5K, blockBytes: 176 },
  'plain q6_K': { fn: 'gemm_q6_k_prompt', dtype: 'q6_k', kind: Q6K, blockBytes: 210 },
  'x4 q6_K': { fn: 'gemm_q6_kx4', dtype: 'q6_k', kind: Q6K, blockBytes: 210 },
} as const;

for (const [layout, { fn, dtype, kind, blockBytes }] of Object.entries(LAYOUTS))
  for (const variant of BUILDS)
    test(`${fn}: every value has gemm_k's bits on the plain matrix, any tokens, rows and row split (${buildName(variant)})`, () => {
      const h = new Heap(variant);
      const product =
        layout === 'x4'
          ? h.k.gemm_q4_kx4_prompt
          : layout === 'x4 q6_K'
            ? h.k.gemm_q6_kx4
            : plainProduct(h.k[fn as 'gemm_q4_k_prompt' | 'gemm_q5_k_prompt' | 'gemm_q6_k_prompt']);
      for (const [N, K] of SHAPES) {
        const nb = K / 256;
        const plain = kquantWeights(dtype, N, K, 17 * N + K);
        if (N === 16) {
          if (dtype === 'q6_k') extremeRow6(plain, K);
          else extremeRow(plain, K, blockBytes);
        }
        const Mmax = TOKENS[TOKENS.length - 1]!;
        const x = rand(Mmax * K, 3 * N + K, 2);
        x.fill(0, 2 * K, 2 * K + 256); // an all-zero super-block (d_x = 0) in token 2
        x[5 * K + 3] = 40; // an outlier
        x.fill(-1, 9 * K, 10 * K); // token 9: every q8_K value -127 (d_x = 1/127)
        x.fill(-1, 25 * K, 26 * K); // and token 25 (in the second 16-token tile)
        const px = h.putF32(x),
          pa = h.alloc(Mmax * nb * Q8K_BYTES);
        h.k.quantize_act_q8k(px, K, 0, Mmax, K, pa);
        const pw = h.putU8(plain),
          pp =
            layout === 'x4' || layout === 'x4 q6_K'
              ? h.putU8(repackX4(dtype === 'q6_k' ? 'q6_k' : 'q4_k', plain, N, K))
              : pw;
        const tag = `${N}×${K}`;
        const qm = new QuantMatrix(dtype, plain, N, K);
        const ref64 = Array.from({ length: Mmax }, (_, m) => qm.matvec(x.subarray(m * K, (m + 1) * K)));
        const [pos, neg] = dtype === 'q6_k' ? [undefined, undefined] : parts(plain, N, K, blockBytes, dtype);
        const mag64 = Array.from({ length: Mmax }, (_, m) => {
          if (!pos || !neg) return magnitudes6(plain, N, K, x.subarray(m * K, (m + 1) * K));
          const ax = x.subarray(m * K, (m + 1) * K).map(Math.abs);
          const a = pos.matvec(ax),
            b = neg.matvec(ax);
          return a.map((v, n) => Math.abs(v) + Math.abs(b[n]!));
        });
        for (const M of TOKENS) {
          const got = h.alloc(M * N * 4);
          const y = checkBitsAndFloat64(
            h,
            product,
            { pa, pw, pp, got, M, N, K, tag, kind },
            (m) => ref64[m]!,
            (m) => mag64[m]!,
          );
          // added onto a base, the weight rows split at a place inside a group of 4 (as threads may)
          checkSplitAdds(h, product, { pa, pp, got, y, M, N, K, seed: 5 * M + N, tag });
        }
        // rows of Y wider than N, starting in the middle of the activations, rows from 1
        checkWideY(h, product, (a, py, ldy, M, from, to) => h.k.gemm_k(kind, a, pw, py, ldy, M, from, to, K, 0), {
          pa: pa + 2 * nb * Q8K_BYTES,
          pp,
          M: 17,
          N,
          K,
          tag,
        });
      }
    });
