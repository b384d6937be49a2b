// Matrix products with fp16 or bf16 weights and f32 activations, in dot form:
// Y[m, n] (=|+=) Σ_k X[m, k]·W[n, k]. Three paths, by the number of activation rows M:
//   M < 4 (decode of a few sequences): one row of X at a time (row1), the weights read strictly
//     in order and widened in registers; blocks of W rows stay in L2 for the next row of X.
//   4 <= M <= 16 (batched decode): register tiles (4 X rows × 2 W rows; 2 × 4, 1 × 4 for the last
//     rows of X) widen 4 weights at a time, and each widened vector serves every row of the tile.
//     A group of 4 W rows stays in L1 while every group of X rows passes over it.
//   M > 16 (prefill): blocks of W rows are widened once into a per-thread f32 panel and the f32
//     tiles of gemm-f32.ts run on it.
// The tiles and the panel compute an element exactly as gemm-f32.ts does (one accumulator over k
// in steps of 4, fma, lanes, then the scalar k tail), so they agree bit for bit with each other,
// for every M >= 4 and every split of [n0, n1) between threads. row1 sums in another order
// (4 accumulators), so 1-3 rows round differently from 4 or more, to float tolerance.
import { f16_to_f32, bf16_to_f32, hi16_to_hi32, lo16_to_hi32 } from './half';
import { C_F16_RAWMASK, C_F16_SCALE, C_SIGN32 } from './tables';
import { fma, hsum, hsum4, put2x2, put4, tile4x1 as f32_tile4x1, tile4x2 as f32_tile4x2, rest_rows as f32_rest_rows } from './gemm-f32';

// Weight formats of the register-widening tiles.
const BF16: i32 = 0;     // bf16: the bits in the high half of an f32
const F16: i32 = 1;      // fp16, widened exactly (c0 = sign mask, c1 = 2^112)
const F16_RAW: i32 = 2;  // fp16 as w·2^-112 (c0 = raw mask), activations pre-scaled by 2^112

/**
 * 4 weights at p widened to f32x4. The load extends 16 → 32 bits (pmovzxwd / pmovsxwd), so a
 * bf16 needs one shift. fp16 bits moved to f32 position, sign | (h & 0x7fff) << 13, read as f32
 * are the weight times 2^-112 (exactly, subnormals included): with activations pre-scaled by
 * 2^112 (exact while |x| < 2^15) a product is the same real number, so the same float, as w·x
 * (fused or not), and the conversion is a shift and a mask.
 */
// @ts-ignore: decorator
@inline function w4(p: usize, kind: i32, c0: v128, c1: v128): v128 {
  if (kind == BF16) return i32x4.shl(v128.load16x4_u(p), 16);
  if (kind == F16_RAW) return v128.and(i32x4.shl(v128.load16x4_s(p), 13), c0);
  const h = i32x4.shl(v128.load16x4_u(p), 16);
  return v128.or(f32x4.mul(i32x4.shr_u(i32x4.shl(h, 1), 4), c1), v128.and(h, c0));
}
/** w4 of the 4 weights after those at p (offset folded into the load). */
// @ts-ignore: decorator
@inline function w4hi(p: usize, kind: i32, c0: v128, c1: v128): v128 {
  if (kind == BF16) return i32x4.shl(v128.load16x4_u(p, 8), 16);
  if (kind == F16_RAW) return v128.and(i32x4.shl(v128.load16x4_s(p, 8), 13), c0);
  const h = i32x4.shl(v128.load16x4_u(p, 8), 16);
  return v128.or(f32x4.mul(i32x4.shr_u(i32x4.shl(h, 1), 4), c1), v128.and(h, c0));
}
/** One weight at p, as w4 gives it. */
// @ts-ignore: decorator
@inline function wscalar(p: usize, kind: i32): f32 {
  const h = <u32>load<u16>(p);
  if (kind == BF16) return bf16_to_f32(h);
  if (kind == F16_RAW) return reinterpret<f32>((<i32>(h << 16) >> 3) & 0x8fffffff);
  return f16_to_f32(h);
}
// @ts-ignore: decorator
@inline function put(p: usize, v: f32, acc: i32): void {
  if (acc) store<f32>(p, load<f32>(p) + v);
  else store<f32>(p, v);
}

/**
 * R (1, 2 or 4) rows of X × J (1 or 2) rows of W, widened in registers: R·J accumulators, J
 * weight vectors, 1 activation. R, J and kind are constants after inlining, so unused
 * accumulators vanish. One step is 4 values of k: each accumulator takes one fma per step (as in
 * gemm-f32.ts), and no value has to live across the step.
 */
// @ts-ignore: decorator
@inline function tileRx(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32,
  R: i32, J: i32, kind: i32, c0: v128, c1: v128, packed: bool = false, xp: usize = 0): void {
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a10 = f32x4.splat(0), a11 = f32x4.splat(0);
  let a20 = f32x4.splat(0), a21 = f32x4.splat(0), a30 = f32x4.splat(0), a31 = f32x4.splat(0);
  const x1 = x + sx, x2 = x1 + sx, x3 = x2 + sx, w1 = w + sw;
  const k4 = K & ~3;
  // Pointers stepped once per step, loads at constant offsets from them: an index needs an
  // address computation per load, and the loop was bound by those instructions, not by its fma.
  // Packed (4 rows by pack4 at xp; a constant, so one branch folds away) one pointer reaches every row.
  let px = packed ? xp : x, pw = w;
  const end4 = w + (<usize>k4 << 1);
  while (pw < end4) {
    const b0 = w4(pw, kind, c0, c1);
    const b1 = J > 1 ? w4(pw + sw, kind, c0, c1) : b0;
    let v = v128.load(px);
    a00 = fma(v, b0, a00); if (J > 1) a01 = fma(v, b1, a01);
    if (R > 1) { v = packed ? v128.load(px, 16) : v128.load(px + sx); a10 = fma(v, b0, a10); if (J > 1) a11 = fma(v, b1, a11); }
    if (R > 2) {
      v = packed ? v128.load(px, 32) : v128.load(px + 2 * sx); a20 = fma(v, b0, a20); if (J > 1) a21 = fma(v, b1, a21);
      v = packed ? v128.load(px, 48) : v128.load(px + 3 * sx); a30 = fma(v, b0, a30); if (J > 1) a31 = fma(v, b1, a31);
    }
    px += packed ? 64 : 16; pw += 8;
  }
  if (R == 4 && J == 2 && k4 == K) {
    put2x2(y, y + sy, hsum4(a00, a01, a10, a11), acc);
    put2x2(y + 2 * sy, y + 3 * sy, hsum4(a20, a21, a30, a31), acc);
    return;
  }
  let s00 = hsum(a00), s01 = hsum(a01), s10 = hsum(a10), s11 = hsum(a11);
  let s20 = hsum(a20), s21 = hsum(a21), s30 = hsum(a30), s31 = hsum(a31);
  for (let k = k4; k < K; k++) {
    const pw = <usize>k << 1, px = <usize>k << 2;
    const b0 = wscalar(w + pw, kind);
    const b1 = J > 1 ? wscalar(w1 + pw, kind) : b0;
    let v = load<f32>(x + px);
    s00 += v * b0; if (J > 1) s01 += v * b1;
    if (R > 1) { v = load<f32>(x1 + px); s10 += v * b0; if (J > 1) s11 += v * b1; }
    if (R > 2) {
      v = load<f32>(x2 + px); s20 += v * b0; if (J > 1) s21 += v * b1;
      v = load<f32>(x3 + px); s30 += v * b0; if (J > 1) s31 += v * b1;
    }
  }
  put(y, s00, acc); if (J > 1) put(y + 4, s01, acc);
  if (R > 1) { put(y + sy, s10, acc); if (J > 1) put(y + sy + 4, s11, acc); }
  if (R > 2) {
    put(y + 2 * sy, s20, acc); if (J > 1) put(y + 2 * sy + 4, s21, acc);
    put(y + 3 * sy, s30, acc); if (J > 1) put(y + 3 * sy + 4, s31, acc);
  }
}

/** R (1 or 2) rows of X × 4 rows of W: 4·R accumulators, R activations, 1 weight vector. */
// @ts-ignore: decorator
@inline function tileX4(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32,
  R: i32, kind: i32, c0: v128, c1: v128): void {
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a02 = f32x4.splat(0), a03 = f32x4.splat(0);
  let a10 = f32x4.splat(0), a11 = f32x4.splat(0), a12 = f32x4.splat(0), a13 = f32x4.splat(0);
  const x1 = x + sx, w1 = w + sw, w2 = w1 + sw, w3 = w2 + sw;
  const k4 = K & ~3;
  for (let k = 0; k < k4; k += 4) {
    const pw = <usize>k << 1, px = <usize>k << 2;
    const u = v128.load(x + px);
    const v = R > 1 ? v128.load(x1 + px) : u;
    let b = w4(w + pw, kind, c0, c1);
    a00 = fma(u, b, a00); if (R > 1) a10 = fma(v, b, a10);
    b = w4(w1 + pw, kind, c0, c1);
    a01 = fma(u, b, a01); if (R > 1) a11 = fma(v, b, a11);
    b = w4(w2 + pw, kind, c0, c1);
    a02 = fma(u, b, a02); if (R > 1) a12 = fma(v, b, a12);
    b = w4(w3 + pw, kind, c0, c1);
    a03 = fma(u, b, a03); if (R > 1) a13 = fma(v, b, a13);
  }
  if (k4 == K) {
    put4(y, hsum4(a00, a01, a02, a03), acc);
    if (R > 1) put4(y + sy, hsum4(a10, a11, a12, a13), acc);
    return;
  }
  let s00 = hsum(a00), s01 = hsum(a01), s02 = hsum(a02), s03 = hsum(a03);
  let s10 = hsum(a10), s11 = hsum(a11), s12 = hsum(a12), s13 = hsum(a13);
  for (let k = k4; k < K; k++) {
    const pw = <usize>k << 1, px = <usize>k << 2;
    const u = load<f32>(x + px);
    const v = R > 1 ? load<f32>(x1 + px) : u;
    let b = wscalar(w + pw, kind);
    s00 += u * b; if (R > 1) s10 += v * b;
    b = wscalar(w1 + pw, kind);
    s01 += u * b; if (R > 1) s11 += v * b;
    b = wscalar(w2 + pw, kind);
    s02 += u * b; if (R > 1) s12 += v * b;
    b = wscalar(w3 + pw, kind);
    s03 += u * b; if (R > 1) s13 += v * b;
  }
  put(y, s00, acc); put(y + 4, s01, acc); put(y + 8, s02, acc); put(y + 12, s03, acc);
  if (R > 1) { y += sy; put(y, s10, acc); put(y + 4, s11, acc); put(y + 8, s12, acc); put(y + 12, s13, acc); }
}

/**
 * One row of X × one row of W: the weights are read strictly in order (one sequential stream,
 * which the hardware prefetchers follow best from DRAM; while the product is bound by memory the
 * multi-row tiles, which interleave 2-4 W rows, measured 15-35% slower on the 26 MB LM head of
 * the default model), 16 per step into four accumulators so that the fma latency (4-5 cycles)
 * does not bound the loop. Rounds differently from the tiles, to float tolerance.
 */
// @ts-ignore: decorator
@inline function row1(x: usize, w: usize, y: usize, K: i32, acc: i32, kind: i32, c0: v128, c1: v128): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const k16 = K & ~15, k8 = K & ~7;
  let k = 0;
  for (; k < k16; k += 16) {
    const v = v128.load(w + (<usize>k << 1)), u = v128.load(w + (<usize>k << 1), 16);
    const o = <usize>k << 2;
    a0 = fma(v128.load(x + o), widen(lo16_to_hi32(v), kind, c0, c1), a0);
    a1 = fma(v128.load(x + o, 16), widen(hi16_to_hi32(v), kind, c0, c1), a1);
    a2 = fma(v128.load(x + o, 32), widen(lo16_to_hi32(u), kind, c0, c1), a2);
    a3 = fma(v128.load(x + o, 48), widen(hi16_to_hi32(u), kind, c0, c1), a3);
  }
  if (k < k8) {
    const v = v128.load(w + (<usize>k << 1));
    const o = <usize>k << 2;
    a0 = fma(v128.load(x + o), widen(lo16_to_hi32(v), kind, c0, c1), a0);
    a1 = fma(v128.load(x + o, 16), widen(hi16_to_hi32(v), kind, c0, c1), a1);
  }
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (k = k8; k < K; k++) s += load<f32>(x + (<usize>k << 2)) * wscalar(w + (<usize>k << 1), kind);
  put(y, s, acc);
}
// @ts-ignore: decorator
@inline function widen(h: v128, kind: i32, c0: v128, c1: v128): v128 {
  if (kind == BF16) return h;
  if (kind == F16_RAW) return v128.and(i32x4.shr_s(h, 3), c0);
  return v128.or(f32x4.mul(i32x4.shr_u(i32x4.shl(h, 1), 4), c1), v128.and(h, c0));
}
function row1_bf16(x: usize, w: usize, sw: usize, y: usize, n0: i32, n1: i32, K: i32, acc: i32, c0: v128, c1: v128): void {
  for (let n = n0; n < n1; n++) row1(x, w + <usize>n * sw, y + (<usize>n << 2), K, acc, BF16, c0, c1);
}
function row1_f16(x: usize, w: usize, sw: usize, y: usize, n0: i32, n1: i32, K: i32, acc: i32, c0: v128, c1: v128): void {
  for (let n = n0; n < n1; n++) row1(x, w + <usize>n * sw, y + (<usize>n << 2), K, acc, F16, c0, c1);
}
function row1_raw(x: usize, w: usize, sw: usize, y: usize, n0: i32, n1: i32, K: i32, acc: i32, c0: v128, c1: v128): void {
  for (let n = n0; n < n1; n++) row1(x, w + <usize>n * sw, y + (<usize>n << 2), K, acc, F16_RAW, c0, c1);
}

// The tiles as functions (one copy per weight format; V8 allocates registers per function).
function t4x2_bf16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 4, 2, BF16, c0, c1); }
function t4x2_f16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 4, 2, F16, c0, c1); }
function t4x2_raw(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 4, 2, F16_RAW, c0, c1); }
function t4x1_bf16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 4, 1, BF16, c0, c1); }
function t4x1_f16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 4, 1, F16, c0, c1); }
function t4x1_raw(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 4, 1, F16_RAW, c0, c1); }
function t2x1_bf16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 2, 1, BF16, c0, c1); }
function t2x1_f16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 2, 1, F16, c0, c1); }
function t2x1_raw(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 2, 1, F16_RAW, c0, c1); }
function t1x1_bf16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 1, 1, BF16, c0, c1); }
function t1x1_f16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 1, 1, F16, c0, c1); }
function t1x1_raw(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileRx(x, sx, w, sw, y, sy, K, acc, 1, 1, F16_RAW, c0, c1); }
function t2x4_bf16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileX4(x, sx, w, sw, y, sy, K, acc, 2, BF16, c0, c1); }
function t2x4_f16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileX4(x, sx, w, sw, y, sy, K, acc, 2, F16, c0, c1); }
function t2x4_raw(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileX4(x, sx, w, sw, y, sy, K, acc, 2, F16_RAW, c0, c1); }
function t1x4_bf16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileX4(x, sx, w, sw, y, sy, K, acc, 1, BF16, c0, c1); }
function t1x4_f16(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileX4(x, sx, w, sw, y, sy, K, acc, 1, F16, c0, c1); }
function t1x4_raw(x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32, c0: v128, c1: v128): void { tileX4(x, sx, w, sw, y, sy, K, acc, 1, F16_RAW, c0, c1); }

/**
 * 4 rows of X from x (stride sx) interleaved by steps of 4 values of k into P:
 * P[16·(k/4) + 4·r + j] = X[r][k + j] for k < K & ~3. The packed tile then reads the 4 rows of a
 * step at constant offsets from one pointer.
 */
// @ts-ignore: decorator
@inline function pack4(x: usize, sx: usize, K: i32, P: usize): void {
  const end = x + (<usize>(K & ~3) << 2);
  let q = P;
  for (let p = x; p < end; p += 16) {
    v128.store(q, v128.load(p));
    v128.store(q, v128.load(p + sx), 16);
    v128.store(q, v128.load(p + 2 * sx), 32);
    v128.store(q, v128.load(p + 3 * sx), 48);
    q += 64;
  }
}

// The 4 × 2 bf16 tile reading its 4 rows of X packed by pack4 at xp (x, sx: the rows themselves,
// for the k tail): measured 1.05-1.1x the unpacked tile (bench kernel-ab). Same fma sequence, same bits.
function t4x2p_bf16(xp: usize, x: usize, sx: usize, w: usize, sw: usize, y: usize, sy: usize, K: i32, acc: i32): void {
  const z = f32x4.splat(0);
  tileRx(x, sx, w, sw, y, sy, K, acc, 4, 2, BF16, z, z, true, xp);
}

/**
 * Rows [m0, m1) of X (strides in bytes) against W rows [n0, n1), weights widened in registers.
 * W rows are the outer loop (a group of 4 rows, K·8 bytes, stays in L1 while every X row passes).
 */
// @ts-ignore: decorator
@inline function gemm_direct(X: usize, sx: usize, W: usize, sw: usize, Y: usize, sy: usize,
  m0: i32, m1: i32, n0: i32, n1: i32, K: i32, acc: i32, kind: i32, c0: v128, c1: v128, rowwise: bool, XP: usize): void {
  if (rowwise) {
    // blocks of W rows small enough to stay in L2 while each row of X passes over them
    let nb = <i32>(131072 / (<u32>K * 2 + 64));
    if (nb < 1) nb = 1;
    for (let r0 = n0; r0 < n1; r0 += nb) {
      const r1 = min(r0 + nb, n1);
      for (let m = m0; m < m1; m++) {
        const x = X + <usize>m * sx, y = Y + <usize>m * sy;
        if (kind == BF16) row1_bf16(x, W, sw, y, r0, r1, K, acc, c0, c1);
        else if (kind == F16) row1_f16(x, W, sw, y, r0, r1, K, acc, c0, c1);
        else row1_raw(x, W, sw, y, r0, r1, K, acc, c0, c1);
      }
    }
    return;
  }
  const m4 = m0 + ((m1 - m0) & ~3);
  const rest = m1 - m4; // 0..3: a 2-row and/or a 1-row tile
  const n4 = n0 + ((n1 - n0) & ~3);
  // Packed rows of X (pack4) for the 4 × 2 tiles, 64 bytes per step of 4 values of k.
  const sp = <usize>(K >> 2) << 6;
  if (XP) for (let m = m0; m < m4; m += 4) pack4(X + <usize>m * sx, sx, K, XP + <usize>((m - m0) >> 2) * sp);
  let n = n0;
  for (; n < n4; n += 4) {
    const w = W + <usize>n * sw, w2 = w + 2 * sw, yn = Y + (<usize>n << 2);
    let m = m0;
    for (; m < m4; m += 4) {
      const x = X + <usize>m * sx, y = yn + <usize>m * sy;
      if (XP) {
        const xp = XP + <usize>((m - m0) >> 2) * sp;
        t4x2p_bf16(xp, x, sx, w, sw, y, sy, K, acc); t4x2p_bf16(xp, x, sx, w2, sw, y + 8, sy, K, acc);
      } else if (kind == BF16) { t4x2_bf16(x, sx, w, sw, y, sy, K, acc, c0, c1); t4x2_bf16(x, sx, w2, sw, y + 8, sy, K, acc, c0, c1); }
      else if (kind == F16) { t4x2_f16(x, sx, w, sw, y, sy, K, acc, c0, c1); t4x2_f16(x, sx, w2, sw, y + 8, sy, K, acc, c0, c1); }
      else { t4x2_raw(x, sx, w, sw, y, sy, K, acc, c0, c1); t4x2_raw(x, sx, w2, sw, y + 8, sy, K, acc, c0, c1); }
    }
    if (rest >= 2) {
      const x = X + <usize>m * sx, y = yn + <usize>m * sy;
      if (kind == BF16) t2x4_bf16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else if (kind == F16) t2x4_f16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else t2x4_raw(x, sx, w, sw, y, sy, K, acc, c0, c1);
      m += 2;
    }
    if (rest & 1) {
      const x = X + <usize>m * sx, y = yn + <usize>m * sy;
      if (kind == BF16) t1x4_bf16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else if (kind == F16) t1x4_f16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else t1x4_raw(x, sx, w, sw, y, sy, K, acc, c0, c1);
    }
  }
  for (; n < n1; n++) {
    const w = W + <usize>n * sw, yn = Y + (<usize>n << 2);
    let m = m0;
    for (; m < m4; m += 4) {
      const x = X + <usize>m * sx, y = yn + <usize>m * sy;
      if (kind == BF16) t4x1_bf16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else if (kind == F16) t4x1_f16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else t4x1_raw(x, sx, w, sw, y, sy, K, acc, c0, c1);
    }
    if (rest >= 2) {
      const x = X + <usize>m * sx, y = yn + <usize>m * sy;
      if (kind == BF16) t2x1_bf16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else if (kind == F16) t2x1_f16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else t2x1_raw(x, sx, w, sw, y, sy, K, acc, c0, c1);
      m += 2;
    }
    if (rest & 1) {
      const x = X + <usize>m * sx, y = yn + <usize>m * sy;
      if (kind == BF16) t1x1_bf16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else if (kind == F16) t1x1_f16(x, sx, w, sw, y, sy, K, acc, c0, c1);
      else t1x1_raw(x, sx, w, sw, y, sy, K, acc, c0, c1);
    }
  }
}

/** Bytes of the panel a thread needs for gemm_f16 / gemm_bf16 with many rows. */
export const HALF_PANEL_BYTES: i32 = 262144;

/**
 * Fewer rows than this (decode of 1-3 sequences) go one row at a time through row1, over blocks
 * of W that stay in L2: the weights stream from memory in order, which measured faster here than
 * the tiles' interleaved rows while the product is bound by memory (25-35% at 1 row, ~15% at 2).
 */
const ROWWISE_BELOW: i32 = 4;
/**
 * More rows than this take the panel path (widening paid once per block, not once per 4 rows);
 * from ROWWISE_BELOW to here, the register tiles. Tiles and panel give the same bits.
 */
const TILES_UP_TO: i32 = 16;

/** Widens rows [r0, r1) of W into the f32 panel P (row-major, K columns). */
// @ts-ignore: decorator
@inline function widen_rows(W: usize, sw: usize, r0: i32, r1: i32, K: i32, P: usize, bf: bool): void {
  const k4 = K & ~3;
  const kind = bf ? BF16 : F16;
  const sg = v128.load(C_SIGN32), sc = v128.load(C_F16_SCALE);
  for (let r = r0; r < r1; r++) {
    const w = W + <usize>r * sw, p = P + <usize>(r - r0) * (<usize>K << 2);
    let k = 0;
    for (; k < k4; k += 4) v128.store(p + (<usize>k << 2), w4(w + (<usize>k << 1), kind, sg, sc));
    for (; k < K; k++) store<f32>(p + (<usize>k << 2), wscalar(w + (<usize>k << 1), kind));
  }
}

/**
 * Many activation rows: weight rows are widened once per block into the f32 panel P and the
 * f32 tiles run on it (the widening is paid once per block instead of once per 4 rows).
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
    const Pn = P - <usize>r0 * sp; // row n of W is at Pn + n·sp
    for (let m = 0; m < m4; m += 4) {
      const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
      let n = r0;
      for (; n < npair; n += 2) f32_tile4x2(xr, sx, Pn + <usize>n * sp, sp, yr + (<usize>n << 2), sy, K, acc);
      if (n < r1) f32_tile4x1(xr, sx, Pn + <usize>n * sp, yr + (<usize>n << 2), sy, K, acc);
    }
    f32_rest_rows(X, sx, Pn, sp, Y, sy, m4, M, r0, r1, K, acc);
  }
}

/** Whether every value of rows [m0, m1) of X is below 2^15 in magnitude (NaN: no). */
function rows_scalable(X: usize, sx: usize, m0: i32, m1: i32, K: i32): bool {
  const k4 = K & ~3;
  let amax = f32x4.splat(0);
  for (let m = m0; m < m1; m++) {
    const x = X + <usize>m * sx;
    for (let k = 0; k < k4; k += 4) amax = f32x4.max(amax, f32x4.abs(v128.load(x + (<usize>k << 2))));
    for (let k = k4; k < K; k++) amax = f32x4.max(amax, f32x4.splat(Mathf.abs(load<f32>(x + (<usize>k << 2)))));
  }
  // f32x4.max propagates NaN
  const am = f32x4.max(amax, v128.shuffle<u32>(amax, amax, 2, 3, 0, 1));
  return max(f32x4.extract_lane(am, 0), f32x4.extract_lane(am, 1)) < 32768;
}

/**
 * fp16 weights W [N][ldw] (elements), rows [n0, n1). See gemm_f32 for the other arguments.
 * P: a per-thread scratch of HALF_PANEL_BYTES (0 = none: widen exactly in registers). With P,
 * few rows are scaled by 2^112 into P for the cheap widening (blocks of rows that fit), many
 * rows use P as the f32 weight panel.
 */
export function gemm_f16(X: usize, ldx: i32, W: usize, ldw: i32, Y: usize, ldy: i32,
  M: i32, n0: i32, n1: i32, K: i32, acc: i32, P: usize): void {
  if (P && M > TILES_UP_TO) { gemm_half_panel(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc, P, false); return; }
  const sx = <usize>ldx << 2, sw = <usize>ldw << 1, sy = <usize>ldy << 2, sk = <usize>K << 2;
  const sg = v128.load(C_SIGN32), sc = v128.load(C_F16_SCALE), mk = v128.load(C_F16_RAWMASK);
  const mb = P ? <i32>(<usize>HALF_PANEL_BYTES / sk) : 0;
  if (mb < 1) { gemm_direct(X, sx, W, sw, Y, sy, 0, M, n0, n1, K, acc, F16, sg, sc, M < ROWWISE_BELOW, 0); return; }
  for (let m0 = 0; m0 < M; m0 += mb) {
    const m1 = min(M, m0 + mb);
    if (!rows_scalable(X, sx, m0, m1, K)) {
      gemm_direct(X, sx, W, sw, Y, sy, m0, m1, n0, n1, K, acc, F16, sg, sc, M < ROWWISE_BELOW, 0);
      continue;
    }
    const s112 = f32x4.splat(5.192296858534828e33);
    const k4 = K & ~3;
    for (let m = m0; m < m1; m++) {
      const x = X + <usize>m * sx, p = P + <usize>(m - m0) * sk;
      for (let k = 0; k < k4; k += 4) v128.store(p + (<usize>k << 2), f32x4.mul(v128.load(x + (<usize>k << 2)), s112));
      for (let k = k4; k < K; k++) store<f32>(p + (<usize>k << 2), load<f32>(x + (<usize>k << 2)) * <f32>5.192296858534828e33);
    }
    gemm_direct(P - <usize>m0 * sk, sk, W, sw, Y, sy, m0, m1, n0, n1, K, acc, F16_RAW, mk, sc, M < ROWWISE_BELOW, 0);
  }
}

/** bf16 weights; otherwise as gemm_f16 (P: the panel for many rows, or 0). */
export function gemm_bf16(X: usize, ldx: i32, W: usize, ldw: i32, Y: usize, ldy: i32,
  M: i32, n0: i32, n1: i32, K: i32, acc: i32, P: usize): void {
  if (P && M > TILES_UP_TO) { gemm_half_panel(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc, P, true); return; }
  const z = f32x4.splat(0);
  // The 4 × 2 tiles read X packed (pack4) into the panel when it holds every 4-row group.
  const packed = P && M >= ROWWISE_BELOW && <usize>(M & ~3) * (<usize>(K & ~3) << 2) <= <usize>HALF_PANEL_BYTES;
  gemm_direct(X, <usize>ldx << 2, W, <usize>ldw << 1, Y, <usize>ldy << 2, 0, M, n0, n1, K, acc, BF16, z, z, M < ROWWISE_BELOW, packed ? P : 0);
}
