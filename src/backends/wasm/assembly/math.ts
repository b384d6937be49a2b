// Vector math for activations and softmax (f32x4), accurate to a few ulp.

// @ts-ignore: decorator
@inline export function hsum_f32(v: v128): f32 {
  const s = f32x4.add(v, v128.shuffle<u32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

// @ts-ignore: decorator
@inline export function hmax_f32(v: v128): f32 {
  const s = f32x4.max(v, v128.shuffle<u32>(v, v, 2, 3, 0, 1));
  return max(f32x4.extract_lane(s, 0), f32x4.extract_lane(s, 1));
}

/** e^r for |r| <= ln2/2: Cephes expf's degree-6 polynomial (callers reduce x = n·ln2 + r). */
// @ts-ignore: decorator
@inline export function exp_reduced_f32x4(r: v128): v128 {
  let p = f32x4.splat(1.9875691500e-4);
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), f32x4.splat(5.0000001201e-1));
  return f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(p, r), r), r), f32x4.splat(1));
}

/**
 * e^x for 4 lanes (Cephes expf: x = n·ln2 + r, degree-6 polynomial in r): relative error
 * about 2 ulp. Inputs below -87.3 give 0 (no subnormal results), above 88.7 give +Inf.
 */
// @ts-ignore: decorator
@inline export function exp_f32x4(x0: v128): v128 {
  const x = f32x4.min(f32x4.max(x0, f32x4.splat(-87.33654)), f32x4.splat(88.72283));
  const fx = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  const p = exp_reduced_f32x4(r);
  // 2^n: n in [-126, 128]; split in two factors so that n = 128 does not overflow the exponent
  const n = i32x4.trunc_sat_f32x4_s(fx);
  const n1 = i32x4.shr_s(n, 1);
  const n2 = i32x4.sub(n, n1);
  const s1 = i32x4.shl(i32x4.add(n1, i32x4.splat(127)), 23);
  const s2 = i32x4.shl(i32x4.add(n2, i32x4.splat(127)), 23);
  const y = f32x4.mul(f32x4.mul(p, s1), s2);
  // exact 0 below the clamp (x0 = -Inf included), +Inf above
  const lo = f32x4.lt(x0, f32x4.splat(-87.33654));
  const hi = f32x4.gt(x0, f32x4.splat(88.72283));
  return v128.bitselect(f32x4.splat(Infinity), v128.andnot(y, lo), hi);
}

/**
 * e^x for x <= 2^-20 (and NaN): the same result bits as exp_f32x4, in fewer instructions. Above
 * the range's low end (-87.33654) the upper clamp and the +Inf test never act; 2^n with n in
 * [-126, 0] is one normal factor (the two factors' product rounds once, at the last multiply,
 * as this one does); the clamp is a pseudo-max (one vmaxps: wasm's max costs V8 about 8
 * instructions for its NaN and ±0 rules, neither of which can change the result here: a NaN x
 * makes p NaN, and every multiply below keeps p's NaN whatever the factor); fx is an integer in
 * [-126, 0] (or NaN), so the relaxed truncation (one vcvttps2dq) equals the saturating one,
 * except NaN → INT_MIN where trunc_sat gives 0: both give the factor 1.0 (the shift drops the
 * sign bit), so y = p either way.
 */
// @ts-ignore: decorator
@inline export function exp_nonpos_f32x4(x0: v128): v128 {
  const x = f32x4.pmax(x0, f32x4.splat(-87.33654));
  const fx = f32x4.nearest(f32x4.mul(x, f32x4.splat(1.44269504088896341)));
  let r = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  const p = exp_reduced_f32x4(r);
  const n = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fx) : i32x4.trunc_sat_f32x4_s(fx);
  const y = f32x4.mul(p, i32x4.shl(i32x4.add(n, i32x4.splat(127)), 23));
  return v128.andnot(y, f32x4.lt(x0, f32x4.splat(-87.33654))); // exact 0 below the clamp, -Inf included
}

/** Scalar e^x through the same arithmetic. */
// @ts-ignore: decorator
@inline export function exp_f32(x: f32): f32 {
  return f32x4.extract_lane(exp_f32x4(f32x4.splat(x)), 0);
}

/** Scalar exp_nonpos_f32x4 (x <= 2^-20 or NaN): exp_f32's bits. */
// @ts-ignore: decorator
@inline export function exp_nonpos_f32(x: f32): f32 {
  return f32x4.extract_lane(exp_nonpos_f32x4(f32x4.splat(x)), 0);
}

/**
 * erfc(z) for z >= 0 (Numerical Recipes' erfcc, Chebyshev fit: relative error < 1.2e-7).
 */
// @ts-ignore: decorator
@inline function erfc_pos_f32x4(z: v128): v128 {
  const t = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), z)));
  let p = f32x4.splat(0.17087277);
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-0.82215223));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(1.48851587));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-1.13520398));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(0.27886807));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-0.18628806));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(0.09678418));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(0.37409196));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(1.00002368));
  p = f32x4.add(f32x4.mul(p, t), f32x4.splat(-1.26551223));
  // p(t) - z² <= ~3e-8: erfc(z)·(1 + z/2) falls from 1 at z = 0
  const e = exp_nonpos_f32x4(f32x4.sub(p, f32x4.mul(z, z)));
  return f32x4.mul(t, e);
}

/** GELU, exact erf form: x·Φ(x) = 0.5·x·(1 + erf(x/√2)). */
// @ts-ignore: decorator
@inline export function gelu_f32x4(x: v128): v128 {
  const z = f32x4.mul(f32x4.abs(x), f32x4.splat(0.7071067811865476));
  const c = erfc_pos_f32x4(z); // erfc(|x|/√2)
  // x >= 0: x·(1 - c/2);  x < 0: x·c/2
  const halfc = f32x4.mul(c, f32x4.splat(0.5));
  const pos = f32x4.mul(x, f32x4.sub(f32x4.splat(1), halfc));
  const neg = f32x4.mul(x, halfc);
  return v128.bitselect(neg, pos, f32x4.lt(x, f32x4.splat(0)));
}

/**
 * gelu_f32x4 of two vectors, stored to pa and pb: the same operations on each, written in
 * alternation. One vector's GELU is a chain of ~60 dependent operations (a division, two Horner
 * polynomials), so the loop over single vectors was bound by latency: the core's floating-point
 * scheduler holds about one iteration's operations, all waiting on the one before. With two
 * independent chains side by side in program order it can issue two at a time.
 */
// @ts-ignore: decorator
@inline export function gelu2_store_f32x4(pa: usize, xa: v128, pb: usize, xb: v128): void {
  const za = f32x4.mul(f32x4.abs(xa), f32x4.splat(0.7071067811865476));
  const zb = f32x4.mul(f32x4.abs(xb), f32x4.splat(0.7071067811865476));
  const ta = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), za)));
  const tb = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), zb)));
  let pa_ = f32x4.splat(0.17087277), pb_ = f32x4.splat(0.17087277);
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(-0.82215223));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(-0.82215223));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(1.48851587));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(1.48851587));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(-1.13520398));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(-1.13520398));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(0.27886807));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(0.27886807));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(-0.18628806));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(-0.18628806));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(0.09678418));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(0.09678418));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(0.37409196));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(0.37409196));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(1.00002368));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(1.00002368));
  pa_ = f32x4.add(f32x4.mul(pa_, ta), f32x4.splat(-1.26551223));
  pb_ = f32x4.add(f32x4.mul(pb_, tb), f32x4.splat(-1.26551223));
  // exp_nonpos_f32x4 of p(t) - z², both (see erfc_pos_f32x4)
  const xa0 = f32x4.sub(pa_, f32x4.mul(za, za));
  const xb0 = f32x4.sub(pb_, f32x4.mul(zb, zb));
  const ea = f32x4.pmax(xa0, f32x4.splat(-87.33654));
  const eb = f32x4.pmax(xb0, f32x4.splat(-87.33654));
  const fa = f32x4.nearest(f32x4.mul(ea, f32x4.splat(1.44269504088896341)));
  const fb = f32x4.nearest(f32x4.mul(eb, f32x4.splat(1.44269504088896341)));
  let ra = f32x4.sub(ea, f32x4.mul(fa, f32x4.splat(0.693359375)));
  let rb = f32x4.sub(eb, f32x4.mul(fb, f32x4.splat(0.693359375)));
  ra = f32x4.sub(ra, f32x4.mul(fa, f32x4.splat(-2.12194440e-4)));
  rb = f32x4.sub(rb, f32x4.mul(fb, f32x4.splat(-2.12194440e-4)));
  let qa = f32x4.splat(1.9875691500e-4), qb = f32x4.splat(1.9875691500e-4);
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(1.3981999507e-3));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(1.3981999507e-3));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(8.3334519073e-3));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(8.3334519073e-3));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(4.1665795894e-2));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(4.1665795894e-2));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(1.6666665459e-1));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(1.6666665459e-1));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(5.0000001201e-1));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(5.0000001201e-1));
  qa = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qa, ra), ra), ra), f32x4.splat(1));
  qb = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qb, rb), rb), rb), f32x4.splat(1));
  const na = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fa) : i32x4.trunc_sat_f32x4_s(fa);
  const nb = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fb) : i32x4.trunc_sat_f32x4_s(fb);
  const ya = v128.andnot(f32x4.mul(qa, i32x4.shl(i32x4.add(na, i32x4.splat(127)), 23)), f32x4.lt(xa0, f32x4.splat(-87.33654)));
  const yb = v128.andnot(f32x4.mul(qb, i32x4.shl(i32x4.add(nb, i32x4.splat(127)), 23)), f32x4.lt(xb0, f32x4.splat(-87.33654)));
  // as gelu_f32x4 from erfc(|x|/√2) = t·e
  const ha = f32x4.mul(f32x4.mul(ta, ya), f32x4.splat(0.5));
  const hb = f32x4.mul(f32x4.mul(tb, yb), f32x4.splat(0.5));
  const ga = v128.bitselect(f32x4.mul(xa, ha), f32x4.mul(xa, f32x4.sub(f32x4.splat(1), ha)), f32x4.lt(xa, f32x4.splat(0)));
  const gb = v128.bitselect(f32x4.mul(xb, hb), f32x4.mul(xb, f32x4.sub(f32x4.splat(1), hb)), f32x4.lt(xb, f32x4.splat(0)));
  v128.store(pa, ga);
  v128.store(pb, gb);
}

/** GELU, tanh approximation: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
// @ts-ignore: decorator
@inline export function gelu_tanh_f32x4(x: v128): v128 {
  const u = f32x4.mul(f32x4.splat(0.7978845608028654),
    f32x4.add(x, f32x4.mul(f32x4.splat(0.044715), f32x4.mul(x, f32x4.mul(x, x)))));
  // 1 + tanh(u) = 2 - 2/(e^{2u} + 1) = 2·e^{2u}/(e^{2u}+1) = 2/(1 + e^{-2u})
  const e = exp_f32x4(f32x4.mul(u, f32x4.splat(-2)));
  return f32x4.div(x, f32x4.add(f32x4.splat(1), e));
}

/** SiLU: x·sigmoid(x). */
// @ts-ignore: decorator
@inline export function silu_f32x4(x: v128): v128 {
  return f32x4.div(x, f32x4.add(f32x4.splat(1), exp_f32x4(f32x4.neg(x))));
}

/** Activation by id: 0 identity, 1 GELU (erf), 2 GELU (tanh), 3 SiLU, 4 ReLU. */
// @ts-ignore: decorator
@inline export function activate_f32x4(x: v128, act: i32): v128 {
  if (act == 1) return gelu_f32x4(x);
  if (act == 2) return gelu_tanh_f32x4(x);
  if (act == 3) return silu_f32x4(x);
  if (act == 4) return f32x4.max(x, f32x4.splat(0));
  return x;
}

// @ts-ignore: decorator
@inline export function activate_f32(x: f32, act: i32): f32 {
  return f32x4.extract_lane(activate_f32x4(f32x4.splat(x), act), 0);
}
