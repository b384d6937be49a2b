// ggml block formats: geometry, reference quantizers on hand-computed blocks (C semantics of
// ggml's quantize_row_*_ref), error bounds that follow from each format's definition, and the
// llama.cpp-style dot products against the dequantized weights.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FormatError, UnsupportedError } from '../src/errors.js';
import { byteLengthOf, dequantize, GGML_TYPES, ggmlTypeName, quantize } from '../src/formats/ggml-quants.js';
import { activationTypeOf, QuantMatrix, quantizeActivations, vecDotQ } from './helpers/llamacpp-dot.js';
import { f16ToF32, f32ToF16 } from '../src/formats/dtypes.js';
import type { DType } from '../src/formats/tensor-source.js';

/** Deterministic N(0, s) values (Box-Muller over a small LCG), rounded to float32. */
function gaussian(n: number, seed: number, s = 1): Float32Array {
  let state = seed >>> 0;
  const u = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return (state + 0.5) / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = s * Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  return out;
}

const SIMPLE: DType[] = ['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1'];
const KQUANTS: DType[] = ['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k'];

describe('GGML_TYPES and byteLengthOf', () => {
  it('matches the byte counts llama-quantize wrote (fixture README, Q4_K_M table)', () => {
    // token_embd {256, 1024} Q6_K = 215,040 bytes; attn_qkv {256, 768} Q5_K = 135,168; ffn_up Q4_K 147,456
    assert.equal(byteLengthOf('q6_k', 256 * 1024), 215040);
    assert.equal(byteLengthOf('q5_k', 256 * 768), 135168);
    assert.equal(byteLengthOf('q4_k', 256 * 1024), 147456);
    assert.equal(byteLengthOf('q4_k', 256 * 256), 36864);
    assert.equal(byteLengthOf('f32', 256), 1024);
  });

  it('uses ggml type ids and names', () => {
    assert.equal(GGML_TYPES.q4_0.id, 2);
    assert.equal(GGML_TYPES.q6_k.id, 14);
    assert.equal(GGML_TYPES.bf16.id, 30);
    assert.equal(ggmlTypeName(16), 'IQ2_XXS');
    assert.match(ggmlTypeName(200), /unknown type 200/);
  });

  it('refuses partial blocks', () => {
    assert.throws(() => byteLengthOf('q4_0', 48), FormatError);
    assert.throws(() => byteLengthOf('q4_k', 128), FormatError);
    assert.throws(() => dequantize('q8_0', new Uint8Array(10), 32), FormatError);
  });
});

describe('reference quantizers (quantize_row_*_ref semantics)', () => {
  it('q8_0: d = amax/127 in fp16, q = roundf(x / d) with ties away from zero', () => {
    const x = new Float32Array(32);
    x[0] = 127;
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 0.5;
    x[4] = -126.5;
    x[5] = 1.49;
    const b = quantize('q8_0', x);
    assert.equal(b.length, 34);
    assert.equal(f16ToF32(b[0]! | (b[1]! << 8)), 1);
    const q = new Int8Array(b.buffer, 2, 32);
    assert.deepEqual(Array.from(q.subarray(0, 6)), [127, 3, -3, 1, -127, 1]);
    assert.ok(q.subarray(6).every((v) => v === 0));
  });

  it('q4_0: d = max/-8 (signed max), nibble = min(15, trunc(x/d + 8.5)), low nibbles hold 0..15', () => {
    const x = new Float32Array(32);
    x[0] = -8; // the largest magnitude, negative: d = 1
    x[1] = 8; // x/d + 8.5 = 16.5 -> clamped to 15
    x[16] = 3.49; // element 16 goes to the high nibble of byte 0
    x[17] = -0.5; // 8.0 exactly -> 8
    const b = quantize('q4_0', x);
    assert.equal(f16ToF32(b[0]! | (b[1]! << 8)), 1);
    assert.equal(b[2]! & 0xf, 0); // -8 -> 0
    assert.equal(b[2]! >> 4, 11); // 3.49 + 8.5 = 11.99 -> 11
    assert.equal(b[3]! & 0xf, 15);
    assert.equal(b[3]! >> 4, 8);
    assert.deepEqual(Array.from(dequantize('q4_0', b, 32).subarray(0, 2)), [-8, 7]);
  });

  it('all-zero blocks give d = 0 and decode to zeros', () => {
    for (const t of SIMPLE) {
      const b = quantize(t, new Float32Array(64));
      assert.ok(
        dequantize(t, b, 64).every((v) => v === 0),
        t,
      );
    }
  });

  it('q2_K and q3_K quantization is not offered (q4_K..q6_K: test/quants-kquant.test.ts)', () => {
    assert.throws(() => quantize('q2_k', new Float32Array(256)), UnsupportedError);
    assert.throws(() => quantize('q3_k', new Float32Array(256)), UnsupportedError);
  });

  // Worst error per element relative to the block's max |x|, from each format's definition:
  // q8_0 d/2 = amax/254 plus fp16 rounding of d; q4_0 amax/8 (the clamp at +7); q5_0 amax/16;
  // q4_1 (max-min)/30 <= amax/15; q5_1 <= amax/31; each plus fp16 rounding of d and m.
  const BOUND: Record<string, number> = { q8_0: 0.0045, q4_0: 0.1255, q5_0: 0.0635, q4_1: 0.07, q5_1: 0.034 };
  for (const t of SIMPLE) {
    it(`${t}: round trip error within the format's bound`, () => {
      const x = gaussian(32 * 200, 7, 0.3);
      const y = dequantize(t, quantize(t, x), x.length);
      for (let b = 0; b < x.length; b += 32) {
        let amax = 0,
          err = 0;
        for (let i = b; i < b + 32; i++) {
          amax = Math.max(amax, Math.abs(x[i]!));
          err = Math.max(err, Math.abs(x[i]! - y[i]!));
        }
        assert.ok(err <= BOUND[t]! * amax, `${t} block ${b / 32}: error ${err} > ${BOUND[t]} * ${amax}`);
      }
    });
  }

  it('f16 and bf16 quantize round to nearest even and decode exactly', () => {
    const x = gaussian(1000, 3, 10);
    const h = quantize('f16', x);
    const back = dequantize('f16', h, x.length);
    for (let i = 0; i < x.length; i++) assert.equal(back[i], f16ToF32(f32ToF16(x[i]!)));
    const bf = dequantize('bf16', quantize('bf16', x), x.length);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(bf[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -8);
    assert.deepEqual(dequantize('f32', quantize('f32', x), x.length), x);
  });
});

describe('activation conversion (llama.cpp vec_dot_type)', () => {
  it('maps weight types to q8_0 / q8_1 / q8_K / f16 as ggml-cpu does', () => {
    assert.equal(activationTypeOf('q4_0'), 'q8_0');
    assert.equal(activationTypeOf('q5_0'), 'q8_0');
    assert.equal(activationTypeOf('q4_1'), 'q8_1');
    assert.equal(activationTypeOf('q5_1'), 'q8_1');
    assert.equal(activationTypeOf('q6_k'), 'q8_K');
    assert.equal(activationTypeOf('f16'), 'f16');
  });

  it('q8_0 activations round half to even (x86 path), q8_K keeps the signed max and a float32 scale', () => {
    const x = new Float32Array(32);
    x[0] = 127;
    x[1] = 2.5;
    x[2] = 3.5;
    x[3] = -2.5;
    const a = quantizeActivations('q8_0', x);
    assert.deepEqual(Array.from(a.q!.subarray(0, 4)), [127, 2, 4, -2]);
    const k = new Float32Array(256);
    k[5] = 254; // max > 0: iscale = -127/254 = -0.5, d = -2
    k[6] = 5; // -2.5 -> -2 (ties to even)
    k[7] = -3; // 1.5 -> 2
    const b = quantizeActivations('q8_K', k);
    assert.equal(b.d![0], -2);
    assert.deepEqual(Array.from(b.q!.subarray(5, 8)), [-127, -2, 2]);
    assert.equal(b.bsums![0], -127);
  });

  it('q8_1 carries s = fp16(d * sum q) from the unrounded d', () => {
    const x = gaussian(32, 11);
    const a = quantizeActivations('q8_1', x);
    let amax = 0;
    for (const v of x) amax = Math.max(amax, Math.abs(v));
    const sum = Array.from(a.q!).reduce((s, v) => s + v, 0);
    assert.equal(a.s![0], f16ToF32(f32ToF16(Math.fround(Math.fround(amax / 127) * sum))));
  });
});

describe('vecDotQ / QuantMatrix', () => {
  const dot = (w: Float32Array, x: Float32Array) => w.reduce((s, v, i) => s + v * x[i]!, 0);

  // With activations whose conversion is exact (integers, |x| <= 127, a block max of exactly
  // 127), llama.cpp's integer dot product equals the dot of the dequantized weights with x.
  for (const t of [...SIMPLE, ...KQUANTS]) {
    it(`${t}: integer block sums agree with dequantize() when the activations convert exactly`, () => {
      const cols = 512;
      const w = gaussian(cols * 3, 21, 0.1);
      const bytes =
        t === 'q8_0' || t === 'q4_0' || t === 'q4_1' || t === 'q5_0' || t === 'q5_1'
          ? quantize(t, w)
          : randomKQuantBytes(t, 3 * cols, 99);
      const deq = dequantize(t, bytes, 3 * cols);
      const x = new Float32Array(cols);
      for (let i = 0; i < cols; i++) x[i] = ((i * 37) % 255) - 127;
      for (let b = 0; b < cols; b += 32) x[b] = 127; // every block's max |x| is 127
      if (t === 'q4_1' || t === 'q5_1') {
        // q8_1's s term is rounded to fp16, so allow its rounding: |m| * |d·Σq| * 2^-11 per block
        const m = new QuantMatrix(t, bytes, 3, cols);
        for (let r = 0; r < 3; r++) {
          const want = dot(deq.subarray(r * cols, (r + 1) * cols), x);
          assert.ok(Math.abs(m.dotRow(r, m.prepare(x)) - want) <= 1e-3 * Math.max(1, Math.abs(want)), `${t} row ${r}`);
        }
        return;
      }
      const m = new QuantMatrix(t, bytes, 3, cols);
      const y = m.matvec(x);
      for (let r = 0; r < 3; r++) {
        const want = dot(deq.subarray(r * cols, (r + 1) * cols), x);
        assert.ok(Math.abs(y[r]! - want) <= 1e-5 * Math.max(1, Math.abs(want)), `${t} row ${r}: ${y[r]} vs ${want}`);
        const single = vecDotQ(t, bytes.subarray((r * bytes.length) / 3, ((r + 1) * bytes.length) / 3), x);
        assert.ok(Math.abs(single - y[r]!) <= 1e-6 * Math.max(1, Math.abs(want)));
      }
    });
  }

  it('f16 weights multiply f16-rounded activations', () => {
    const w = gaussian(64, 5);
    const x = gaussian(64, 6);
    const bytes = quantize('f16', w);
    const wd = dequantize('f16', bytes, 64);
    const xr = x.map((v) => f16ToF32(f32ToF16(v)));
    assert.ok(Math.abs(vecDotQ('f16', bytes, x) - dot(wd, xr)) < 1e-9);
    assert.ok(Math.abs(vecDotQ('f32', quantize('f32', w), x) - dot(w, x)) < 1e-9);
  });

  it('general activations stay within the q8 conversion error', () => {
    const cols = 256;
    const w = gaussian(cols, 31, 0.1);
    const x = gaussian(cols, 32, 2);
    for (const t of SIMPLE) {
      const bytes = quantize(t, w);
      const exact = dot(dequantize(t, bytes, cols), x);
      // each activation moves by at most d_x/2 = amax_x/254; sum over |w|
      const wabs = dequantize(t, bytes, cols).reduce((s, v) => s + Math.abs(v), 0);
      const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      assert.ok(Math.abs(vecDotQ(t, bytes, x) - exact) <= ((wabs * amax) / 254) * 1.01 + 1e-4, t);
    }
  });
});

/** Random but valid k-quant blocks (any bytes are valid; fp16 scales set to small normal values). */
function randomKQuantBytes(t: DType, count: number, seed: number): Uint8Array {
  const info = GGML_TYPES[t];
  const out = new Uint8Array(byteLengthOf(t, count));
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  const dv = new DataView(out.buffer);
  const halfAt: Record<string, number[]> = { q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208] };
  for (let b = 0; b < out.length; b += info.typeSize) {
    for (const o of halfAt[t]!)
      dv.setUint16(b + o, f32ToF16(0.001 + (((b / info.typeSize + o) * 7) % 13) * 0.0005), true);
  }
  return out;
}
