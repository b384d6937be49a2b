// The row-interleaved form of q6_K matrices (q6_Kx4, src/backends/wasm/repack.ts and
// assembly/gemm-q6k-x4.ts): read back by a dequantizer written here from the layout's description
// alone, a repacked matrix gives ggml's values for the plain matrix and keeps its size; the wasm
// in-place repack writes the TypeScript layout's bytes; dequant_row_q6_kx4 reads every row back
// (embedding rows); and gemm_q6_kx4's decode tile gives one activation row gemm_k's bits at the i16
// extremes (quants 63, scales ±127/-128, activations ±127: 32004 a pair of chunks). The products over
// all token counts are checked with the prompt tiles (wasm-kquant-prompt).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantize } from '../src/formats/ggml-quants.js';
import { f16ToF32, f32ToF16 } from '../src/formats/dtypes.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { QuantMatrix } from './helpers/llamacpp-dot.js';
import { kquantWeights } from './helpers/kquant-weights.js';
import { checkBitsAndFloat64 } from './helpers/kquant-x4-checks.js';
import { BUILDS, buildName, Heap } from './helpers/wasm-heap.js';

const Q8K_BYTES = 368,
  Q6K = 7;

/** [weight rows, K]: fewer than 4 rows, rows not a multiple of 4, several super-blocks. */
const SHAPES: ReadonlyArray<readonly [number, number]> = [
  [1, 256],
  [3, 512],
  [4, 256],
  [5, 768],
  [8, 1280],
  [13, 512],
];

/** Values of a q6_Kx4 matrix, read as the layout is described (groups, then plain leftover rows). */
function dequantizeX4(bytes: Uint8Array, rows: number, K: number): Float32Array {
  const nb = K / 256;
  const out = new Float32Array(rows * K);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const groups = Math.floor(rows / 4);
  for (let g = 0; g < groups; g++)
    for (let b = 0; b < nb; b++) {
      const at = (g * nb + b) * 840;
      for (let r = 0; r < 4; r++) {
        const d = f16ToF32(dv.getUint16(at + 832 + 2 * r, true));
        for (let v = 0; v < 256; v++) {
          // sub-block j = v >> 4 at 48j; chunk i = (v >> 2) & 3, byte e = v & 3 of row r's 4
          const j = v >> 4,
            i = (v >> 2) & 3,
            e = v & 3;
          const byte = (k: number) => bytes[at + 48 * j + 16 * k + 4 * r + e]!;
          const q = i < 3 ? byte(i) & 63 : (byte(0) >> 6) | ((byte(1) >> 6) << 2) | ((byte(2) >> 6) << 4);
          const sc = dv.getInt8(at + 768 + 8 * (j >> 1) + 2 * r + (j & 1));
          out[(4 * g + r) * K + 256 * b + v] = Math.fround(Math.fround(d * sc) * (q - 32));
        }
      }
    }
  const rest = 4 * groups;
  out.set(dequantize('q6_k', bytes.subarray(rest * nb * 210), (rows - rest) * K), rest * K);
  return out;
}

test('q6_Kx4: repacked matrices dequantize to the plain matrices values, same size, leftover rows plain', () => {
  for (const [rows, K] of SHAPES) {
    const plain = kquantWeights('q6_k', rows, K, rows * 5 + K);
    const packed = repackX4('q6_k', plain, rows, K);
    assert.equal(packed.length, plain.length);
    assert.deepEqual(dequantizeX4(packed, rows, K), dequantize('q6_k', plain, rows * K), `${rows}×${K}`);
    const tail = (rows - (rows % 4)) * (K / 256) * 210;
    assert.deepEqual(packed.subarray(tail), plain.subarray(tail), 'leftover rows stay as stored');
  }
});

for (const variant of BUILDS)
  test(`repack_q6_kx4 writes repackX4's bytes in place; dequant_row_q6_kx4 reads every row back (${buildName(variant)})`, () => {
    const h = new Heap(variant);
    for (const [N, K] of [...SHAPES, [16, 1024] as const]) {
      const nb = K / 256;
      const plain = kquantWeights('q6_k', N, K, 29 * N + K);
      const packed = repackX4('q6_k', plain, N, K);
      const pr = h.putU8(plain),
        tmp = h.alloc(4 * nb * 210 + 1024);
      h.k.repack_q6_kx4(pr, N & ~3, K, tmp);
      assert.deepEqual(h.u8(pr, packed.length), packed, `${N}×${K} repack_q6_kx4`);
      const row = h.alloc(K * 4),
        all = dequantize('q6_k', plain, N * K);
      for (let r = 0; r < N; r++) {
        h.k.dequant_row_q6_kx4(pr, N, K, r, row);
        assert.deepEqual(h.f32(row, K), all.subarray(r * K, (r + 1) * K), `${N}×${K} dequant row ${r}`);
      }
    }
  });

for (const variant of BUILDS)
  test(`gemm_q6_kx4's decode tile at the i16 extremes has gemm_k's bits (${buildName(variant)})`, () => {
    const h = new Heap(variant);
    const N = 8,
      K = 1280,
      nb = K / 256;
    const plain = new Uint8Array(N * nb * 210);
    const dv = new DataView(plain.buffer);
    for (let b = 0; b < N * nb; b++) {
      const o = b * 210;
      plain.fill(0xff, o, o + 192); // every quant 63
      for (let k = 0; k < 16; k++) plain[o + 192 + k] = (k + b) % 2 ? 0x7f : 0x80;
      dv.setUint16(o + 208, f32ToF16(0.01), true);
    }
    const M = 3;
    const x = new Float32Array(M * K);
    for (let m = 0; m < M; m++) {
      x.fill(1, m * K, (m + 1) * K); // q8_K: the largest |x| (sign kept) becomes -127, so all -127
      if (m & 1) for (let b = 0; b < nb; b++) x[m * K + 256 * b] = -1.0001; // then +127
    }
    const pa = h.alloc(M * nb * Q8K_BYTES);
    h.k.quantize_act_q8k(h.putF32(x), K, 0, M, K, pa);
    const pw = h.putU8(plain),
      pp = h.putU8(repackX4('q6_k', plain, N, K));
    const qm = new QuantMatrix('q6_k', plain, N, K);
    for (const rows of [1, 2, 3]) {
      const got = h.alloc(rows * N * 4);
      checkBitsAndFloat64(
        h,
        h.k.gemm_q6_kx4,
        { pa, pw, pp, got, M: rows, N, K, tag: `extremes ${rows} rows`, kind: Q6K },
        (m) => qm.matvec(x.subarray(m * K, (m + 1) * K)),
      );
    }
  });
