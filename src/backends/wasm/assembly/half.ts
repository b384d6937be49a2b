// Half-precision conversions (IEEE fp16 and bfloat16), scalar and SIMD. Exact widening; narrowing
// rounds to nearest even, as numpy / PyTorch / ggml do.

/** fp16 bits → f32, exact (subnormals included; Inf/NaN kept). */
// @ts-ignore: decorator
@inline export function f16_to_f32(h: u32): f32 {
  const em = h & 0x7fff;
  const sign = (h & 0x8000) << 16;
  if (em < 0x400) {
    // zero or subnormal: em * 2^-24 is exact in f32
    return reinterpret<f32>(reinterpret<u32>(<f32>em * 5.9604644775390625e-8) | sign);
  }
  let bits = (em << 13) + (112 << 23);
  if (em >= 0x7c00) bits += 112 << 23;
  return reinterpret<f32>(bits | sign);
}

/** f32 → fp16 bits, round to nearest even; overflow gives ±Inf, NaN stays NaN. */
export function f32_to_f16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  const sign = (x >> 16) & 0x8000;
  const ax = x & 0x7fffffff;
  if (ax >= 0x7f800000) return sign | (ax > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (ax >= 0x477ff000) return sign | 0x7c00; // rounds to >= 65520: Inf
  if (ax < 0x38800000) {
    // result is subnormal (or zero): value / 2^-24 rounded to nearest even
    if (ax < 0x33000000) return sign; // < 2^-25: rounds to 0 (2^-25 itself ties to even 0)
    const e = ax >> 23;
    const m = (ax & 0x7fffff) | 0x800000;
    const shift = 126 - e; // 14 + (113 - e) - 1 ... so that m >> shift is the f16 subnormal mantissa
    const q = m >> shift;
    const rem = m & ((1 << shift) - 1);
    const half: u32 = 1 << (shift - 1);
    let r = q;
    if (rem > half || (rem == half && (q & 1))) r++;
    return sign | r;
  }
  // normal: rebias exponent, round the 13 dropped bits to nearest even
  let h = ((ax >> 13) - (112 << 10));
  const rem = ax & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return sign | h;
}

/**
 * f16_to_f32(f32_to_f16(x)) for x >= 0, the fp16 normal range without a call: there the
 * conversion keeps the top 10 mantissa bits, rounded to nearest even, which is adding
 * 0xfff + (the kept part's last bit) below them and dropping them (a carry into the exponent is
 * the right result too). A call costs V8 more than the conversion: every live register is saved.
 */
// @ts-ignore: decorator
@inline export function f16_round_nonneg(x: f32): f32 {
  const b = reinterpret<u32>(x);
  if (b - 0x38800000 < 0x477ff000 - 0x38800000) return reinterpret<f32>((b + 0xfff + ((b >> 13) & 1)) & 0xffffe000);
  return f16_to_f32(f32_to_f16(x));
}

/** bf16 bits → f32 (exact). */
// @ts-ignore: decorator
@inline export function bf16_to_f32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

/** f32 → bf16 bits, round to nearest even (NaN stays NaN). */
export function f32_to_bf16(f: f32): u32 {
  const x = reinterpret<u32>(f);
  if ((x & 0x7fffffff) > 0x7f800000) return (x >> 16) | 0x40;
  return (x + 0x7fff + ((x >> 16) & 1)) >> 16;
}

/**
 * Four fp16 values held in the high halves of u32 lanes (lane = h << 16) → f32x4. Exact for
 * finite values: (h & 0x7fff) << 13 read as f32 is the value times 2^-112.
 */
// @ts-ignore: decorator
@inline export function f16hi_to_f32x4(x: v128): v128 {
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const mag = i32x4.shr_u(i32x4.shl(x, 1), 4);
  return v128.or(f32x4.mul(mag, f32x4.splat(5.192296858534828e33)), sign);
}

/** Lanes 0..3 of 8 packed 16-bit values moved to the high halves of u32 lanes. */
// @ts-ignore: decorator
@inline export function lo16_to_hi32(v: v128): v128 {
  return v128.shuffle<u16>(i32x4.splat(0), v, 0, 8, 1, 9, 2, 10, 3, 11);
}

/** Lanes 4..7 of 8 packed 16-bit values moved to the high halves of u32 lanes. */
// @ts-ignore: decorator
@inline export function hi16_to_hi32(v: v128): v128 {
  return v128.shuffle<u16>(i32x4.splat(0), v, 4, 12, 5, 13, 6, 14, 7, 15);
}

/** Converts n fp16 values to f32. */
export function f16_to_f32_array(src: usize, n: i32, dst: usize): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), f16hi_to_f32x4(lo16_to_hi32(v)));
    v128.store(dst + (<usize>i << 2), f16hi_to_f32x4(hi16_to_hi32(v)), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), f16_to_f32(load<u16>(src + (<usize>i << 1))));
}

/** Converts n bf16 values to f32. */
export function bf16_to_f32_array(src: usize, n: i32, dst: usize): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), lo16_to_hi32(v));
    v128.store(dst + (<usize>i << 2), hi16_to_hi32(v), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), bf16_to_f32(load<u16>(src + (<usize>i << 1))));
}

/** Converts n f32 values to fp16 (round to nearest even). */
export function f32_to_f16_array(src: usize, n: i32, dst: usize): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32_to_f16(load<f32>(src + (<usize>i << 2))));
}

/** Converts n f32 values to bf16 (round to nearest even). */
export function f32_to_bf16_array(src: usize, n: i32, dst: usize): void {
  for (let i = 0; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32_to_bf16(load<f32>(src + (<usize>i << 2))));
}
