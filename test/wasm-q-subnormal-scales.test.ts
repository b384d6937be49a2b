// q4_0 / q8_0 weights whose fp16 block scales are subnormal (|d| < 2^-14: real tensors of small
// weights have them). The x4 form re-encodes every scale at repack (assembly/x4-scale.ts) so that
// the kernels' shift-and-mask conversion never makes a subnormal f32 (a microcode assist per
// multiply). Checked here: the encoding of all 65536 halves against their float64 values, and with
// subnormal, zero, negative and near-limit scales, in every kernel build, the x4 decode tiles (group
// record, row record, the 8-row tile at K = 16384), the prompt tiles and the plain kernels against a
// float64 product and against the plain kernels' bits; the wasm repack against repackX4; scales of
// 128 and more, inf and NaN refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { f16ToF32 } from '../src/formats/dtypes.js';
import { repackX4, x4ScaleBits } from '../src/backends/wasm/repack.js';
import { actQ8Bytes } from '../src/backends/wasm/kernels.js';
import { BUILDS, Heap, buildName, rand } from './helpers/wasm-heap.js';

/** The value the x4 bits b stand for, read as x4-scale.ts describes it (float64). */
function x4Value(b: number): number {
  const sign = b & 0x8000 ? -1 : 1;
  if ((b & 0x7fff) === 0) return sign * 0;
  return sign * 2 ** (((b >> 10) & 31) - 10 - 15) * (1 + (b & 0x3ff) / 1024);
}

test('x4ScaleBits: every finite half under 128 keeps its value and reads as a normal f32 (or zero); the rest have no encoding', () => {
  let subnormals = 0;
  for (let h = 0; h < 65536; h++) {
    const d = f16ToF32(h),
      b = x4ScaleBits(h);
    if (!Number.isFinite(d) || Math.abs(d) >= 128) {
      assert.equal(b, -1, `half 0x${h.toString(16)} (${d})`);
      continue;
    }
    assert.ok(b >= 0 && b < 65536, `half 0x${h.toString(16)}`);
    assert.ok(Object.is(x4Value(b), d), `half 0x${h.toString(16)}: ${x4Value(b)} vs ${d}`);
    // the kernels' f32: sign << 16 | (b & 0x7fff) << 13; its exponent field is 0 only for ±0
    const exp = (b >> 10) & 31;
    assert.ok(exp > 0 || (b & 0x3ff) === 0, `half 0x${h.toString(16)} would read as a subnormal f32`);
    if ((h & 0x7c00) === 0 && (h & 0x3ff) !== 0) subnormals++;
  }
  assert.equal(subnormals, 2046, 'all subnormal halves seen');
});

/** Scales written into block b of a q4_0 / q8_0 row (bytes as stored). */
const SCALES = [0x0001, 0x03ff, 0x8200, 0x0155, 0x0000, 0x8000, 0x0400, 0x2c00, 0x57ff, 0xd7ff, 0x0010, 0x8001];

/** A plain matrix with mostly subnormal fp16 scales (every 4th from SCALES' mix of limits). */
function subnormalMatrix(t: 'q4_0' | 'q8_0', N: number, K: number, seed: number): Uint8Array {
  const plain = quantize(t, rand(N * K, seed, 0.5));
  const bs = t === 'q4_0' ? 18 : 34,
    nb = (N * K) / 32;
  for (let i = 0; i < nb; i++) {
    const h = i % 4 === 3 ? SCALES[(i >> 2) % SCALES.length]! : 0x0001 + ((i * 2654435761) >>> 22); // subnormal: 1..1024
    plain[i * bs] = h & 0xff;
    plain[i * bs + 1] = h >> 8;
  }
  return plain;
}

/** float64 Σ w·x of weight row n with activation row m (weights dequantized, activations as quantized at A). */
function reference(w: Float32Array, q: Int8Array, d: Float32Array, n: number, K: number): { ref: number; mag: number } {
  let ref = 0,
    mag = 0;
  for (let i = 0; i < K; i++) {
    const v = w[n * K + i]! * q[i]! * d[i >> 5]!;
    ref += v;
    mag += Math.abs(v);
  }
  return { ref, mag };
}

/**
 * Each value of y (M activation rows × N weight rows, the group records at qa) against float64
 * (weights w dequantized, activation row m's quants and d: DX4, [nb][4] f32 after the quants) and,
 * for rows of whole x4 groups (n < ng), against the plain 4-row tile's bits (tile4).
 */
function checkRows(
  h: Heap,
  qa: number,
  w: Float32Array,
  y: Float32Array,
  tile4: Float32Array,
  [M, N, K]: readonly [number, number, number],
  ng: number,
  tag: string,
): void {
  const nb = K / 32;
  for (let m = 0; m < M; m++) {
    const g = qa + (m >> 2) * actQ8Bytes(4, K),
      q = new Int8Array(K),
      d = new Float32Array(nb);
    for (let b = 0; b < nb; b++) {
      q.set(h.i8(g + b * 128 + (m & 3) * 32, 32), b * 32);
      d[b] = h.f32(g + nb * 128 + b * 16 + (m & 3) * 4, 1)[0]!;
    }
    for (let n = 0; n < N; n++) {
      const { ref, mag } = reference(w, q, d, n, K);
      const got = y[m * N + n]!;
      assert.ok(Math.abs(got - ref) <= 1e-6 * mag + 1e-37, `${tag} [${m},${n}]: ${got} vs float64 ${ref}`);
      if (n < ng)
        assert.ok(Object.is(got, tile4[m * N + n]), `${tag} [${m},${n}]: ${got} vs plain ${tile4[m * N + n]}`);
    }
  }
}

/**
 * M activation rows (rand(seed)) times `plain` through the plain 4-row tile and through the x4
 * kernels on `x4At` (its repacked form in the heap): checkRows on the x4 product and, for whole
 * groups of 4 rows, the prompt tile's bits equal to the plain tile's. Returns the activations, the
 * x4 product and the dequantized weights.
 */
function checkX4Products(
  h: Heap,
  t: 'q4_0' | 'q8_0',
  plain: Uint8Array,
  x4At: number,
  [M, N, K]: readonly [number, number, number],
  seed: number,
  tag: string,
): { px: number; y: Float32Array; w: Float32Array } {
  const M4 = Math.ceil(M / 4) * 4;
  const px = h.putF32(rand(M4 * K, seed, 2));
  const qa = h.alloc(actQ8Bytes(M4, K));
  h.k.quantize_act_q8(px, K, 0, M4, K, qa);
  const old = t === 'q4_0' ? h.k.gemm_q4_0.bind(h.k) : h.k.gemm_q8_0.bind(h.k);
  const x4 = t === 'q4_0' ? h.k.gemm_q4_0x4.bind(h.k) : h.k.gemm_q8_0x4.bind(h.k);
  const prompt = t === 'q4_0' ? h.k.gemm_q4_0x4_prompt.bind(h.k) : h.k.gemm_q8_0x4_prompt.bind(h.k);
  const yt = h.alloc(M4 * N * 4);
  old(qa, h.putU8(plain), yt, N, M4, 0, N, K, 0);
  const tile4 = h.f32(yt, M4 * N).slice();
  const py = h.alloc(M * N * 4);
  x4(qa, x4At, py, N, M, N, 0, N, K, 0);
  const y = h.f32(py, M * N).slice();
  const w = dequantize(t, plain, N * K);
  checkRows(h, qa, w, y, tile4, [M, N, K], N & ~3, tag);
  if (M % 4 === 0) {
    // the prompt tiles: the plain product's bits on whole groups of 4 activation rows
    const pz = h.alloc(M * N * 4);
    prompt(qa, x4At, pz, N, M, N, 0, N, K, 0);
    const z = h.f32(pz, M * N);
    for (let i = 0; i < M * N; i++)
      assert.ok(Object.is(z[i], tile4[i]), `${tag} prompt [${i}]: ${z[i]} vs ${tile4[i]}`);
  }
  return { px, y, w };
}

for (const variant of BUILDS)
  test(`subnormal q4_0 / q8_0 scales (${buildName(variant)}): x4 decode and prompt tiles, gemv, plain kernels: float64 and the plain kernels' bits; repack_x4 = repackX4`, () => {
    const h = new Heap(variant);
    const shapes: ReadonlyArray<readonly [number, number, number]> = [
      [1, 8, 64],
      [3, 7, 96],
      [4, 12, 160],
      [16, 8, 256],
      [1, 8, 16384], // the row record's 8-row tile (TILE8_MIN_BLOCKS)
    ];
    for (const t of ['q4_0', 'q8_0'] as const)
      for (const [M, N, K] of shapes) {
        const tag = `${t} M${M} N${N} K${K}`;
        const plain = subnormalMatrix(t, N, K, M * 7 + N + K);
        const packed = repackX4(t, plain, N, K);
        const ng = N & ~3;
        const pp = h.putU8(packed);
        const { px, y, w } = checkX4Products(h, t, plain, pp, [M, N, K], M + K, tag);
        if (M === 1 && t === 'q4_0') {
          // the row record (decode steps): gemm_q4_0x4's bits
          const r = h.alloc(actQ8Bytes(1, K)),
            yr = h.alloc(N * 4);
          h.k.quantize_act_q8_row(px, K, r);
          h.k.gemv_q4_0x4(r, pp, yr, N, 0, N, K, 0);
          const got = h.f32(yr, N);
          for (let n = 0; n < N; n++) assert.ok(Object.is(got[n], y[n]), `${tag} gemv row ${n}: ${got[n]} vs ${y[n]}`);
        }
        // the wasm repack writes repackX4's bytes, finds every scale encodable; dequant_row_x4 reads the values
        const pr = h.putU8(plain),
          tmp = h.alloc(4 * plain.length);
        assert.equal(h.k.repack_x4(t === 'q4_0' ? 1 : 0, pr, ng, K, tmp, 0), 0, `${tag} repack_x4`);
        assert.deepEqual(h.u8(pr, packed.length), packed, `${tag} repack_x4 bytes`);
        const row = h.alloc(K * 4);
        for (let n = 0; n < N; n++) {
          h.k.dequant_row_x4(t === 'q4_0' ? 1 : 0, pp, N, K, n, row);
          assert.deepEqual(h.f32(row, K), w.subarray(n * K, (n + 1) * K), `${tag} dequant_row_x4 row ${n}`);
        }
      }
  });

test('scales of 128 and more, inf and NaN have no x4 encoding: repackX4 throws, repack_x4 counts them, x4_scales_check tells them apart', () => {
  const h = new Heap('shared');
  for (const t of ['q4_0', 'q8_0'] as const) {
    const bs = t === 'q4_0' ? 18 : 34;
    const put = (plain: Uint8Array, i: number, bits: number) => {
      plain[i * bs] = bits & 0xff;
      plain[i * bs + 1] = bits >> 8;
    };
    const plain = quantize(t, rand(4 * 64, 3, 0.5));
    const ok = h.putU8(plain);
    assert.equal(h.k.x4_scales_check(t === 'q4_0' ? 1 : 0, ok, 4, 64), 0, `${t} clean`);
    put(plain, 1, 0x5800); // 128
    assert.equal(h.k.x4_scales_check(t === 'q4_0' ? 1 : 0, h.putU8(plain), 4, 64), 1, `${t} 128`);
    put(plain, 4, 0xfc00); // -inf
    put(plain, 6, 0x7e00); // NaN
    assert.equal(h.k.x4_scales_check(t === 'q4_0' ? 1 : 0, h.putU8(plain), 4, 64), 3, `${t} inf, NaN`);
    assert.throws(() => repackX4(t, plain, 4, 64), RangeError);
    const pr = h.putU8(plain),
      tmp = h.alloc(4 * plain.length);
    assert.equal(h.k.repack_x4(t === 'q4_0' ? 1 : 0, pr, 4, 64, tmp, 0), 3, t);
  }
});

for (const variant of BUILDS)
  test(`raw x4 scales (a model with a scale of 128 or more; ${buildName(variant)}): x4_scales_to_raw undoes the encoding, products on raw scales match float64 and the plain kernels' bits`, () => {
    const h = new Heap(variant);
    h.k.x4_raw_scales();
    for (const t of ['q4_0', 'q8_0'] as const)
      for (const [M, N, K] of [
        [1, 8, 64],
        [3, 7, 96],
        [16, 8, 256],
      ] as const) {
        const tag = `${t} M${M} N${N} K${K}`;
        const plain = subnormalMatrix(t, N, K, M + N + K);
        const bs = t === 'q4_0' ? 18 : 34;
        plain[5 * bs] = 0xb0; // block 5: 300 (0x5cb0), weights up to 2400 / 38100
        plain[5 * bs + 1] = 0x5c;
        const q4 = t === 'q4_0' ? 1 : 0,
          ng = N & ~3;
        // raw repack = the plain bytes interleaved; the encoded form of the in-range scales, undone, the same
        const raw = h.putU8(plain),
          tmp = h.alloc(4 * plain.length);
        assert.equal(h.k.repack_x4(q4, raw, ng, K, tmp, 1), 0, `${tag} raw repack`);
        const enc = plain.slice();
        enc[5 * bs] = 0;
        enc[5 * bs + 1] = 0x3c; // 1.0: encodable
        const pe = h.putU8(repackX4(t, enc, N, K));
        h.k.x4_scales_to_raw(q4, pe, ng, K);
        const back = h.u8(pe, plain.length).slice();
        const rawBytes = h.u8(raw, plain.length).slice();
        const scaleAt = (n: number, b: number) => Math.floor(n / 4) * (K / 32) * 4 * bs + b * 4 * bs + 2 * (n % 4);
        for (let n = 0; n < ng; n++)
          for (let b = 0; b < K / 32; b++) {
            const at = scaleAt(n, b);
            if (n * (K / 32) + b === 5) continue;
            assert.equal(
              back[at]! | (back[at + 1]! << 8),
              rawBytes[at]! | (rawBytes[at + 1]! << 8),
              `${tag} row ${n} block ${b}`,
            );
          }
        const { w } = checkX4Products(h, t, plain, raw, [M, N, K], M * 3 + K, tag);
        const row = h.alloc(K * 4);
        for (let n = 0; n < N; n++) {
          h.k.dequant_row_x4(q4, raw, N, K, n, row);
          assert.deepEqual(h.f32(row, K), w.subarray(n * K, (n + 1) * K), `${tag} dequant_row_x4 row ${n}`);
        }
      }
  });
