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
 * The coefficients of erfc(z)·(1 + z/2)·exp(z²)'s polynomial in t = 1/(1 + z/2) (Numerical
 * Recipes' erfcc, highest power first), shared by the one- and eight-vector GELU.
 */
const ERFC_P0: f32 = 0.17087277;
const ERFC_P1: f32 = -0.82215223;
const ERFC_P2: f32 = 1.48851587;
const ERFC_P3: f32 = -1.13520398;
const ERFC_P4: f32 = 0.27886807;
const ERFC_P5: f32 = -0.18628806;
const ERFC_P6: f32 = 0.09678418;
const ERFC_P7: f32 = 0.37409196;
const ERFC_P8: f32 = 1.00002368;
const ERFC_P9: f32 = -1.26551223;

/** One Horner step of that polynomial: p·t + c. */
// @ts-ignore: decorator
@inline function erfc_step(p: v128, t: v128, c: f32): v128 {
  return f32x4.add(f32x4.mul(p, t), f32x4.splat(c));
}

/**
 * erfc(z) for z >= 0 (Numerical Recipes' erfcc, Chebyshev fit: relative error < 1.2e-7).
 */
// @ts-ignore: decorator
@inline function erfc_pos_f32x4(z: v128): v128 {
  const t = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), z)));
  let p = f32x4.splat(ERFC_P0);
  p = erfc_step(p, t, ERFC_P1);
  p = erfc_step(p, t, ERFC_P2);
  p = erfc_step(p, t, ERFC_P3);
  p = erfc_step(p, t, ERFC_P4);
  p = erfc_step(p, t, ERFC_P5);
  p = erfc_step(p, t, ERFC_P6);
  p = erfc_step(p, t, ERFC_P7);
  p = erfc_step(p, t, ERFC_P8);
  p = erfc_step(p, t, ERFC_P9);
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
 * gelu_f32x4 of eight vectors, stored at p, p + 16, …, p + 112: the same operations on each,
 * written out in alternation (AssemblyScript has no arrays of registers). One vector's GELU is a
 * chain of ~60 dependent operations (a division, two Horner polynomials), so the loop over single
 * vectors was bound by latency: the core's floating-point scheduler held about one iteration's
 * operations, all waiting on the one before. V8 keeps the eight chains interleaved (and spills some
 * constants and values, loads being cheaper than the waits): the epilogue over 128 × 1,024 values
 * 0.57 → 0.24–0.34 ms (two vectors 0.47, four 0.33; busy, best of 200).
 */
// @ts-ignore: decorator
@inline export function gelu8_store_f32x4(p: usize, xa: v128, xb: v128, xc: v128, xd: v128, xe: v128, xf: v128, xg: v128, xh: v128): void {
  const za = f32x4.mul(f32x4.abs(xa), f32x4.splat(0.7071067811865476));
  const zb = f32x4.mul(f32x4.abs(xb), f32x4.splat(0.7071067811865476));
  const zc = f32x4.mul(f32x4.abs(xc), f32x4.splat(0.7071067811865476));
  const zd = f32x4.mul(f32x4.abs(xd), f32x4.splat(0.7071067811865476));
  const ze = f32x4.mul(f32x4.abs(xe), f32x4.splat(0.7071067811865476));
  const zf = f32x4.mul(f32x4.abs(xf), f32x4.splat(0.7071067811865476));
  const zg = f32x4.mul(f32x4.abs(xg), f32x4.splat(0.7071067811865476));
  const zh = f32x4.mul(f32x4.abs(xh), f32x4.splat(0.7071067811865476));
  const ta = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), za)));
  const tb = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), zb)));
  const tc = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), zc)));
  const td = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), zd)));
  const te = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), ze)));
  const tf = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), zf)));
  const tg = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), zg)));
  const th = f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.splat(0.5), zh)));
  let pa = f32x4.splat(ERFC_P0);
  let pb = f32x4.splat(ERFC_P0);
  let pc = f32x4.splat(ERFC_P0);
  let pd = f32x4.splat(ERFC_P0);
  let pe = f32x4.splat(ERFC_P0);
  let pf = f32x4.splat(ERFC_P0);
  let pg = f32x4.splat(ERFC_P0);
  let ph = f32x4.splat(ERFC_P0);
  pa = erfc_step(pa, ta, ERFC_P1);
  pb = erfc_step(pb, tb, ERFC_P1);
  pc = erfc_step(pc, tc, ERFC_P1);
  pd = erfc_step(pd, td, ERFC_P1);
  pe = erfc_step(pe, te, ERFC_P1);
  pf = erfc_step(pf, tf, ERFC_P1);
  pg = erfc_step(pg, tg, ERFC_P1);
  ph = erfc_step(ph, th, ERFC_P1);
  pa = erfc_step(pa, ta, ERFC_P2);
  pb = erfc_step(pb, tb, ERFC_P2);
  pc = erfc_step(pc, tc, ERFC_P2);
  pd = erfc_step(pd, td, ERFC_P2);
  pe = erfc_step(pe, te, ERFC_P2);
  pf = erfc_step(pf, tf, ERFC_P2);
  pg = erfc_step(pg, tg, ERFC_P2);
  ph = erfc_step(ph, th, ERFC_P2);
  pa = erfc_step(pa, ta, ERFC_P3);
  pb = erfc_step(pb, tb, ERFC_P3);
  pc = erfc_step(pc, tc, ERFC_P3);
  pd = erfc_step(pd, td, ERFC_P3);
  pe = erfc_step(pe, te, ERFC_P3);
  pf = erfc_step(pf, tf, ERFC_P3);
  pg = erfc_step(pg, tg, ERFC_P3);
  ph = erfc_step(ph, th, ERFC_P3);
  pa = erfc_step(pa, ta, ERFC_P4);
  pb = erfc_step(pb, tb, ERFC_P4);
  pc = erfc_step(pc, tc, ERFC_P4);
  pd = erfc_step(pd, td, ERFC_P4);
  pe = erfc_step(pe, te, ERFC_P4);
  pf = erfc_step(pf, tf, ERFC_P4);
  pg = erfc_step(pg, tg, ERFC_P4);
  ph = erfc_step(ph, th, ERFC_P4);
  pa = erfc_step(pa, ta, ERFC_P5);
  pb = erfc_step(pb, tb, ERFC_P5);
  pc = erfc_step(pc, tc, ERFC_P5);
  pd = erfc_step(pd, td, ERFC_P5);
  pe = erfc_step(pe, te, ERFC_P5);
  pf = erfc_step(pf, tf, ERFC_P5);
  pg = erfc_step(pg, tg, ERFC_P5);
  ph = erfc_step(ph, th, ERFC_P5);
  pa = erfc_step(pa, ta, ERFC_P6);
  pb = erfc_step(pb, tb, ERFC_P6);
  pc = erfc_step(pc, tc, ERFC_P6);
  pd = erfc_step(pd, td, ERFC_P6);
  pe = erfc_step(pe, te, ERFC_P6);
  pf = erfc_step(pf, tf, ERFC_P6);
  pg = erfc_step(pg, tg, ERFC_P6);
  ph = erfc_step(ph, th, ERFC_P6);
  pa = erfc_step(pa, ta, ERFC_P7);
  pb = erfc_step(pb, tb, ERFC_P7);
  pc = erfc_step(pc, tc, ERFC_P7);
  pd = erfc_step(pd, td, ERFC_P7);
  pe = erfc_step(pe, te, ERFC_P7);
  pf = erfc_step(pf, tf, ERFC_P7);
  pg = erfc_step(pg, tg, ERFC_P7);
  ph = erfc_step(ph, th, ERFC_P7);
  pa = erfc_step(pa, ta, ERFC_P8);
  pb = erfc_step(pb, tb, ERFC_P8);
  pc = erfc_step(pc, tc, ERFC_P8);
  pd = erfc_step(pd, td, ERFC_P8);
  pe = erfc_step(pe, te, ERFC_P8);
  pf = erfc_step(pf, tf, ERFC_P8);
  pg = erfc_step(pg, tg, ERFC_P8);
  ph = erfc_step(ph, th, ERFC_P8);
  pa = erfc_step(pa, ta, ERFC_P9);
  pb = erfc_step(pb, tb, ERFC_P9);
  pc = erfc_step(pc, tc, ERFC_P9);
  pd = erfc_step(pd, td, ERFC_P9);
  pe = erfc_step(pe, te, ERFC_P9);
  pf = erfc_step(pf, tf, ERFC_P9);
  pg = erfc_step(pg, tg, ERFC_P9);
  ph = erfc_step(ph, th, ERFC_P9);
  const ua = f32x4.sub(pa, f32x4.mul(za, za));
  const ub = f32x4.sub(pb, f32x4.mul(zb, zb));
  const uc = f32x4.sub(pc, f32x4.mul(zc, zc));
  const ud = f32x4.sub(pd, f32x4.mul(zd, zd));
  const ue = f32x4.sub(pe, f32x4.mul(ze, ze));
  const uf = f32x4.sub(pf, f32x4.mul(zf, zf));
  const ug = f32x4.sub(pg, f32x4.mul(zg, zg));
  const uh = f32x4.sub(ph, f32x4.mul(zh, zh));
  const ea = f32x4.pmax(ua, f32x4.splat(-87.33654));
  const eb = f32x4.pmax(ub, f32x4.splat(-87.33654));
  const ec = f32x4.pmax(uc, f32x4.splat(-87.33654));
  const ed = f32x4.pmax(ud, f32x4.splat(-87.33654));
  const ee = f32x4.pmax(ue, f32x4.splat(-87.33654));
  const ef = f32x4.pmax(uf, f32x4.splat(-87.33654));
  const eg = f32x4.pmax(ug, f32x4.splat(-87.33654));
  const eh = f32x4.pmax(uh, f32x4.splat(-87.33654));
  const fa = f32x4.nearest(f32x4.mul(ea, f32x4.splat(1.44269504088896341)));
  const fb = f32x4.nearest(f32x4.mul(eb, f32x4.splat(1.44269504088896341)));
  const fc = f32x4.nearest(f32x4.mul(ec, f32x4.splat(1.44269504088896341)));
  const fd = f32x4.nearest(f32x4.mul(ed, f32x4.splat(1.44269504088896341)));
  const fe = f32x4.nearest(f32x4.mul(ee, f32x4.splat(1.44269504088896341)));
  const ff = f32x4.nearest(f32x4.mul(ef, f32x4.splat(1.44269504088896341)));
  const fg = f32x4.nearest(f32x4.mul(eg, f32x4.splat(1.44269504088896341)));
  const fh = f32x4.nearest(f32x4.mul(eh, f32x4.splat(1.44269504088896341)));
  let ra = f32x4.sub(ea, f32x4.mul(fa, f32x4.splat(0.693359375)));
  let rb = f32x4.sub(eb, f32x4.mul(fb, f32x4.splat(0.693359375)));
  let rc = f32x4.sub(ec, f32x4.mul(fc, f32x4.splat(0.693359375)));
  let rd = f32x4.sub(ed, f32x4.mul(fd, f32x4.splat(0.693359375)));
  let re = f32x4.sub(ee, f32x4.mul(fe, f32x4.splat(0.693359375)));
  let rf = f32x4.sub(ef, f32x4.mul(ff, f32x4.splat(0.693359375)));
  let rg = f32x4.sub(eg, f32x4.mul(fg, f32x4.splat(0.693359375)));
  let rh = f32x4.sub(eh, f32x4.mul(fh, f32x4.splat(0.693359375)));
  ra = f32x4.sub(ra, f32x4.mul(fa, f32x4.splat(-2.12194440e-4)));
  rb = f32x4.sub(rb, f32x4.mul(fb, f32x4.splat(-2.12194440e-4)));
  rc = f32x4.sub(rc, f32x4.mul(fc, f32x4.splat(-2.12194440e-4)));
  rd = f32x4.sub(rd, f32x4.mul(fd, f32x4.splat(-2.12194440e-4)));
  re = f32x4.sub(re, f32x4.mul(fe, f32x4.splat(-2.12194440e-4)));
  rf = f32x4.sub(rf, f32x4.mul(ff, f32x4.splat(-2.12194440e-4)));
  rg = f32x4.sub(rg, f32x4.mul(fg, f32x4.splat(-2.12194440e-4)));
  rh = f32x4.sub(rh, f32x4.mul(fh, f32x4.splat(-2.12194440e-4)));
  let qa = f32x4.splat(1.9875691500e-4);
  let qb = f32x4.splat(1.9875691500e-4);
  let qc = f32x4.splat(1.9875691500e-4);
  let qd = f32x4.splat(1.9875691500e-4);
  let qe = f32x4.splat(1.9875691500e-4);
  let qf = f32x4.splat(1.9875691500e-4);
  let qg = f32x4.splat(1.9875691500e-4);
  let qh = f32x4.splat(1.9875691500e-4);
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(1.3981999507e-3));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(1.3981999507e-3));
  qc = f32x4.add(f32x4.mul(qc, rc), f32x4.splat(1.3981999507e-3));
  qd = f32x4.add(f32x4.mul(qd, rd), f32x4.splat(1.3981999507e-3));
  qe = f32x4.add(f32x4.mul(qe, re), f32x4.splat(1.3981999507e-3));
  qf = f32x4.add(f32x4.mul(qf, rf), f32x4.splat(1.3981999507e-3));
  qg = f32x4.add(f32x4.mul(qg, rg), f32x4.splat(1.3981999507e-3));
  qh = f32x4.add(f32x4.mul(qh, rh), f32x4.splat(1.3981999507e-3));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(8.3334519073e-3));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(8.3334519073e-3));
  qc = f32x4.add(f32x4.mul(qc, rc), f32x4.splat(8.3334519073e-3));
  qd = f32x4.add(f32x4.mul(qd, rd), f32x4.splat(8.3334519073e-3));
  qe = f32x4.add(f32x4.mul(qe, re), f32x4.splat(8.3334519073e-3));
  qf = f32x4.add(f32x4.mul(qf, rf), f32x4.splat(8.3334519073e-3));
  qg = f32x4.add(f32x4.mul(qg, rg), f32x4.splat(8.3334519073e-3));
  qh = f32x4.add(f32x4.mul(qh, rh), f32x4.splat(8.3334519073e-3));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(4.1665795894e-2));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(4.1665795894e-2));
  qc = f32x4.add(f32x4.mul(qc, rc), f32x4.splat(4.1665795894e-2));
  qd = f32x4.add(f32x4.mul(qd, rd), f32x4.splat(4.1665795894e-2));
  qe = f32x4.add(f32x4.mul(qe, re), f32x4.splat(4.1665795894e-2));
  qf = f32x4.add(f32x4.mul(qf, rf), f32x4.splat(4.1665795894e-2));
  qg = f32x4.add(f32x4.mul(qg, rg), f32x4.splat(4.1665795894e-2));
  qh = f32x4.add(f32x4.mul(qh, rh), f32x4.splat(4.1665795894e-2));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(1.6666665459e-1));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(1.6666665459e-1));
  qc = f32x4.add(f32x4.mul(qc, rc), f32x4.splat(1.6666665459e-1));
  qd = f32x4.add(f32x4.mul(qd, rd), f32x4.splat(1.6666665459e-1));
  qe = f32x4.add(f32x4.mul(qe, re), f32x4.splat(1.6666665459e-1));
  qf = f32x4.add(f32x4.mul(qf, rf), f32x4.splat(1.6666665459e-1));
  qg = f32x4.add(f32x4.mul(qg, rg), f32x4.splat(1.6666665459e-1));
  qh = f32x4.add(f32x4.mul(qh, rh), f32x4.splat(1.6666665459e-1));
  qa = f32x4.add(f32x4.mul(qa, ra), f32x4.splat(5.0000001201e-1));
  qb = f32x4.add(f32x4.mul(qb, rb), f32x4.splat(5.0000001201e-1));
  qc = f32x4.add(f32x4.mul(qc, rc), f32x4.splat(5.0000001201e-1));
  qd = f32x4.add(f32x4.mul(qd, rd), f32x4.splat(5.0000001201e-1));
  qe = f32x4.add(f32x4.mul(qe, re), f32x4.splat(5.0000001201e-1));
  qf = f32x4.add(f32x4.mul(qf, rf), f32x4.splat(5.0000001201e-1));
  qg = f32x4.add(f32x4.mul(qg, rg), f32x4.splat(5.0000001201e-1));
  qh = f32x4.add(f32x4.mul(qh, rh), f32x4.splat(5.0000001201e-1));
  qa = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qa, ra), ra), ra), f32x4.splat(1));
  qb = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qb, rb), rb), rb), f32x4.splat(1));
  qc = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qc, rc), rc), rc), f32x4.splat(1));
  qd = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qd, rd), rd), rd), f32x4.splat(1));
  qe = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qe, re), re), re), f32x4.splat(1));
  qf = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qf, rf), rf), rf), f32x4.splat(1));
  qg = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qg, rg), rg), rg), f32x4.splat(1));
  qh = f32x4.add(f32x4.add(f32x4.mul(f32x4.mul(qh, rh), rh), rh), f32x4.splat(1));
  const na = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fa) : i32x4.trunc_sat_f32x4_s(fa);
  const nb = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fb) : i32x4.trunc_sat_f32x4_s(fb);
  const nc = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fc) : i32x4.trunc_sat_f32x4_s(fc);
  const nd = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fd) : i32x4.trunc_sat_f32x4_s(fd);
  const ne = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fe) : i32x4.trunc_sat_f32x4_s(fe);
  const nf = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(ff) : i32x4.trunc_sat_f32x4_s(ff);
  const ng = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fg) : i32x4.trunc_sat_f32x4_s(fg);
  const nh = ASC_FEATURE_RELAXED_SIMD ? i32x4.relaxed_trunc_f32x4_s(fh) : i32x4.trunc_sat_f32x4_s(fh);
  const ya = v128.andnot(f32x4.mul(qa, i32x4.shl(i32x4.add(na, i32x4.splat(127)), 23)), f32x4.lt(ua, f32x4.splat(-87.33654)));
  const yb = v128.andnot(f32x4.mul(qb, i32x4.shl(i32x4.add(nb, i32x4.splat(127)), 23)), f32x4.lt(ub, f32x4.splat(-87.33654)));
  const yc = v128.andnot(f32x4.mul(qc, i32x4.shl(i32x4.add(nc, i32x4.splat(127)), 23)), f32x4.lt(uc, f32x4.splat(-87.33654)));
  const yd = v128.andnot(f32x4.mul(qd, i32x4.shl(i32x4.add(nd, i32x4.splat(127)), 23)), f32x4.lt(ud, f32x4.splat(-87.33654)));
  const ye = v128.andnot(f32x4.mul(qe, i32x4.shl(i32x4.add(ne, i32x4.splat(127)), 23)), f32x4.lt(ue, f32x4.splat(-87.33654)));
  const yf = v128.andnot(f32x4.mul(qf, i32x4.shl(i32x4.add(nf, i32x4.splat(127)), 23)), f32x4.lt(uf, f32x4.splat(-87.33654)));
  const yg = v128.andnot(f32x4.mul(qg, i32x4.shl(i32x4.add(ng, i32x4.splat(127)), 23)), f32x4.lt(ug, f32x4.splat(-87.33654)));
  const yh = v128.andnot(f32x4.mul(qh, i32x4.shl(i32x4.add(nh, i32x4.splat(127)), 23)), f32x4.lt(uh, f32x4.splat(-87.33654)));
  const ha = f32x4.mul(f32x4.mul(ta, ya), f32x4.splat(0.5));
  const hb = f32x4.mul(f32x4.mul(tb, yb), f32x4.splat(0.5));
  const hc = f32x4.mul(f32x4.mul(tc, yc), f32x4.splat(0.5));
  const hd = f32x4.mul(f32x4.mul(td, yd), f32x4.splat(0.5));
  const he = f32x4.mul(f32x4.mul(te, ye), f32x4.splat(0.5));
  const hf = f32x4.mul(f32x4.mul(tf, yf), f32x4.splat(0.5));
  const hg = f32x4.mul(f32x4.mul(tg, yg), f32x4.splat(0.5));
  const hh = f32x4.mul(f32x4.mul(th, yh), f32x4.splat(0.5));
  v128.store(p, v128.bitselect(f32x4.mul(xa, ha), f32x4.mul(xa, f32x4.sub(f32x4.splat(1), ha)), f32x4.lt(xa, f32x4.splat(0))), 0);
  v128.store(p, v128.bitselect(f32x4.mul(xb, hb), f32x4.mul(xb, f32x4.sub(f32x4.splat(1), hb)), f32x4.lt(xb, f32x4.splat(0))), 16);
  v128.store(p, v128.bitselect(f32x4.mul(xc, hc), f32x4.mul(xc, f32x4.sub(f32x4.splat(1), hc)), f32x4.lt(xc, f32x4.splat(0))), 32);
  v128.store(p, v128.bitselect(f32x4.mul(xd, hd), f32x4.mul(xd, f32x4.sub(f32x4.splat(1), hd)), f32x4.lt(xd, f32x4.splat(0))), 48);
  v128.store(p, v128.bitselect(f32x4.mul(xe, he), f32x4.mul(xe, f32x4.sub(f32x4.splat(1), he)), f32x4.lt(xe, f32x4.splat(0))), 64);
  v128.store(p, v128.bitselect(f32x4.mul(xf, hf), f32x4.mul(xf, f32x4.sub(f32x4.splat(1), hf)), f32x4.lt(xf, f32x4.splat(0))), 80);
  v128.store(p, v128.bitselect(f32x4.mul(xg, hg), f32x4.mul(xg, f32x4.sub(f32x4.splat(1), hg)), f32x4.lt(xg, f32x4.splat(0))), 96);
  v128.store(p, v128.bitselect(f32x4.mul(xh, hh), f32x4.mul(xh, f32x4.sub(f32x4.splat(1), hh)), f32x4.lt(xh, f32x4.splat(0))), 112);
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
