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
// as before. The 5-bit E covers |d| in [2^-24, 2^7). A model with a finite q4_0 / q8_0 scale of
// 128 or more (weights over 1024 / 16256) keeps every x4 scale raw instead (x4_raw_scales: DX1 =
// d_x·2^112, the conversion exact as before, subnormal operands and all); inf / NaN scales are
// refused by the loader.
//
// The q4_Kx4 header's d and dmin (gemm-k-x4.ts) take the same encoding and the same unit: read
// back as d·2^-102 (normal) times 2^102 they are the fp16 values exactly, in 4 vector instructions
// for 4 rows (x4_scales4), where 4 lookups in the fp16 table were 12. A model whose q4_K d or dmin
// is 128 or more switches to raw scales with the q4_0 / q8_0 ones (kind 2 below).
import { C_F16_RAWMASK, C_X4_PLAIN, C_X4_UNIT } from './tables';

/** Binades the encoding moves the fp16 exponent up (subnormal halves reach e = -9). */
export const X4_SCALE_SHIFT: i32 = 10;
/**
 * The model's x4 scale unit U (2^102 encoded, 2^112 raw): a scale read as f32 is d/U, DX1 holds
 * d_x·U. Read from memory, not a constant: the host switches a model to raw scales after load.
 */
// @ts-ignore: decorator
@inline export function x4_unit(): f32 { return load<f32>(C_X4_UNIT); }

/** 2^112 / U: the plain-row tile's products (raw fp16 scale·2^-112 times DX1) times this are d_w·d_x. */
// @ts-ignore: decorator
@inline export function x4_plain_fix(): f32 { return load<f32>(C_X4_PLAIN); }

/** Switches this memory's kernels to raw fp16 x4 scales (every x4 matrix holding raw scales). */
export function x4_raw_scales(): void {
  v128.store(C_X4_UNIT, f32x4.splat(5.192296858534828e33)); // 2^112
  store<f32>(C_X4_PLAIN, 1);
}

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

/** The scale d of the x4 bits at p (encoded or raw, as the unit says), as f32 (exact). */
// @ts-ignore: decorator
@inline export function x4_scale_at(p: usize): f32 {
  const h = <u32>load<u16>(p);
  return reinterpret<f32>(((h & 0x8000) << 16) | ((h & 0x7fff) << 13)) * x4_unit();
}

/**
 * The 4 x4 scales (encoded or raw, as the unit says) at p, p + 2, p + 4, p + 6 as exact f32: the
 * bits shifted into f32s (sign kept by the mask) times the unit. Encoded, the shifted value is
 * normal (or ±0), so no multiply meets a subnormal operand.
 */
// @ts-ignore: decorator
@inline export function x4_scales4(p: usize): v128 {
  return f32x4.mul(v128.and(i32x4.shl(v128.load16x4_s(p), 13), v128.load(C_F16_RAWMASK)), v128.load(C_X4_UNIT));
}

/** The fp16 bits of x4-encoded scale bits b (x4_scale_bits' inverse). */
export function x4_scale_raw(b: u32): u32 {
  const s = b & 0x8000;
  if ((b & 0x7fff) == 0) return s;
  const e = <i32>((b >> 10) & 31) - X4_SCALE_SHIFT, m = b & 0x3ff;
  if (e >= 1) return s | (<u32>e << 10) | m;
  return s | ((0x400 | m) >> <u32>(1 - e)); // a subnormal half: its bits below the point were zero
}

/**
 * Bit 0: some fp16 scale of the plain rows [0, rows) at W is finite but has no x4 encoding (|d| >=
 * 128); bit 1: some scale is inf or NaN. kind: 0 q8_0, 1 q4_0 (its d), 2 q4_K (its d and dmin).
 */
export function x4_scales_check(kind: i32, W: usize, rows: i32, K: i32): i32 {
  const bs: usize = kind == 2 ? 144 : kind == 1 ? 18 : 34;
  const per: usize = kind == 2 ? 2 : 1;
  const n = <usize>rows * <usize>(K >> (kind == 2 ? 8 : 5));
  let r = 0;
  for (let i: usize = 0; i < n; i++) {
    for (let j: usize = 0; j < per; j++) {
      const h = <u32>load<u16>(W + i * bs + 2 * j);
      if ((h & 0x7c00) == 0x7c00) r |= 2;
      else if (x4_scale_bits(h) < 0) r |= 1;
    }
  }
  return r;
}

/**
 * The x4-encoded scales of x4 groups of rows [0, rows) (a multiple of 4) at W rewritten as raw
 * fp16; kind as x4_scales_check (q4_Kx4: the 8 halves d, dmin of each group super-block).
 */
export function x4_scales_to_raw(kind: i32, W: usize, rows: i32, K: i32): void {
  const bs: usize = kind == 2 ? 576 : kind == 1 ? 72 : 136;
  const hb: usize = kind == 2 ? 16 : 8;
  const n = <usize>(rows >> 2) * <usize>(K >> (kind == 2 ? 8 : 5));
  for (let i: usize = 0; i < n; i++) {
    const p = W + i * bs;
    for (let j: usize = 0; j < hb; j += 2) store<u16>(p + j, <u16>x4_scale_raw(<u32>load<u16>(p + j)));
  }
}
