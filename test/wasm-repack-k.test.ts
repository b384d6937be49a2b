// The row-interleaved form of q4_K matrices (q4_Kx4, src/backends/wasm/repack.ts) and its
// products: read back by a dequantizer written here from the layout's description alone, a
// repacked matrix gives ggml's values for the plain matrix; the wasm in-place repack writes the
// same bytes as the TypeScript one; and gemm_q4_kx4 gives every row exactly the bits gemm_k gives
// on the plain matrix (exact integer sums, the same f32 steps), for 1-17 activation rows (decode
// tile for single rows, the R-row group tile for 2-4 at a time), row ranges cut inside a group, accumulation, leftover plain rows, all three
// kernel builds — and values within float64 rounding of llama.cpp's arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantize } from '../src/formats/ggml-quants.js';
import { f16ToF32 } from '../src/formats/dtypes.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { QuantMatrix } from './helpers/llamacpp-dot.js';
import { kquantWeights } from './helpers/kquant-weights.js';
import { checkBitsAndFloat64, checkSplitAdds, checkWideY, Q4K } from './helpers/kquant-x4-checks.js';
import { BUILDS, buildName, Heap, rand } from './helpers/wasm-heap.js';

const Q8K_BYTES = 368;

/** [weight rows, K]: fewer than 4 rows, rows not a multiple of 4, several super-blocks. */
const SHAPES: ReadonlyArray<readonly [number, number]> = [
  [1, 256],
  [3, 512],
  [4, 256],
  [5, 768],
  [8, 1280],
  [13, 512],
];

/**
 * The value of a q4_Kx4 header's d / dmin bits b, read as repack.ts describes them (fp16 re-encoded
 * by x4ScaleBits: sign | E << 10 | m standing for 2^(E - 25)·(1 + m/1024), ±0 when E = m = 0).
 */
function x4Half(b: number): number {
  const sign = b & 0x8000 ? -1 : 1;
  if ((b & 0x7fff) === 0) return sign * 0;
  return sign * 2 ** (((b >> 10) & 31) - 25) * (1 + (b & 0x3ff) / 1024);
}

/** Values of a q4_Kx4 matrix, read as the layout is described (groups, then plain leftover rows). */
function dequantizeX4(bytes: Uint8Array, rows: number, K: number): Float32Array {
  const nb = K / 256;
  const out = new Float32Array(rows * K);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const groups = Math.floor(rows / 4);
  for (let g = 0; g < groups; g++)
    for (let b = 0; b < nb; b++) {
      const at = (g * nb + b) * 576;
      for (let r = 0; r < 4; r++) {
        const d = Math.fround(x4Half(dv.getUint16(at + 2 * r, true))),
          dmin = Math.fround(x4Half(dv.getUint16(at + 8 + 2 * r, true)));
        // scales and mins: vectors A, B, C at 16, 32, 48; scale j of row r at byte 4(j & 3) + r of A
        // (low nibble for j < 4, else high) and C (bits 0-1, else 2-3), min j at byte
        // 8((j >> 1) & 1) + 2r + (j & 1) of B (low / high nibble) and C (bits 4-5, else 6-7)
        const A = (i: number) => bytes[at + 16 + i]!,
          B = (i: number) => bytes[at + 32 + i]!,
          C = (i: number) => bytes[at + 48 + i]!;
        for (let j = 0; j < 8; j++) {
          const si = 4 * (j & 3) + r,
            mi = 8 * ((j >> 1) & 1) + 2 * r + (j & 1),
            up = j >= 4;
          const sc = ((up ? A(si) >> 4 : A(si)) & 15) | (((C(si) >> (up ? 2 : 0)) & 3) << 4);
          const mn = ((up ? B(mi) >> 4 : B(mi)) & 15) | (((C(mi) >> (up ? 6 : 4)) & 3) << 4);
          // chunk form: byte l of the chunk's 32 (row r) at 16·(l >> 2) + 4r + (l & 3)
          const chunk = at + 64 + 128 * (j >> 1) + 4 * r;
          for (let l = 0; l < 32; l++) {
            const byte = bytes[chunk + 16 * (l >> 2) + (l & 3)]!;
            const q = j & 1 ? byte >> 4 : byte & 15;
            out[(4 * g + r) * K + b * 256 + 32 * j + l] = Math.fround(
              Math.fround(Math.fround(d * sc) * q) - Math.fround(dmin * mn),
            );
          }
        }
      }
    }
  const rest = 4 * groups;
  out.set(dequantize('q4_k', bytes.subarray(rest * nb * 144), (rows - rest) * K), rest * K);
  return out;
}

test('q4_Kx4: repacked matrices dequantize to the plain matrices values, same size, leftover rows plain', () => {
  for (const [rows, K] of SHAPES) {
    const plain = kquantWeights('q4_k', rows, K, rows * 7 + K);
    const packed = repackX4('q4_k', plain, rows, K);
    assert.equal(packed.length, plain.length);
    assert.deepEqual(dequantizeX4(packed, rows, K), dequantize('q4_k', plain, rows * K), `${rows}×${K}`);
    const tail = (rows - (rows % 4)) * (K / 256) * 144;
    assert.deepEqual(packed.subarray(tail), plain.subarray(tail), 'leftover rows stay as stored');
  }
  assert.throws(() => repackX4('q4_k', new Uint8Array(144 * 4), 4, 128), RangeError);
});

for (const variant of BUILDS)
  test(`gemm_q4_kx4: every row has gemm_k's bits on the plain matrix, any activation rows and row split (${buildName(variant)})`, () => {
    const h = new Heap(variant);
    for (const [N, K] of [...SHAPES, [16, 1024] as const]) {
      const nb = K / 256;
      const plain = kquantWeights('q4_k', N, K, 31 * N + K);
      const packed = repackX4('q4_k', plain, N, K);
      const Mmax = 17; // single rows through the decode tile, 2-4 at a time through the group tile
      const x = rand(Mmax * K, N + K, 2);
      x.fill(0, 2 * K, 2 * K + 256); // an all-zero super-block (d_x = 0) in row 2
      x[5 * K + 3] = 40; // an outlier
      const px = h.putF32(x),
        pa = h.alloc(Mmax * nb * Q8K_BYTES);
      h.k.quantize_act_q8k(px, K, 0, Mmax, K, pa);
      const pw = h.putU8(plain),
        pp = h.putU8(packed);
      const tag = `${N}×${K}`;
      // the wasm in-place repack writes the TypeScript layout's bytes
      const pr = h.putU8(plain),
        tmp = h.alloc(4 * nb * 144);
      h.k.repack_q4_kx4(pr, N & ~3, K, tmp);
      assert.deepEqual(h.u8(pr, packed.length), packed, `${tag} repack_q4_kx4`);
      // dequant_row_q4_kx4 reads every row back (embedding rows)
      const row = h.alloc(K * 4),
        all = dequantize('q4_k', plain, N * K);
      for (let r = 0; r < N; r++) {
        h.k.dequant_row_q4_kx4(pp, N, K, r, row);
        assert.deepEqual(h.f32(row, K), all.subarray(r * K, (r + 1) * K), `${tag} dequant row ${r}`);
      }
      const qm = new QuantMatrix('q4_k', plain, N, K);
      for (const M of [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17]) {
        const got = h.alloc(M * N * 4);
        const y = checkBitsAndFloat64(h, h.k.gemm_q4_kx4, { pa, pw, pp, got, M, N, K, tag }, (m) =>
          qm.matvec(x.subarray(m * K, (m + 1) * K)),
        );
        // added onto a base, the weight rows split at a place inside a group (as threads may)
        checkSplitAdds(h, h.k.gemm_q4_kx4, { pa, pp, got, y, M, N, K, seed: 3 * M + N, tag });
      }
      // rows of Y wider than N, starting in the middle of the activations, rows from 1
      checkWideY(h, h.k.gemm_q4_kx4, (a, py, ldy, M, from, to) => h.k.gemm_k(Q4K, a, pw, py, ldy, M, from, to, K, 0), {
        pa: pa + 2 * nb * Q8K_BYTES,
        pp,
        M: 5,
        N,
        K,
        tag,
      });
    }
  });

for (const variant of BUILDS)
  test(`gemm_q4_kx4 at the i16 extremes (all nibbles 15, scales and mins 63, activations ±127) has gemm_k's bits (${buildName(variant)})`, () => {
    // a chunk's two halves are summed in i16 before the scales' pmaddwd: 8 pairs of 15·127 = ±30480
    const h = new Heap(variant);
    const N = 8,
      K = 512,
      nb = K / 256;
    const plain = new Uint8Array(N * nb * 144).fill(0xff);
    const dv = new DataView(plain.buffer);
    for (let b = 0; b < N * nb; b++) {
      dv.setUint16(b * 144, 0x3c00, true); // d = 1
      dv.setUint16(b * 144 + 2, 0x3800, true); // dmin = 0.5
    }
    const M = 5;
    const x = new Float32Array(M * K);
    for (let m = 0; m < M; m++) {
      x.fill(1, m * K, (m + 1) * K); // q8_K: the largest |x| (sign kept) becomes -127, so all -127
      // odd rows: a slightly larger -1.0001 first in each super-block makes the rest +127
      if (m & 1) for (let b = 0; b < nb; b++) x[m * K + 256 * b] = -1.0001;
    }
    const pa = h.alloc(M * nb * Q8K_BYTES);
    h.k.quantize_act_q8k(h.putF32(x), K, 0, M, K, pa);
    const pw = h.putU8(plain),
      pp = h.putU8(repackX4('q4_k', plain, N, K));
    const qm = new QuantMatrix('q4_k', plain, N, K);
    for (const rows of [1, 3, M]) {
      const got = h.alloc(rows * N * 4);
      checkBitsAndFloat64(h, h.k.gemm_q4_kx4, { pa, pw, pp, got, M: rows, N, K, tag: `extremes ${rows} rows` }, (m) =>
        qm.matvec(x.subarray(m * K, (m + 1) * K)),
      );
    }
  });

/** d / dmin halves for the tests below: subnormal, ±0, negative, the smallest normal, near 128. */
const HALVES = [0x0001, 0x03ff, 0x0155, 0x0000, 0x8000, 0x0400, 0x2c00, 0x57ff, 0x0010, 0x8001, 0x83ff, 0xb400];

/** N × K q4_K weights (kquantWeights' quants, scales and mins) whose d and dmin are mostly subnormal, every third from HALVES. */
function oddHalves(N: number, K: number, seed: number): Uint8Array {
  const plain = kquantWeights('q4_k', N, K, seed);
  const dv = new DataView(plain.buffer);
  for (let b = 0; b < (N * K) / 256; b++) {
    const sub = (i: number) => 1 + ((i * 2654435761) >>> 22); // subnormal: 1..1024
    dv.setUint16(b * 144, b % 3 === 2 ? HALVES[b % HALVES.length]! : sub(b), true);
    dv.setUint16(b * 144 + 2, b % 3 === 1 ? HALVES[(b + 5) % HALVES.length]! : sub(b + 7), true);
  }
  return plain;
}

/** A bound on Σ over super-blocks of |d·d_x·sumi| + |dmin·d_x·summ| for weight row n and activations x (scales, mins ≤ 63, quants ≤ 15). */
function magnitudes(plain: Uint8Array, N: number, K: number, x: Float32Array): Float64Array {
  const dv = new DataView(plain.buffer, plain.byteOffset),
    nb = K / 256;
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++)
    for (let b = 0; b < nb; b++) {
      const o = (n * nb + b) * 144;
      let ax = 0;
      for (let i = 0; i < 256; i++) ax += Math.abs(x[b * 256 + i]!);
      const d = Math.abs(f16ToF32(dv.getUint16(o, true))),
        dmin = Math.abs(f16ToF32(dv.getUint16(o + 2, true)));
      out[n] = out[n]! + (d * 63 * 15 + dmin * 63) * ax * 1.01;
    }
  return out;
}

for (const variant of BUILDS)
  test(`q4_Kx4 d / dmin subnormal, zero, negative and near 128, encoded and raw (x4_raw_scales): repack_q4_kx4 = repackX4, rows read back, decode and prompt tiles with gemm_k's bits (${buildName(variant)})`, () => {
    for (const raw of [false, true]) {
      const h = new Heap(variant);
      if (raw) h.k.x4_raw_scales();
      for (const [N, K] of [
        [8, 512],
        [13, 768],
      ] as const) {
        const nb = K / 256,
          tag = `${raw ? 'raw' : 'encoded'} ${N}×${K}`;
        const plain = oddHalves(N, K, N + K);
        const ng = N & ~3;
        // encoded: the wasm repack writes repackX4's bytes; raw: the fp16 halves as stored, and
        // repackX4's encoded header rewritten by x4_scales_to_raw gives the same bytes
        const pp = h.putU8(plain),
          tmp = h.alloc(4 * nb * 144);
        h.k.repack_q4_kx4(pp, ng, K, tmp, raw ? 1 : 0);
        const packed = repackX4('q4_k', plain, N, K);
        if (raw) {
          const back = h.putU8(packed);
          h.k.x4_scales_to_raw(2, back, ng, K);
          assert.deepEqual(h.u8(back, packed.length), h.u8(pp, packed.length), `${tag} x4_scales_to_raw`);
          const dv = new DataView(plain.buffer);
          for (let g = 0; g < ng / 4; g++)
            for (let b = 0; b < nb; b++)
              for (let r = 0; r < 4; r++)
                for (const [from, to] of [
                  [0, 2 * r],
                  [2, 8 + 2 * r],
                ] as const) {
                  const at = (g * nb + b) * 576 + to,
                    got = h.u8(pp + at, 2);
                  assert.equal(
                    got[0]! | (got[1]! << 8),
                    dv.getUint16(((4 * g + r) * nb + b) * 144 + from, true),
                    `${tag} raw half`,
                  );
                }
        } else assert.deepEqual(h.u8(pp, packed.length), packed, `${tag} repack_q4_kx4`);
        const row = h.alloc(K * 4),
          all = dequantize('q4_k', plain, N * K);
        for (let r = 0; r < N; r++) {
          h.k.dequant_row_q4_kx4(pp, N, K, r, row);
          assert.deepEqual(h.f32(row, K), all.subarray(r * K, (r + 1) * K), `${tag} dequant row ${r}`);
        }
        const Mmax = 9;
        const x = rand(Mmax * K, N * K, 2);
        const pa = h.alloc(Mmax * nb * Q8K_BYTES);
        h.k.quantize_act_q8k(h.putF32(x), K, 0, Mmax, K, pa);
        const pw = h.putU8(plain),
          qm = new QuantMatrix('q4_k', plain, N, K);
        for (const M of [1, 3, 4, 9]) {
          const got = h.alloc(M * N * 4);
          checkBitsAndFloat64(
            h,
            h.k.gemm_q4_kx4,
            { pa, pw, pp, got, M, N, K, tag },
            (m) => qm.matvec(x.subarray(m * K, (m + 1) * K)),
            (m) => magnitudes(plain, N, K, x.subarray(m * K, (m + 1) * K)),
          );
        }
      }
    }
  });

test('x4_scales_check (kind 2: q4_K d and dmin): 128 and more has no x4 encoding, inf / NaN apart; repackX4 throws on them', () => {
  const h = new Heap('shared');
  const N = 4,
    K = 512;
  const plain = oddHalves(N, K, 5);
  assert.equal(h.k.x4_scales_check(2, h.putU8(plain), N, K), 0, 'subnormal, zero, negative: all encodable');
  const with_ = (at: number, bits: number) => {
    const p = plain.slice();
    new DataView(p.buffer).setUint16(at, bits, true);
    return p;
  };
  for (const [at, bits, want] of [
    [3 * 144, 0x5800, 1], // d of super-block 3: 128
    [5 * 144 + 2, 0xd800, 1], // dmin of super-block 5: -128
    [7 * 144 + 2, 0x7c00, 2], // dmin: inf
    [144, 0xfe00, 2], // d: NaN
  ] as const) {
    const p = with_(at, bits);
    assert.equal(h.k.x4_scales_check(2, h.putU8(p), N, K), want, `0x${bits.toString(16)} at ${at}`);
    assert.throws(() => repackX4('q4_k', p, N, K), RangeError);
  }
});
