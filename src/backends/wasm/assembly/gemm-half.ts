// Matrix products with fp16 or bf16 weights and f32 activations, in dot form:
// Y[m, n] (=|+=) Σ_k X[m, k]·W[n, k]. Few activation rows (decode): weights are widened to f32
// in registers, 8 at a time. Many rows (prefill): blocks of weight rows are widened once into a
// per-thread f32 panel and the f32 tiles of gemm-f32.ts run on it. Results do not depend on the
// split of [n0, n1) between threads; the two paths differ in rounding order.
import { f16_to_f32, bf16_to_f32, hi16_to_hi32, lo16_to_hi32 } from './half';
import { C_F16_RAWMASK, C_F16_SCALE, C_SIGN32 } from './tables';
import { hsum_f32 } from './math';
import { tile1x1 as f32_tile1x1, tile1x4 as f32_tile1x4, tile4x1 as f32_tile4x1, tile4x2 as f32_tile4x2 } from './gemm-f32';

// f16 (in the high half of u32 lanes) → f32 with the constants passed in registers (see tables.ts)
// @ts-ignore: decorator
@inline function cvt(x: v128, sg: v128, sc: v128): v128 {
  return v128.or(f32x4.mul(i32x4.shr_u(i32x4.shl(x, 1), 4), sc), v128.and(x, sg));
}
// @ts-ignore: decorator
@inline function wlo(v: v128, bf: bool, sg: v128, sc: v128): v128 {
  return bf ? lo16_to_hi32(v) : cvt(lo16_to_hi32(v), sg, sc);
}
// @ts-ignore: decorator
@inline function whi(v: v128, bf: bool, sg: v128, sc: v128): v128 {
  return bf ? hi16_to_hi32(v) : cvt(hi16_to_hi32(v), sg, sc);
}
// @ts-ignore: decorator
@inline function wscalar(p: usize, bf: bool): f32 {
  const h = <u32>load<u16>(p);
  return bf ? bf16_to_f32(h) : f16_to_f32(h);
}
// @ts-ignore: decorator
@inline function put(p: usize, v: f32, acc: i32): void {
  if (acc) store<f32>(p, load<f32>(p) + v);
  else store<f32>(p, v);
}

// @ts-ignore: decorator
@inline function tile4(x: usize, sx: usize, w: usize, y: usize, sy: usize, K: i32, acc: i32, bf: bool, sg: v128, sc: v128): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + sx, x2 = x1 + sx, x3 = x2 + sx;
  const k8 = K & ~7;
  for (let k = 0; k < k8; k += 8) {
    const v = v128.load(w + (<usize>k << 1));
    const lo = wlo(v, bf, sg, sc), hi = whi(v, bf, sg, sc);
    const o = <usize>k << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(x + o), lo)); a0 = f32x4.add(a0, f32x4.mul(v128.load(x + o, 16), hi));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(x1 + o), lo)); a1 = f32x4.add(a1, f32x4.mul(v128.load(x1 + o, 16), hi));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(x2 + o), lo)); a2 = f32x4.add(a2, f32x4.mul(v128.load(x2 + o, 16), hi));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(x3 + o), lo)); a3 = f32x4.add(a3, f32x4.mul(v128.load(x3 + o, 16), hi));
  }
  let s0 = hsum_f32(a0), s1 = hsum_f32(a1), s2 = hsum_f32(a2), s3 = hsum_f32(a3);
  for (let k = k8; k < K; k++) {
    const b = wscalar(w + (<usize>k << 1), bf);
    const o = <usize>k << 2;
    s0 += load<f32>(x + o) * b; s1 += load<f32>(x1 + o) * b; s2 += load<f32>(x2 + o) * b; s3 += load<f32>(x3 + o) * b;
  }
  put(y, s0, acc); put(y + sy, s1, acc); put(y + 2 * sy, s2, acc); put(y + 3 * sy, s3, acc);
}

// Decode: two accumulators (low and high halves of each 8-wide step) so that the add latency
// does not bound the loop.
// @ts-ignore: decorator
@inline function tile1(x: usize, w: usize, y: usize, K: i32, acc: i32, bf: bool, sg: v128, sc: v128): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const k8 = K & ~7;
  for (let k = 0; k < k8; k += 8) {
    const v = v128.load(w + (<usize>k << 1));
    const o = <usize>k << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(x + o), wlo(v, bf, sg, sc)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(x + o, 16), whi(v, bf, sg, sc)));
  }
  let s0 = hsum_f32(f32x4.add(a0, a1));
  for (let k = k8; k < K; k++) s0 += load<f32>(x + (<usize>k << 2)) * wscalar(w + (<usize>k << 1), bf);
  put(y, s0, acc);
}

/**
 * Decode fast path for fp16: a weight's bits moved to f32 position, sign | (h & 0x7fff) << 13,
 * read as f32 are the weight times 2^-112 (exactly, subnormals included). With the activations
 * pre-scaled by 2^112 (exact while |x| < 2^15) the products are the same floats as w·x, and the
 * conversion costs 2 instructions per 4 weights instead of 5.
 */
// @ts-ignore: decorator
@inline function raw_lo(v: v128, mk: v128): v128 {
  return v128.and(i32x4.shr_s(lo16_to_hi32(v), 3), mk);
}
// @ts-ignore: decorator
@inline function raw_hi(v: v128, mk: v128): v128 {
  return v128.and(i32x4.shr_s(hi16_to_hi32(v), 3), mk);
}

function tile1_f16_scaled(x: usize, w: usize, y: usize, K: i32, acc: i32, mk: v128, sg: v128, sc: v128): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const k8 = K & ~7;
  for (let k = 0; k < k8; k += 8) {
    const v = v128.load(w + (<usize>k << 1));
    const o = <usize>k << 2;
    a0 = f32x4.add(a0, f32x4.mul(v128.load(x + o), raw_lo(v, mk)));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(x + o, 16), raw_hi(v, mk)));
  }
  let s0 = hsum_f32(f32x4.add(a0, a1));
  // the tail with exact widening (x is scaled: undo)
  for (let k = k8; k < K; k++) s0 += load<f32>(x + (<usize>k << 2)) * <f32>1.925929944387236e-34 * wscalar(w + (<usize>k << 1), false);
  put(y, s0, acc);
}

function tile4_f16(x: usize, sx: usize, w: usize, y: usize, sy: usize, K: i32, acc: i32, sg: v128, sc: v128): void { tile4(x, sx, w, y, sy, K, acc, false, sg, sc); }
function tile4_bf16(x: usize, sx: usize, w: usize, y: usize, sy: usize, K: i32, acc: i32, sg: v128, sc: v128): void { tile4(x, sx, w, y, sy, K, acc, true, sg, sc); }
function tile1_f16(x: usize, w: usize, y: usize, K: i32, acc: i32, sg: v128, sc: v128): void { tile1(x, w, y, K, acc, false, sg, sc); }
function tile1_bf16(x: usize, w: usize, y: usize, K: i32, acc: i32, sg: v128, sc: v128): void { tile1(x, w, y, K, acc, true, sg, sc); }

// @ts-ignore: decorator
@inline function gemm_half(X: usize, ldx: i32, W: usize, ldw: i32, Y: usize, ldy: i32,
  M: i32, n0: i32, n1: i32, K: i32, acc: i32, bf: bool): void {
  const sx = <usize>ldx << 2, sw = <usize>ldw << 1, sy = <usize>ldy << 2;
  let nb = <i32>(131072 / (<u32>K * 2 + 64));
  if (nb < 1) nb = 1;
  const m4 = M & ~3;
  const sg = v128.load(C_SIGN32), sc = v128.load(C_F16_SCALE);
  for (let r0 = n0; r0 < n1; r0 += nb) {
    const r1 = min(r0 + nb, n1);
    for (let m = 0; m < m4; m += 4) {
      const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
      for (let n = r0; n < r1; n++) {
        if (bf) tile4_bf16(xr, sx, W + <usize>n * sw, yr + (<usize>n << 2), sy, K, acc, sg, sc);
        else tile4_f16(xr, sx, W + <usize>n * sw, yr + (<usize>n << 2), sy, K, acc, sg, sc);
      }
    }
    for (let m = m4; m < M; m++) {
      const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
      for (let n = r0; n < r1; n++) {
        if (bf) tile1_bf16(xr, W + <usize>n * sw, yr + (<usize>n << 2), K, acc, sg, sc);
        else tile1_f16(xr, W + <usize>n * sw, yr + (<usize>n << 2), K, acc, sg, sc);
      }
    }
  }
}

/** Bytes of the panel a thread needs for gemm_f16 / gemm_bf16 with many rows. */
export const HALF_PANEL_BYTES: i32 = 262144;

/** Widens rows [r0, r1) of W into the f32 panel P (row-major, K columns). */
// @ts-ignore: decorator
@inline function widen_rows(W: usize, sw: usize, r0: i32, r1: i32, K: i32, P: usize, bf: bool): void {
  const k8 = K & ~7;
  const sg = v128.load(C_SIGN32), sc = v128.load(C_F16_SCALE);
  for (let r = r0; r < r1; r++) {
    const w = W + <usize>r * sw, p = P + <usize>(r - r0) * (<usize>K << 2);
    let k = 0;
    for (; k < k8; k += 8) {
      const v = v128.load(w + (<usize>k << 1));
      v128.store(p + (<usize>k << 2), wlo(v, bf, sg, sc));
      v128.store(p + (<usize>k << 2), whi(v, bf, sg, sc), 16);
    }
    for (; k < K; k++) store<f32>(p + (<usize>k << 2), wscalar(w + (<usize>k << 1), bf));
  }
}

/**
 * Many activation rows: weight rows are widened once per block into the f32 panel P and the
 * f32 tiles run on it (the widening is paid once per block instead of once per 4 rows).
 * Element arithmetic equals gemm_f32's, not the M < 4 path's.
 */
// @ts-ignore: decorator
@inline function gemm_half_panel(X: usize, ldx: i32, W: usize, ldw: i32, Y: usize, ldy: i32,
  M: i32, n0: i32, n1: i32, K: i32, acc: i32, P: usize, bf: bool): void {
  const sx = <usize>ldx << 2, sw = <usize>ldw << 1, sy = <usize>ldy << 2, sp = <usize>K << 2;
  let nb = HALF_PANEL_BYTES / (K * 4);
  if (nb < 1) nb = 1;
  if (nb > 2) nb &= ~1;
  const m4 = M & ~3;
  for (let r0 = n0; r0 < n1; r0 += nb) {
    const r1 = min(r0 + nb, n1);
    widen_rows(W, sw, r0, r1, K, P, bf);
    const npair = r0 + ((r1 - r0) & ~1);
    for (let m = 0; m < m4; m += 4) {
      const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
      let n = r0;
      for (; n < npair; n += 2) f32_tile4x2(xr, sx, P + <usize>(n - r0) * sp, sp, yr + (<usize>n << 2), sy, K, acc);
      if (n < r1) f32_tile4x1(xr, sx, P + <usize>(n - r0) * sp, yr + (<usize>n << 2), sy, K, acc);
    }
    for (let m = m4; m < M; m++) {
      const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
      let n = r0;
      const n4 = r0 + ((r1 - r0) & ~3);
      for (; n < n4; n += 4) f32_tile1x4(xr, P + <usize>(n - r0) * sp, sp, yr + (<usize>n << 2), K, acc);
      for (; n < r1; n++) f32_tile1x1(xr, P + <usize>(n - r0) * sp, yr + (<usize>n << 2), K, acc);
    }
  }
}

/**
 * fp16 weights W [N][ldw] (elements), rows [n0, n1). See gemm_f32 for the other arguments.
 * P: a per-thread scratch of HALF_PANEL_BYTES, used when M >= 4 (0 = widen on the fly).
 */
export function gemm_f16(X: usize, ldx: i32, W: usize, ldw: i32, Y: usize, ldy: i32,
  M: i32, n0: i32, n1: i32, K: i32, acc: i32, P: usize): void {
  if (P && M >= 4) { gemm_half_panel(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc, P, false); return; }
  if (!P || <usize>K * 4 > <usize>HALF_PANEL_BYTES) { gemm_half(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc, false); return; }
  const mk = v128.load(C_F16_RAWMASK);
  const sg = v128.load(C_SIGN32), sc = v128.load(C_F16_SCALE);
  const sx = <usize>ldx << 2, sw = <usize>ldw << 1, sy = <usize>ldy << 2;
  for (let m = 0; m < M; m++) {
    const xr = X + <usize>m * sx;
    // scale the row by 2^112 into the panel, unless a value is too large for it
    let amax = f32x4.splat(0);
    const k4 = K & ~3;
    for (let k = 0; k < k4; k += 4) amax = f32x4.max(amax, f32x4.abs(v128.load(xr + (<usize>k << 2))));
    let big = false;
    for (let k = k4; k < K; k++) if (Mathf.abs(load<f32>(xr + (<usize>k << 2))) >= 32768) big = true;
    const am = f32x4.max(amax, v128.shuffle<u32>(amax, amax, 2, 3, 0, 1));
    if (big || !(max(f32x4.extract_lane(am, 0), f32x4.extract_lane(am, 1)) < 32768)) {
      gemm_half(xr, ldx, W, ldw, Y + <usize>m * sy, ldy, 1, n0, n1, K, acc, false);
      continue;
    }
    const s112 = f32x4.splat(5.192296858534828e33);
    for (let k = 0; k < k4; k += 4) v128.store(P + (<usize>k << 2), f32x4.mul(v128.load(xr + (<usize>k << 2)), s112));
    for (let k = k4; k < K; k++) store<f32>(P + (<usize>k << 2), load<f32>(xr + (<usize>k << 2)) * <f32>5.192296858534828e33);
    const yr = Y + <usize>m * sy;
    for (let n = n0; n < n1; n++) tile1_f16_scaled(P, W + <usize>n * sw, yr + (<usize>n << 2), K, acc, mk, sg, sc);
  }
}

/** bf16 weights; otherwise as gemm_f16. */
export function gemm_bf16(X: usize, ldx: i32, W: usize, ldw: i32, Y: usize, ldy: i32,
  M: i32, n0: i32, n1: i32, K: i32, acc: i32, P: usize): void {
  if (P && M >= 4) gemm_half_panel(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc, P, true);
  else gemm_half(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc, true);
}
