// The pieces a decode pass's work items write (executor.ts, small passes): the up_proj items
// quantize the hidden values they made (quantize_act_q8_span / _row_span / quantize_act_q8k_span)
// and the qkv items store the keys and values they made (store_kv_segs), so that no thread repeats
// the whole row. Written piece by piece, in any order, the bytes equal the whole-row kernels'
// (quantize_act_q8, quantize_act_q8_row, quantize_act_q8k, store_kv_row), padding included. And
// q8_K records (whose largest |x| is now found in SIMD lanes) equal ggml's quantize_row_q8_K as the
// test helper computes it independently: the first value of largest |x| keeps its sign, also when
// an equal |x| of the other sign comes later or a NaN is in the block.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { actQ8Bytes, actQ8KBytes } from '../src/backends/wasm/kernels.js';
import { quantizeActivations } from './helpers/llamacpp-dot.js';
import { BUILDS, Heap, buildName, rand } from './helpers/wasm-heap.js';

/** Splits [0, n) into pieces of `unit` at the given cut points (multiples of unit), in a shuffled order. */
function pieces(n: number, cuts: number[]): Array<[number, number]> {
  const at = [0, ...cuts.filter((c) => c > 0 && c < n), n];
  const out: Array<[number, number]> = [];
  for (let i = 0; i + 1 < at.length; i++) out.push([at[i]!, at[i + 1]!]);
  return out.reverse(); // last piece first: the padding must not depend on the order
}

const Q8K_BYTES = 368;

for (const variant of BUILDS) {
  const build = buildName(variant);

  test(`q8 spans, piece by piece, write the whole-row records' bytes (${build})`, () => {
    const h = new Heap(variant);
    for (const [K, M, cuts] of [
      [96, 1, [32]],
      [256, 3, [64, 96, 224]],
      [8192, 1, [256, 512, 4096, 8160]],
      [2080, 5, [32, 1024, 2048]], // 65 blocks: nb4 pads 3
    ] as Array<[number, number, number[]]>) {
      const x = rand(M * K, K + M, 1);
      x.fill(0, 32, 64); // an all-zero block
      const px = h.putF32(x);
      const bytes = actQ8Bytes(M, K);
      const whole = h.alloc(bytes),
        spans = h.alloc(bytes);
      h.u8(whole, bytes).fill(0xa5);
      h.u8(spans, bytes).fill(0xa5);
      h.k.quantize_act_q8(px, K, 0, M, K, whole);
      for (const [c0, c1] of pieces(K, cuts)) h.k.quantize_act_q8_span(px, K, 0, M, K, spans, c0 / 32, c1 / 32);
      assert.deepEqual(h.u8(spans, bytes), h.u8(whole, bytes), `group records K ${K} M ${M}`);
      if (M !== 1) continue;
      h.u8(whole, bytes).fill(0x5a);
      h.u8(spans, bytes).fill(0x5a);
      h.k.quantize_act_q8_row(px, K, whole);
      for (const [c0, c1] of pieces(K, cuts)) h.k.quantize_act_q8_row_span(px, K, spans, c0 / 32, c1 / 32);
      assert.deepEqual(h.u8(spans, bytes), h.u8(whole, bytes), `row record K ${K}`);
    }
  });

  test(`q8_K records equal ggml's quantize_row_q8_K, whole and piece by piece (${build})`, () => {
    const h = new Heap(variant);
    for (const [K, M, cuts] of [
      [256, 1, []],
      [2048, 3, [256, 1024]],
      [8192, 1, [256, 4096, 7936]],
    ] as Array<[number, number, number[]]>) {
      const nb = K / 256;
      const x = rand(M * K, 3 * K + M, 1);
      x.fill(0, 256, 512); // an all-zero super-block (row 0, block 1)
      // Ties of |x| in row 0: block 0, -2.5 first and +2.5 later (the first, negative, is kept);
      // the last block: +2.5 at lane 2 of a vector, -2.5 at lane 0 of a later one.
      x[17] = -2.5;
      x[200] = 2.5;
      x[K - 256 + 6] = 2.5;
      x[K - 256 + 8] = -2.5;
      if (K >= 2048) {
        // a NaN before the largest |x| of row 0's block 2 (a scalar `|x| > amax` skips it)
        x[512 + 3] = Number.NaN;
        x[512 + 100] = -3;
        // the largest |x| in the very last value of a block
        x[768 + 255] = 4;
      }
      const px = h.putF32(x);
      const bytes = actQ8KBytes(M, K);
      const whole = h.alloc(bytes),
        spans = h.alloc(bytes);
      h.u8(whole, bytes).fill(0xa5); // 12 bytes after d are padding neither writes
      h.u8(spans, bytes).fill(0xa5);
      h.k.quantize_act_q8k(px, K, 0, M, K, whole);
      for (const [c0, c1] of pieces(K, cuts)) h.k.quantize_act_q8k_span(px, K, 0, M, K, spans, c0 / 256, c1 / 256);
      assert.deepEqual(h.u8(spans, bytes), h.u8(whole, bytes), `pieces K ${K} M ${M}`);
      for (let m = 0; m < M; m++) {
        const ref = quantizeActivations('q8_K', x.subarray(m * K, (m + 1) * K));
        for (let b = 0; b < nb; b++) {
          const rec = whole + (m * nb + b) * Q8K_BYTES;
          const what = `K ${K} row ${m} block ${b}`;
          assert.deepEqual(h.i8(rec, 256), ref.q!.subarray(b * 256, (b + 1) * 256), `${what} quants`);
          assert.equal(h.f32(rec + 256, 1)[0], ref.d![b], `${what} d`);
          const b16 = new Int32Array(h.u8(rec + 272, 64).slice().buffer);
          assert.deepEqual(b16, ref.bsums!.subarray(b * 16, (b + 1) * 16), `${what} sums of 16`);
          const b32 = new Int32Array(h.u8(rec + 336, 32).slice().buffer);
          assert.deepEqual(
            Array.from(b32),
            Array.from({ length: 8 }, (_, k) => b16[2 * k]! + b16[2 * k + 1]!),
            `${what} sums of 32`,
          );
        }
      }
    }
  });

  test(`store_kv_segs, segment by segment, stores what store_kv_row stores: f32, f16, q8_0 (${build})`, () => {
    const h = new Heap(variant);
    for (const [mode, seg, n] of [
      [0, 64, 256],
      [1, 64, 256],
      [2, 64, 256],
      [2, 96, 288], // q8_0 with a short last block per segment
    ] as Array<[number, number, number]>) {
      const cap = 5,
        pos = 3;
      const x = rand(n, n + mode, 2);
      x[7] = 1e-6; // a subnormal half
      const px = h.putF32(x);
      const segBytes = mode === 0 ? seg * 4 : mode === 1 ? seg * 2 : Math.ceil(seg / 32) * 34;
      const bytes = (n / seg) * cap * segBytes;
      const whole = h.alloc(bytes),
        segs = h.alloc(bytes);
      h.u8(whole, bytes).fill(0x33);
      h.u8(segs, bytes).fill(0x33);
      h.k.store_kv_row(px, n, seg, mode, whole, cap, pos);
      for (const [s0, s1] of pieces(n / seg, [1, 3])) h.k.store_kv_segs(px, s0, s1, seg, mode, segs, cap, pos);
      assert.deepEqual(h.u8(segs, bytes), h.u8(whole, bytes), `mode ${mode} seg ${seg}`);
    }
  });
}
