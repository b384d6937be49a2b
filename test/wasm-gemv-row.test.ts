// Decode products over a row record (quant-act.ts: one activation row's 8·Σq and d·2^102, then
// its quants dense): quantize_act_q8_row writes what quantize_act_q8 writes for the same row in a
// group record, laid out as the row record is described; gemv_q4_0x4 gives each output the bits
// gemm_q4_0x4 gives for that row from the group record (the backend's q4_0 decode steps switched
// from the one to the other), and values within float32 rounding of a
// float64 sum over the dequantized weights and activations. Shapes: fewer than 4 weight rows (all
// plain), rows not a multiple of 4, K = 32, an odd block count, K = 16384 (the 8-row tile: group
// pairs, an odd group after them); splits inside a group and at a group boundary, added onto a base.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { actQ8Bytes } from '../src/backends/wasm/kernels.js';
import { BUILDS, Heap, buildName, rand } from './helpers/wasm-heap.js';

/** [weight rows, K] */
const SHAPES = [
  [1, 64],
  [3, 32],
  [4, 32],
  [7, 96],
  [13, 416],
  [16, 256],
  [9, 8192],
  // K = 16384: whole groups in pairs through the 8-row tile (TILE8_MIN_BLOCKS), 2 pairs then an
  // odd group and a plain row; 10 groups in 5 pairs
  [21, 16384],
  [40, 16384],
] as const;

const nb4 = (nb: number) => Math.ceil(nb / 4) * 4;

for (const variant of BUILDS) {
  const build = buildName(variant);

  test(`quantize_act_q8_row: the group record's row 0, dense (${build})`, () => {
    const h = new Heap(variant);
    for (const K of [32, 96, 256, 8192]) {
      const nb = K / 32;
      const x = rand(K, K + 3, 3);
      x[5] = 0;
      x.fill(0, 32, 64); // an all-zero block (d = 0)
      const px = h.putF32(x);
      const g = h.alloc(actQ8Bytes(1, K)),
        r = h.alloc(actQ8Bytes(1, K));
      h.u8(r, actQ8Bytes(1, K)).fill(0xa5); // the padding blocks must be written
      h.k.quantize_act_q8(px, K, 0, 1, K, g);
      h.k.quantize_act_q8_row(px, K, r);
      // group record of 1 row: quants of block b at b·128, DX1 at nb·160, SX1 after nb4 of them
      const gq = h.i8(g, nb * 128),
        rq = h.i8(r + nb4(nb) * 8, nb * 32);
      for (let b = 0; b < nb; b++)
        assert.deepEqual(rq.subarray(b * 32, b * 32 + 32), gq.subarray(b * 128, b * 128 + 32), `K ${K} block ${b}`);
      // DX1 and SX1 of row 0: [4][nb4] each in the group record; in the row record SX1 at 0, DX1 after it
      const bits = (p: number) => new Uint32Array(h.u8(p, 4 * nb4(nb)).slice().buffer);
      assert.deepEqual(bits(r + nb4(nb) * 4), bits(g + nb * 160), `K ${K} d·2^102`);
      assert.deepEqual(bits(r), bits(g + nb * 160 + nb4(nb) * 16), `K ${K} 8·Σq`);
    }
  });

  test(`gemv_q4_0x4: the bits of gemm_q4_0x4 for one row, near a float64 sum (${build})`, () => {
    const h = new Heap(variant);
    const t = 'q4_0';
    for (const [N, K] of SHAPES) {
      const nb = K / 32;
      const plain = quantize(t, rand(N * K, N * 11 + K, 0.5));
      const packed = N >= 4 ? repackX4(t, plain, N, K) : plain;
      const x = rand(K, N + K, 2);
      const px = h.putF32(x),
        pp = h.putU8(packed);
      const g = h.alloc(actQ8Bytes(1, K)),
        r = h.alloc(actQ8Bytes(1, K));
      h.k.quantize_act_q8(px, K, 0, 1, K, g);
      h.k.quantize_act_q8_row(px, K, r);
      const yg = h.alloc(N * 4),
        yr = h.alloc(N * 4);
      if (N >= 4) h.k.gemm_q4_0x4(g, pp, yg, N, 1, N, 0, N, K, 0);
      else h.k.gemm_q4_0(g, pp, yg, N, 1, 0, N, K, 0);
      const gemv = h.k.gemv_q4_0x4.bind(h.k);
      gemv(r, pp, yr, N, 0, N, K, 0);
      const want = h.f32(yg, N).slice(),
        got = h.f32(yr, N).slice();
      for (let n = 0; n < N; n++)
        if (!Object.is(got[n], want[n])) assert.fail(`${t} N${N} K${K} row ${n}: ${got[n]} vs ${want[n]}`);
      // float64: weights dequantized, activations from the row record (d = DX1 / 2^102, x4-scale.ts)
      const w = dequantize(t, plain, N * K),
        q = h.i8(r + nb4(nb) * 8, K),
        d = h.f32(r + nb4(nb) * 4, nb);
      for (let n = 0; n < N; n++) {
        let ref = 0,
          mag = 0;
        for (let i = 0; i < K; i++) {
          const v = w[n * K + i]! * q[i]! * (d[i >> 5]! / 2 ** 102);
          ref += v;
          mag += Math.abs(v);
        }
        assert.ok(Math.abs(got[n]! - ref) <= 1e-6 * mag + 1e-30, `${t} N${N} K${K} row ${n}: ${got[n]} vs ${ref}`);
      }
      // a split inside a group, added onto a base
      const base = rand(N, 9);
      h.f32(yr, N).set(base);
      const cut = Math.min(N, 1 + (N >> 1));
      gemv(r, pp, yr, N, cut, N, K, 1);
      gemv(r, pp, yr, N, 0, cut, K, 1);
      const y2 = h.f32(yr, N);
      for (let n = 0; n < N; n++) assert.equal(y2[n], Math.fround(base[n]! + got[n]!), `${t} N${N} K${K} split ${n}`);
      // a split at a group boundary (the executor's row chunks start at multiples of 4)
      if (N >= 12) {
        h.f32(yr, N).set(base);
        gemv(r, pp, yr, N, 4, N, K, 1);
        gemv(r, pp, yr, N, 0, 4, K, 1);
        const y3 = h.f32(yr, N);
        for (let n = 0; n < N; n++)
          assert.equal(y3[n], Math.fround(base[n]! + got[n]!), `${t} N${N} K${K} split at 4, row ${n}`);
      }
    }
  });
}
