// The numeric primitives every backend shares, each checked against values from outside the
// code: erf against CPython's math.erf (test/fixtures/erf-table.json), the f16 table against
// the bit-level conversion, q8_0 against ggml's rounding rule (quantize_row_q8_0_ref) worked by
// hand on edge cases.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { erf } from '../src/backends/reference/math.js';
import { f16BitsToF32Bits, f16ToF32, f16Values, f32ToF16 } from '../src/formats/dtypes.js';
import { decodeQ8_0, dequantize, encodeQ8_0, q8_0ByteLength, quantize } from '../src/formats/ggml-quants.js';
import { geluForward } from '../src/train/ops.js';
import { fixturePath } from './helpers/goldens.js';

const ERF_TABLE = (JSON.parse(readFileSync(fixturePath('erf-table.json'), 'utf8')) as { rows: [number, number][] })
  .rows;

describe('erf (TypeScript: the reference forward and the trainer)', () => {
  it('equals math.erf to 1e-14 absolute on the whole table', () => {
    assert.ok(ERF_TABLE.length > 200);
    for (const [x, want] of ERF_TABLE) {
      assert.ok(Math.abs(erf(x) - want) <= 1e-14, `erf(${x}) = ${erf(x)}, math.erf ${want}`);
      assert.equal(Math.sign(erf(x)), Math.sign(want), `sign at ${x}`);
    }
  });

  it("the trainer's GELU equals x·Φ(x) from the table", () => {
    const xs = Float32Array.from(ERF_TABLE, ([x]) => x * Math.SQRT2);
    const y = new Float32Array(xs.length),
      cdf = new Float32Array(xs.length);
    geluForward(y, xs, xs.length, cdf);
    ERF_TABLE.forEach(([x, e], i) => {
      const v = xs[i]!;
      const want = 0.5 * v * (1 + e);
      assert.ok(Math.abs(y[i]! - want) <= 1e-6 * Math.max(1, Math.abs(want)), `gelu(${v}) vs table (x = ${x})`);
    });
  });
});

describe('f16 table', () => {
  it('holds the value of every f16 pattern, as the bit conversion gives it', () => {
    const t = f16Values();
    const bits = new Uint32Array(t.buffer);
    for (let h = 0; h < 65536; h++) {
      assert.equal(bits[h], f16BitsToF32Bits(h), `pattern ${h}`);
      if (!Number.isNaN(t[h]!)) assert.equal(f32ToF16(t[h]!), h, `round trip ${h}`);
    }
    assert.equal(t[0x3c00], 1);
    assert.equal(t[0xc000], -2);
    assert.equal(t[0x0001], 2 ** -24);
    assert.equal(t[0x7bff], 65504);
    assert.equal(t[0x7c00], Infinity);
  });
});

describe('q8_0 codec (ggml rounding)', () => {
  const block = (d: number, qs: number[]) => {
    const b = new Uint8Array(2 + qs.length);
    new DataView(b.buffer).setUint16(0, f32ToF16(d), true);
    qs.forEach((q, i) => {
      b[2 + i] = q & 0xff;
    });
    return b;
  };

  it('scale fp16(amax/127); quants roundf(x/d) with ties away from zero', () => {
    // amax 127 → d = 1 exactly, so x·(1/d) = x and the ties are exact halves.
    const x = new Float32Array(32);
    x.set([127, 2.5, -2.5, 0.5, -0.5, 1.49, -1.51, 126.5, -127]);
    const want = new Array<number>(32).fill(0);
    want.splice(0, 9, 127, 3, -3, 1, -1, 1, -2, 127, -127);
    const out = new Uint8Array(34);
    encodeQ8_0(x, 0, 32, out, 0);
    assert.deepEqual(out, block(1, want));
    assert.deepEqual(quantize('q8_0', x), out, 'quantize() uses the same encoder');
  });

  it('an all-zero block has scale 0 and quants 0; -0 and 0 agree', () => {
    const out = new Uint8Array(34).fill(0xff);
    encodeQ8_0(
      Float32Array.from({ length: 32 }, (_, i) => (i % 2 ? -0 : 0)),
      0,
      32,
      out,
      0,
    );
    assert.deepEqual(out, new Uint8Array(34));
  });

  it('a short last block takes 2 + its length bytes and is scaled by its own values', () => {
    assert.equal(q8_0ByteLength(32), 34);
    assert.equal(q8_0ByteLength(33), 37);
    assert.equal(q8_0ByteLength(70), 70 + 6);
    const x = new Float32Array(33).fill(1);
    x[32] = -0.25;
    const out = new Uint8Array(q8_0ByteLength(33));
    encodeQ8_0(x, 0, 33, out, 0);
    assert.deepEqual(out.subarray(0, 34), block(1 / 127, new Array(32).fill(127)));
    assert.deepEqual(out.subarray(34), block(0.25 / 127, [-127]));
    const back = new Float32Array(33);
    decodeQ8_0(out, 0, 33, back, 0);
    assert.equal(back[32], Math.fround(-127 * f16ToF32(f32ToF16(0.25 / 127))));
  });

  it('decodes as ggml dequantizes, and re-encodes its own output bit for bit', () => {
    let s = 7;
    const x = Float32Array.from({ length: 96 }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return (s / 2 ** 32 - 0.5) * 3;
    });
    const bytes = quantize('q8_0', x);
    const y = new Float32Array(96);
    decodeQ8_0(bytes, 0, 96, y, 0);
    assert.deepEqual(y, dequantize('q8_0', bytes, 96));
    const again = new Uint8Array(bytes.length);
    encodeQ8_0(y, 0, 96, again, 0);
    assert.deepEqual(again, bytes);
  });
});
