// Matrix products with q8_0 / q4_0 weights (ggml block layouts as stored, or the x4 row-interleaved
// form of repack.ts, which the backend keeps for every matrix of 4+ rows) and activations
// quantized by quant-act.ts: Y[m, n] (=|+=) Σ_blocks d_w·d_x·Σ_i q_w[i]·q_x[i], with exact
// integer dot products inside each block as llama.cpp computes them.
//
// Integer block sums, two builds of the same source:
//   relaxed SIMD (ASC_FEATURE_RELAXED_SIMD): i16x8.relaxed_dot_i8x16_i7x16_s (x86 pmaddubsw)
//     multiplies signed 8-bit activations by 7-bit unsigned weights: q4_0 nibbles (0..15) go in
//     as they are (the -8 comes back through 8·Σq_x), q8_0 weights as |w| with the sign moved
//     onto the activations. Operands stay inside the deterministic range, so every engine
//     computes the same sums.
//   plain SIMD: both sides widened to i16, i32x4.dot_i16x8_s (pmaddwd).
//
// Tiles: 1 weight row × 4 activation rows (prefill; lanes = rows: four block sums transposed into
// one vector per block), 4 weight rows of an x4 group × 1 activation row (decode; lanes = weight
// rows, the same per-row sums as the 4-row tile; for a long row record two groups at once) and, for plain rows, 1 weight row × 1 activation
// row (lanes = blocks mod 4, or for relaxed-SIMD q8_0 blocks mod 2, two blocks per iteration).
// Register pressure decides the unrolling: TurboFan issues every load of a loop iteration first,
// so four q8_0 blocks per iteration (16 vectors loaded) spilled to the stack (seen in perf with
// node --perf-prof jitdumps); two blocks per iteration do not. Results do not depend on how [n0, n1) is split between threads; a row's last
// bits can differ between the two tile kinds (summation order).
import { C_F16_RAWMASK, C_NIBBLE_MASK, C_ONES_I16, f16_at } from './tables';
import { x4_plain_fix, x4_scale_at, x4_scale_bits, x4_unit } from './x4-scale';
import { group_bytes, nb4_of, off_dx1, off_dx4, off_sx1, off_sx4, row_off_dx, row_off_qx } from './quant-act';
import { dequant_row, T_Q4_0, T_Q8_0 } from './elementwise';
import { nib_dot } from './gemm-q-dot';
import { q8_row_dot } from './gemm-q8-dot';

// @ts-ignore: decorator
@inline function put(p: usize, v: f32, acc: i32): void {
  if (acc) store<f32>(p, load<f32>(p) + v);
  else store<f32>(p, v);
}

/** [Σa, Σb, Σc, Σd] of four i32x4. */
// @ts-ignore: decorator
@inline export function tsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = i32x4.add(v128.shuffle<u32>(a, b, 0, 4, 1, 5), v128.shuffle<u32>(a, b, 2, 6, 3, 7));
  const cd = i32x4.add(v128.shuffle<u32>(c, d, 0, 4, 1, 5), v128.shuffle<u32>(c, d, 2, 6, 3, 7));
  return i32x4.add(v128.shuffle<u64>(ab, cd, 0, 2), v128.shuffle<u64>(ab, cd, 1, 3));
}

/**
 * [Σp0, Σp1, Σp2, Σp3] for four i16x8 vectors whose lanes are at most 7620 in magnitude (q4_0
 * relaxed-dot partial sums: 4 products of 15·127): the first two reduction levels stay in i16
 * (sums of 4 lanes <= 30480), then one pmaddwd with ones. 10 instructions instead of 17.
 */
// @ts-ignore: decorator
@inline export function reduce4_i16(p0: v128, p1: v128, p2: v128, p3: v128, ones: v128): v128 {
  const u01 = i16x8.add(v128.shuffle<u64>(p0, p1, 0, 2), v128.shuffle<u64>(p0, p1, 1, 3));
  const u23 = i16x8.add(v128.shuffle<u64>(p2, p3, 0, 2), v128.shuffle<u64>(p2, p3, 1, 3));
  const v = i16x8.add(v128.shuffle<u32>(u01, u23, 0, 2, 4, 6), v128.shuffle<u32>(u01, u23, 1, 3, 5, 7));
  return i32x4.dot_i16x8_s(v, ones);
}

/** Relaxed SIMD: i16 lane sums (4 products each) of one q4_0 block's nibbles (lo/hi) and the activations at xp. */
// @ts-ignore: decorator
@inline function nib_p(lo: v128, hi: v128, xp: usize): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xp), lo), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load(xp, 16), hi));
  }
  return unreachable();
}

/** Lane sums of nibbles·activations for one q4_0 block: lo/hi = low/high nibbles (u8), x at xp. */
// @ts-ignore: decorator
@inline export function dot_nib(lo: v128, hi: v128, xp: usize): v128 {
  return dot_nib_v(lo, hi, v128.load(xp), v128.load(xp, 16));
}

/** dot_nib with the block's activations already loaded (xa: elements 0..15, xb: 16..31). */
// @ts-ignore: decorator
@inline function dot_nib_v(lo: v128, hi: v128, xa: v128, xb: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const p = i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xa, lo), i16x8.relaxed_dot_i8x16_i7x16_s(xb, hi));
    return i32x4.extadd_pairwise_i16x8_s(p);
  } else {
    return i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(lo), i16x8.extend_low_i8x16_s(xa)),
        i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(lo), i16x8.extend_high_i8x16_s(xa))),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_u(hi), i16x8.extend_low_i8x16_s(xb)),
        i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_u(hi), i16x8.extend_high_i8x16_s(xb))));
  }
}

/**
 * Lane sums of one q8_0 block (weights at wp + 2) times the activations at xp; ones = 1 in i16
 * lanes (a register: V8 reloads the address of a constant operand at every pmaddwd).
 */
// @ts-ignore: decorator
@inline function dot_q8(wp: usize, xp: usize, ones: v128): v128 {
  return dot_q8_v(v128.load(wp, 2), v128.load(wp, 18), v128.load(xp), v128.load(xp, 16), ones);
}

/** dot_q8 with the weights (wa, wb) and activations (xa, xb) of the block already loaded. */
// @ts-ignore: decorator
@inline function dot_q8_v(wa: v128, wb: v128, xa: v128, xb: v128, ones: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const z = i8x16.splat(0);
    const ma = i8x16.lt_s(wa, z), mb = i8x16.lt_s(wb, z);
    const sa = i8x16.sub(v128.xor(xa, ma), ma), sb = i8x16.sub(v128.xor(xb, mb), mb);
    return i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(sa, i8x16.abs(wa)), ones),
      i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(sb, i8x16.abs(wb)), ones));
  } else {
    return i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(wa), i16x8.extend_low_i8x16_s(xa)),
        i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(wa), i16x8.extend_high_i8x16_s(xa))),
      i32x4.add(i32x4.dot_i16x8_s(i16x8.extend_low_i8x16_s(wb), i16x8.extend_low_i8x16_s(xb)),
        i32x4.dot_i16x8_s(i16x8.extend_high_i8x16_s(wb), i16x8.extend_high_i8x16_s(xb))));
  }
}

/**
 * Relaxed SIMD: lane sums of one q8_0 block (weights wa, wb) times activations given as their
 * magnitudes (ua, ub) and sign masks (ma, mb): (w ^ m) - m is w·sign(x), |x| <= 127 the 7-bit
 * operand. The same integer sums as dot_q8_v.
 */
// @ts-ignore: decorator
@inline function dot_q8_xs(wa: v128, wb: v128, ua: v128, ub: v128, ma: v128, mb: v128, ones: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(i8x16.sub(v128.xor(wa, ma), ma), ua), ones),
      i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(i8x16.sub(v128.xor(wb, mb), mb), ub), ones));
  }
  return unreachable();
}

// @ts-ignore: decorator
@inline function block_dot(wp: usize, xp: usize, q4: bool, ones: v128): v128 {
  if (q4) {
    const v = v128.load(wp, 2);
    const m = i8x16.splat(15);
    return dot_nib(v128.and(v, m), v128.and(i16x8.shr_u(v, 4), m), xp);
  }
  return dot_q8(wp, xp, ones);
}

/**
 * d_w·2^-112 of four consecutive plain blocks (stride bs; raw fp16 bits, not x4-scale.ts's) as
 * f32x4: the fp16 bits gathered into the high halves of u32 lanes, moved to f32 position
 * (sign | (h & 0x7fff) << 13) with an arithmetic shift and a mask, read as f32 (exact; a
 * subnormal half gives a subnormal f32: plain rows are only the 1-3 rows after an x4 matrix's
 * groups and matrices of under 4 rows). DX1 holds d_x·2^102, so the products come out as
 * d_w·d_x·2^-10, and tile1_body scales its sum back by 2^10 (exact): the bits of widened scales,
 * at 7 instructions instead of 14.
 */
// @ts-ignore: decorator
@inline function scales4(w: usize, bs: usize, rawmask: v128): v128 {
  let v = v128.load16_lane(w, i16x8.splat(0), 1);
  v = v128.load16_lane(w + bs, v, 3);
  v = v128.load16_lane(w + 2 * bs, v, 5);
  v = v128.load16_lane(w + 3 * bs, v, 7);
  return v128.and(i32x4.shr_s(v, 3), rawmask);
}

/**
 * The 4 consecutive scales at w (an x4 group's block, repack.ts; encoded as x4-scale.ts says) as
 * d_w·2^-102 in f32x4: sign-extended h << 13, masked to sign | (h & 0x7fff) << 13, read as f32
 * (exact, and never subnormal: a normal f32 or ±0).
 */
// @ts-ignore: decorator
@inline export function half4_scaled(w: usize, rawmask: v128): v128 {
  return v128.and(i32x4.shl(v128.load16x4_s(w), 13), rawmask);
}

/**
 * 1 weight row × 1 activation row (act_ptrs: row t of the group record at g, or the row record at
 * g). m = 0x0F bytes, ones = 1 in i16 lanes.
 */
// @ts-ignore: decorator
@inline function tile1_body(w: usize, nb: i32, g: usize, t: usize, row: bool, y: usize, acc: i32, q4: bool, m: v128, ones: v128, rawmask: v128): void {
  const bs: usize = q4 ? 18 : 34;
  const xs: usize = row ? 32 : 128;
  let xp = row ? g + row_off_qx(nb) : g + t * 32;
  let dp = row ? g + row_off_dx(nb) : g + off_dx1(nb) + t * <usize>nb4_of(nb) * 4;
  let sp = row ? g : g + off_sx1(nb) + t * <usize>nb4_of(nb) * 4;
  let a = f32x4.splat(0);
  const wend4 = w + <usize>(nb & ~3) * bs;
  if (!q4 && ASC_FEATURE_RELAXED_SIMD) {
    // q8_0: two blocks per iteration (see the top of the file), lanes [b0, b1, b0, b1].
    while (w < wend4) {
      const s0 = dot_q8(w, xp, ones), s1 = dot_q8(w + 34, xp + xs, ones);
      const u = i32x4.add(v128.shuffle<u32>(s0, s1, 0, 4, 1, 5), v128.shuffle<u32>(s0, s1, 2, 6, 3, 7));
      let v = v128.load16_lane(w, i16x8.splat(0), 1);
      v = v128.load16_lane(w + 34, v, 3);
      const sc = f32x4.mul(v128.and(i32x4.shr_s(v, 3), rawmask), v128.load64_zero(dp));
      a = f32x4.add(a, f32x4.mul(f32x4.convert_i32x4_s(u), v128.shuffle<u32>(sc, sc, 0, 1, 0, 1)));
      w += 68; xp += 2 * xs; dp += 8;
    }
    sp += <usize>(nb & ~3) * 4;
  }
  while (w < wend4) {
    let r: v128;
    if (q4 && ASC_FEATURE_RELAXED_SIMD) {
      const v0 = v128.load(w, 2), v1 = v128.load(w, 20), v2 = v128.load(w, 38), v3 = v128.load(w, 56);
      r = reduce4_i16(
        nib_p(v128.and(v0, m), v128.and(i16x8.shr_u(v0, 4), m), xp),
        nib_p(v128.and(v1, m), v128.and(i16x8.shr_u(v1, 4), m), xp + xs),
        nib_p(v128.and(v2, m), v128.and(i16x8.shr_u(v2, 4), m), xp + 2 * xs),
        nib_p(v128.and(v3, m), v128.and(i16x8.shr_u(v3, 4), m), xp + 3 * xs), ones);
    } else {
      r = tsum4(block_dot(w, xp, q4, ones), block_dot(w + bs, xp + xs, q4, ones), block_dot(w + 2 * bs, xp + 2 * xs, q4, ones), block_dot(w + 3 * bs, xp + 3 * xs, q4, ones));
    }
    if (q4) r = i32x4.sub(r, v128.load(sp));
    a = f32x4.add(a, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(scales4(w, bs, rawmask), v128.load(dp))));
    w += 4 * bs; xp += 4 * xs; dp += 16; sp += 16;
  }
  const t0 = f32x4.add(a, v128.shuffle<u32>(a, a, 2, 3, 0, 1));
  // the vector part summed d_w·d_x·2^112/U (raw scales times DX1): back to d_w·d_x, exactly
  let sum = (f32x4.extract_lane(t0, 0) + f32x4.extract_lane(t0, 1)) * x4_plain_fix();
  for (let b = nb & ~3; b < nb; b++) {
    const s = block_dot(w, xp, q4, ones);
    const s2 = i32x4.add(s, v128.shuffle<u32>(s, s, 2, 3, 0, 1));
    let S = i32x4.extract_lane(s2, 0) + i32x4.extract_lane(s2, 1);
    if (q4) S -= load<i32>(sp);
    sum += <f32>S * (f16_at(w) * (load<f32>(dp) / x4_unit()));
    w += bs; xp += xs; dp += 4; sp += 4;
  }
  put(y, sum, acc);
}

/**
 * 1 weight row × the 4 activation rows of the group record at g: block b's quants at w + b·bs + 2,
 * its scale at ws + b·bs (plain rows: fp16, ws = w, bs = 18 / 34; a row of an x4 group: x4, the
 * encoding of x4-scale.ts, bs = 72 / 136).
 */
// @ts-ignore: decorator
@inline function tile4_body(w: usize, ws: usize, bs: usize, nb: i32, g: usize, y: usize, sy: usize, acc: i32, q4: bool, x4: bool, m: v128, ones: v128): void {
  let xp = g, dp = g + off_dx4(nb), sp = g + off_sx4(nb);
  let a = f32x4.splat(0);
  const wend = w + <usize>nb * bs;
  while (w < wend) {
    let r: v128;
    if (q4) {
      const v = v128.load(w, 2);
      const lo = v128.and(v, m), hi = v128.and(i16x8.shr_u(v, 4), m);
      if (ASC_FEATURE_RELAXED_SIMD) {
        r = reduce4_i16(nib_p(lo, hi, xp), nib_p(lo, hi, xp + 32), nib_p(lo, hi, xp + 64), nib_p(lo, hi, xp + 96), ones);
      } else {
        r = tsum4(dot_nib(lo, hi, xp), dot_nib(lo, hi, xp + 32), dot_nib(lo, hi, xp + 64), dot_nib(lo, hi, xp + 96));
      }
      r = i32x4.sub(r, v128.load(sp));
    } else {
      r = tsum4(dot_q8(w, xp, ones), dot_q8(w, xp + 32, ones), dot_q8(w, xp + 64, ones), dot_q8(w, xp + 96, ones));
    }
    a = f32x4.add(a, f32x4.mul(f32x4.convert_i32x4_s(r), f32x4.mul(v128.load(dp), f32x4.splat(x4 ? x4_scale_at(ws) : f16_at(ws)))));
    w += bs; ws += bs; xp += 128; dp += 16; sp += 16;
  }
  put(y, f32x4.extract_lane(a, 0), acc);
  put(y + sy, f32x4.extract_lane(a, 1), acc);
  put(y + 2 * sy, f32x4.extract_lane(a, 2), acc);
  put(y + 3 * sy, f32x4.extract_lane(a, 3), acc);
}

/** Relaxed SIMD: i16 lane sums of one q4_0 block's 16 quant bytes v (both nibbles) times xa, xb. */
// @ts-ignore: decorator
@inline function nib_pv(v: v128, xa: v128, xb: v128, m: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    return i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xa, v128.and(v, m)), i16x8.relaxed_dot_i8x16_i7x16_s(xb, v128.and(i16x8.shr_u(v, 4), m)));
  }
  return unreachable();
}

/**
 * a + one block of an x4 group (at w) × one activation block (quants at xp, d_x·2^112 at dp,
 * 8·Σq_x at sp), lanes = the 4 rows: exact integer sums (minus 8·Σq_x for q4_0), times d_w·d_x.
 */
// @ts-ignore: decorator
@inline function x4_block(a: v128, w: usize, xp: usize, dp: usize, sp: usize, q4: bool, m: v128, ones: v128, rawmask: v128): v128 {
  return x4_block_v(a, w, v128.load(xp), v128.load(xp, 16), dp, sp, q4, m, ones, rawmask);
}

/** x4_block with the activation block already loaded (xa: elements 0..15, xb: 16..31). */
// @ts-ignore: decorator
@inline function x4_block_v(a: v128, w: usize, xa: v128, xb: v128, dp: usize, sp: usize, q4: bool, m: v128, ones: v128, rawmask: v128): v128 {
  let r: v128;
  if (q4) {
    if (DOT_ADD_TILES) {
      r = tsum4(nib_dot(v128.load(w, 8), xa, xb, m), nib_dot(v128.load(w, 24), xa, xb, m),
        nib_dot(v128.load(w, 40), xa, xb, m), nib_dot(v128.load(w, 56), xa, xb, m));
    } else if (ASC_FEATURE_RELAXED_SIMD) {
      r = reduce4_i16(nib_pv(v128.load(w, 8), xa, xb, m), nib_pv(v128.load(w, 24), xa, xb, m),
        nib_pv(v128.load(w, 40), xa, xb, m), nib_pv(v128.load(w, 56), xa, xb, m), ones);
    } else {
      const v0 = v128.load(w, 8), v1 = v128.load(w, 24), v2 = v128.load(w, 40), v3 = v128.load(w, 56);
      r = tsum4(dot_nib_v(v128.and(v0, m), v128.and(i16x8.shr_u(v0, 4), m), xa, xb),
        dot_nib_v(v128.and(v1, m), v128.and(i16x8.shr_u(v1, 4), m), xa, xb),
        dot_nib_v(v128.and(v2, m), v128.and(i16x8.shr_u(v2, 4), m), xa, xb),
        dot_nib_v(v128.and(v3, m), v128.and(i16x8.shr_u(v3, 4), m), xa, xb));
    }
    r = i32x4.sub(r, v128.load32_splat(sp));
  } else if (ASC_FEATURE_RELAXED_SIMD) {
    // The activations' signs move onto the weights here (4 rows share |x| and its sign masks;
    // w·sign(x) stays in [-127, 127]): 11 instructions a row instead of 15, and fewer live
    // vectors (the other way round, all 8 weight vectors and their transforms spilled).
    const z = i8x16.splat(0);
    const ma = i8x16.lt_s(xa, z), mb = i8x16.lt_s(xb, z);
    const ua = i8x16.abs(xa), ub = i8x16.abs(xb);
    if (DOT_ADD_TILES) {
      r = tsum4(q8_row_dot(v128.load(w, 8), v128.load(w, 24), ua, ub, ma, mb), q8_row_dot(v128.load(w, 40), v128.load(w, 56), ua, ub, ma, mb),
        q8_row_dot(v128.load(w, 72), v128.load(w, 88), ua, ub, ma, mb), q8_row_dot(v128.load(w, 104), v128.load(w, 120), ua, ub, ma, mb));
    } else r = tsum4(dot_q8_xs(v128.load(w, 8), v128.load(w, 24), ua, ub, ma, mb, ones), dot_q8_xs(v128.load(w, 40), v128.load(w, 56), ua, ub, ma, mb, ones),
      dot_q8_xs(v128.load(w, 72), v128.load(w, 88), ua, ub, ma, mb, ones), dot_q8_xs(v128.load(w, 104), v128.load(w, 120), ua, ub, ma, mb, ones));
  } else {
    r = tsum4(dot_q8_v(v128.load(w, 8), v128.load(w, 24), xa, xb, ones), dot_q8_v(v128.load(w, 40), v128.load(w, 56), xa, xb, ones),
      dot_q8_v(v128.load(w, 72), v128.load(w, 88), xa, xb, ones), dot_q8_v(v128.load(w, 104), v128.load(w, 120), xa, xb, ones));
  }
  const sc = f32x4.mul(half4_scaled(w, rawmask), v128.load32_splat(dp));
  return f32x4.add(a, f32x4.mul(f32x4.convert_i32x4_s(r), sc));
}

/**
 * 4 weight rows (the x4 group at w, repack.ts) × 1 activation row (row t of the group record at
 * g, or the row record at g; blocks at a stride of 128 or 32 bytes); lanes = the 4 rows. Per block the
 * activation's 32 bytes are loaded once for the 4 rows, the 4 scales convert together (load16x4_s, shift, mask: d_w·2^-102, times
 * DX1's d_x·2^102) and q4_0's 8·Σq_x is subtracted once for the 4 rows. A row's value is the sum
 * tile4 forms for that activation row, term by term in the same order: the same bits. Stores
 * lanes [l0, l1) at y + lane·4 (a group cut by a thread's row range).
 */
// @ts-ignore: decorator
@inline function tile1x4_body(w: usize, nb: i32, g: usize, t: usize, row: bool, y: usize, acc: i32, l0: i32, l1: i32, q4: bool, m: v128, ones: v128, rawmask: v128): void {
  const bs: usize = q4 ? 72 : 136;
  const xs: usize = row ? 32 : 128;
  let xp = row ? g + row_off_qx(nb) : g + t * 32;
  let dp = row ? g + row_off_dx(nb) : g + off_dx1(nb) + t * <usize>nb4_of(nb) * 4;
  let sp = row ? g : g + off_sx1(nb) + t * <usize>nb4_of(nb) * 4;
  let a = f32x4.splat(0);
  const wend = w + <usize>nb * bs;
  while (w < wend) {
    a = x4_block(a, w, xp, dp, sp, q4, m, ones, rawmask);
    w += bs; xp += xs; dp += 4; sp += 4;
  }
  if (l0 == 0 && l1 == 4) {
    v128.store(y, acc ? f32x4.add(v128.load(y), a) : a);
  } else {
    if (l0 <= 0 && l1 > 0) put(y, f32x4.extract_lane(a, 0), acc);
    if (l0 <= 1 && l1 > 1) put(y + 4, f32x4.extract_lane(a, 1), acc);
    if (l0 <= 2 && l1 > 2) put(y + 8, f32x4.extract_lane(a, 2), acc);
    if (l0 <= 3 && l1 > 3) put(y + 12, f32x4.extract_lane(a, 3), acc);
  }
}

/**
 * Accumulator of the 8-row decode tile's first x4 group (tile2x4r_body). Its store ends that
 * group's part of a block: TurboFan schedules every memory load of a basic block ahead of the
 * block's arithmetic, and loads written after a store stay after it, so the second group's four
 * weight vectors are loaded once the first group's are used up instead of all eight being held
 * with the activation block, the constants and two accumulators (more than the 16 xmm registers).
 * A wasm global is per instance, i.e. per thread.
 */
let x4acc: v128 = v128.splat<i32>(0);

/**
 * 8 weight rows (the x4 groups at w and w + wd) × the row record at g: per block the activation's
 * 32 bytes, its d_x and 8·Σq_x are loaded once for 8 rows, and the loop control serves 8 rows.
 * Each group's value is the one tile1x4_body computes for it (x4_block, same order): the same
 * bits. Stores the first group's 4 rows at y, the second's at y + yd.
 */
// @ts-ignore: decorator
@inline function tile2x4r_body(w: usize, wd: usize, nb: i32, g: usize, y: usize, yd: usize, acc: i32, m: v128, ones: v128, rawmask: v128): void {
  let xp = g + row_off_qx(nb), dp = g + row_off_dx(nb), sp = g;
  let a = f32x4.splat(0);
  x4acc = a;
  const wend = w + <usize>nb * 72;
  while (w < wend) {
    const xa = v128.load(xp), xb = v128.load(xp, 16);
    x4acc = x4_block_v(x4acc, w, xa, xb, dp, sp, true, m, ones, rawmask);
    a = x4_block_v(a, w + wd, xa, xb, dp, sp, true, m, ones, rawmask);
    w += 72; xp += 32; dp += 4; sp += 4;
  }
  const a0 = x4acc;
  v128.store(y, acc ? f32x4.add(v128.load(y), a0) : a0);
  y += yd;
  v128.store(y, acc ? f32x4.add(v128.load(y), a) : a);
}

// Separate (non-inlined) functions per tile and type: V8 allocates registers per function, and
// one huge function spills far more.
// Constants are passed in as parameters: V8 keeps a parameter in a register, but materializes a
// v128.const again at each use inside a loop.
function tile4_q4(w: usize, nb: i32, g: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128): void { tile4_body(w, w, 18, nb, g, y, sy, acc, true, false, m, ones); }
function tile4_q8(w: usize, nb: i32, g: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128): void { tile4_body(w, w, 34, nb, g, y, sy, acc, false, false, m, ones); }
function tile4x_q4(w: usize, ws: usize, nb: i32, g: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128): void { tile4_body(w, ws, 72, nb, g, y, sy, acc, true, true, m, ones); }
function tile4x_q8(w: usize, ws: usize, nb: i32, g: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128): void { tile4_body(w, ws, 136, nb, g, y, sy, acc, false, true, m, ones); }
// Activations from a group record (row t) or a row record (the "r" tiles).
function tile1x4_q4(w: usize, nb: i32, g: usize, t: usize, y: usize, acc: i32, l0: i32, l1: i32, m: v128, ones: v128, rm: v128): void { tile1x4_body(w, nb, g, t, false, y, acc, l0, l1, true, m, ones, rm); }
function tile1x4_q8(w: usize, nb: i32, g: usize, t: usize, y: usize, acc: i32, l0: i32, l1: i32, m: v128, ones: v128, rm: v128): void { tile1x4_body(w, nb, g, t, false, y, acc, l0, l1, false, m, ones, rm); }
function tile1x4r_q4(w: usize, nb: i32, g: usize, y: usize, acc: i32, l0: i32, l1: i32, m: v128, ones: v128, rm: v128): void { tile1x4_body(w, nb, g, 0, true, y, acc, l0, l1, true, m, ones, rm); }
function tile2x4r_q4(w: usize, wd: usize, nb: i32, g: usize, y: usize, yd: usize, acc: i32, m: v128, ones: v128, rm: v128): void { tile2x4r_body(w, wd, nb, g, y, yd, acc, m, ones, rm); }
function tile1_q4(w: usize, nb: i32, g: usize, t: usize, y: usize, acc: i32, m: v128, ones: v128, rm: v128): void { tile1_body(w, nb, g, t, false, y, acc, true, m, ones, rm); }
function tile1_q8(w: usize, nb: i32, g: usize, t: usize, y: usize, acc: i32, m: v128, ones: v128, rm: v128): void { tile1_body(w, nb, g, t, false, y, acc, false, m, ones, rm); }
function tile1r_q4(w: usize, nb: i32, g: usize, y: usize, acc: i32, m: v128, ones: v128, rm: v128): void { tile1_body(w, nb, g, 0, true, y, acc, true, m, ones, rm); }



// @ts-ignore: decorator
@inline function gemm_q(A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32, q4: bool): void {
  const nb = K >> 5;
  const rowBytes: usize = <usize>nb * (q4 ? 18 : 34);
  const gb = group_bytes(nb), sy = <usize>ldy << 2;
  // Rows per block: ~96 KiB of weights stay in L2 while all activation rows pass over them.
  let rb = <i32>(<usize>98304 / rowBytes);
  if (rb < 2) rb = 2;
  const m4 = M & ~3;
  const mk = v128.load(C_NIBBLE_MASK), ones = v128.load(C_ONES_I16), rm = v128.load(C_F16_RAWMASK);
  for (let r0 = n0; r0 < n1; r0 += rb) {
    const r1 = min(r0 + rb, n1);
    for (let m = 0; m < m4; m += 4) {
      const g = A + <usize>(m >> 2) * gb, yr = Y + <usize>m * sy;
      for (let n = r0; n < r1; n++) {
        if (q4) tile4_q4(W + <usize>n * rowBytes, nb, g, yr + (<usize>n << 2), sy, acc, mk, ones);
        else tile4_q8(W + <usize>n * rowBytes, nb, g, yr + (<usize>n << 2), sy, acc, mk, ones);
      }
    }
    for (let m = m4; m < M; m++) {
      const g = A + <usize>(m >> 2) * gb, t = <usize>(m & 3), yr = Y + <usize>m * sy;
      for (let n = r0; n < r1; n++) {
        if (q4) tile1_q4(W + <usize>n * rowBytes, nb, g, t, yr + (<usize>n << 2), acc, mk, ones, rm);
        else tile1_q8(W + <usize>n * rowBytes, nb, g, t, yr + (<usize>n << 2), acc, mk, ones, rm);
      }
    }
  }
}

/**
 * q4_0 weights W (N rows of K/32 blocks of 18 bytes) times the activations quantized at A
 * (quantize_act_q8, M rows of K): rows [n0, n1) of Y [M][ldy] (acc != 0 adds into Y).
 */
export function gemm_q4_0(A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  gemm_q(A, W, Y, ldy, M, n0, n1, K, acc, true);
}

/** q8_0 weights W (N rows of K/32 blocks of 34 bytes); otherwise as gemm_q4_0. */
export function gemm_q8_0(A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  gemm_q(A, W, Y, ldy, M, n0, n1, K, acc, false);
}

/**
 * gemm_q over an x4 matrix of N rows (repack.ts): 4 activation rows at a time read each packed
 * row through tile4 (stride of a group block), the remaining activation rows go through
 * tile1x4 (4 weight rows per activation load); rows after the last whole group are plain.
 */
// @ts-ignore: decorator
@inline function gemm_qx4(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32, q4: bool): void {
  const nb = K >> 5;
  const qb: usize = q4 ? 16 : 32;
  const rowBytes: usize = <usize>nb * (qb + 2), grp = rowBytes * 4;
  const gb = group_bytes(nb), sy = <usize>ldy << 2;
  const ng = N & ~3;
  let rb = <i32>(<usize>98304 / rowBytes) & ~3;
  if (rb < 4) rb = 4;
  const m4 = M & ~3;
  const mk = v128.load(C_NIBBLE_MASK), ones = v128.load(C_ONES_I16), rm = v128.load(C_F16_RAWMASK);
  for (let r0 = n0; r0 < n1; r0 += rb) {
    const r1 = min(r0 + rb, n1);
    for (let m = 0; m < m4; m += 4) {
      const g = A + <usize>(m >> 2) * gb, yr = Y + <usize>m * sy;
      for (let n = r0; n < r1; n++) {
        const y = yr + (<usize>n << 2);
        if (n < ng) {
          const gw = W + <usize>(n >> 2) * grp, i = <usize>(n & 3);
          if (q4) tile4x_q4(gw + 6 + i * qb, gw + 2 * i, nb, g, y, sy, acc, mk, ones);
          else tile4x_q8(gw + 6 + i * qb, gw + 2 * i, nb, g, y, sy, acc, mk, ones);
        } else if (q4) tile4_q4(W + <usize>n * rowBytes, nb, g, y, sy, acc, mk, ones);
        else tile4_q8(W + <usize>n * rowBytes, nb, g, y, sy, acc, mk, ones);
      }
    }
    for (let m = m4; m < M; m++) {
      const g = A + <usize>(m >> 2) * gb, t = <usize>(m & 3);
      rows_1x4(W, N, nb, g, t, Y + <usize>m * sy, r0, r1, acc, q4, false, mk, ones, rm);
    }
  }
}

/**
 * Least blocks a row (K / 32) from which one row record's q4_0 products take the 8-row tile
 * (tile2x4r_body). At K = 16384 (7B's down_proj) the row record (20 KiB) and one group's pass over
 * its weights (36 KiB) no longer fit the 32 KiB L1 together, and the 8-row tile reads the record
 * half as often: 1.11-1.43× in CPU time there (decode-ab, busy host, alternated, both orders, warm
 * and --cold, 1 and 2 threads). At K <= 8192, and at the shipped model's LM head (K = 256), it
 * measured 0.75-1.11×: the loop is no faster per block (it saves loads and loop control, not vector
 * ALU work, which bounds it), and two weight streams a thread were slower than one at 2 threads.
 */
const TILE8_MIN_BLOCKS = 512;

/**
 * Rows [r0, r1) of an x4 matrix of N rows (whole groups through tile1x4, or in pairs through the
 * 8-row tile for a row record at K >= 32·TILE8_MIN_BLOCKS; rows after the last group through
 * tile1) times one activation row (row: the row record at g, q4_0 only (with q8_0
 * weights the dense row measured slower, docs/cpu-profile.md); else row t of the group record at
 * g) into yr[n].
 */
// @ts-ignore: decorator
@inline function rows_1x4(W: usize, N: i32, nb: i32, g: usize, t: usize, yr: usize, r0: i32, r1: i32, acc: i32, q4: bool, row: bool, mk: v128, ones: v128, rm: v128): void {
  const rowBytes: usize = <usize>nb * (q4 ? 18 : 34), grp = rowBytes * 4;
  const ng = N & ~3;
  const p1 = min(r1, ng);
  if (row && nb >= TILE8_MIN_BLOCKS && (r0 & 3) == 0 && p1 - r0 >= 8) {
    // Whole groups in pairs through the 8-row tile: group i with group i + half, so that each of
    // the two weight streams runs on through consecutive groups (pairs of neighbours made the
    // second stream jump ahead after every group: 0.45-0.75× the 4-row tile).
    const half = (p1 - r0) >> 3;
    const gw = W + <usize>(r0 >> 2) * grp, y = yr + (<usize>r0 << 2);
    const wd = <usize>half * grp, yd = <usize>half << 4;
    for (let i = 0; i < half; i++) tile2x4r_q4(gw + <usize>i * grp, wd, nb, g, y + (<usize>i << 4), yd, acc, mk, ones, rm);
    r0 += half << 3;
  }
  for (let n = r0; n < p1; ) {
    const gs = n & ~3, l1 = min(4, p1 - gs);
    const gw = W + <usize>(gs >> 2) * grp, y = yr + (<usize>gs << 2);
    if (row) tile1x4r_q4(gw, nb, g, y, acc, n - gs, l1, mk, ones, rm);
    else if (q4) tile1x4_q4(gw, nb, g, t, y, acc, n - gs, l1, mk, ones, rm);
    else tile1x4_q8(gw, nb, g, t, y, acc, n - gs, l1, mk, ones, rm);
    n = gs + 4;
  }
  for (let n = max(r0, ng); n < r1; n++) {
    const w = W + <usize>n * rowBytes, y = yr + (<usize>n << 2);
    if (row) tile1r_q4(w, nb, g, y, acc, mk, ones, rm);
    else if (q4) tile1_q4(w, nb, g, t, y, acc, mk, ones, rm);
    else tile1_q8(w, nb, g, t, y, acc, mk, ones, rm);
  }
}

/**
 * q4_0x4 weights W (N rows, repack.ts) times the activations quantized at A: rows [n0, n1) of
 * Y [M][ldy] (acc != 0 adds into Y). Each row's value has the bits gemm_q4_0's 4-row tile gives.
 */
export function gemm_q4_0x4(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  gemm_qx4(A, W, Y, ldy, M, N, n0, n1, K, acc, true);
}

/** q8_0x4 weights; otherwise as gemm_q4_0x4. */
export function gemm_q8_0x4(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  gemm_qx4(A, W, Y, ldy, M, N, n0, n1, K, acc, false);
}

/**
 * q4_0x4 weights W (N rows, repack.ts; N < 4: plain rows) times one activation row quantized at A
 * by quantize_act_q8_row: rows [n0, n1) of Y[N] (acc != 0 adds into Y). Each row's value is the
 * one gemm_q4_0x4 gives for the same row in a group record (same tiles, the activation blocks
 * read at a stride of 32 bytes instead of 128).
 */
export function gemv_q4_0x4(A: usize, W: usize, Y: usize, N: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const mk = v128.load(C_NIBBLE_MASK), ones = v128.load(C_ONES_I16), rm = v128.load(C_F16_RAWMASK);
  rows_1x4(W, N, K >> 5, A, 0, Y, n0, n1, acc, true, true, mk, ones, rm);
}

/**
 * Rows [0, rows) of a plain q4_0 (q4 != 0) or q8_0 matrix at W, rows a multiple of 4, rewritten
 * in place as x4 groups (repack.ts), the scales in x4-scale.ts's encoding (raw != 0: fp16 as
 * stored, for a model switched to raw scales); tmp: scratch of 4 rows' bytes. Returns the number
 * of scales without an x4 encoding (|d| >= 128, inf, NaN; written as 0; x4_scales_check first).
 */
export function repack_x4(q4: i32, W: usize, rows: i32, K: i32, tmp: usize, raw: i32): i32 {
  const nb = K >> 5;
  let bad = 0;
  const bs: usize = q4 ? 18 : 34;
  const grp = <usize>nb * bs * 4;
  for (let gi = 0; gi < (rows >> 2); gi++) {
    const gw = W + <usize>gi * grp;
    memory.copy(tmp, gw, grp);
    for (let i: usize = 0; i < 4; i++) {
      let src = tmp + i * <usize>nb * bs, dst = gw;
      for (let b = 0; b < nb; b++) {
        const h = raw ? <i32>load<u16>(src) : x4_scale_bits(<u32>load<u16>(src));
        if (h < 0) bad++;
        store<u16>(dst + 2 * i, <u16>max(h, 0));
        v128.store(dst + 8 + i * (bs - 2), v128.load(src, 2));
        if (!q4) v128.store(dst + 8 + i * (bs - 2), v128.load(src, 18), 16);
        src += bs; dst += 4 * bs;
      }
    }
  }
  return bad;
}

/** out[0..K) = row r of an x4 matrix of N rows (q4 != 0: q4_0x4, else q8_0x4), widened to f32. */
export function dequant_row_x4(q4: i32, W: usize, N: i32, K: i32, r: i32, out: usize): void {
  const nb = K >> 5;
  const bs: usize = q4 ? 18 : 34;
  if (r >= (N & ~3)) {
    dequant_row(q4 ? T_Q4_0 : T_Q8_0, W, K, r, out);
    return;
  }
  const i = <usize>(r & 3);
  let p = W + <usize>(r >> 2) * <usize>nb * bs * 4;
  for (let b = 0; b < nb; b++) {
    const d = x4_scale_at(p + 2 * i);
    const q = p + 8 + i * (bs - 2), o = out + (<usize>b << 7);
    if (q4) {
      for (let j: usize = 0; j < 16; j++) {
        const v = <i32>load<u8>(q + j);
        store<f32>(o + (j << 2), <f32>((v & 15) - 8) * d);
        store<f32>(o + ((j + 16) << 2), <f32>((v >> 4) - 8) * d);
      }
    } else {
      for (let j: usize = 0; j < 32; j++) store<f32>(o + (j << 2), <f32>load<i8>(q + j) * d);
    }
    p += 4 * bs;
  }
}

/** Bytes of the activation buffer for M rows of K values. */
export function act_q8_bytes(M: i32, K: i32): usize {
  return <usize>((M + 3) >> 2) * group_bytes(K >> 5);
}
