// Matrix products with ggml's k-quant weights (q4_K, q5_K, q6_K; super-blocks of 256 values,
// used as stored) and activations quantized to q8_K, in llama.cpp's arithmetic: per super-block
// an exact integer sum Σ_sub scale_sub·Σ q_w·q_x (minus the mins term for q4_K / q5_K, minus the
// -32 offset of q6_K through the activation sums), times d_w·d_x.
//
// Activations (quantize_act_q8k), one record per 256 values of a row (Q8K_BYTES):
//   q[256] i8 | d f32 | 12 bytes pad | bsums16 i32[16] | bsums32 i32[8]
// q8_K as ggml's quantize_row_q8_K: max = first value of largest |x| (sign kept),
// iscale = -127/max, q = min(127, round_half_even(iscale·x)), d = 1/iscale.
//
// Weights are unsigned 4/5/6-bit values (q6_K's -32 is folded into the activation sums), the
// 7-bit operand of the relaxed-SIMD dot product (pmaddubsw); the plain-SIMD build widens to i16.
// Sub-block scales are applied with pmaddwd on the i16 partial sums, so a super-block needs one
// i32x4 accumulator per activation row.
//
// Tiles: 1 weight row × 4 activation rows (prefill, batched decode; tails of 2-3 rows), each
// weight super-block unpacked once (quants, scales and mins) and applied to every row; lanes of
// the f32 results are rows. One activation row (decode) inlines four blocks per iteration, lanes
// = blocks mod 4. Both compute the same f32 operations per block and join the per-row sums in the
// same order, so a row's bits do not depend on the tile or on how rows are split over threads.
import { C_NIBBLE_MASK, f16_addr, f16_at } from './tables';
import { reduce4_i16 } from './gemm-q';

export const Q8K_BYTES: usize = 368;
/** Bytes of one q4_Kx4 group super-block (4 rows × 144, repack.ts). */
export const X4K_BYTES: usize = 576;
/** Offsets in a q8_K record: d, bsums16, bsums32. */
export const OFF_D: usize = 256, OFF_B16: usize = 272, OFF_B32: usize = 336;

/** Quantizes rows [m0, m1) of X (K values, a multiple of 256) to q8_K records at A (row stride K/256 records). */
export function quantize_act_q8k(X: usize, ldx: i32, m0: i32, m1: i32, K: i32, A: usize): void {
  quantize_act_q8k_span(X, ldx, m0, m1, K, A, 0, K >> 8);
}

/**
 * Super-blocks [b0, b1) (256 values each) of rows [m0, m1) into their q8_K records, as
 * quantize_act_q8k writes them: a product's work item quantizes the outputs it made (executor.ts).
 */
export function quantize_act_q8k_span(X: usize, ldx: i32, m0: i32, m1: i32, K: i32, A: usize, b0: i32, b1: i32): void {
  const nb = K >> 8;
  for (let m = m0; m < m1; m++) {
    const x = X + (<usize>m * <usize>ldx << 2);
    let rec = A + (<usize>m * <usize>nb + <usize>b0) * Q8K_BYTES;
    for (let b = b0; b < b1; b++) {
      quant_k_block(x + (<usize>b << 10), rec);
      rec += Q8K_BYTES;
    }
  }
}

/**
 * The 256 values at p into the q8_K record at rec.
 *
 * As quant-act.ts's quant_block, in integer form with the same results while every value is
 * finite and 127/amax is too (otherwise quant_k_block_rare, the former code): the largest |x| is
 * i32x4.max_s of the bits of |x| (non-negative floats' bits order as their values; Inf and NaN
 * bits lie above every finite value's, hence the test), and trunc_sat(nearest(v)) is the bits of
 * v + 1.5·2^23 minus those of 1.5·2^23, exact for |v| <= 127·(1 + 2^-23)², which bounds
 * |x·(-127/max)| here; that bound also makes min(127, q) a no-op, so it is left out.
 */
// @ts-ignore: decorator
@inline function quant_k_block(p: usize, rec: usize): void {
  const ab = i32x4.splat(0x7fffffff);
  let m0 = i32x4.splat(0), m1 = m0, m2 = m0, m3 = m0;
  for (let j = 0; j < 16; j++) {
    const q = p + (<usize>j << 6);
    m0 = i32x4.max_s(m0, v128.and(v128.load(q), ab));
    m1 = i32x4.max_s(m1, v128.and(v128.load(q, 16), ab));
    m2 = i32x4.max_s(m2, v128.and(v128.load(q, 32), ab));
    m3 = i32x4.max_s(m3, v128.and(v128.load(q, 48), ab));
  }
  let mb = i32x4.max_s(i32x4.max_s(m0, m1), i32x4.max_s(m2, m3));
  mb = i32x4.max_s(mb, v128.shuffle<u32>(mb, mb, 2, 3, 0, 1));
  const bits = max(i32x4.extract_lane(mb, 0), i32x4.extract_lane(mb, 1));
  // Inf / NaN, or 0 < amax < 2^-120, where -127/max may overflow to Inf (0·Inf is NaN)
  if (bits >= 0x7f800000 || <u32>(bits - 1) < 0x037fffff) {
    quant_k_block_rare(p, rec);
    return;
  }
  if (bits == 0) {
    memory.fill(rec, 0, Q8K_BYTES);
    return;
  }
  const iscale = <f32>-127 / first_of_abs(p, bits);
  const vs = f32x4.splat(iscale), big = f32x4.splat(12582912), bigBits = i32x4.splat(0x4b400000);
  for (let g = 0; g < 16; g++) {
    const q = p + (<usize>g << 6);
    const c0 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(q), vs), big), bigBits);
    const c1 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(q, 16), vs), big), bigBits);
    const c2 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(q, 32), vs), big), bigBits);
    const c3 = i32x4.sub(f32x4.add(f32x4.mul(v128.load(q, 48), vs), big), bigBits);
    store_k_group(rec, g, c0, c1, c2, c3);
  }
  finish_k_record(rec, iscale);
}

/**
 * quant_k_block through pmax (which skips NaN, as a scalar `|x| > amax` does) and
 * trunc_sat(nearest()), whose NaN and saturation rules decide the result of its rare blocks.
 */
function quant_k_block_rare(p: usize, rec: usize): void {
  let vm = f32x4.splat(0);
  for (let j = 0; j < 64; j++) vm = f32x4.pmax(vm, f32x4.abs(v128.load(p + (<usize>j << 4))));
  const amax = max(max(f32x4.extract_lane(vm, 0), f32x4.extract_lane(vm, 1)), max(f32x4.extract_lane(vm, 2), f32x4.extract_lane(vm, 3)));
  if (amax == 0) {
    memory.fill(rec, 0, Q8K_BYTES);
    return;
  }
  const iscale = <f32>-127 / first_of_abs(p, reinterpret<i32>(amax));
  const vs = f32x4.splat(iscale), c = i32x4.splat(127);
  for (let g = 0; g < 16; g++) {
    const q = p + (<usize>g << 6);
    const c0 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q), vs))), c);
    const c1 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q, 16), vs))), c);
    const c2 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q, 32), vs))), c);
    const c3 = i32x4.min_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q, 48), vs))), c);
    store_k_group(rec, g, c0, c1, c2, c3);
  }
  finish_k_record(rec, iscale);
}

/**
 * The first of the 256 values at p whose |x| has the bits `bits` (> 0, not NaN), with its sign:
 * ggml's max. Integer equality of |x|'s bits is float equality here, as neither side is NaN or 0.
 */
// @ts-ignore: decorator
@inline function first_of_abs(p: usize, bits: i32): f32 {
  const ab = i32x4.splat(0x7fffffff), vb = i32x4.splat(bits);
  let j = 0, hit = 0;
  for (;; j++) {
    hit = i32x4.bitmask(i32x4.eq(v128.and(v128.load(p + (<usize>j << 4)), ab), vb));
    if (hit != 0) break;
  }
  return load<f32>(p + (<usize>((j << 2) + ctz(hit)) << 2));
}

/** The quants of values [16g, 16g + 16) (|q| <= 127) into the record at rec, their sum to bsums16[g]. */
// @ts-ignore: decorator
@inline function store_k_group(rec: usize, g: i32, c0: v128, c1: v128, c2: v128, c3: v128): void {
  v128.store(rec + (<usize>g << 4), i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(c0, c1), i16x8.narrow_i32x4_s(c2, c3)));
  let s = i32x4.add(i32x4.add(c0, c1), i32x4.add(c2, c3));
  s = i32x4.add(s, v128.shuffle<u32>(s, s, 2, 3, 0, 1));
  store<i32>(rec + OFF_B16 + (<usize>g << 2), i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1));
}

/** d = 1/iscale and bsums32 (pairs of bsums16) of the record at rec. */
// @ts-ignore: decorator
@inline function finish_k_record(rec: usize, iscale: f32): void {
  store<f32>(rec + OFF_D, <f32>1 / iscale);
  for (let k = 0; k < 8; k++) {
    store<i32>(rec + OFF_B32 + (<usize>k << 2), load<i32>(rec + OFF_B16 + (<usize>k << 3)) + load<i32>(rec + OFF_B16 + (<usize>k << 3) + 4));
  }
}

/** i16 partial sums (pairs of products) of 16 unsigned weights (< 128) and 16 activations. */
// @ts-ignore: decorator
@inline export function udot16(w: v128, x: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(x, w);
  // widen: the pair sums of i16 products, as pmaddubsw gives them
  const lo = i16x8.mul(i16x8.extend_low_i8x16_u(w), i16x8.extend_low_i8x16_s(x));
  const hi = i16x8.mul(i16x8.extend_high_i8x16_u(w), i16x8.extend_high_i8x16_s(x));
  return i16x8.add(v128.shuffle<u16>(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14), v128.shuffle<u16>(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15));
}

/** Scale byte k (0..11) of a q4_K block at q + k. */
// @ts-ignore: decorator
@inline function sbyte(q: usize, k: i32): i32 {
  return <i32>load<u8>(q + <usize>k);
}

/** The 6-bit scale and min of sub-block j (0..7) of a q4_K / q5_K block (ggml get_scale_min_k4), scale bytes at q. */
// @ts-ignore: decorator
@inline export function scale_k4(j: i32, q: usize): i32 {
  return j < 4 ? sbyte(q, j) & 63 : (sbyte(q, j + 4) & 0xf) | ((sbyte(q, j - 4) >> 6) << 4);
}
// @ts-ignore: decorator
@inline export function min_k4(j: i32, q: usize): i32 {
  return j < 4 ? sbyte(q, j + 4) & 63 : (sbyte(q, j + 4) >> 4) | ((sbyte(q, j) >> 6) << 4);
}

// The q4_Kx4 header's scales and mins (repack.ts): 48 bytes at 16 of a group super-block, three
// vectors A, B, C whose byte i packs byte i of four 6-bit vectors, the forms the tiles use:
//   U0 (scales of sub-blocks 0-3) and U1 (4-7): byte 4(j & 3) + r = sub-block j of row r;
//   E0 (mins of sub-blocks 0-3) and E1 (4-7): byte 8((j >> 1) & 1) + 2r + (j & 1) = min j of row r
//   (widened to i16: row r's pair of sub-blocks in lanes 2r, 2r + 1, mins_of_x4's operands);
//   A = U0 & 15 | (U1 & 15) << 4, B = E0 & 15 | (E1 & 15) << 4,
//   C = U0 >> 4 | (U1 >> 4) << 2 | (E0 >> 4) << 4 | (E1 >> 4) << 6.
// Unpacking is 17 and / shift / or for the four vectors (ggml's 12-byte form took ~90 instructions
// a group super-block with the regrouping shuffles); same size, same values.

/** Scale (min = false) or min of sub-block j of row r of the q4_Kx4 group super-block at w. */
// @ts-ignore: decorator
@inline export function six_x4(w: usize, r: i32, j: i32, min: bool): i32 {
  const hi4 = j >= 4;
  if (!min) {
    const i = <usize>(((j & 3) << 2) + r);
    const a = <i32>load<u8>(w + 16 + i), c = <i32>load<u8>(w + 48 + i);
    return hi4 ? (a >> 4) | (((c >> 2) & 3) << 4) : (a & 15) | ((c & 3) << 4);
  }
  const i = <usize>((((j >> 1) & 1) << 3) + (r << 1) + (j & 1));
  const b = <i32>load<u8>(w + 32 + i), c = <i32>load<u8>(w + 48 + i);
  return hi4 ? (b >> 4) | ((c >> 6) << 4) : (b & 15) | (((c >> 4) & 3) << 4);
}

/** The packed byte i (0..15) of vector A (v = 0), B (1) or C (2) for the 4 plain rows' 12 scale bytes at h + r·rs. */
// @ts-ignore: decorator
@inline export function x4_scale_byte(h: usize, rs: usize, i: i32, v: i32): u8 {
  const ru = <usize>(i & 3), j = i >> 2;
  const mr = <usize>((i >> 1) & 3), mj = ((i >> 3) << 1) + (i & 1);
  const u0 = scale_k4(j, h + ru * rs), u1 = scale_k4(j + 4, h + ru * rs);
  const e0 = min_k4(mj, h + mr * rs), e1 = min_k4(mj + 4, h + mr * rs);
  if (v == 0) return <u8>((u0 & 15) | ((u1 & 15) << 4));
  if (v == 1) return <u8>((e0 & 15) | ((e1 & 15) << 4));
  return <u8>((u0 >> 4) | ((u1 >> 4) << 2) | ((e0 >> 4) << 4) | ((e1 >> 4) << 6));
}

/**
 * The q4_Kx4 header's 6-bit vectors from its packed vectors a, b, c (m: 0x0F bytes, m30: 0x30):
 * part 0 = U0, 1 = U1, 2 = E0, 3 = E1.
 */
// @ts-ignore: decorator
@inline export function unpack_x4(a: v128, b: v128, c: v128, m: v128, m30: v128, part: i32): v128 {
  if (part == 0) return v128.or(v128.and(a, m), v128.and(i16x8.shl(c, 4), m30));
  if (part == 1) return v128.or(v128.and(i16x8.shr_u(a, 4), m), v128.and(i16x8.shl(c, 2), m30));
  if (part == 2) return v128.or(v128.and(b, m), v128.and(c, m30));
  return v128.or(v128.and(i16x8.shr_u(b, 4), m), v128.and(i16x8.shr_u(c, 2), m30));
}

/**
 * All eight 6-bit scales and mins of a q4_K / q5_K block (the 12 bytes at q) at once, as
 * get_scale_min_k4 reads them: bytes 0-7 = scales, 8-15 = mins. Reads 16 bytes (the last 4 belong
 * to the same block).
 */
// @ts-ignore: decorator
@inline function scales_mins_k4(q: usize): v128 {
  return scales_mins_k4v(v128.load(q));
}

/** scales_mins_k4 of the 12 scale bytes in lanes 0-11 of s. */
// @ts-ignore: decorator
@inline function scales_mins_k4v(s: v128): v128 {
  // low bits: scales 0-3 = s[0..3] & 63, scales 4-7 = s[8..11] & 15, mins 0-3 = s[4..7] & 63, mins 4-7 = s[8..11] >> 4
  const lo = v128.shuffle<u8>(s, i16x8.shr_u(s, 4), 0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 24, 25, 26, 27);
  // bits 4-5 of scales / mins 4-7: the top two bits of s[0..3] / s[4..7]
  const hi = v128.shuffle<u8>(s, s, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7);
  return v128.or(v128.and(lo, i8x16(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15)),
    v128.and(i16x8.shr_u(hi, 2), i8x16(0, 0, 0, 0, 48, 48, 48, 48, 0, 0, 0, 0, 48, 48, 48, 48)));
}

/** i16 lanes 0, 1 of v spread over all lanes (the scales of the current pair of sub-blocks). */
// @ts-ignore: decorator
@inline function lane0(v: v128): v128 { return v128.shuffle<u16>(v, v, 0, 0, 0, 0, 0, 0, 0, 0); }
// @ts-ignore: decorator
@inline function lane1(v: v128): v128 { return v128.shuffle<u16>(v, v, 1, 1, 1, 1, 1, 1, 1, 1); }
/** i16 lanes moved down by two (the next pair of scales into lanes 0, 1). */
// @ts-ignore: decorator
@inline function next2(v: v128): v128 { return v128.shuffle<u16>(v, v, 2, 3, 4, 5, 6, 7, 0, 1); }

/**
 * One row's share of a 32+32-value step: 64 unsigned weights (lo/hi vectors of two sub-blocks,
 * scales sl / sh in i16 lanes) times the activations at xp, scaled, in i32 lanes.
 */
// @ts-ignore: decorator
@inline function step64(a0: v128, a1: v128, b0: v128, b1: v128, xp: usize, sa: v128, sb: v128): v128 {
  const pa = i16x8.add(udot16(a0, v128.load(xp)), udot16(a1, v128.load(xp, 16)));
  const pb = i16x8.add(udot16(b0, v128.load(xp, 32)), udot16(b1, v128.load(xp, 48)));
  return i32x4.add(i32x4.dot_i16x8_s(pa, sa), i32x4.dot_i16x8_s(pb, sb));
}

/** One row's share of a 16+16-value step (q6_K: a scale per 16 values). */
// @ts-ignore: decorator
@inline function step32(a: v128, b: v128, xp: usize, sa: v128, sb: v128): v128 {
  return i32x4.add(i32x4.dot_i16x8_s(udot16(a, v128.load(xp)), sa), i32x4.dot_i16x8_s(udot16(b, v128.load(xp, 16)), sb));
}

/** [Σa, Σb, Σc, Σd] of four i32x4. */
// @ts-ignore: decorator
@inline function tsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(v128.shuffle<u32>(a, b, 0, 4, 1, 5), v128.shuffle<u32>(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(v128.shuffle<u32>(c, d, 0, 4, 1, 5), v128.shuffle<u32>(c, d, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<u64>(ab, cd, 0, 2), v128.shuffle<u64>(ab, cd, 1, 3));
}

/** d_x of rows 0..R-1 (record of row t at x + t·xs) in lanes 0..R-1 (other lanes: row 0's). */
// @ts-ignore: decorator
@inline function dx_rows(x: usize, xs: usize, R: i32): v128 {
  let v = f32x4.splat(load<f32>(x + OFF_D));
  if (R > 1) v = f32x4.replace_lane(v, 1, load<f32>(x + xs + OFF_D));
  if (R > 2) v = f32x4.replace_lane(v, 2, load<f32>(x + 2 * xs + OFF_D));
  if (R > 3) v = f32x4.replace_lane(v, 3, load<f32>(x + 3 * xs + OFF_D));
  return v;
}

/** Σ_j min_j·bsums32_j of the q8_K record at x, in i32 lanes (mins in i16 lanes 0-7). */
// @ts-ignore: decorator
@inline function mins_dot(mins: v128, x: usize): v128 {
  return i32x4.dot_i16x8_s(mins, i16x8.narrow_i32x4_s(v128.load(x + OFF_B32), v128.load(x + OFF_B32, 16)));
}

/**
 * Low (lo45) / high (hi45) nibbles of 16 q4_K / q5_K quant bytes v, plus q5_K's fifth bit: bit 2j
 * of qh (qh shifted right by 2 per j) → +16 for the low nibbles, bit 2j+1 → +16 for the high ones.
 */
// @ts-ignore: decorator
@inline export function lo45(v: v128, qh: v128, five: bool, m: v128, b16: v128): v128 {
  const l = v128.and(v, m);
  return five ? v128.or(l, v128.and(i16x8.shl(qh, 4), b16)) : l;
}
// @ts-ignore: decorator
@inline export function hi45(v: v128, qh: v128, five: bool, m: v128, b16: v128): v128 {
  const h = v128.and(i16x8.shr_u(v, 4), m);
  return five ? v128.or(h, v128.and(i16x8.shl(qh, 3), b16)) : h;
}

/** Second return values of block45_sums: rows 1-3's sums (R > 1..3) and the block's scales and mins. */
let sums_c1: v128 = i32x4.splat(0), sums_c2: v128 = i32x4.splat(0), sums_c3: v128 = i32x4.splat(0);
let sums_sm: v128 = i32x4.splat(0);

/**
 * The integer sums of one q4_K / q5_K super-block at w times the q8_K records of R activation rows
 * (row t at x + t·xs), before their lanes are added: Σ_sub scale·Σ q_w·q_x in i32 lanes, row 0's
 * returned, rows 1..R-1's in sums_c1..3; the block's scales and mins (scales_mins_k4) in sums_sm.
 */
// @ts-ignore: decorator
@inline function block45_sums(w: usize, x: usize, xs: usize, five: bool, R: i32, m: v128): v128 {
  const sm = scales_mins_k4(w + 4);
  let scv = i16x8.extend_low_i8x16_u(sm);
  const z = i32x4.splat(0);
  let c0 = z, c1 = z, c2 = z, c3 = z;
  // a row's 128 quant bytes: at 16 (q4_K) or 48 (q5_K)
  let qs = w + (five ? 48 : 16), xp = x;
  let qh0 = z, qh1 = z;
  const b16 = i8x16.sub(m, i8x16.eq(m, m)); // 0x10 bytes, from the register holding 0x0F
  if (five) { qh0 = v128.load(w, 16); qh1 = v128.load(w, 32); }
  for (let j = 0; j < 4; j++) {
    const v0 = v128.load(qs), v1 = v128.load(qs, 16);
    const l0 = lo45(v0, qh0, five, m, b16), l1 = lo45(v1, qh1, five, m, b16);
    const h0 = hi45(v0, qh0, five, m, b16), h1 = hi45(v1, qh1, five, m, b16);
    if (five) { qh0 = i16x8.shr_u(qh0, 2); qh1 = i16x8.shr_u(qh1, 2); }
    const sa = lane0(scv), sb = lane1(scv);
    c0 = i32x4.add(c0, step64(l0, l1, h0, h1, xp, sa, sb));
    if (R > 1) c1 = i32x4.add(c1, step64(l0, l1, h0, h1, xp + xs, sa, sb));
    if (R > 2) c2 = i32x4.add(c2, step64(l0, l1, h0, h1, xp + 2 * xs, sa, sb));
    if (R > 3) c3 = i32x4.add(c3, step64(l0, l1, h0, h1, xp + 3 * xs, sa, sb));
    scv = next2(scv);
    qs += 32; xp += 64;
  }
  if (R > 1) sums_c1 = c1;
  if (R > 2) sums_c2 = c2;
  if (R > 3) sums_c3 = c3;
  sums_sm = sm;
  return c0;
}

/**
 * One q4_K (five = false) or q5_K super-block at w times the q8_K records of R activation rows
 * (row t at x + t·xs): d_w·d_x·sumi - dmin_w·d_x·summ per row, in f32 lanes 0..R-1 — the same f32
 * operations, in the same order, for every R.
 */
// @ts-ignore: decorator
@inline function block45(w: usize, x: usize, xs: usize, five: bool, R: i32, m: v128): v128 {
  const z = i32x4.splat(0);
  const c0 = block45_sums(w, x, xs, five, R, m);
  const sumi = tsum4(c0, R > 1 ? sums_c1 : z, R > 2 ? sums_c2 : z, R > 3 ? sums_c3 : z);
  const mins = i16x8.extend_high_i8x16_u(sums_sm);
  const summ = tsum4(mins_dot(mins, x), R > 1 ? mins_dot(mins, x + xs) : z, R > 2 ? mins_dot(mins, x + 2 * xs) : z, R > 3 ? mins_dot(mins, x + 3 * xs) : z);
  const dx = dx_rows(x, xs, R);
  const d = f16_at(w), dmin = f16_at(w + 2);
  return f32x4.sub(f32x4.mul(f32x4.mul(f32x4.splat(d), dx), f32x4.convert_i32x4_s(sumi)),
    f32x4.mul(f32x4.mul(f32x4.splat(dmin), dx), f32x4.convert_i32x4_s(summ)));
}

/** Row 0's mins term of the last block45_sums call. */
// @ts-ignore: decorator
@inline function mins_of_last(x: usize): v128 {
  return mins_dot(i16x8.extend_high_i8x16_u(sums_sm), x);
}

/**
 * f32 lanes = the values at p, p + s, p + 2s, p + 3s (fp16 when half, else f32). fp16 goes through
 * the table (f16_at): a subnormal half stays out of f32 arithmetic, where a subnormal operand costs
 * a microcode assist (half4_scaled's d·2^-112 is subnormal for every half under 2^-14).
 */
// @ts-ignore: decorator
@inline export function gather4(p: usize, s: usize, half: bool): v128 {
  if (half) {
    // each table entry loaded straight into its lane (one vpinsrd from memory, where a scalar
    // load and a vinsertps were two): the same f32 bits
    let v = v128.load32_zero(f16_addr(p));
    v = v128.load32_lane(f16_addr(p + s), v, 1);
    v = v128.load32_lane(f16_addr(p + 2 * s), v, 2);
    return v128.load32_lane(f16_addr(p + 3 * s), v, 3);
  }
  let v = v128.load32_zero(p);
  v = v128.load32_lane(p + s, v, 1);
  v = v128.load32_lane(p + 2 * s, v, 2);
  return v128.load32_lane(p + 3 * s, v, 3);
}

/**
 * Four q4_K / q5_K super-blocks (w, stride bs) × one activation row (records at x), block b in
 * lane b: the integer sums of the four blocks transposed into lanes together and the f32 step
 * done once for four blocks, instead of per block on lane 0 of a vector (block45 with R = 1:
 * two transpositions against zero vectors and the f32 step per block). Lane b gets exactly
 * block_one's value for block b (same integers, same f32 operations).
 */
// @ts-ignore: decorator
@inline function four45(w: usize, bs: usize, x: usize, five: bool, m: v128): v128 {
  const c0 = block45_sums(w, x, 0, five, 1, m), n0 = mins_of_last(x);
  const c1 = block45_sums(w + bs, x + Q8K_BYTES, 0, five, 1, m), n1 = mins_of_last(x + Q8K_BYTES);
  const c2 = block45_sums(w + 2 * bs, x + 2 * Q8K_BYTES, 0, five, 1, m), n2 = mins_of_last(x + 2 * Q8K_BYTES);
  const c3 = block45_sums(w + 3 * bs, x + 3 * Q8K_BYTES, 0, five, 1, m), n3 = mins_of_last(x + 3 * Q8K_BYTES);
  const sumi = tsum4(c0, c1, c2, c3), summ = tsum4(n0, n1, n2, n3);
  const dx = gather4(x + OFF_D, Q8K_BYTES, false);
  return f32x4.sub(f32x4.mul(f32x4.mul(gather4(w, bs, true), dx), f32x4.convert_i32x4_s(sumi)),
    f32x4.mul(f32x4.mul(gather4(w + 2, bs, true), dx), f32x4.convert_i32x4_s(summ)));
}

/** Σ_k sc_k·bsums16_k of the q8_K record at x (scales of the two halves in i16 lanes). */
// @ts-ignore: decorator
@inline function q6_corr(s0: v128, s1: v128, x: usize): v128 {
  const b = x + OFF_B16;
  return i32x4.add(i32x4.dot_i16x8_s(s0, i16x8.narrow_i32x4_s(v128.load(b), v128.load(b, 16))),
    i32x4.dot_i16x8_s(s1, i16x8.narrow_i32x4_s(v128.load(b, 32), v128.load(b, 48))));
}

/**
 * 16 q6_K weights (0..63) of quarter q (0..3) of a half: nibble q >> 1 of the ql bytes l, bits
 * 2q, 2q+1 of the qh bytes h.
 */
// @ts-ignore: decorator
@inline function g6(l: v128, h: v128, q: i32, m: v128, m30: v128): v128 {
  const lo = q < 2 ? v128.and(l, m) : v128.and(i16x8.shr_u(l, 4), m);
  const hi = q == 0 ? i16x8.shl(h, 4) : q == 1 ? i16x8.shl(h, 2) : q == 2 ? h : i16x8.shr_u(h, 2);
  return v128.or(lo, v128.and(hi, m30));
}

/**
 * One q6_K super-block at w times R activation rows: d_w·d_x·Σ_k sc_k·(Σ q·x - 32·bsums_k), in
 * f32 lanes 0..R-1 (weights 0..63; the -32 goes through the activations' block sums). Per
 * quarter (32 values), the two groups are unpacked once (from L1: reloading beats keeping eight
 * unpacked vectors live next to four accumulators) and applied to every row.
 */
// @ts-ignore: decorator
@inline function block6(w: usize, x: usize, xs: usize, R: i32, m: v128): v128 {
  const z = i32x4.splat(0);
  let c0 = z, c1 = z, c2 = z, c3 = z;
  const m30 = i8x16.shl(i8x16.shr_u(m, 2), 4); // 0x30 bytes, from the register holding 0x0F
  let xp = x;
  for (let n = 0; n < 2; n++) {
    const ql = w + (<usize>n << 6), qh = w + 128 + (<usize>n << 5), sc = w + 192 + (<usize>n << 3);
      { // quarter 0: groups 0, 1
        const ga = g6(v128.load(ql + 0), v128.load(qh), 0, m, m30), gb = g6(v128.load(ql + 16), v128.load(qh, 16), 0, m, m30);
        const sa = i16x8.splat(<i16>load<i8>(sc + 0)), sb = i16x8.splat(<i16>load<i8>(sc + 1));
        const xq = xp + 0;
        c0 = i32x4.add(c0, step32(ga, gb, xq, sa, sb));
        if (R > 1) c1 = i32x4.add(c1, step32(ga, gb, xq + xs, sa, sb));
        if (R > 2) c2 = i32x4.add(c2, step32(ga, gb, xq + 2 * xs, sa, sb));
        if (R > 3) c3 = i32x4.add(c3, step32(ga, gb, xq + 3 * xs, sa, sb));
      }
      { // quarter 1: groups 2, 3
        const ga = g6(v128.load(ql + 32), v128.load(qh), 1, m, m30), gb = g6(v128.load(ql + 48), v128.load(qh, 16), 1, m, m30);
        const sa = i16x8.splat(<i16>load<i8>(sc + 2)), sb = i16x8.splat(<i16>load<i8>(sc + 3));
        const xq = xp + 32;
        c0 = i32x4.add(c0, step32(ga, gb, xq, sa, sb));
        if (R > 1) c1 = i32x4.add(c1, step32(ga, gb, xq + xs, sa, sb));
        if (R > 2) c2 = i32x4.add(c2, step32(ga, gb, xq + 2 * xs, sa, sb));
        if (R > 3) c3 = i32x4.add(c3, step32(ga, gb, xq + 3 * xs, sa, sb));
      }
      { // quarter 2: groups 4, 5
        const ga = g6(v128.load(ql + 0), v128.load(qh), 2, m, m30), gb = g6(v128.load(ql + 16), v128.load(qh, 16), 2, m, m30);
        const sa = i16x8.splat(<i16>load<i8>(sc + 4)), sb = i16x8.splat(<i16>load<i8>(sc + 5));
        const xq = xp + 64;
        c0 = i32x4.add(c0, step32(ga, gb, xq, sa, sb));
        if (R > 1) c1 = i32x4.add(c1, step32(ga, gb, xq + xs, sa, sb));
        if (R > 2) c2 = i32x4.add(c2, step32(ga, gb, xq + 2 * xs, sa, sb));
        if (R > 3) c3 = i32x4.add(c3, step32(ga, gb, xq + 3 * xs, sa, sb));
      }
      { // quarter 3: groups 6, 7
        const ga = g6(v128.load(ql + 32), v128.load(qh), 3, m, m30), gb = g6(v128.load(ql + 48), v128.load(qh, 16), 3, m, m30);
        const sa = i16x8.splat(<i16>load<i8>(sc + 6)), sb = i16x8.splat(<i16>load<i8>(sc + 7));
        const xq = xp + 96;
        c0 = i32x4.add(c0, step32(ga, gb, xq, sa, sb));
        if (R > 1) c1 = i32x4.add(c1, step32(ga, gb, xq + xs, sa, sb));
        if (R > 2) c2 = i32x4.add(c2, step32(ga, gb, xq + 2 * xs, sa, sb));
        if (R > 3) c3 = i32x4.add(c3, step32(ga, gb, xq + 3 * xs, sa, sb));
      }
    xp += 128;
  }
  const sc = v128.load(w + 192);
  const s0 = i16x8.extend_low_i8x16_s(sc), s1 = i16x8.extend_high_i8x16_s(sc);
  c0 = i32x4.sub(c0, i32x4.shl(q6_corr(s0, s1, x), 5));
  if (R > 1) c1 = i32x4.sub(c1, i32x4.shl(q6_corr(s0, s1, x + xs), 5));
  if (R > 2) c2 = i32x4.sub(c2, i32x4.shl(q6_corr(s0, s1, x + 2 * xs), 5));
  if (R > 3) c3 = i32x4.sub(c3, i32x4.shl(q6_corr(s0, s1, x + 3 * xs), 5));
  const sumi = tsum4(c0, c1, c2, c3);
  return f32x4.mul(f32x4.mul(f32x4.splat(f16_at(w + 208)), dx_rows(x, xs, R)), f32x4.convert_i32x4_s(sumi));
}

/**
 * The integer of one q6_K super-block at w times one activation row's q8_K record at x,
 * Σ_k sc_k·(Σ q·x − 32·bsums_k), spread over the four i32 lanes (their sum is block6's sumi).
 * Per half (128 values) the 16-value groups a (bytes 0-15 of each 32) and b (16-31) go apart:
 * a group of the four quarters needs two ql vectors (low nibbles: quarters 0, 1; high: 2, 3) and
 * one qh vector, each loaded once (block6 loads them per quarter). Two quarters' i16 pair sums
 * are folded into one vector (lanes 0-3 / 4-7; at most 2·2·63·127 = 32004) and scaled by one
 * pmaddwd against the two groups' scales. Exact integers, so block6's sum.
 */
function sb6_sum(w: usize, x: usize, m: v128, m30: v128): v128 {
  const c = half6(w, w + 128, w + 192, x, i32x4.splat(0), true, m, m30);
  half6(w + 64, w + 160, w + 200, x + 128, c, false, m, m30);
  // the last group's sum read back (Binaryen drops a global nobody reads, and its stores with it);
  // the scales loaded again after the groups' stores (so not held in registers through them)
  return i32x4.sub(k6_last, i32x4.shl(q6_corr(v128.load8x8_s(w + 192), v128.load8x8_s(w + 200), x), 5));
}

/**
 * Half of a q6_K super-block for sb6_sum, added to c: its 64 ql bytes at ql, 32 qh bytes at qh,
 * 128 activations at xq, its 8 scales at sc (scale 2q + g: quarter q, group g); first: c is 0.
 */
// @ts-ignore: decorator
@inline function half6(ql: usize, qh: usize, sc: usize, xq: usize, c: v128, first: bool, m: v128, m30: v128): v128 {
  const s = v128.load8x8_s(sc);
  // each scale twice, then per pair of quarters the group's two scales four times each
  const lo = v128.shuffle<u16>(s, s, 0, 0, 1, 1, 2, 2, 3, 3), hi = v128.shuffle<u16>(s, s, 4, 4, 5, 5, 6, 6, 7, 7);
  c = groups6(ql, qh, xq, v128.shuffle<u32>(lo, lo, 0, 0, 2, 2), v128.shuffle<u32>(hi, hi, 0, 0, 2, 2), c, first, m, m30);
  return groups6(ql + 16, qh + 16, xq + 16, v128.shuffle<u32>(lo, lo, 1, 1, 3, 3), v128.shuffle<u32>(hi, hi, 1, 1, 3, 3), c, false, m, m30);
}

/**
 * The running sum after each groups6, also written to memory: a global is memory to V8, so
 * TurboFan keeps the next group's loads after the store (issued first, they spill).
 */
let k6_last: v128 = i32x4.splat(0);

/**
 * One 16-value group of the four quarters of a q6_K half (group a: ql, qh at the half's start,
 * xq its activations; group b: each + 16), added to c: quarter q's weights are nibble q >> 1 of
 * the ql bytes at ql + 32·(q & 1) and bits 2q, 2q + 1 of the qh bytes, its activations at
 * xq + 32q. s01 / s23: the scales of quarters 0, 1 / 2, 3 (i16 lanes 0-3, 4-7); first: c is 0.
 */
// @ts-ignore: decorator
@inline function groups6(ql: usize, qh: usize, xq: usize, s01: v128, s23: v128, c: v128, first: bool, m: v128, m30: v128): v128 {
  const a = v128.load(ql), b = v128.load(ql, 32), h = v128.load(qh);
  const w0 = v128.or(v128.and(a, m), v128.and(i16x8.shl(h, 4), m30));
  const w1 = v128.or(v128.and(b, m), v128.and(i16x8.shl(h, 2), m30));
  const r01 = i32x4.dot_i16x8_s(fold2(udot16(w0, v128.load(xq)), udot16(w1, v128.load(xq, 32))), s01);
  const w2 = v128.or(v128.and(i16x8.shr_u(a, 4), m), v128.and(h, m30));
  const w3 = v128.or(v128.and(i16x8.shr_u(b, 4), m), v128.and(i16x8.shr_u(h, 2), m30));
  const r23 = i32x4.dot_i16x8_s(fold2(udot16(w2, v128.load(xq, 64)), udot16(w3, v128.load(xq, 96))), s23);
  const v = first ? i32x4.add(r01, r23) : i32x4.add(c, i32x4.add(r01, r23));
  k6_last = v;
  return v;
}

/**
 * Four q6_K super-blocks (w, stride 210) × one activation row (records at x), block b in lane b:
 * each lane block_one's value for its block (the same integers, then (d·d_x)·sumi in f32).
 */
// @ts-ignore: decorator
@inline function four6(w: usize, x: usize, m: v128): v128 {
  const m30 = i8x16.shl(i8x16.shr_u(m, 2), 4); // 0x30 bytes, from the register holding 0x0F
  const sumi = tsum4(sb6_sum(w, x, m, m30), sb6_sum(w + 210, x + Q8K_BYTES, m, m30),
    sb6_sum(w + 420, x + 2 * Q8K_BYTES, m, m30), sb6_sum(w + 630, x + 3 * Q8K_BYTES, m, m30));
  const dx = gather4(x + OFF_D, Q8K_BYTES, false);
  return f32x4.mul(f32x4.mul(gather4(w + 208, 210, true), dx), f32x4.convert_i32x4_s(sumi));
}

/**
 * The integers of one q5_K super-block at w × one activation row's q8_K record at x, as lanes
 * [a, b, c, d] with a + b = Σ_sub scale·Σ q·x and c + d = Σ_sub min·bsums32 (block45's two sums
 * for R = 1). Per 64-value chunk each nibble vector gets its fifth bit from qh shifted by a
 * constant into bit 4 (block45 shifts qh by 2 after every chunk: two more shifts a chunk), the two
 * sub-blocks' i16 pair sums are folded into one vector (lanes 0-3 / 4-7; at most 2·2·2·31·127 =
 * 31496) and scaled by one pmaddwd (block45: two scale broadcasts of two shuffles each and two
 * pmaddwd). Exact integers, so block45's sums.
 */
function sb5_sum(w: usize, x: usize, m: v128): v128 {
  const b16 = i8x16.sub(m, i8x16.eq(m, m)); // 0x10 bytes, from the register holding 0x0F
  const scv = i16x8.extend_low_i8x16_u(scales_mins_k4(w + 4));
  // each scale twice, then per chunk its two sub-blocks' scales four times each
  const lo = v128.shuffle<u16>(scv, scv, 0, 0, 1, 1, 2, 2, 3, 3), hi = v128.shuffle<u16>(scv, scv, 4, 4, 5, 5, 6, 6, 7, 7);
  // a store before the first chunk keeps its loads after the scales' unpacking (issued first, they
  // spilled: 216 → 208 instructions, 19 → 10 stack moves)
  k5_last = hi;
  let c = chunk5(w, 0, x, v128.shuffle<u32>(lo, lo, 0, 0, 1, 1), i32x4.splat(0), m, b16);
  c = chunk5(w, 1, x + 64, v128.shuffle<u32>(lo, lo, 2, 2, 3, 3), c, m, b16);
  c = chunk5(w, 2, x + 128, v128.shuffle<u32>(hi, hi, 0, 0, 1, 1), c, m, b16);
  chunk5(w, 3, x + 192, v128.shuffle<u32>(hi, hi, 2, 2, 3, 3), c, m, b16);
  // the last chunk's sum read back (Binaryen drops a global nobody reads, and its stores with it);
  // the mins unpacked again after the chunks' stores (so not held in registers through them)
  const n = mins_dot(i16x8.extend_high_i8x16_u(scales_mins_k4(w + 4)), x);
  const s = k5_last;
  return i32x4.add(v128.shuffle<u32>(s, n, 0, 1, 4, 5), v128.shuffle<u32>(s, n, 2, 3, 6, 7));
}

/** The running sum after each chunk5, also written to memory: keeps the next chunk's loads after the store (as k6_last). */
let k5_last: v128 = i32x4.splat(0);

/** qh moved so that its bit b (0..7) lands on bit 4 of each byte (the bits around it are masked off after). */
// @ts-ignore: decorator
@inline function bit_to_4(qh: v128, b: i32): v128 {
  return b < 4 ? i16x8.shl(qh, 4 - b) : b == 4 ? qh : i16x8.shr_u(qh, b - 4);
}

/**
 * Chunk j (0..3) of the q5_K super-block at w (sub-blocks 2j: low nibbles of quant bytes
 * 48 + 32j.., 2j + 1: high nibbles; fifth bits 2j, 2j + 1 of the qh bytes at w + 16) × the 64
 * activations at xp, scaled by sc (the two sub-blocks' scales in i16 lanes 0-3, 4-7), added to c
 * (j = 0: c is 0).
 */
// @ts-ignore: decorator
@inline function chunk5(w: usize, j: i32, xp: usize, sc: v128, c: v128, m: v128, b16: v128): v128 {
  const q = w + 48 + (<usize>j << 5);
  const v0 = v128.load(q), v1 = v128.load(q, 16), h0 = v128.load(w, 16), h1 = v128.load(w, 32);
  const l0 = v128.or(v128.and(v0, m), v128.and(bit_to_4(h0, 2 * j), b16));
  const l1 = v128.or(v128.and(v1, m), v128.and(bit_to_4(h1, 2 * j), b16));
  const u0 = v128.or(v128.and(i16x8.shr_u(v0, 4), m), v128.and(bit_to_4(h0, 2 * j + 1), b16));
  const u1 = v128.or(v128.and(i16x8.shr_u(v1, 4), m), v128.and(bit_to_4(h1, 2 * j + 1), b16));
  const pa = i16x8.add(udot16(l0, v128.load(xp)), udot16(l1, v128.load(xp, 16)));
  const pb = i16x8.add(udot16(u0, v128.load(xp, 32)), udot16(u1, v128.load(xp, 48)));
  const r = i32x4.dot_i16x8_s(fold2(pa, pb), sc);
  const v = j == 0 ? r : i32x4.add(c, r);
  k5_last = v;
  return v;
}

/**
 * Four q5_K super-blocks (w, stride 176) × one activation row (records at x), block b in lane b:
 * four45's value for each (the same integers, the same f32 operations).
 */
// @ts-ignore: decorator
@inline function four5(w: usize, x: usize, m: v128): v128 {
  const v0 = sb5_sum(w, x, m), v1 = sb5_sum(w + 176, x + Q8K_BYTES, m);
  const v2 = sb5_sum(w + 352, x + 2 * Q8K_BYTES, m), v3 = sb5_sum(w + 528, x + 3 * Q8K_BYTES, m);
  // [sumi, summ] of blocks 0, 1 and 2, 3, then each sum's four blocks in lanes
  const p01 = i32x4.add(v128.shuffle<u32>(v0, v1, 0, 2, 4, 6), v128.shuffle<u32>(v0, v1, 1, 3, 5, 7));
  const p23 = i32x4.add(v128.shuffle<u32>(v2, v3, 0, 2, 4, 6), v128.shuffle<u32>(v2, v3, 1, 3, 5, 7));
  const sumi = v128.shuffle<u32>(p01, p23, 0, 2, 4, 6), summ = v128.shuffle<u32>(p01, p23, 1, 3, 5, 7);
  const dx = gather4(x + OFF_D, Q8K_BYTES, false);
  return f32x4.sub(f32x4.mul(f32x4.mul(gather4(w, 176, true), dx), f32x4.convert_i32x4_s(sumi)),
    f32x4.mul(f32x4.mul(gather4(w + 2, 176, true), dx), f32x4.convert_i32x4_s(summ)));
}

// One function per (type, rows): V8 allocates registers per function, and the tile loop's four
// f32 accumulators stay out of the block's register budget.
function b4k_2(w: usize, x: usize, xs: usize, m: v128): v128 { return block45(w, x, xs, false, 2, m); }
function b4k_3(w: usize, x: usize, xs: usize, m: v128): v128 { return block45(w, x, xs, false, 3, m); }
function b4k_4(w: usize, x: usize, xs: usize, m: v128): v128 { return block45(w, x, xs, false, 4, m); }
function b5k_2(w: usize, x: usize, xs: usize, m: v128): v128 { return block45(w, x, xs, true, 2, m); }
function b5k_3(w: usize, x: usize, xs: usize, m: v128): v128 { return block45(w, x, xs, true, 3, m); }
function b5k_4(w: usize, x: usize, xs: usize, m: v128): v128 { return block45(w, x, xs, true, 4, m); }
function b6k_2(w: usize, x: usize, xs: usize, m: v128): v128 { return block6(w, x, xs, 2, m); }
function b6k_3(w: usize, x: usize, xs: usize, m: v128): v128 { return block6(w, x, xs, 3, m); }
function b6k_4(w: usize, x: usize, xs: usize, m: v128): v128 { return block6(w, x, xs, 4, m); }

// kind: 5 = q4_K, 6 = q5_K, 7 = q6_K (the host's type ids)
// @ts-ignore: decorator
@inline function block_rows(kind: i32, R: i32, w: usize, x: usize, xs: usize, m: v128): v128 {
  if (kind == 5) return R == 2 ? b4k_2(w, x, xs, m) : R == 3 ? b4k_3(w, x, xs, m) : b4k_4(w, x, xs, m);
  if (kind == 6) return R == 2 ? b5k_2(w, x, xs, m) : R == 3 ? b5k_3(w, x, xs, m) : b5k_4(w, x, xs, m);
  return R == 2 ? b6k_2(w, x, xs, m) : R == 3 ? b6k_3(w, x, xs, m) : b6k_4(w, x, xs, m);
}

// @ts-ignore: decorator
@inline function put(p: usize, v: f32, acc: i32): void {
  store<f32>(p, acc ? load<f32>(p) + v : v);
}

/**
 * One weight row (nb super-blocks at w) × R activation rows (records at x + t·xs) into
 * y + t·sy. Per row, super-block values are summed in four chains (blocks mod 4), the chains
 * pairwise ((0 + 2) + (1 + 3)), then the leftover blocks in order: lanes are rows, so every R
 * (and every split of the rows) gives the same bits.
 */
// @ts-ignore: decorator
@inline function tile(kind: i32, R: i32, w: usize, x: usize, xs: usize, nb: i32, y: usize, sy: usize, acc: i32, m: v128): void {
  const bs: usize = kind == 5 ? 144 : kind == 6 ? 176 : 210;
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    a0 = f32x4.add(a0, block_rows(kind, R, w, x, xs, m));
    a1 = f32x4.add(a1, block_rows(kind, R, w + bs, x + Q8K_BYTES, xs, m));
    a2 = f32x4.add(a2, block_rows(kind, R, w + 2 * bs, x + 2 * Q8K_BYTES, xs, m));
    a3 = f32x4.add(a3, block_rows(kind, R, w + 3 * bs, x + 3 * Q8K_BYTES, xs, m));
    w += 4 * bs;
    x += 4 * Q8K_BYTES;
  }
  let s = f32x4.add(f32x4.add(a0, a2), f32x4.add(a1, a3));
  for (; b < nb; b++) {
    s = f32x4.add(s, block_rows(kind, R, w, x, xs, m));
    w += bs;
    x += Q8K_BYTES;
  }
  put(y, f32x4.extract_lane(s, 0), acc);
  if (R > 1) put(y + sy, f32x4.extract_lane(s, 1), acc);
  if (R > 2) put(y + 2 * sy, f32x4.extract_lane(s, 2), acc);
  if (R > 3) put(y + 3 * sy, f32x4.extract_lane(s, 3), acc);
}

/** One super-block × one activation row, as a scalar (lane 0 of the R = 1 block functions). */
// @ts-ignore: decorator
@inline function block_one(kind: i32, w: usize, x: usize, m: v128): f32 {
  if (kind == 7) return f32x4.extract_lane(block6(w, x, 0, 1, m), 0);
  return f32x4.extract_lane(block45(w, x, 0, kind == 6, 1, m), 0);
}

/**
 * One weight row × one activation row (decode): the blocks inlined four at a time, block b in
 * lane b mod 4 — the same chains, joined in the same order, as tile() with R = 1.
 */
// @ts-ignore: decorator
@inline function row_one(kind: i32, w: usize, x: usize, nb: i32, y: usize, acc: i32, m: v128): void {
  const bs: usize = kind == 5 ? 144 : kind == 6 ? 176 : 210;
  let a = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    a = f32x4.add(a, kind == 7 ? four6(w, x, m) : kind == 6 ? four5(w, x, m) : four45(w, bs, x, false, m));
    w += 4 * bs;
    x += 4 * Q8K_BYTES;
  }
  const t = f32x4.add(a, v128.shuffle<u32>(a, a, 2, 3, 0, 1));
  let s = f32x4.extract_lane(t, 0) + f32x4.extract_lane(t, 1);
  for (; b < nb; b++) {
    s += block_one(kind, w, x, m);
    w += bs;
    x += Q8K_BYTES;
  }
  put(y, s, acc);
}

/** Weight rows [n0, n1) (row n at W + n·rowBytes) × R activation rows. */
// @ts-ignore: decorator
@inline function tiles(kind: i32, R: i32, W: usize, rowBytes: usize, n0: i32, n1: i32, x: usize, xs: usize, nb: i32, yr: usize, sy: usize, acc: i32, m: v128): void {
  if (R == 1) {
    for (let n = n0; n < n1; n++) row_one(kind, W + <usize>n * rowBytes, x, nb, yr + (<usize>n << 2), acc, m);
  } else {
    for (let n = n0; n < n1; n++) tile(kind, R, W + <usize>n * rowBytes, x, xs, nb, yr + (<usize>n << 2), sy, acc, m);
  }
}

function tiles_q4k(R: i32, W: usize, rb: usize, n0: i32, n1: i32, x: usize, xs: usize, nb: i32, yr: usize, sy: usize, acc: i32, m: v128): void {
  if (R == 4) tiles(5, 4, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else if (R == 3) tiles(5, 3, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else if (R == 2) tiles(5, 2, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else tiles(5, 1, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
}
function tiles_q5k(R: i32, W: usize, rb: usize, n0: i32, n1: i32, x: usize, xs: usize, nb: i32, yr: usize, sy: usize, acc: i32, m: v128): void {
  if (R == 4) tiles(6, 4, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else if (R == 3) tiles(6, 3, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else if (R == 2) tiles(6, 2, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else tiles(6, 1, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
}
function tiles_q6k(R: i32, W: usize, rb: usize, n0: i32, n1: i32, x: usize, xs: usize, nb: i32, yr: usize, sy: usize, acc: i32, m: v128): void {
  if (R == 4) tiles(7, 4, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else if (R == 3) tiles(7, 3, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else if (R == 2) tiles(7, 2, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
  else tiles(7, 1, W, rb, n0, n1, x, xs, nb, yr, sy, acc, m);
}

/**
 * k-quant weights W (kind 5 q4_K, 6 q5_K, 7 q6_K; N rows of K/256 super-blocks) times the q8_K
 * activations at A (M rows): rows [n0, n1) of Y [M][ldy] (acc != 0 adds into Y).
 * Each weight super-block is unpacked once for 4 activation rows (tails of 1-3 rows get their
 * own tiles); a row's result has the same bits whatever tile computes it.
 */
export function gemm_k(kind: i32, A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const nb = K >> 8;
  const bs: usize = kind == 5 ? 144 : kind == 6 ? 176 : 210;
  const rowBytes = <usize>nb * bs, xs = <usize>nb * Q8K_BYTES, sy = <usize>ldy << 2;
  const m = v128.load(C_NIBBLE_MASK);
  // ~96 KiB of weight rows stay in L2 while every activation row passes over them
  let rb = <i32>(<usize>98304 / rowBytes);
  if (rb < 1) rb = 1;
  for (let r0 = n0; r0 < n1; r0 += rb) {
    const r1 = min(r0 + rb, n1);
    for (let t = 0; t < M; t += 4) {
      const R = min(4, M - t);
      const x = A + <usize>t * xs, yr = Y + <usize>t * sy;
      if (kind == 5) tiles_q4k(R, W, rowBytes, r0, r1, x, xs, nb, yr, sy, acc, m);
      else if (kind == 6) tiles_q5k(R, W, rowBytes, r0, r1, x, xs, nb, yr, sy, acc, m);
      else tiles_q6k(R, W, rowBytes, r0, r1, x, xs, nb, yr, sy, acc, m);
    }
  }
}

/** [p0 lanes 0-3 + 4-7, p1 lanes 0-3 + 4-7] (i16): the first level of reduce4_i16. */
// @ts-ignore: decorator
@inline function fold2(p0: v128, p1: v128): v128 {
  return i16x8.add(v128.shuffle<u64>(p0, p1, 0, 2), v128.shuffle<u64>(p0, p1, 1, 3));
}

/**
 * get_scale_min_k4 on 4 plain rows at once, from their scale bytes transposed into v0..v2 (bytes
 * 0-3, 4-7, 8-11 of the 4 rows, row r's at bytes 4r..4r+3; the plain-row prompt tile): part 0 the 6-bit scales of
 * sub-blocks 0-3, 1 of 4-7, 2 the mins of 0-3, 3 of 4-7, byte 4r + (j & 3) = sub-block j of row r.
 */
// @ts-ignore: decorator
@inline export function six_bits_x4(v0: v128, v1: v128, v2: v128, m: v128, part: i32): v128 {
  const m30 = i8x16.shl(i8x16.shr_u(m, 2), 4);
  if (part == 0) return v128.and(v0, v128.or(m, m30));
  if (part == 1) return v128.or(v128.and(v2, m), v128.and(i16x8.shr_u(v0, 2), m30));
  if (part == 2) return v128.and(v1, v128.or(m, m30));
  return v128.or(v128.and(i16x8.shr_u(v2, 4), m), v128.and(i16x8.shr_u(v1, 2), m30));
}

/**
 * Mins of 4 rows (six_bits_x4 part 2 or 3) regrouped to (row, pair of sub-blocks) in i16 lanes:
 * the low (high = false) or high pair of sub-blocks, as mins_of_x4 takes them (e0..e3).
 */
// @ts-ignore: decorator
@inline export function mins_pairs_x4(n: v128, high: bool): v128 {
  const p = v128.shuffle<u8>(n, n, 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
  return high ? i16x8.extend_high_i8x16_u(p) : i16x8.extend_low_i8x16_u(p);
}

/**
 * Σ_j min_j·bsums32_j of the q8_K record at x for 4 rows whose mins are e0..e3, regrouped as
 * scales_x4 leaves them (lanes = rows); the q4_K prompt tile (gemm-k-prompt.ts) unpacks its own.
 */
// @ts-ignore: decorator
@inline export function mins_of_x4(e0: v128, e1: v128, e2: v128, e3: v128, x: usize): v128 {
  const bsum = i16x8.narrow_i32x4_s(v128.load(x + OFF_B32), v128.load(x + OFF_B32, 16));
  return i32x4.add(
    i32x4.add(i32x4.dot_i16x8_s(e0, v128.shuffle<u32>(bsum, bsum, 0, 0, 0, 0)), i32x4.dot_i16x8_s(e1, v128.shuffle<u32>(bsum, bsum, 1, 1, 1, 1))),
    i32x4.add(i32x4.dot_i16x8_s(e2, v128.shuffle<u32>(bsum, bsum, 2, 2, 2, 2)), i32x4.dot_i16x8_s(e3, v128.shuffle<u32>(bsum, bsum, 3, 3, 3, 3))));
}

/** (d·d_x)·sumi − (dmin·d_x)·summ for the activation record at x (lanes = the 4 rows; d, dmin exact f32, gather4). */
// @ts-ignore: decorator
@inline export function f32_x4(d: v128, dmin: v128, x: usize, sumi: v128, summ: v128): v128 {
  const dx = v128.load32_splat(x + OFF_D);
  return f32x4.sub(f32x4.mul(f32x4.mul(d, dx), f32x4.convert_i32x4_s(sumi)), f32x4.mul(f32x4.mul(dmin, dx), f32x4.convert_i32x4_s(summ)));
}

/**
 * One q4_K / q5_K super-block as ggml's dequantize_row_*: factors d, dmin, scale bytes at sc
 * (x4: sc = w + the row's index in the q4_Kx4 group super-block at w, six_x4), quant byte l of chunk j at qs + 32j + l (plain) or, for a row of a
 * q4_Kx4 group (x4; qs = its chunk-form bytes, gemm-k-x4.ts), at qs + 128j + 16(l >> 2) + (l & 3),
 * q5_K's high bits at w + 16; 256 f32 values to y.
 */
// @ts-ignore: decorator
@inline export function dequant45(d: f32, dmin: f32, sc: usize, x4: bool, qs: usize, five: bool, w: usize, y: usize): void {
  const r = <i32>(sc - w);
  for (let j = 0; j < 4; j++) {
    const s1 = x4 ? six_x4(w, r, 2 * j, false) : scale_k4(2 * j, sc), n1 = x4 ? six_x4(w, r, 2 * j, true) : min_k4(2 * j, sc);
    const s2 = x4 ? six_x4(w, r, 2 * j + 1, false) : scale_k4(2 * j + 1, sc);
    const n2 = x4 ? six_x4(w, r, 2 * j + 1, true) : min_k4(2 * j + 1, sc);
    const d1 = d * <f32>s1, m1 = dmin * <f32>n1;
    const d2 = d * <f32>s2, m2 = dmin * <f32>n2;
    const p = y + (<usize>j << 8);
    for (let l = 0; l < 32; l++) {
      const q = <i32>load<u8>(x4 ? qs + (<usize>j << 7) + (<usize>(l >> 2) << 4) + <usize>(l & 3) : qs + (<usize>j << 5) + l);
      let lo = q & 0xf, hi = q >> 4;
      if (five) {
        const h = <i32>load<u8>(w + 16 + l);
        if (h & (1 << (2 * j))) lo += 16;
        if (h & (2 << (2 * j))) hi += 16;
      }
      store<f32>(p + (<usize>l << 2), d1 * <f32>lo - m1);
      store<f32>(p + (<usize>(l + 32) << 2), d2 * <f32>hi - m2);
    }
  }
}

/** Dequantizes one k-quant row (kind 5, 6, 7) of K values into out, as ggml's dequantize_row_*. */
export function dequant_row_k(kind: i32, W: usize, K: i32, r: i32, out: usize): void {
  const nb = K >> 8;
  const bs: usize = kind == 5 ? 144 : kind == 6 ? 176 : 210;
  let w = W + <usize>r * <usize>nb * bs;
  let y = out;
  for (let b = 0; b < nb; b++) {
    if (kind == 7) {
      const d = f16_at(w + 208);
      for (let n = 0; n < 2; n++) {
        const ql = w + (<usize>n << 6), qh = w + 128 + (<usize>n << 5), sc = w + 192 + (<usize>n << 3);
        const p = y + (<usize>n << 9);
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const hb = <i32>load<u8>(qh + l);
          const a = <i32>load<u8>(ql + l), c = <i32>load<u8>(ql + l + 32);
          store<f32>(p + (<usize>l << 2), (d * <f32>load<i8>(sc + is)) * <f32>(((a & 0xf) | ((hb & 3) << 4)) - 32));
          store<f32>(p + (<usize>(l + 32) << 2), (d * <f32>load<i8>(sc + is + 2)) * <f32>(((c & 0xf) | (((hb >> 2) & 3) << 4)) - 32));
          store<f32>(p + (<usize>(l + 64) << 2), (d * <f32>load<i8>(sc + is + 4)) * <f32>(((a >> 4) | (((hb >> 4) & 3) << 4)) - 32));
          store<f32>(p + (<usize>(l + 96) << 2), (d * <f32>load<i8>(sc + is + 6)) * <f32>(((c >> 4) | (((hb >> 6) & 3) << 4)) - 32));
        }
      }
    } else {
      const five = kind == 6;
      dequant45(f16_at(w), f16_at(w + 2), w + 4, false, w + (five ? 48 : 16), five, w, y);
    }
    w += bs;
    y += 1024;
  }
}
