// ggml's reference k-quant quantizers (quantize_row_q{4,5,6}_K_ref): the same arithmetic as
// src/formats/kquant-quantize.ts, which documents the C semantics it reproduces. Here every f32
// operation is wasm's own single-precision operation (no fused multiply-add, round to nearest
// even), which is what the JS copy gets from Math.fround after each step, so both give the same
// bytes (tested on random and hostile rows); this copy is the fast one (no boxing, no fround).
//
// Scratch (the host passes it; the kernels keep no memory of their own): SCRATCH_BYTES at S.
import { f16_to_f32, f32_to_f16 } from './half';

const QK_K: i32 = 256;
const GROUP_MAX_EPS: f32 = 1e-15;
const F0_1: f32 = 0.1;

// Scratch layout: L[256] u8, Laux[32] u8, weights[32] f32, scales[16] f32, mins[8] f32, ls[8], lm[8], isc[16].
const S_L = 0;
const S_LAUX = 256;
const S_W = 288;
const S_SCALES = 416;
const S_MINS = 480;
const S_LS = 512;
const S_LM = 520;
const S_ISC = 528;
const SCRATCH_BYTES: i32 = 544;

/** Bytes of scratch the quantizers need (their S argument). */
export function kquant_scratch_bytes(): i32 {
  return SCRATCH_BYTES;
}

/** ggml's nearest_int: (bits of f32(v + 1.5·2^23)) & 0x7fffff − 0x400000. */
// @ts-ignore: decorator
@inline function nearest_int(v: f32): i32 {
  const r: f32 = v + <f32>12582912.0;
  return (reinterpret<i32>(r) & 0x7fffff) - 0x400000;
}

// @ts-ignore: decorator
@inline function clampi(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}

/**
 * make_qkx2_quants (use_mad = false) over 32 values at x with weights at w: writes L[0..32) at
 * Lp and returns the scale; the negated min goes to *minOut.
 */
function make_qkx2_quants(nmax: i32, x: usize, w: usize, Lp: usize, Laux: usize, rmin: f32, rdelta: f32, nstep: i32, minOut: usize): f32 {
  const n = 32;
  let min = load<f32>(x), max = load<f32>(x);
  let sumW = load<f32>(w);
  let sumX: f32 = sumW * load<f32>(x);
  for (let i = 1; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2)), wi = load<f32>(w + (<usize>i << 2));
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = sumW + wi;
    sumX = sumX + wi * v;
  }
  if (min > 0) min = 0;
  if (max == min) {
    memory.fill(Lp, 0, n);
    store<f32>(minOut, -min);
    return 0;
  }
  const fnmax = <f32>nmax;
  let iscale: f32 = fnmax / (max - min);
  let scale: f32 = <f32>1 / iscale;
  let bestError: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    const l = clampi(nearest_int(iscale * (v - min)), 0, nmax);
    store<u8>(Lp + i, l);
    const diff: f32 = (scale * <f32>l + min) - v;
    bestError = bestError + load<f32>(w + (<usize>i << 2)) * (diff * diff);
  }
  if (nstep < 1) {
    store<f32>(minOut, -min);
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    // `min` is the best fit so far, as in C (the trial grid moves with it).
    iscale = ((rmin + rdelta * <f32>is) + fnmax) / (max - min);
    let sumL: f32 = 0, sumL2: f32 = 0, sumXL: f32 = 0;
    for (let i = 0; i < n; i++) {
      const v = load<f32>(x + (<usize>i << 2));
      const l = clampi(nearest_int(iscale * (v - min)), 0, nmax);
      store<u8>(Laux + i, l);
      const wl: f32 = load<f32>(w + (<usize>i << 2)) * <f32>l;
      sumL = sumL + wl;
      sumL2 = sumL2 + wl * <f32>l;
      sumXL = sumXL + wl * v;
    }
    const D: f32 = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale: f32 = (sumW * sumXL - sumX * sumL) / D;
      let thisMin: f32 = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      let curError: f32 = 0;
      for (let i = 0; i < n; i++) {
        const diff: f32 = (thisScale * <f32>load<u8>(Laux + i) + thisMin) - load<f32>(x + (<usize>i << 2));
        curError = curError + load<f32>(w + (<usize>i << 2)) * (diff * diff);
      }
      if (curError < bestError) {
        memory.copy(Lp, Laux, n);
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  store<f32>(minOut, -min);
  return scale;
}

/** make_qx_quants (rmse_type 1, no importance weights) over 16 values: L at Lp offset by nmax; returns the scale. */
function make_qx_quants(nmax: i32, x: usize, Lp: usize): f32 {
  const n = 16;
  let max: f32 = 0, amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    const ax = Mathf.abs(v);
    if (ax > amax) { amax = ax; max = v; }
  }
  if (amax < GROUP_MAX_EPS) {
    memory.fill(Lp, 0, n);
    return 0;
  }
  const fnmax = <f32>nmax;
  let iscale: f32 = -fnmax / max;
  let sumLX: f32 = 0, sumL2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const v = load<f32>(x + (<usize>i << 2));
    const l = clampi(nearest_int(iscale * v), -nmax, nmax - 1);
    store<u8>(Lp + i, l + nmax);
    const w: f32 = v * v;
    sumLX = sumLX + (w * v) * <f32>l;
    sumL2 = sumL2 + (w * <f32>l) * <f32>l;
  }
  let scale: f32 = sumL2 != 0 ? sumLX / sumL2 : 0; // C truthiness: NaN counts as true
  let best: f32 = scale * sumLX;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(fnmax + F0_1 * <f32>is) / max;
    sumLX = 0;
    sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const v = load<f32>(x + (<usize>i << 2));
      const l = clampi(nearest_int(iscale * v), -nmax, nmax - 1);
      const w: f32 = v * v;
      sumLX = sumLX + (w * v) * <f32>l;
      sumL2 = sumL2 + (w * <f32>l) * <f32>l;
    }
    if (sumL2 > 0 && sumLX * sumLX > best * sumL2) {
      for (let i = 0; i < n; i++) {
        store<u8>(Lp + i, nmax + clampi(nearest_int(iscale * load<f32>(x + (<usize>i << 2))), -nmax, nmax - 1));
      }
      scale = sumLX / sumL2;
      best = scale * sumLX;
    }
  }
  return scale;
}

/** Six-bit scale and min j of q4_K / q5_K's 12 scale bytes at q (get_scale_min_k4). */
// @ts-ignore: decorator
@inline function scale_of(j: i32, q: usize): i32 {
  return j < 4 ? load<u8>(q + j) & 63 : (load<u8>(q + j + 4) & 0xf) | ((load<u8>(q + j - 4) >> 6) << 4);
}
// @ts-ignore: decorator
@inline function min_of(j: i32, q: usize): i32 {
  return j < 4 ? load<u8>(q + j + 4) & 63 : (load<u8>(q + j + 4) >> 4) | ((load<u8>(q + j) >> 6) << 4);
}

/**
 * quantize_row_q4_K_ref (five = false) / quantize_row_q5_K_ref (five = true): n values at X
 * (a multiple of 256) into blocks at Q (144 / 176 bytes per 256 values); S: SCRATCH_BYTES.
 */
function quantize_q45_k(X: usize, n: i32, Q: usize, S: usize, five: bool): void {
  const nmax = five ? 31 : 15;
  const rmin: f32 = five ? -0.5 : -1;
  const nstep = five ? 15 : 20;
  const bs: usize = five ? 176 : 144;
  const L = S + S_L, Laux = S + S_LAUX, W = S + S_W, SC = S + S_SCALES, MN = S + S_MINS, LS = S + S_LS, LM = S + S_LM;
  const nb = n / QK_K;
  for (let i = 0; i < nb; i++) {
    const xb = X + (<usize>(i * QK_K) << 2);
    const o = Q + <usize>i * bs;
    memory.fill(o, 0, bs);
    let maxScale: f32 = 0, maxMin: f32 = 0;
    for (let j = 0; j < 8; j++) {
      const xo = xb + (<usize>(32 * j) << 2);
      let sumX2: f32 = 0;
      for (let l = 0; l < 32; l++) { const v = load<f32>(xo + (<usize>l << 2)); sumX2 = sumX2 + v * v; }
      const avX = Mathf.sqrt(sumX2 / 32);
      for (let l = 0; l < 32; l++) store<f32>(W + (<usize>l << 2), avX + Mathf.abs(load<f32>(xo + (<usize>l << 2))));
      const s = make_qkx2_quants(nmax, xo, W, L + 32 * j, Laux, rmin, F0_1, nstep, MN + (<usize>j << 2));
      store<f32>(SC + (<usize>j << 2), s);
      const m = load<f32>(MN + (<usize>j << 2));
      if (s > maxScale) maxScale = s;
      if (m > maxMin) maxMin = m;
    }
    const invScale: f32 = maxScale > 0 ? <f32>63 / maxScale : 0;
    const invMin: f32 = maxMin > 0 ? <f32>63 / maxMin : 0;
    for (let j = 0; j < 8; j++) {
      // uint8_t ls = nearest_int(...): the store wraps, then MIN(63, ·)
      store<u8>(LS + j, min(63, nearest_int(invScale * load<f32>(SC + (<usize>j << 2))) & 0xff));
      store<u8>(LM + j, min(63, nearest_int(invMin * load<f32>(MN + (<usize>j << 2))) & 0xff));
    }
    const sq = o + 4;
    for (let j = 0; j < 8; j++) {
      const lsj = <u32>load<u8>(LS + j), lmj = <u32>load<u8>(LM + j);
      if (j < 4) {
        store<u8>(sq + j, lsj);
        store<u8>(sq + j + 4, lmj);
      } else {
        store<u8>(sq + j + 4, (lsj & 0xf) | ((lmj & 0xf) << 4));
        store<u8>(sq + j - 4, load<u8>(sq + j - 4) | ((lsj >> 4) << 6));
        store<u8>(sq + j, load<u8>(sq + j) | ((lmj >> 4) << 6));
      }
    }
    const dh = f32_to_f16(maxScale / 63), mh = f32_to_f16(maxMin / 63);
    store<u16>(o, <u16>dh);
    store<u16>(o + 2, <u16>mh);
    const dAll = f16_to_f32(dh), mAll = f16_to_f32(mh);
    for (let j = 0; j < 8; j++) {
      const d: f32 = dAll * <f32>scale_of(j, sq);
      if (d == 0) continue; // keep the search's quants, as C does (C's `!d`: NaN goes on)
      const dm: f32 = mAll * <f32>min_of(j, sq);
      for (let ii = 0; ii < 32; ii++) {
        const l = nearest_int((load<f32>(xb + (<usize>(32 * j + ii) << 2)) + dm) / d);
        store<u8>(L + 32 * j + ii, clampi(l, 0, nmax));
      }
    }
    if (!five) {
      const q = o + 16;
      for (let j = 0, k = 0; j < QK_K; j += 64, k += 32) {
        for (let l = 0; l < 32; l++) store<u8>(q + k + l, load<u8>(L + j + l) | (load<u8>(L + j + l + 32) << 4));
      }
    } else {
      const qh = o + 16, ql = o + 48;
      let m1: u32 = 1, m2: u32 = 2;
      for (let nn = 0, k = 0; nn < QK_K; nn += 64, k += 32) {
        for (let j = 0; j < 32; j++) {
          let l1 = <u32>load<u8>(L + nn + j);
          if (l1 > 15) { l1 -= 16; store<u8>(qh + j, load<u8>(qh + j) | m1); }
          let l2 = <u32>load<u8>(L + nn + j + 32);
          if (l2 > 15) { l2 -= 16; store<u8>(qh + j, load<u8>(qh + j) | m2); }
          store<u8>(ql + k + j, l1 | (l2 << 4));
        }
        m1 <<= 2;
        m2 <<= 2;
      }
    }
  }
}

/** quantize_row_q4_K_ref of n values at X (n a multiple of 256) into Q; S: SCRATCH_BYTES of scratch. */
export function quantize_q4_k(X: usize, n: i32, Q: usize, S: usize): void {
  quantize_q45_k(X, n, Q, S, false);
}

/** quantize_row_q5_K_ref; as quantize_q4_k. */
export function quantize_q5_k(X: usize, n: i32, Q: usize, S: usize): void {
  quantize_q45_k(X, n, Q, S, true);
}

/** quantize_row_q6_K_ref of n values at X (n a multiple of 256) into Q (210 bytes per 256). */
export function quantize_q6_k(X: usize, n: i32, Q: usize, S: usize): void {
  const L = S + S_L, SC = S + S_SCALES, ISC = S + S_ISC;
  const nb = n / QK_K;
  for (let i = 0; i < nb; i++) {
    const xb = X + (<usize>(i * QK_K) << 2);
    const o = Q + <usize>i * 210;
    memory.fill(o, 0, 210);
    let maxScale: f32 = 0, maxAbsScale: f32 = 0;
    for (let ib = 0; ib < 16; ib++) {
      const s = make_qx_quants(32, xb + (<usize>(16 * ib) << 2), L + 16 * ib);
      store<f32>(SC + (<usize>ib << 2), s);
      const a = Mathf.abs(s);
      if (a > maxAbsScale) { maxAbsScale = a; maxScale = s; }
    }
    if (maxAbsScale < GROUP_MAX_EPS) continue; // an all-zero block: every byte 0, d = +0
    const iscale: f32 = <f32>-128 / maxScale;
    const dh = f32_to_f16(<f32>1 / iscale);
    store<u16>(o + 208, <u16>dh);
    for (let ib = 0; ib < 16; ib++) {
      const v = <i8>min(127, nearest_int(iscale * load<f32>(SC + (<usize>ib << 2)))); // int8 store wraps
      store<i8>(ISC + ib, v);
      store<u8>(o + 192 + ib, <u8>v);
    }
    const dAll = f16_to_f32(dh);
    for (let j = 0; j < 16; j++) {
      const d: f32 = dAll * <f32>load<i8>(ISC + j);
      if (d == 0) continue; // C's `!d`, which NaN does not satisfy
      for (let ii = 0; ii < 16; ii++) {
        const l = nearest_int(load<f32>(xb + (<usize>(16 * j + ii) << 2)) / d);
        store<u8>(L + 16 * j + ii, clampi(l, -32, 31) + 32);
      }
    }
    for (let j = 0, qlo = o, qho = o + 128; j < QK_K; j += 128, qlo += 64, qho += 32) {
      for (let l = 0; l < 32; l++) {
        const a = <u32>load<u8>(L + j + l), b = <u32>load<u8>(L + j + l + 32);
        const c = <u32>load<u8>(L + j + l + 64), e = <u32>load<u8>(L + j + l + 96);
        store<u8>(qlo + l, (a & 0xf) | ((c & 0xf) << 4));
        store<u8>(qlo + l + 32, (b & 0xf) | ((e & 0xf) << 4));
        store<u8>(qho + l, (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
    }
  }
}
