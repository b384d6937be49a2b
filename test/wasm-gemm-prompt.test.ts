// The prompt tiles over row-interleaved q4_0x4 / q8_0x4 weights (assembly/gemm-q-prompt.ts):
// against a float64 product of the dequantized weights and the q8_0-quantized activations
// (helpers/llamacpp-dot.ts quantizes them as ggml does), bit-identical to gemm_q4_0 / gemm_q8_0 on
// the plain matrix for activation rows in whole groups of 4 (same arithmetic per output), in every
// kernel build (relaxed SIMD, plain SIMD, relaxed dot-add). Shapes: token counts that leave 1, 2 or 3 rows of a last group, weight row
// counts that are not a multiple of 4 (plain rows after the groups), K = 32, K long enough for
// several row blocks, token counts past 16
// (the 16-token tiles, then 8-, 4- and 1–3-token ones; q4_0: every count 1..17 and past). The
// q8_0 tile's sign trick (x ^ sign mask = ~x = -x - 1 where w < 0, the weights' Σ_{w<0}|w| added
// back) is checked at its extremes: weights of ±127 against activations of ±127, where the i16
// pair sums reach -32512; q4_0's at nibbles of 15 against activations of 127 (i16 lanes of 30480).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { actQ8Bytes } from '../src/backends/wasm/kernels.js';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { repackX4 } from '../src/backends/wasm/repack.js';
import { quantizeActivations } from './helpers/llamacpp-dot.js';
import { BUILDS, Heap, rand } from './helpers/wasm-heap.js';

const SHAPES: ReadonlyArray<readonly [number, number, number]> = [
  [4, 4, 32],
  [1, 8, 64],
  [2, 4, 32],
  [3, 12, 96],
  [5, 7, 64],
  [6, 13, 160],
  [7, 33, 288],
  [9, 16, 32],
  [13, 6, 128],
  [16, 20, 256],
  [17, 8, 64],
  [23, 12, 96],
  [30, 5, 32],
  [40, 8, 160],
  // K = 32768: several row blocks (ROW_BLOCK_BYTES: 4 rows a block for q8_0, 12 for q4_0), the
  // tokens passing over each block in turn, plain rows after the last group
  [17, 22, 32768],
];

/**
 * Y[m][n] = Σ_k w[n][k]·x̂[m][k] in float64, x̂ = the q8_0 activations' values, and Σ over the
 * 32-value blocks of |the block's term| (what bounds the rounding of the kernels' f32 sums).
 */
function reference(
  type: 'q4_0' | 'q8_0',
  wq: Uint8Array,
  x: Float32Array,
  M: number,
  N: number,
  K: number,
): { y: Float64Array; mag: Float64Array } {
  const w = dequantize(type, wq, N * K);
  const y = new Float64Array(M * N),
    mag = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    const a = quantizeActivations('q8_0', x.subarray(m * K, (m + 1) * K));
    for (let n = 0; n < N; n++) {
      let s = 0,
        sa = 0;
      for (let k0 = 0; k0 < K; k0 += 32) {
        let b = 0;
        for (let k = k0; k < k0 + 32; k++) b += w[n * K + k]! * a.q![k]! * a.d![k >> 5]!;
        s += b;
        sa += Math.abs(b);
      }
      y[m * N + n] = s;
      mag[m * N + n] = sa;
    }
  }
  return { y, mag };
}

/**
 * Runs the prompt tile (type's x4 kernel) and the plain-row kernel on weights wq (N × K) and the
 * activations x (M × K, quantized by the kernel) and checks the tile's result against the float64
 * reference and, on whole token groups, against the plain product's bits. Returns the operands
 * and a copy of the tile's result, for further calls.
 */
function checkTile(
  h: Heap,
  type: 'q4_0' | 'q8_0',
  wq: Uint8Array,
  x: Float32Array,
  [M, N, K]: readonly [number, number, number],
): { qa: number; packed: number; py: number; y: Float32Array } {
  const prompt = type === 'q4_0' ? h.k.gemm_q4_0x4_prompt : h.k.gemm_q8_0x4_prompt;
  const px = h.putF32(x),
    plain = h.putU8(wq),
    packed = h.putU8(repackX4(type, wq, N, K));
  const qa = h.alloc(actQ8Bytes(M, K));
  h.k.quantize_act_q8(px, K, 0, M, K, qa);
  const py = h.alloc(M * N * 4),
    pz = h.alloc(M * N * 4);
  prompt.call(h.k, qa, packed, py, N, M, N, 0, N, K, 0);
  (type === 'q4_0' ? h.k.gemm_q4_0 : h.k.gemm_q8_0).call(h.k, qa, plain, pz, N, M, 0, N, K, 0);
  const y = h.f32(py, M * N).slice(),
    z = h.f32(pz, M * N);
  const { y: ref, mag } = reference(type, wq, x, M, N, K);
  const whole = M - (M % 4);
  // an f32 sum of K/32 block terms in K order rounds by at most ~(K/32)·2^-24·Σ|term| (the
  // bound that matters at K = 32768); 2e-6 relative covers the scale products at short K
  const blocks = K / 32;
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      const i = m * N + n;
      assert.ok(
        Math.abs(y[i]! - ref[i]!) <= 2e-6 * (1 + Math.abs(ref[i]!)) + blocks * 2 ** -24 * mag[i]!,
        `M${M} N${N} K${K} [${m},${n}] ${y[i]} vs ${ref[i]}`,
      );
      if (m < whole) assert.equal(y[i], z[i], `bits of the plain product at M${M} N${N} K${K} [${m},${n}]`);
    }
  return { qa, packed, py, y };
}

for (const variant of BUILDS)
  for (const type of ['q4_0', 'q8_0'] as const)
    test(`${type}x4 prompt tiles (${variant}): float64 reference, plain product's bits on whole token groups, row splits`, () => {
      const h = new Heap(variant);
      const prompt = (type === 'q4_0' ? h.k.gemm_q4_0x4_prompt : h.k.gemm_q8_0x4_prompt).bind(h.k);
      for (const [M, N, K] of SHAPES) {
        const wq = quantize(type, rand(N * K, N * 29 + K, 0.5));
        if (type === 'q8_0') wq[40] = 0x81; // -127: the extreme weight (ggml never writes -128)
        const x = rand(M * K, M * 13 + K, 2);
        x[1] = 0;
        const { qa, packed, py, y } = checkTile(h, type, wq, x, [M, N, K]);
        // rows split at a multiple of 4 into two calls adding onto a base: the same bits
        const base = rand(M * N, 5);
        h.f32(py, M * N).set(base);
        const cut = 4 * Math.floor(N / 8);
        prompt(qa, packed, py, N, M, N, cut, N, K, 1);
        prompt(qa, packed, py, N, M, N, 0, cut, K, 1);
        const y2 = h.f32(py, M * N);
        for (let i = 0; i < M * N; i++)
          assert.equal(y2[i], Math.fround(base[i]! + y[i]!), `M${M} N${N} K${K} acc [${i}]`);
      }
    });

/** n values of ±1 in runs that vary by 32-value block: all -1, all +1, alternating, or uniform in [-1, 1). */
function extremes(n: number, seed: number, shift: number): Float32Array {
  const r = rand(n, seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const kind = ((i >> 5) + shift) % 4;
    a[i] = kind === 0 ? -1 : kind === 1 ? 1 : kind === 2 ? (i & 1 ? 1 : -1) : r[i]!;
  }
  return a;
}

for (const variant of BUILDS)
  test(`q8_0x4 prompt tile (${variant}): weights and activations of ±127, exact against float64 and the plain product`, () => {
    const h = new Heap(variant);
    const [M, N, K] = [21, 8, 256];
    // Row n's blocks rotate through the four kinds, starting at kind n (so every weight kind meets
    // every activation kind); token m's start at kind 2m.
    const wf = new Float32Array(N * K);
    for (let n = 0; n < N; n++) wf.set(extremes(K, 7 + n, n), n * K);
    const wq = quantize('q8_0', wf);
    const x = new Float32Array(M * K);
    for (let m = 0; m < M; m++) x.set(extremes(K, 50 + m, 2 * m), m * K);
    // the extremes are really there: weights of -127 and 127, activations of 127 and -127
    const wi = new Int8Array(wq.buffer, wq.byteOffset, wq.length);
    assert.ok(wi.includes(-127) && wi.includes(127), 'weights of ±127');
    const qx = quantizeActivations('q8_0', x.subarray(0, K)).q!;
    assert.ok(qx.includes(127) && qx.includes(-127), 'activations of ±127');
    checkTile(h, 'q8_0', wq, x, [M, N, K]);
  });

/** q4_0 bytes of N rows × K: block b of row n has fp16 scale ±(1 + (n + b) % 3)/8 and quant bytes of kind (n + b) % 4: all nibbles 15, all 0, 15/0 alternating, pseudo-random. */
function q4Extremes(N: number, K: number): Uint8Array {
  const nb = K / 32;
  const out = new Uint8Array(N * nb * 18);
  const r = rand(N * nb * 16, 99);
  const half = [0x3000, 0x3400, 0x3600]; // 0.125, 0.25, 0.375
  for (let n = 0; n < N; n++)
    for (let b = 0; b < nb; b++) {
      const o = (n * nb + b) * 18;
      const scale = half[(n + b) % 3]! | (b & 1 ? 0x8000 : 0);
      out[o] = scale & 0xff;
      out[o + 1] = scale >> 8;
      const kind = (n + b) % 4;
      for (let i = 0; i < 16; i++)
        out[o + 2 + i] =
          kind === 0
            ? 0xff
            : kind === 1
              ? 0
              : kind === 2
                ? 0x0f
                : Math.floor((r[(n * nb + b) * 16 + i]! + 1) * 128) & 0xff;
    }
  return out;
}

for (const variant of BUILDS)
  test(`q4_0x4 prompt tiles (${variant}): every leftover token count 1..17 past the 16-, 8- and 4-token tiles, K = 32, nibbles 0 / 15 against activations of ±127`, () => {
    const h = new Heap(variant);
    for (const K of [32, 96])
      for (const M of [...Array.from({ length: 17 }, (_, i) => i + 1), 19, 24, 28, 33, 47]) {
        const N = 9; // two groups of 4, then one plain row
        const wq = q4Extremes(N, K);
        const x = new Float32Array(M * K);
        for (let m = 0; m < M; m++) x.set(extremes(K, 70 + m, m), m * K);
        checkTile(h, 'q4_0', wq, x, [M, N, K]);
      }
    // the extremes are there: a block whose nibbles are all 15 meets one of activations all 127
    // (each i16 lane of the tile then sums 16 products of 15·127 = 30480)
    const a = quantizeActivations('q8_0', extremes(32, 71, 1));
    assert.ok(
      a.q!.every((q) => q === 127),
      'activations of 127 in a block',
    );
    assert.equal(q4Extremes(1, 32)[2], 0xff, 'nibbles of 15 in a block');
  });
