// The row-interleaved (x4) forms of q4_0 / q8_0 matrices (src/backends/wasm/repack.ts): read back
// by a dequantizer written here from the layout's description alone, every matrix gives exactly
// the values ggml's dequantization gives for the plain matrix. Shapes include row counts that are
// not a multiple of 4 (plain rows after the groups), fewer than 4 rows, and K = 32.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { actQ8Bytes } from '../src/backends/wasm/kernels.js';
import { BUILDS, Heap, buildName, rand } from './helpers/wasm-heap.js';

const SHAPES: ReadonlyArray<readonly [number, number]> = [
  [4, 32],
  [1, 64],
  [3, 32],
  [5, 96],
  [8, 32],
  [13, 160],
  [16, 256],
];

/** [activation rows, weight rows, K]: rows not a multiple of 4 on both sides, fewer than 4, K = 32. */
const PRODUCTS = [
  [1, 4, 32],
  [1, 7, 64],
  [2, 13, 96],
  [3, 8, 416],
  [4, 5, 32],
  [5, 16, 160],
  [7, 9, 288],
  [9, 3, 64],
] as const;

/** The scale an x4 block's bits stand for (sign | E << 10 | m = ±2^(E-25)·(1 + m/1024), repack.ts x4ScaleBits). */
function x4ScaleValue(b: number): number {
  const sign = b & 0x8000 ? -1 : 1;
  return (b & 0x7fff) === 0 ? sign * 0 : sign * 2 ** (((b >> 10) & 31) - 25) * (1 + (b & 0x3ff) / 1024);
}

/** Values of an x4 matrix, read as the layout is described (groups, then plain leftover rows). */
function dequantizeX4(t: 'q4_0' | 'q8_0', bytes: Uint8Array, rows: number, K: number): Float32Array {
  const nb = K / 32,
    q = t === 'q4_0' ? 16 : 32,
    blk = 8 + 4 * q;
  const out = new Float32Array(rows * K);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const groups = Math.floor(rows / 4);
  for (let g = 0; g < groups; g++)
    for (let b = 0; b < nb; b++) {
      const at = g * nb * blk + b * blk;
      for (let i = 0; i < 4; i++) {
        const d = x4ScaleValue(dv.getUint16(at + 2 * i, true));
        const qs = at + 8 + i * q,
          y = (4 * g + i) * K + b * 32;
        for (let j = 0; j < 32; j++) {
          let v: number;
          if (t === 'q4_0') {
            const byte = bytes[qs + (j & 15)]!;
            v = (j < 16 ? byte & 15 : byte >> 4) - 8;
          } else v = dv.getInt8(qs + j);
          out[y + j] = Math.fround(v * d);
        }
      }
    }
  const rest = 4 * groups;
  const plainRow = nb * (t === 'q4_0' ? 18 : 34);
  out.set(dequantize(t, bytes.subarray(rest * plainRow), (rows - rest) * K), rest * K);
  return out;
}

test('x4 repacked q4_0 / q8_0 matrices dequantize to the plain matrices values, leftover rows plain', () => {
  for (const t of ['q4_0', 'q8_0'] as const)
    for (const [rows, K] of SHAPES) {
      const plain = quantize(t, rand(rows * K, rows * 7 + K, 3));
      const packed = repackX4(t, plain, rows, K);
      assert.equal(packed.length, plain.length);
      assert.deepEqual(dequantizeX4(t, packed, rows, K), dequantize(t, plain, rows * K), `${t} ${rows}×${K}`);
      if (rows % 4 !== 0) {
        const tail = (rows - (rows % 4)) * (K / 32) * (t === 'q4_0' ? 18 : 34);
        assert.deepEqual(packed.subarray(tail), plain.subarray(tail), 'leftover rows stay as stored');
      }
    }
});

test('repackX4 refuses a row length that is not whole blocks or too few bytes', () => {
  assert.throws(() => repackX4('q4_0', new Uint8Array(18 * 4), 4, 48), RangeError);
  assert.throws(() => repackX4('q8_0', new Uint8Array(34 * 3), 4, 32), RangeError);
});

for (const variant of BUILDS)
  test(`x4 products: each row has the bits of the plain 4-row tile (leftover rows: the plain kernels), any row split (${buildName(variant)})`, () => {
    // The x4 kernels sum a row's blocks in the order and with the operations of gemm_q4_0 /
    // gemm_q8_0's 4-activation-row tile (lanes = activation rows), so the same bits are expected,
    // also for activation rows that go through the 1-row x4 tile (decode). Weight rows after the
    // last group of 4 are plain and go through the plain kernels (1-row tile: its own order).
    const h = new Heap(variant);
    for (const t of ['q4_0', 'q8_0'] as const)
      for (const [M, N, K] of PRODUCTS) {
        const plain = quantize(t, rand(N * K, N * 13 + K, 0.5));
        if (t === 'q8_0') plain[40] = 0x81; // -127, the extreme weight
        const packed = repackX4(t, plain, N, K);
        const M4 = Math.ceil(M / 4) * 4;
        const x = rand(M4 * K, M * 5 + K, 2);
        x[1] = 0;
        const px = h.putF32(x);
        const qa = h.alloc(actQ8Bytes(M4, K));
        h.k.quantize_act_q8(px, K, 0, M4, K, qa);
        const pw = h.putU8(plain),
          pp = h.putU8(packed);
        const old = t === 'q4_0' ? h.k.gemm_q4_0.bind(h.k) : h.k.gemm_q8_0.bind(h.k);
        const x4 = t === 'q4_0' ? h.k.gemm_q4_0x4.bind(h.k) : h.k.gemm_q8_0x4.bind(h.k);
        // every activation row through the plain 4-row tile
        const yt = h.alloc(M4 * N * 4);
        old(qa, pw, yt, N, M4, 0, N, K, 0);
        const tile4 = h.f32(yt, M4 * N).slice();
        // the rows after the last activation group, one at a time through the plain 1-row tile
        const m4 = M & ~3,
          ng = N & ~3;
        const single = new Float32Array(M * N);
        for (let m = m4; m < M; m++) {
          const q1 = h.alloc(actQ8Bytes(1, K)),
            y1 = h.alloc(N * 4);
          h.k.quantize_act_q8(px + m * K * 4, K, 0, 1, K, q1);
          old(q1, pw, y1, N, 1, 0, N, K, 0);
          single.set(h.f32(y1, N), m * N);
        }
        const py = h.alloc(M * N * 4);
        x4(qa, pp, py, N, M, N, 0, N, K, 0);
        const y = h.f32(py, M * N).slice();
        for (let m = 0; m < M; m++)
          for (let n = 0; n < N; n++) {
            const want = m < m4 || n < ng ? tile4[m * N + n]! : single[m * N + n]!;
            if (!Object.is(y[m * N + n], want))
              assert.fail(`${t} M${M} N${N} K${K} [${m},${n}]: ${y[m * N + n]} vs ${want}`);
          }
        // rows split at a point inside a group, added onto a base: the same bits
        const base = rand(M * N, 9);
        h.f32(py, M * N).set(base);
        const cut = Math.min(N, 1 + (N >> 1));
        x4(qa, pp, py, N, M, N, cut, N, K, 1);
        x4(qa, pp, py, N, M, N, 0, cut, K, 1);
        const y2 = h.f32(py, M * N);
        for (let i = 0; i < M * N; i++) assert.equal(y2[i], Math.fround(base[i]! + y[i]!), `${t} split ${i}`);
        // the wasm in-place repack writes the same bytes; dequant_row_x4 reads rows back
        const pr = h.putU8(plain),
          tmp = h.alloc(4 * plain.length);
        h.k.repack_x4(t === 'q4_0' ? 1 : 0, pr, ng, K, tmp, 0);
        assert.deepEqual(h.u8(pr, packed.length), packed, `${t} repack_x4 ${N}×${K}`);
        const row = h.alloc(K * 4),
          all = dequantize(t, plain, N * K);
        for (let r = 0; r < N; r++) {
          h.k.dequant_row_x4(t === 'q4_0' ? 1 : 0, pp, N, K, r, row);
          assert.deepEqual(h.f32(row, K), all.subarray(r * K, (r + 1) * K), `${t} dequant_row_x4 row ${r}`);
        }
      }
  });
