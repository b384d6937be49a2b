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
// i32x4 accumulator.
import { C_NIBBLE_MASK, f16_at } from './tables';
import { hsum_f32 } from './math';

export const Q8K_BYTES: usize = 368;
const OFF_D: usize = 256, OFF_B16: usize = 272, OFF_B32: usize = 336;

/** Quantizes rows [m0, m1) of X (K values, a multiple of 256) to q8_K records at A (row stride K/256 records). */
export function quantize_act_q8k(X: usize, ldx: i32, m0: i32, m1: i32, K: i32, A: usize): void {
  const nb = K >> 8;
  for (let m = m0; m < m1; m++) {
    const x = X + (<usize>m * <usize>ldx << 2);
    let rec = A + <usize>m * <usize>nb * Q8K_BYTES;
    for (let b = 0; b < nb; b++) {
      const p = x + (<usize>b << 10);
      let amax: f32 = 0, mx: f32 = 0;
      for (let j = 0; j < 256; j++) {
        const v = load<f32>(p + (<usize>j << 2));
        const av = Mathf.abs(v);
        if (av > amax) { amax = av; mx = v; }
      }
      if (amax == 0) {
        memory.fill(rec, 0, Q8K_BYTES);
      } else {
        const iscale = <f32>-127 / mx;
        const vs = f32x4.splat(iscale);
        for (let g = 0; g < 16; g++) {
          const q = p + (<usize>g << 6);
          const a0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q), vs)));
          const a1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q, 16), vs)));
          const a2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q, 32), vs)));
          const a3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(q, 48), vs)));
          const c = i32x4.splat(127);
          const b0 = i32x4.min_s(a0, c), b1 = i32x4.min_s(a1, c), b2 = i32x4.min_s(a2, c), b3 = i32x4.min_s(a3, c);
          v128.store(rec + (<usize>g << 4), i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(b0, b1), i16x8.narrow_i32x4_s(b2, b3)));
          let s = i32x4.add(i32x4.add(b0, b1), i32x4.add(b2, b3));
          s = i32x4.add(s, v128.shuffle<u32>(s, s, 2, 3, 0, 1));
          store<i32>(rec + OFF_B16 + (<usize>g << 2), i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1));
        }
        store<f32>(rec + OFF_D, <f32>1 / iscale);
        for (let k = 0; k < 8; k++) {
          store<i32>(rec + OFF_B32 + (<usize>k << 2), load<i32>(rec + OFF_B16 + (<usize>k << 3)) + load<i32>(rec + OFF_B16 + (<usize>k << 3) + 4));
        }
      }
      rec += Q8K_BYTES;
    }
  }
}

/** i16 partial sums (pairs of products) of 16 unsigned weights (< 128) and 16 activations. */
// @ts-ignore: decorator
@inline function udot16(w: v128, x: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(x, w);
  // widen: the pair sums of i16 products, as pmaddubsw gives them
  const lo = i16x8.mul(i16x8.extend_low_i8x16_u(w), i16x8.extend_low_i8x16_s(x));
  const hi = i16x8.mul(i16x8.extend_high_i8x16_u(w), i16x8.extend_high_i8x16_s(x));
  return i16x8.add(v128.shuffle<u16>(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14), v128.shuffle<u16>(lo, hi, 1, 3, 5, 7, 9, 11, 13, 15));
}

/** The 6-bit scale and min of sub-block j (0..7) of a q4_K / q5_K block (ggml get_scale_min_k4). */
// @ts-ignore: decorator
@inline function scale_k4(j: i32, q: usize): i32 {
  return j < 4 ? <i32>load<u8>(q + j) & 63 : (<i32>load<u8>(q + j + 4) & 0xf) | ((<i32>load<u8>(q + j - 4) >> 6) << 4);
}
// @ts-ignore: decorator
@inline function min_k4(j: i32, q: usize): i32 {
  return j < 4 ? <i32>load<u8>(q + j + 4) & 63 : (<i32>load<u8>(q + j + 4) >> 4) | ((<i32>load<u8>(q + j) >> 6) << 4);
}

/** One q4_K (five = false) or q5_K super-block · one q8_K record: d_w·d_x·sumi - dmin·d_x·summ. */
// @ts-ignore: decorator
@inline function block_k45(w: usize, x: usize, five: bool, m: v128): f32 {
  const sc = w + 4;
  const qs = w + (five ? 48 : 16);
  let acc = i32x4.splat(0);
  let qh0 = i32x4.splat(0), qh1 = i32x4.splat(0);
  if (five) { qh0 = v128.load(w, 16); qh1 = v128.load(w, 32); }
  for (let j = 0; j < 4; j++) {
    const v0 = v128.load(qs + (<usize>j << 5)), v1 = v128.load(qs + (<usize>j << 5), 16);
    let l0 = v128.and(v0, m), l1 = v128.and(v1, m);
    let h0 = v128.and(i16x8.shr_u(v0, 4), m), h1 = v128.and(i16x8.shr_u(v1, 4), m);
    if (five) {
      // bit 2j of qh → +16 for the low nibbles, bit 2j+1 → +16 for the high ones
      const b16 = i8x16.splat(16);
      const s0 = 4 - 2 * j, s1 = 3 - 2 * j;
      l0 = v128.or(l0, v128.and(s0 >= 0 ? i16x8.shl(qh0, s0) : i16x8.shr_u(qh0, -s0), b16));
      l1 = v128.or(l1, v128.and(s0 >= 0 ? i16x8.shl(qh1, s0) : i16x8.shr_u(qh1, -s0), b16));
      h0 = v128.or(h0, v128.and(s1 >= 0 ? i16x8.shl(qh0, s1) : i16x8.shr_u(qh0, -s1), b16));
      h1 = v128.or(h1, v128.and(s1 >= 0 ? i16x8.shl(qh1, s1) : i16x8.shr_u(qh1, -s1), b16));
    }
    const xp = x + (<usize>j << 6);
    const pl = i16x8.add(udot16(l0, v128.load(xp)), udot16(l1, v128.load(xp, 16)));
    const ph = i16x8.add(udot16(h0, v128.load(xp, 32)), udot16(h1, v128.load(xp, 48)));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(pl, i16x8.splat(<i16>scale_k4(2 * j, sc))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(ph, i16x8.splat(<i16>scale_k4(2 * j + 1, sc))));
  }
  acc = i32x4.add(acc, v128.shuffle<u32>(acc, acc, 2, 3, 0, 1));
  const sumi = i32x4.extract_lane(acc, 0) + i32x4.extract_lane(acc, 1);
  let summ = 0;
  for (let j = 0; j < 8; j++) summ += min_k4(j, sc) * load<i32>(x + OFF_B32 + (<usize>j << 2));
  const dx = load<f32>(x + OFF_D);
  return (f16_at(w) * dx) * <f32>sumi - (f16_at(w + 2) * dx) * <f32>summ;
}

/** One q6_K super-block · one q8_K record: d_w·d_x·Σ_k sc_k·(Σ q·x - 32·bsums_k). */
// @ts-ignore: decorator
@inline function block_k6(w: usize, x: usize, m: v128): f32 {
  let acc = i32x4.splat(0);
  const m30 = i8x16.splat(0x30);
  let corr = i32x4.splat(0);
  for (let n = 0; n < 2; n++) {
    const ql = w + (<usize>n << 6), qh = w + 128 + (<usize>n << 5), sc = w + 192 + (<usize>n << 3);
    const xp = x + (<usize>n << 7);
    const l0 = v128.load(ql), l1 = v128.load(ql, 16), l2 = v128.load(ql, 32), l3 = v128.load(ql, 48);
    const h0 = v128.load(qh), h1 = v128.load(qh, 16);
    // groups of 16 elements in order: (q1: l 0-15, 16-31), (q2), (q3), (q4); scale sc[group]
    const g0 = v128.or(v128.and(l0, m), v128.and(i16x8.shl(h0, 4), m30));
    const g1 = v128.or(v128.and(l1, m), v128.and(i16x8.shl(h1, 4), m30));
    const g2 = v128.or(v128.and(l2, m), v128.and(i16x8.shl(h0, 2), m30));
    const g3 = v128.or(v128.and(l3, m), v128.and(i16x8.shl(h1, 2), m30));
    const g4 = v128.or(v128.and(i16x8.shr_u(l0, 4), m), v128.and(h0, m30));
    const g5 = v128.or(v128.and(i16x8.shr_u(l1, 4), m), v128.and(h1, m30));
    const g6 = v128.or(v128.and(i16x8.shr_u(l2, 4), m), v128.and(i16x8.shr_u(h0, 2), m30));
    const g7 = v128.or(v128.and(i16x8.shr_u(l3, 4), m), v128.and(i16x8.shr_u(h1, 2), m30));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g0, v128.load(xp)), i16x8.splat(<i16>load<i8>(sc))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g1, v128.load(xp, 16)), i16x8.splat(<i16>load<i8>(sc, 1))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g2, v128.load(xp, 32)), i16x8.splat(<i16>load<i8>(sc, 2))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g3, v128.load(xp, 48)), i16x8.splat(<i16>load<i8>(sc, 3))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g4, v128.load(xp, 64)), i16x8.splat(<i16>load<i8>(sc, 4))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g5, v128.load(xp, 80)), i16x8.splat(<i16>load<i8>(sc, 5))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g6, v128.load(xp, 96)), i16x8.splat(<i16>load<i8>(sc, 6))));
    acc = i32x4.add(acc, i32x4.dot_i16x8_s(udot16(g7, v128.load(xp, 112)), i16x8.splat(<i16>load<i8>(sc, 7))));
    // Σ_k sc_k·bsums_k for this half (the -32 of every weight)
    const s8 = v128.load64_zero(sc);
    const s16 = i16x8.extend_low_i8x16_s(s8);
    corr = i32x4.add(corr, i32x4.mul(i32x4.extend_low_i16x8_s(s16), v128.load(x + OFF_B16 + (<usize>n << 5))));
    corr = i32x4.add(corr, i32x4.mul(i32x4.extend_high_i16x8_s(s16), v128.load(x + OFF_B16 + (<usize>n << 5), 16)));
  }
  acc = i32x4.sub(acc, i32x4.shl(corr, 5));
  acc = i32x4.add(acc, v128.shuffle<u32>(acc, acc, 2, 3, 0, 1));
  const sumi = i32x4.extract_lane(acc, 0) + i32x4.extract_lane(acc, 1);
  return (f16_at(w + 208) * load<f32>(x + OFF_D)) * <f32>sumi;
}

// kind: 5 = q4_K, 6 = q5_K, 7 = q6_K (the host's type ids)
// @ts-ignore: decorator
@inline function row_dot(kind: i32, w: usize, x: usize, nb: i32, m: v128): f32 {
  const bs: usize = kind == 5 ? 144 : kind == 6 ? 176 : 210;
  // sum the super-blocks in 4 lanes (independent add chains), then the lanes
  let a = f32x4.splat(0);
  let b = 0;
  for (; b + 4 <= nb; b += 4) {
    let v: v128;
    if (kind == 7) {
      v = f32x4.splat(block_k6(w, x, m));
      v = f32x4.replace_lane(v, 1, block_k6(w + bs, x + Q8K_BYTES, m));
      v = f32x4.replace_lane(v, 2, block_k6(w + 2 * bs, x + 2 * Q8K_BYTES, m));
      v = f32x4.replace_lane(v, 3, block_k6(w + 3 * bs, x + 3 * Q8K_BYTES, m));
    } else {
      const five = kind == 6;
      v = f32x4.splat(block_k45(w, x, five, m));
      v = f32x4.replace_lane(v, 1, block_k45(w + bs, x + Q8K_BYTES, five, m));
      v = f32x4.replace_lane(v, 2, block_k45(w + 2 * bs, x + 2 * Q8K_BYTES, five, m));
      v = f32x4.replace_lane(v, 3, block_k45(w + 3 * bs, x + 3 * Q8K_BYTES, five, m));
    }
    a = f32x4.add(a, v);
    w += 4 * bs;
    x += 4 * Q8K_BYTES;
  }
  let s = hsum_f32(a);
  for (; b < nb; b++) {
    s += kind == 7 ? block_k6(w, x, m) : block_k45(w, x, kind == 6, m);
    w += bs;
    x += Q8K_BYTES;
  }
  return s;
}

function row_q4k(w: usize, x: usize, nb: i32, m: v128): f32 { return row_dot(5, w, x, nb, m); }
function row_q5k(w: usize, x: usize, nb: i32, m: v128): f32 { return row_dot(6, w, x, nb, m); }
function row_q6k(w: usize, x: usize, nb: i32, m: v128): f32 { return row_dot(7, w, x, nb, m); }

/**
 * k-quant weights W (kind 5 q4_K, 6 q5_K, 7 q6_K; N rows of K/256 super-blocks) times the q8_K
 * activations at A (M rows): rows [n0, n1) of Y [M][ldy] (acc != 0 adds into Y).
 */
export function gemm_k(kind: i32, A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const nb = K >> 8;
  const bs: usize = kind == 5 ? 144 : kind == 6 ? 176 : 210;
  const rowBytes = <usize>nb * bs, xrow = <usize>nb * Q8K_BYTES, sy = <usize>ldy << 2;
  const m = v128.load(C_NIBBLE_MASK);
  // ~96 KiB of weight rows stay in L2 while every activation row passes over them
  let rb = <i32>(<usize>98304 / rowBytes);
  if (rb < 1) rb = 1;
  for (let r0 = n0; r0 < n1; r0 += rb) {
    const r1 = min(r0 + rb, n1);
    for (let t = 0; t < M; t++) {
      const x = A + <usize>t * xrow, yr = Y + <usize>t * sy;
      for (let n = r0; n < r1; n++) {
        const w = W + <usize>n * rowBytes;
        const v = kind == 5 ? row_q4k(w, x, nb, m) : kind == 6 ? row_q5k(w, x, nb, m) : row_q6k(w, x, nb, m);
        const yp = yr + (<usize>n << 2);
        store<f32>(yp, acc ? load<f32>(yp) + v : v);
      }
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
      const d = f16_at(w), dmin = f16_at(w + 2);
      const sc = w + 4, qs = w + (five ? 48 : 16);
      for (let j = 0; j < 4; j++) {
        const d1 = d * <f32>scale_k4(2 * j, sc), m1 = dmin * <f32>min_k4(2 * j, sc);
        const d2 = d * <f32>scale_k4(2 * j + 1, sc), m2 = dmin * <f32>min_k4(2 * j + 1, sc);
        const p = y + (<usize>j << 8);
        for (let l = 0; l < 32; l++) {
          const q = <i32>load<u8>(qs + (<usize>j << 5) + l);
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
    w += bs;
    y += 1024;
  }
}
