// dtype conversions against independent references: f16/bf16 values from the IEEE formulas, and
// narrowing checked against a brute-force "nearest representable value, ties to even" search.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FormatError } from '../src/errors.js';
import {
  bf16BytesToF32,
  bf16ToF32,
  f16BytesToF32,
  f16ToF32,
  f32Bits,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  f32FromBits,
  f32ToBf16,
  f32ToBf16Bytes,
  f32ToF16,
  f32ToF16Bytes,
  tensorToFloat32,
} from '../src/formats/dtypes.js';

/** IEEE binary16 value of bit pattern h, computed in float64 from the definition. */
function f16Reference(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** Every finite non-negative f16 value in order, followed by 65536 standing for +inf (the overflow target). */
const F16_POSITIVE: number[] = [];
for (let h = 0; h <= 0x7bff; h++) F16_POSITIVE.push(f16Reference(h));
F16_POSITIVE.push(65536);

/** f16 bits nearest to x by exhaustive search over the value table (ties to the even pattern). */
function f16NearestReference(x: number): number {
  if (Number.isNaN(x)) return -1;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65536) return sign | 0x7c00;
  let lo = 0;
  let hi = F16_POSITIVE.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (F16_POSITIVE[mid]! <= a) lo = mid;
    else hi = mid;
  }
  const dLo = a - F16_POSITIVE[lo]!;
  const dHi = F16_POSITIVE[hi]! - a;
  const pick = dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
  return sign | (pick === 0x7c00 ? 0x7c00 : pick);
}

/** bf16 bits nearest to the float32 with bits `bits`, by comparing the two truncation neighbours in float64. */
function bf16NearestReference(bits: number): number {
  const x = f32FromBits(bits);
  if (!Number.isFinite(x)) return (bits >>> 16) & 0xffff;
  const lo = (bits >>> 16) & 0xffff;
  const hi = (lo + 1) & 0xffff;
  const vLo = f32FromBits(lo << 16);
  // The pattern above the largest finite magnitude is inf; measure it as 2^128 for the tie rule.
  const vHi = (hi & 0x7fff) === 0x7f80 ? Math.sign(x) * 2 ** 128 : f32FromBits(hi << 16);
  const dLo = Math.abs(x - vLo);
  const dHi = Math.abs(vHi - x);
  return dLo < dHi ? lo : dHi < dLo ? hi : lo % 2 === 0 ? lo : hi;
}

/** A small deterministic PRNG (xorshift32), so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

describe('f16', () => {
  it('widens all 65536 patterns to the IEEE value', () => {
    for (let h = 0; h < 65536; h++) {
      const want = f16Reference(h);
      const got = f16ToF32(h);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got), `0x${h.toString(16)}`);
      else assert.ok(Object.is(got, want), `0x${h.toString(16)}: ${got} vs ${want}`);
    }
  });

  it('round-trips all 65536 patterns through float32, NaN payloads included', () => {
    const bytes = new Uint8Array(65536 * 2);
    const view = new DataView(bytes.buffer);
    for (let h = 0; h < 65536; h++) view.setUint16(2 * h, h, true);
    const wide = f16BytesToF32(bytes);
    for (let h = 0; h < 65536; h++) {
      const want = f16Reference(h);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(wide[h]!));
      else assert.ok(Object.is(wide[h], want), `bulk 0x${h.toString(16)}`);
      if (!Number.isNaN(want)) assert.equal(f32ToF16(f16ToF32(h)), h);
    }
    assert.deepEqual(f32ToF16Bytes(wide), bytes);
  });

  it('narrows with round-to-nearest-even, overflow and subnormals, like an exhaustive nearest search', () => {
    const cases: number[] = [
      0,
      -0,
      1,
      -1,
      65504,
      65519,
      65519.996,
      65520,
      65536,
      1e9,
      -1e9,
      2 ** -14,
      2 ** -24,
      2 ** -25,
      2 ** -25 * 1.0000001,
      2 ** -26,
      3 * 2 ** -25,
      2 ** -149,
      Infinity,
      -Infinity,
      3.4028234663852886e38,
    ];
    // Every midpoint between neighbouring f16 values (exact in float32), and one float32 step either side.
    for (let i = 0; i + 1 < F16_POSITIVE.length - 1; i++) {
      const mid = (F16_POSITIVE[i]! + F16_POSITIVE[i + 1]!) / 2;
      const bits = f32Bits(mid);
      cases.push(mid, -mid, f32FromBits(bits + 1), f32FromBits(bits - 1));
    }
    const next = rng(12345);
    for (let i = 0; i < 100000; i++) cases.push(f32FromBits(next()));
    for (const x of cases) {
      if (Number.isNaN(x)) continue;
      const want = f16NearestReference(Math.fround(x));
      assert.equal(f32ToF16(x), want, `${x}`);
    }
    // The bulk narrowing agrees with the scalar one.
    const arr = Float32Array.from(cases);
    const bulk = new Uint16Array(f32ToF16Bytes(arr).buffer);
    for (let i = 0; i < arr.length; i++) assert.equal(bulk[i], f32ToF16(arr[i]!));
  });

  it('keeps NaN a NaN (never infinity), whatever its payload', () => {
    for (const bits of [0x7fc00000, 0x7f800001, 0xffffffff, 0x7f801fff, 0xff800001]) {
      const h = f32BitsToF16Bits(bits);
      assert.equal(h & 0x7c00, 0x7c00);
      assert.notEqual(h & 0x3ff, 0, `0x${bits.toString(16)} → 0x${h.toString(16)}`);
      assert.equal(h & 0x8000, (bits >>> 16) & 0x8000);
    }
  });
});

describe('bf16', () => {
  it('widens exactly (the top half of a float32)', () => {
    for (let b = 0; b < 65536; b++) {
      const want = f32FromBits(b << 16);
      const got = bf16ToF32(b);
      if (Number.isNaN(want)) assert.ok(Number.isNaN(got));
      else assert.ok(Object.is(got, want));
    }
    const bytes = Uint8Array.of(0x80, 0x3f, 0x00, 0xc0, 0x80, 0x7f); // 1, -2, inf
    assert.deepEqual([...bf16BytesToF32(bytes)], [1, -2, Infinity]);
  });

  it('narrows with round-to-nearest-even like a neighbour search', () => {
    const edges = [
      0x3f808000, 0x3f818000, 0x3f80ffff, 0x3f807fff, 0x7f7fffff, 0x7f7f8000, 0x7f7f7fff, 0xff7f8000, 0x00008000,
      0x00018000, 0x80008001, 0x0000ffff, 0x00000001, 0x7f800000, 0xff800000, 0, 0x80000000,
    ];
    const next = rng(999);
    const all = [...edges];
    for (let i = 0; i < 200000; i++) all.push(next());
    for (const bits of all) {
      if ((bits & 0x7fffffff) > 0x7f800000) continue;
      assert.equal(f32BitsToBf16Bits(bits), bf16NearestReference(bits), `0x${bits.toString(16)}`);
    }
    assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie → even
    assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82); // tie → even (up)
    assert.equal(f32ToBf16(3.4028234663852886e38), 0x7f80); // rounds up to inf
  });

  it('keeps NaN a NaN and bulk agrees with scalar', () => {
    assert.equal(f32BitsToBf16Bits(0x7f800001) & 0x7f80, 0x7f80);
    assert.notEqual(f32BitsToBf16Bits(0x7f800001) & 0x7f, 0);
    const values = Float32Array.of(1, -1.00390625, Math.PI, 1e-40, -0, 65504, 1e38);
    const out = new Uint16Array(f32ToBf16Bytes(values).buffer);
    for (let i = 0; i < values.length; i++) assert.equal(out[i], f32ToBf16(values[i]!));
  });
});

describe('tensorToFloat32', () => {
  it('reads f32 at any byte alignment, and f16/bf16 from odd offsets', () => {
    const values = Float32Array.of(1.5, -2.25, 1e-3);
    const raw = new Uint8Array(values.buffer);
    for (let shift = 0; shift < 4; shift++) {
      const backing = new Uint8Array(raw.length + 4);
      backing.set(raw, shift);
      const bytes = backing.subarray(shift, shift + raw.length);
      assert.deepEqual(
        [...tensorToFloat32({ name: 't', dtype: 'f32', shape: [3], byteLength: 12 }, bytes)],
        [...values],
      );
    }
    const halfBytes = f32ToF16Bytes(Float32Array.of(1.5, -2.25));
    const odd = new Uint8Array(5);
    odd.set(halfBytes, 1);
    assert.deepEqual(
      [...tensorToFloat32({ name: 't', dtype: 'f16', shape: [2], byteLength: 4 }, odd.subarray(1))],
      [1.5, -2.25],
    );
    const bfBytes = f32ToBf16Bytes(Float32Array.of(1.5, -2.25));
    odd.set(bfBytes, 1);
    assert.deepEqual(
      [...tensorToFloat32({ name: 't', dtype: 'bf16', shape: [1, 2], byteLength: 4 }, odd.subarray(1))],
      [1.5, -2.25],
    );
  });

  it('refuses quantized dtypes and wrong byte counts', () => {
    assert.throws(
      () => tensorToFloat32({ name: 'q', dtype: 'q8_0', shape: [32], byteLength: 34 }, new Uint8Array(34)),
      FormatError,
    );
    assert.throws(
      () => tensorToFloat32({ name: 't', dtype: 'f32', shape: [3], byteLength: 12 }, new Uint8Array(8)),
      /t: 8 bytes/,
    );
    assert.throws(() => f16BytesToF32(new Uint8Array(3)), FormatError);
  });
});
