// Kernel-level tests of the wasm SIMD kernels against independent references: ggml-quants.ts
// (another engineer's scalar port of ggml's quantizers) and helpers/llamacpp-dot.ts (llama.cpp's
// dot-product arithmetic),
// dtypes.ts conversions, and float64 loops written here. Sizes are deliberately not multiples of
// the vector (4/8), block (32) or tile (4 rows, 32 keys) widths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { usingRelaxedSimd } from '../src/backends/wasm/module-loader.js';
import { HALF_PANEL_BYTES, actQ8Bytes } from '../src/backends/wasm/kernels.js';
import { byteLengthOf, dequantize, quantize } from '../src/formats/ggml-quants.js';
import { QuantMatrix, quantizeActivations } from './helpers/llamacpp-dot.js';
import { f16ToF32, f32ToF16, f32ToBf16 } from '../src/formats/dtypes.js';
import { erf } from '../src/backends/reference/math.js';
import { openCheckpoint } from '../src/model/load.js';
import { fixturePath } from './helpers/goldens.js';
import { BUILDS, Heap, buildName, rand } from './helpers/wasm-heap.js';

test('q8_0 / q4_0 weight quantizers are bit-identical to ggml reference quantizers', () => {
  const h = new Heap();
  for (const n of [32, 96, 320]) {
    const x = rand(n, n, 3);
    x[5] = 0;
    x[7] = -x[3]!; // ties of |max| with both signs
    const zeros = new Float32Array(32);
    for (const src of [x, zeros]) {
      const p = h.putF32(src);
      const q8 = h.alloc(byteLengthOf('q8_0', src.length)),
        q4 = h.alloc(byteLengthOf('q4_0', src.length));
      h.k.quantize_q8_0(p, src.length, q8);
      h.k.quantize_q4_0(p, src.length, q4);
      assert.deepEqual(h.u8(q8, byteLengthOf('q8_0', src.length)), quantize('q8_0', src));
      assert.deepEqual(h.u8(q4, byteLengthOf('q4_0', src.length)), quantize('q4_0', src));
    }
  }
});

test('f16 / bf16 conversions match dtypes.ts (subnormals, ties, overflow)', () => {
  const h = new Heap();
  const special = [
    0,
    -0,
    1,
    -1,
    65504,
    65519,
    65520,
    1e6,
    6.1e-5,
    6.0e-5,
    5.96e-8,
    2.98e-8,
    2.99e-8,
    1e-10,
    0.1,
    1 / 3,
    Math.PI,
    -2.5e-6,
  ];
  const x = Float32Array.from([...special, ...rand(200, 7, 10)]);
  const px = h.putF32(x);
  const p16 = h.alloc(x.length * 2),
    pb16 = h.alloc(x.length * 2);
  h.k.f32_to_f16_array(px, x.length, p16);
  h.k.f32_to_bf16_array(px, x.length, pb16);
  const u16 = new Uint16Array(h.memory.buffer, p16, x.length);
  const ub16 = new Uint16Array(h.memory.buffer, pb16, x.length);
  for (let i = 0; i < x.length; i++) {
    assert.equal(u16[i], f32ToF16(x[i]!), `f16 of ${x[i]}`);
    assert.equal(ub16[i], f32ToBf16(x[i]!), `bf16 of ${x[i]}`);
  }
  // every finite f16 widens exactly
  const all = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i;
  const pa = h.alloc(65536 * 2);
  new Uint16Array(h.memory.buffer, pa, 65536).set(all);
  const back = h.alloc(65536 * 4);
  h.k.f16_to_f32_array(pa, 65536, back);
  const w = h.f32(back, 65536);
  for (let i = 0; i < 65536; i++) {
    if ((i & 0x7c00) === 0x7c00) continue; // Inf/NaN are not weights
    assert.equal(w[i], f16ToF32(i), `f16 bits ${i.toString(16)}`);
  }
});

test('activation quantization equals llama.cpp q8_0 activations (ggml-quants quantizeActivations)', () => {
  const h = new Heap();
  const M = 6,
    K = 160,
    nb = K / 32,
    nb4 = 8;
  const x = rand(M * K, 77, 3);
  x.fill(0, 32, 64); // an all-zero block
  x[100] = 1e-30;
  const px = h.putF32(x),
    qa = h.alloc(actQ8Bytes(M, K));
  h.k.quantize_act_q8(px, K, 0, M, K, qa);
  const group = nb * 160 + nb4 * 32;
  for (let m = 0; m < M; m++) {
    const ref = quantizeActivations('q8_0', x.subarray(m * K, (m + 1) * K));
    const g = qa + Math.floor(m / 4) * group,
      t = m % 4;
    for (let b = 0; b < nb; b++) {
      assert.deepEqual(
        Array.from(h.i8(g + b * 128 + t * 32, 32)),
        Array.from(ref.q!.subarray(b * 32, b * 32 + 32)),
        `row ${m} block ${b}`,
      );
      assert.equal(h.f32(g + nb * 128 + b * 16 + t * 4, 1)[0], ref.d![b]);
      assert.equal(h.f32(g + nb * 160 + t * nb4 * 4 + b * 4, 1)[0], ref.d![b]! * 2 ** 102); // DX1 is kept scaled by 2^102 (x4-scale.ts)
    }
  }
});

for (const variant of BUILDS)
  test(`activation quantization at the edges of its integer rounding equals llama.cpp's q8_0 activations (${buildName(variant)})`, () => {
    // quant-act.ts rounds x·(127/amax) through the bits of + 1.5·2^23 and finds amax by integer
    // max, falling back to wasm's max and trunc_sat below amax = 2^-120: exact ties (both signs,
    // odd and even), a negative maximum, amax on both sides of that threshold, an fp16-subnormal
    // d, a huge amax, zeros of both signs.
    const h = new Heap(variant);
    const K = 9 * 32;
    const x = new Float32Array(K);
    for (let j = 0; j < 32; j++) x[j] = j === 0 ? 127 : (j % 2 ? -1 : 1) * (((j * 37) % 120) + 0.5); // id = 1: ties
    for (let j = 0; j < 32; j++) x[32 + j] = (j === 9 ? -63.5 : ((j * 29) % 64) - 31.75) / 4; // amax 15.875 (negative); id·x ties
    const tiny = [2 ** -119, 2 ** -120, 2 ** -121, 1e-4, 3e38];
    for (const [i, a] of tiny.entries())
      for (let j = 0; j < 32; j++) x[64 + 32 * i + j] = j === 3 ? -a : a * Math.fround(((j * 53) % 97) / 97 - 0.5);
    for (let j = 0; j < 32; j++) x[224 + j] = j % 2 ? -0 : 0;
    for (let j = 0; j < 32; j++) x[256 + j] = Math.fround((j - 15.5) * 0.0312);
    const px = h.putF32(x),
      qa = h.alloc(actQ8Bytes(1, K));
    h.k.quantize_act_q8(px, K, 0, 1, K, qa);
    const ref = quantizeActivations('q8_0', x);
    const nb = K / 32;
    for (let b = 0; b < nb; b++) {
      assert.deepEqual(
        Array.from(h.i8(qa + b * 128, 32)),
        Array.from(ref.q!.subarray(b * 32, b * 32 + 32)),
        `block ${b}`,
      );
      assert.equal(h.f32(qa + nb * 128 + b * 16, 1)[0], ref.d![b], `d of block ${b}`);
      const sum = ref.q!.subarray(b * 32, b * 32 + 32).reduce((s, v) => s + v, 0);
      assert.equal(new Int32Array(h.memory.buffer, qa + nb * 144 + b * 16, 1)[0], 8 * sum, `8·Σq of block ${b}`);
    }
  });

for (const variant of BUILDS)
  test(`q8_K activation quantization at the edges of its integer rounding equals llama.cpp's q8_K (${buildName(variant)})`, () => {
    // gemm-k.ts rounds x·(-127/max) through the bits of + 1.5·2^23 and finds amax by integer max,
    // falling back to pmax and trunc_sat for Inf / NaN and amax < 2^-120: exact ties (both signs,
    // odd and even), |max| twice with both signs (the first is max), amax on both sides of that
    // threshold, a huge amax, zeros of both signs, a NaN and an Inf block.
    const h = new Heap(variant);
    const blocks: ((j: number) => number)[] = [
      (j) => (j === 7 ? -127 : j === 9 ? 127 : (j % 2 ? -1 : 1) * (((j * 37) % 120) + 0.5)), // iscale = 1: ties
      (j) => (j === 200 ? 127 : (j % 3 ? 1 : -1) * (((j * 41) % 126) + 0.5)), // iscale = -1: ties
      (j) => (j === 9 ? -63.5 : ((j * 29) % 64) - 31.75) / 4, // max -15.875; iscale·x ties
      ...[2 ** -119, 2 ** -120, 2 ** -121, 1e-4, 3e38].map(
        (a) => (j: number) => (j === 3 ? -a : a * Math.fround(((j * 53) % 97) / 97 - 0.5)),
      ),
      (j) => (j % 2 ? -0 : 0),
      (j) => (j === 77 ? Number.NaN : Math.fround((j - 127.5) * 0.0312)),
      (j) => (j === 130 ? Number.POSITIVE_INFINITY : Math.fround((j - 127.5) * 0.0312)),
    ];
    const nb = blocks.length,
      K = 256 * nb;
    const x = new Float32Array(K);
    for (const [b, f] of blocks.entries()) for (let j = 0; j < 256; j++) x[256 * b + j] = f(j);
    const px = h.putF32(x),
      pa = h.alloc(nb * 368);
    h.k.quantize_act_q8k(px, K, 0, 1, K, pa);
    const ref = quantizeActivations('q8_K', x);
    for (let b = 0; b < nb; b++) {
      const rec = pa + b * 368;
      assert.deepEqual(Array.from(h.i8(rec, 256)), Array.from(ref.q!.subarray(b * 256, b * 256 + 256)), `block ${b}`);
      assert.equal(h.f32(rec + 256, 1)[0], ref.d![b], `d of block ${b}`);
      const b16 = Array.from(ref.bsums!.subarray(16 * b, 16 * b + 16));
      assert.deepEqual(Array.from(new Int32Array(h.memory.buffer, rec + 272, 16)), b16, `bsums16 of block ${b}`);
      const b32 = Array.from({ length: 8 }, (_, k) => b16[2 * k]! + b16[2 * k + 1]!);
      assert.deepEqual(Array.from(new Int32Array(h.memory.buffer, rec + 336, 8)), b32, `bsums32 of block ${b}`);
    }
  });

for (const variant of ['shared', 'shared-base'] as const)
  test(`k-quant products (q4_K, q5_K, q6_K from llama-quantize) equal llama.cpp arithmetic; rows dequantize exactly (${variant})`, async () => {
    const h = new Heap(variant);
    const kinds = { q4_k: 5, q5_k: 6, q6_k: 7 } as const;
    for (const dtype of ['q4_k', 'q5_k', 'q6_k'] as const) {
      const ck = await openCheckpoint(fixturePath(`gguf-tiny-q/tiny-q-${dtype}.gguf`));
      try {
        for (const name of ['transformer.blocks.0.attn.Wqkv.weight', 'transformer.blocks.1.ffn.down_proj.weight']) {
          const info = ck.tensors.info(name)!;
          const [N0, K] = info.shape as [number, number];
          const N = Math.min(N0, 37); // a ragged number of rows
          const bytes = (await ck.tensors.read(name)).subarray(0, byteLengthOf(dtype, N * K));
          const pw = h.putU8(bytes);
          const M = 3;
          const x = rand(M * K, K + N, 2);
          x.fill(0, 256, 512); // an all-zero super-block
          const px = h.putF32(x),
            pa = h.alloc(M * (K / 256) * 368),
            py = h.alloc(M * N * 4);
          h.k.quantize_act_q8k(px, K, 0, M, K, pa);
          h.k.gemm_k(kinds[dtype], pa, pw, py, N, M, 0, N, K, 0);
          const y = h.f32(py, M * N).slice();
          const qm = new QuantMatrix(dtype, bytes, N, K);
          for (let m = 0; m < M; m++) {
            const ref = qm.matvec(x.subarray(m * K, (m + 1) * K));
            for (let n = 0; n < N; n++)
              assert.ok(
                Math.abs(y[m * N + n]! - ref[n]!) <= 3e-6 * (1 + Math.abs(ref[n]!)),
                `${dtype} ${name} [${m},${n}] ${y[m * N + n]} vs ${ref[n]}`,
              );
          }
          const deq = dequantize(dtype, bytes, N * K);
          const po = h.alloc(K * 4);
          for (const r of [0, N - 1]) {
            h.k.dequant_row(kinds[dtype], pw, K, r, po);
            assert.deepEqual(h.f32(po, K), deq.subarray(r * K, (r + 1) * K));
          }
        }
      } finally {
        await ck.tensors.close();
      }
    }
  });

/** Y = X·W^T in float64 from f32 weights. */
function refGemm(x: Float32Array, w: ArrayLike<number>, M: number, N: number, K: number): Float64Array {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k]! * w[n * K + k]!;
      y[m * N + n] = s;
    }
  return y;
}

test('the relaxed-SIMD kernel build is in use (Node 20 with the V8 flag set by module-loader)', () => {
  assert.equal(usingRelaxedSimd(), true);
});

for (const variant of BUILDS)
  test(`q4_0 / q8_0 products equal llama.cpp arithmetic (QuantMatrix), thread splits do not change bits (${buildName(variant)})`, () => {
    const h = new Heap(variant);
    for (const dtype of ['q4_0', 'q8_0'] as const) {
      for (const [M, N, K] of [
        [1, 1, 32],
        [3, 7, 96],
        [5, 13, 160],
        [9, 5, 64],
        [4, 33, 32],
        [6, 17, 416],
        [2, 9, 288],
      ] as const) {
        const wf = rand(N * K, N * 31 + K, 0.5);
        const wq = quantize(dtype, wf);
        const x = rand(M * K, M * 17 + K, 2);
        x[3] = 0;
        if (dtype === 'q8_0') wq[40] = 0x81; // -127: the extreme weight (ggml never writes -128)
        const px = h.putF32(x),
          pw = h.putU8(wq);
        const qa = h.alloc(actQ8Bytes(M, K));
        h.k.quantize_act_q8(px, K, 0, M, K, qa);
        const py = h.alloc(M * N * 4);
        const gemm = dtype === 'q4_0' ? h.k.gemm_q4_0.bind(h.k) : h.k.gemm_q8_0.bind(h.k);
        gemm(qa, pw, py, N, M, 0, N, K, 0);
        const y = h.f32(py, M * N).slice();
        const qm = new QuantMatrix(dtype, wq, N, K);
        for (let m = 0; m < M; m++) {
          const ref = qm.matvec(x.subarray(m * K, (m + 1) * K));
          for (let n = 0; n < N; n++) {
            assert.ok(
              Math.abs(y[m * N + n]! - ref[n]!) <= 2e-6 * (1 + Math.abs(ref[n]!)),
              `${dtype} M${M} N${N} K${K} [${m},${n}] ${y[m * N + n]} vs ${ref[n]}`,
            );
          }
        }
        // split the rows in two calls and accumulate on top of a base: identical bits
        const base = rand(M * N, 5);
        h.f32(py, M * N).set(base);
        const cut = Math.floor(N / 2);
        gemm(qa, pw, py, N, M, cut, N, K, 1);
        gemm(qa, pw, py, N, M, 0, cut, K, 1);
        const y2 = h.f32(py, M * N);
        for (let i = 0; i < M * N; i++) assert.equal(y2[i], Math.fround(base[i]! + y[i]!));
        // one row at a time (decode tiles): llama.cpp's arithmetic too, to float rounding
        for (let m = 0; m < M; m++) {
          const p1 = h.alloc(N * 4);
          const qa1 = h.alloc(actQ8Bytes(1, K));
          h.k.quantize_act_q8(px + m * K * 4, K, 0, 1, K, qa1);
          gemm(qa1, pw, p1, N, 1, 0, N, K, 0);
          const y1 = h.f32(p1, N);
          for (let n = 0; n < N; n++)
            assert.ok(Math.abs(y1[n]! - y[m * N + n]!) <= 2e-6 * (1 + Math.abs(y[m * N + n]!)));
        }
      }
    }
  });

test('f32 / f16 / bf16 products match float64 on ragged sizes; thread splits do not change bits', () => {
  const h = new Heap();
  const panel = h.alloc(HALF_PANEL_BYTES);
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    for (const [M, N, K] of [
      [1, 3, 5],
      [5, 7, 13],
      [6, 9, 67],
      [4, 4, 8],
      [2, 11, 130],
      [9, 70, 2000],
    ] as const) {
      const wf = rand(N * K, N + K * 3, 0.7);
      const wb = quantize(dtype, wf);
      const wd = dequantize(dtype, wb, N * K);
      const x = rand(M * K, M + K, 1.5);
      const px = h.putF32(x),
        pw = h.putU8(wb),
        py = h.alloc(M * N * 4);
      const f = (n0: number, n1: number, acc: number, m = M, xp = px, yp = py) => {
        if (dtype === 'f32') h.k.gemm_f32(xp, K, pw, K, yp, N, m, n0, n1, K, acc);
        else if (dtype === 'f16') h.k.gemm_f16(xp, K, pw, K, yp, N, m, n0, n1, K, acc, panel);
        else h.k.gemm_bf16(xp, K, pw, K, yp, N, m, n0, n1, K, acc, panel);
      };
      f(0, N, 0);
      const y = h.f32(py, M * N).slice();
      const ref = refGemm(x, wd, M, N, K);
      for (let i = 0; i < M * N; i++)
        assert.ok(Math.abs(y[i]! - ref[i]!) < 1e-5 * Math.sqrt(K), `${dtype} M${M} N${N} K${K} [${i}]`);
      // rows split between two calls (two threads) and accumulated onto a base: identical bits
      const base = rand(M * N, 11);
      h.f32(py, M * N).set(base);
      const cut = Math.floor(N / 3);
      f(cut, N, 1);
      f(0, cut, 1);
      const y2 = h.f32(py, M * N);
      for (let i = 0; i < M * N; i++) assert.equal(y2[i], Math.fround(base[i]! + y[i]!));
      // one row at a time (decode): same values to rounding
      for (let m = 0; m < M; m++) {
        const p1 = h.alloc(N * 4);
        f(0, N, 0, 1, px + m * K * 4, p1);
        const y1 = h.f32(p1, N);
        for (let n = 0; n < N; n++)
          assert.ok(Math.abs(y1[n]! - y[m * N + n]!) <= 1e-6 * (1 + Math.abs(y[m * N + n]!)) * Math.sqrt(K));
      }
    }
  }
});

test('bf16 / f16 products: register tiles (4-16 rows, X packed for bf16) and the f32 panel (more rows) give the same bits', () => {
  const h = new Heap();
  const panel = h.alloc(HALF_PANEL_BYTES);
  for (const dtype of ['bf16', 'f16'] as const) {
    for (const [N, K] of [
      [37, 256],
      [12, 68],
      [9, 13],
      [64, 1000],
    ] as const) {
      const M = 24;
      const wb = quantize(dtype, rand(N * K, N * 3 + K, 0.6));
      const x = rand(M * K, M + K * 5, 2);
      const px = h.putF32(x),
        pw = h.putU8(wb),
        pAll = h.alloc(M * N * 4);
      const gemm = (xp: number, m: number, yp: number) =>
        (dtype === 'bf16' ? h.k.gemm_bf16 : h.k.gemm_f16).call(h.k, xp, K, pw, K, yp, N, m, 0, N, K, 0, panel);
      gemm(px, M, pAll); // M > 16: the panel path
      const all = h.f32(pAll, M * N).slice();
      for (const m of [4, 5, 7, 8, 11, 16]) {
        const py = h.alloc(m * N * 4);
        gemm(px, m, py);
        const got = h.f32(py, m * N);
        for (let i = 0; i < m * N; i++)
          assert.ok(Object.is(got[i], all[i]), `${dtype} N${N} K${K} M${m} [${i}] ${got[i]} vs ${all[i]}`);
      }
    }
  }
});

test('layernorm / rmsnorm match float64', () => {
  const h = new Heap();
  for (const n of [1, 7, 64, 130]) {
    const M = 3;
    const x = rand(M * n, n, 4),
      w = rand(n, n + 1, 1),
      b = rand(n, n + 2, 1);
    const px = h.putF32(x),
      pw = h.putF32(w),
      pb = h.putF32(b),
      py = h.alloc(M * n * 4),
      pr = h.alloc(M * n * 4);
    h.k.layernorm(px, n, py, n, M, n, pw, pb, 1e-5);
    h.k.rmsnorm(px, n, pr, n, M, n, pw, 1e-5);
    const y = h.f32(py, M * n),
      r = h.f32(pr, M * n);
    for (let m = 0; m < M; m++) {
      const row = Array.from(x.subarray(m * n, (m + 1) * n));
      const mean = row.reduce((a, v) => a + v, 0) / n;
      const vr = row.reduce((a, v) => a + (v - mean) ** 2, 0) / n;
      const ms = row.reduce((a, v) => a + v * v, 0) / n;
      for (let i = 0; i < n; i++) {
        const ln = ((row[i]! - mean) / Math.sqrt(vr + 1e-5)) * w[i]! + b[i]!;
        const rn = (row[i]! / Math.sqrt(ms + 1e-5)) * w[i]!;
        assert.ok(Math.abs(y[m * n + i]! - ln) < 2e-5, `ln n${n}`);
        assert.ok(Math.abs(r[m * n + i]! - rn) < 2e-5, `rms n${n}`);
      }
    }
  }
});

test('activations (GELU erf / tanh, SiLU, ReLU), bias and scale in the epilogue match float64', () => {
  const h = new Heap();
  const M = 2,
    N = 203;
  const x = new Float32Array(M * N);
  for (let i = 0; i < x.length; i++) x[i] = -12 + (24 * i) / x.length;
  const bias = rand(N, 3, 0.1);
  const refs: Array<[number, (v: number) => number]> = [
    [1, (v) => 0.5 * v * (1 + erf(v / Math.SQRT2))],
    [2, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)))],
    [3, (v) => v / (1 + Math.exp(-v))],
    [4, (v) => Math.max(0, v)],
  ];
  const pb = h.putF32(bias);
  for (const [act, f] of refs) {
    const py = h.putF32(x);
    h.k.epilogue(py, N, M, 0, N, pb, 0.5, act);
    const y = h.f32(py, M * N);
    for (let i = 0; i < M * N; i++) {
      const v = (x[i]! + bias[i % N]!) * 0.5;
      const r = f(v);
      assert.ok(Math.abs(y[i]! - r) <= 1e-6 + 3e-7 * Math.abs(r), `act ${act} at ${v}: ${y[i]} vs ${r}`);
    }
  }
});

test('GELU (erf) of the kernels against math.erf (test/fixtures/erf-table.json) to float32 precision', () => {
  const h = new Heap();
  const rows = (JSON.parse(readFileSync(fixturePath('erf-table.json'), 'utf8')) as { rows: [number, number][] }).rows;
  // epilogue computes act((x + bias) · scale): with bias 0 and scale 1, x = √2·t gives 0.5·x·(1 + erf(t)).
  const x = Float32Array.from(rows, ([t]) => t * Math.SQRT2);
  const pb = h.putF32(new Float32Array(x.length));
  const py = h.putF32(x);
  h.k.epilogue(py, x.length, 1, 0, x.length, pb, 1, 1);
  const y = h.f32(py, x.length);
  rows.forEach(([t, e], i) => {
    const want = 0.5 * x[i]! * (1 + e);
    assert.ok(Math.abs(y[i]! - want) <= 1e-6 + 3e-7 * Math.abs(want), `gelu(${x[i]}) (erf ${t}): ${y[i]} vs ${want}`);
  });
});

test('GELU (erf) across the range of its exp (underflow below x ≈ -13.2), subnormal, zero, infinite and NaN inputs, against float64', () => {
  const h = new Heap();
  const x: number[] = [];
  for (let v = -20; v <= 20; v += 0.0371) x.push(v);
  for (let v = -13.4; v <= -13.0; v += 0.0007) x.push(v); // the exp argument crosses -87.3365
  x.push(0, -0, 1e-40, -1e-40, 1e-30, -1e-30, 3e38, Infinity, Number.NaN);
  const xs = Float32Array.from(x);
  const py = h.putF32(xs);
  h.k.epilogue(py, xs.length, 1, 0, xs.length, 0, 1, 1);
  const y = h.f32(py, xs.length);
  for (const [i, v] of xs.entries()) {
    const got = y[i]!;
    if (Number.isNaN(v)) assert.ok(Number.isNaN(got), 'gelu(NaN) is NaN');
    else if (v === Infinity) assert.equal(got, Infinity);
    else {
      const want = v > 1e30 ? v : 0.5 * v * (1 + erf(v / Math.SQRT2));
      assert.ok(Math.abs(got - want) <= 1e-6 + 3e-7 * Math.abs(want), `gelu(${v}): ${got} vs ${want}`);
    }
  }
});

test('dequant_row matches ggml dequantize for every storage type', () => {
  const h = new Heap();
  const N = 5,
    K = 96;
  const wf = rand(N * K, 99, 0.3);
  const types = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'] as const;
  types.forEach((t, id) => {
    const wb = quantize(t, wf);
    const ref = dequantize(t, wb, N * K);
    const pw = h.putU8(wb),
      po = h.alloc(K * 4);
    for (let r = 0; r < N; r++) {
      h.k.dequant_row(id, pw, K, r, po);
      assert.deepEqual(h.f32(po, K), ref.subarray(r * K, (r + 1) * K), `${t} row ${r}`);
    }
  });
});

/** Float64 attention for query rows at positions pos0.., MosaicML masking semantics. */
function refAttention(
  q: Float32Array,
  nq: number,
  pos0: number,
  K: Float32Array,
  V: Float32Array,
  valid: Uint8Array,
  nKeys: number,
  hd: number,
  scale: number,
  slope: number,
): Float64Array {
  const out = new Float64Array(nq * hd);
  for (let i = 0; i < nq; i++) {
    const p = pos0 + i;
    const s: number[] = [];
    for (let j = 0; j < nKeys; j++) {
      if (j > p || !valid[j]) {
        s.push(-Infinity);
        continue;
      }
      let d = 0;
      for (let e = 0; e < hd; e++) d += q[i * hd + e]! * K[j * hd + e]!;
      s.push(d * scale + slope * (j - p));
    }
    const mx = Math.max(...s);
    const pr = mx === -Infinity ? s.map(() => 1 / nKeys) : s.map((v) => Math.exp(v - mx));
    const z = pr.reduce((a, v) => a + v, 0);
    for (let j = 0; j < nKeys; j++) for (let e = 0; e < hd; e++) out[i * hd + e]! += (pr[j]! / z) * V[j * hd + e]!;
  }
  return out;
}

test('attention matches float64 softmax attention: ALiBi, padding, fully masked rows, ragged sizes', () => {
  const h = new Heap();
  for (const [nq, past, hd] of [
    [1, 0, 8],
    [1, 40, 16],
    [7, 0, 13],
    [5, 33, 64],
    [70, 0, 8],
    [3, 61, 6],
  ] as const) {
    const nKeys = past + nq;
    const cap = nKeys + 5;
    const q = rand(nq * hd, nq * 7 + hd, 1.5);
    const K = rand(cap * hd, 11 + hd, 1.5),
      V = rand(cap * hd, 13 + hd, 1);
    for (const padded of [false, true]) {
      const valid = new Uint8Array(cap).fill(1);
      if (padded) {
        // left padding of the first 3 positions, and one hole later on
        for (let j = 0; j < Math.min(3, nKeys); j++) valid[j] = 0;
        if (nKeys > 10) valid[9] = 0;
      }
      const pq = h.putF32(q),
        pk = h.putF32(K),
        pv = h.putF32(V),
        pvalid = h.putU8(valid);
      const po = h.alloc(nq * hd * 4),
        ps = h.alloc((4 * 32 + 4 * hd) * 4);
      const scale = 1 / Math.sqrt(hd),
        slope = 0.25;
      h.k.attention(pq, hd, nq, past, pk, pv, hd, pvalid, nKeys, hd, scale, slope, po, hd, ps);
      const o = h.f32(po, nq * hd);
      const ref = refAttention(q, nq, past, K, V, valid, nKeys, hd, scale, slope);
      for (let i = 0; i < nq * hd; i++)
        assert.ok(
          Math.abs(o[i]! - ref[i]!) < 2e-6,
          `nq${nq} past${past} hd${hd} pad${padded} [${i}] ${o[i]} vs ${ref[i]}`,
        );
      // row by row (decode-style tiles of 1) gives the same bits
      for (let i = 0; i < nq; i += 3) {
        const p1 = h.alloc(hd * 4);
        h.k.attention(pq + i * hd * 4, hd, 1, past + i, pk, pv, hd, pvalid, nKeys, hd, scale, slope, p1, hd, ps);
        assert.deepEqual(h.f32(p1, hd), o.subarray(i * hd, (i + 1) * hd));
      }
    }
  }
});
