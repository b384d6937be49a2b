// The fp16 scales of q4_0x4 / q8_0x4 blocks (repack.ts) as the kernels read them: re-encoded at
// repack time so that the kernels' cheap conversion (the 16 bits shifted into an f32's exponent and
// mantissa, gemm-q.ts half4_scaled) never yields a subnormal f32. Read raw, a subnormal half d
// (|d| < 2^-14: q8_0 blocks of max |w| < 0.0078, q4_0 of max |w| < 0.00049; real tensors of small
// weights have them) became a subnormal f32 operand, and every multiply with one takes a microcode
// assist (docs/cpu-profile.md: ~0.45-0.7× decode on files of such scales).
//
// Encoding: sign | E << 10 | m with E = e + X4_SCALE_SHIFT, where d = 2^(e-15)·(1 + m/1024) (a
// subnormal half normalized first: e down to -9). Shifted into an f32 (h << 13, the sign moved to
// bit 31) it reads 2^(E-127)·(1 + m/1024) = d·2^-102, a normal f32 (E >= 1), or ±0 for d = ±0.
// The activations' DX1 holds d_x·2^102, so d_w·d_x comes out with the bits of the fp16 product
// as before. The 5-bit E covers |d| in [2^-24, 2^7): a q4_0 / q8_0 scale of 128 or more (weights
// over 1024 / 16256) or inf / NaN has no x4 encoding, and the loader refuses the tensor.

/** Binades the encoding moves the fp16 exponent up (subnormal halves reach e = -9). */
export const X4_SCALE_SHIFT: i32 = 10;
/** 2^102: a decoded x4 scale (d·2^-102) times this is d; DX1 is d_x times this. */
export const X4_SCALE_UNIT: f32 = 5.070602400912918e30;

/** The x4 encoding of fp16 scale bits h, or -1 where |d| >= 2^7 or d is inf / NaN. */
export function x4_scale_bits(h: u32): i32 {
  const s = h & 0x8000, a = h & 0x7fff;
  if (a == 0) return <i32>s;
  let e = <i32>(a >> 10), m = a & 0x3ff;
  if (e == 0) {
    const p = 31 - <i32>clz(m); // the leading bit of a subnormal's mantissa
    e = p - 9;
    m = (m << <u32>(10 - p)) & 0x3ff;
  }
  const E = e + X4_SCALE_SHIFT;
  if (E > 31) return -1;
  return <i32>(s | (<u32>E << 10) | m);
}

/** The scale d of the x4-encoded bits at p, as f32 (exact). */
// @ts-ignore: decorator
@inline export function x4_scale_at(p: usize): f32 {
  const h = <u32>load<u16>(p);
  return reinterpret<f32>(((h & 0x8000) << 16) | ((h & 0x7fff) << 13)) * X4_SCALE_UNIT;
}
