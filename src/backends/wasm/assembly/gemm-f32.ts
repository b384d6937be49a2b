// f32 matrix products in "dot" form: Y[m, n] (=|+=) Σ_k X[m, k] · W[n, k].
// Both operands are read along k (contiguous), which is the layout of PyTorch Linear weights
// ([out, in]) and of activations ([tokens, features]). Register tiles: 4 rows of X × 2 rows of W
// (8 f32x4 accumulators; V8 has 16 xmm registers), 2 × 4 and 1 × 4 for the last rows of X. W is
// walked in blocks small enough to stay in L2 while every group of 4 X rows passes over it, so
// each weight is read from memory once per call.
//
// Every tile computes an element the same way: one f32x4 accumulator over k in steps of 4
// (acc = fma(x, w, acc)), then its lanes (hsum), then the k tail in scalars. So results do not
// depend on the tile an element falls in (M, or how callers split [n0, n1)); gemm-half.ts keeps
// the same order so that its paths agree with these tiles bit for bit.

/**
 * x·w + acc per lane: fused (one rounding) in the relaxed-SIMD build, where V8 emits vfmadd on
 * x64 with FMA3 (else mul + add); mul then add in the plain-SIMD build.
 */
// @ts-ignore: decorator
@inline export function fma(x: v128, w: v128, acc: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(x, w, acc);
  return f32x4.add(acc, f32x4.mul(x, w));
}

// Horizontal sum of the 4 lanes.
// @ts-ignore: decorator
@inline export function hsum(v: v128): f32 {
  const s = f32x4.add(v, v128.shuffle<u32>(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

// @ts-ignore: decorator
@inline function put(p: usize, v: f32, acc: i32): void {
  if (acc) store<f32>(p, load<f32>(p) + v);
  else store<f32>(p, v);
}

/** [hsum(a), hsum(b), hsum(c), hsum(d)], with hsum's arithmetic (so the same bits). */
// @ts-ignore: decorator
@inline export function hsum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const ab = f32x4.add(v128.shuffle<u32>(a, b, 0, 1, 4, 5), v128.shuffle<u32>(a, b, 2, 3, 6, 7));
  const cd = f32x4.add(v128.shuffle<u32>(c, d, 0, 1, 4, 5), v128.shuffle<u32>(c, d, 2, 3, 6, 7));
  return f32x4.add(v128.shuffle<u32>(ab, cd, 0, 2, 4, 6), v128.shuffle<u32>(ab, cd, 1, 3, 5, 7));
}

/** put of 4 consecutive outputs. */
// @ts-ignore: decorator
@inline export function put4(p: usize, v: v128, acc: i32): void {
  v128.store(p, acc ? f32x4.add(v128.load(p), v) : v);
}

/** put of lanes 0-1 at p and lanes 2-3 at q. */
// @ts-ignore: decorator
@inline export function put2x2(p: usize, q: usize, v: v128, acc: i32): void {
  if (acc) v = f32x4.add(v128.load64_lane(q, v128.load64_zero(p), 1), v);
  v128.store64_lane(p, v, 0);
  v128.store64_lane(q, v, 1);
}

export function tile4x2(x: usize, ldx: usize, w: usize, ldw: usize, y: usize, ldy: usize, K: i32, acc: i32): void {
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a10 = f32x4.splat(0), a11 = f32x4.splat(0);
  let a20 = f32x4.splat(0), a21 = f32x4.splat(0), a30 = f32x4.splat(0), a31 = f32x4.splat(0);
  const x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx, w1 = w + ldw;
  const k4 = K & ~3;
  let k: usize = 0;
  const end = <usize>k4 << 2;
  for (; k < end; k += 16) {
    const b0 = v128.load(w + k), b1 = v128.load(w1 + k);
    let v = v128.load(x + k);
    a00 = fma(v, b0, a00); a01 = fma(v, b1, a01);
    v = v128.load(x1 + k);
    a10 = fma(v, b0, a10); a11 = fma(v, b1, a11);
    v = v128.load(x2 + k);
    a20 = fma(v, b0, a20); a21 = fma(v, b1, a21);
    v = v128.load(x3 + k);
    a30 = fma(v, b0, a30); a31 = fma(v, b1, a31);
  }
  if (k4 == K) {
    put2x2(y, y + ldy, hsum4(a00, a01, a10, a11), acc);
    put2x2(y + 2 * ldy, y + 3 * ldy, hsum4(a20, a21, a30, a31), acc);
    return;
  }
  let s00 = hsum(a00), s01 = hsum(a01), s10 = hsum(a10), s11 = hsum(a11);
  let s20 = hsum(a20), s21 = hsum(a21), s30 = hsum(a30), s31 = hsum(a31);
  for (let kk = k4; kk < K; kk++) {
    const o = <usize>kk << 2;
    const b0 = load<f32>(w + o), b1 = load<f32>(w1 + o);
    const v0 = load<f32>(x + o), v1 = load<f32>(x1 + o), v2 = load<f32>(x2 + o), v3 = load<f32>(x3 + o);
    s00 += v0 * b0; s01 += v0 * b1; s10 += v1 * b0; s11 += v1 * b1;
    s20 += v2 * b0; s21 += v2 * b1; s30 += v3 * b0; s31 += v3 * b1;
  }
  put(y, s00, acc); put(y + 4, s01, acc);
  y += ldy; put(y, s10, acc); put(y + 4, s11, acc);
  y += ldy; put(y, s20, acc); put(y + 4, s21, acc);
  y += ldy; put(y, s30, acc); put(y + 4, s31, acc);
}

export function tile4x1(x: usize, ldx: usize, w: usize, y: usize, ldy: usize, K: i32, acc: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const x1 = x + ldx, x2 = x1 + ldx, x3 = x2 + ldx;
  const k4 = K & ~3;
  let k: usize = 0;
  const end = <usize>k4 << 2;
  for (; k < end; k += 16) {
    const b = v128.load(w + k);
    a0 = fma(v128.load(x + k), b, a0);
    a1 = fma(v128.load(x1 + k), b, a1);
    a2 = fma(v128.load(x2 + k), b, a2);
    a3 = fma(v128.load(x3 + k), b, a3);
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (let kk = k4; kk < K; kk++) {
    const o = <usize>kk << 2;
    const b = load<f32>(w + o);
    s0 += load<f32>(x + o) * b; s1 += load<f32>(x1 + o) * b; s2 += load<f32>(x2 + o) * b; s3 += load<f32>(x3 + o) * b;
  }
  put(y, s0, acc); y += ldy; put(y, s1, acc); y += ldy; put(y, s2, acc); y += ldy; put(y, s3, acc);
}

export function tile2x4(x: usize, ldx: usize, w: usize, ldw: usize, y: usize, ldy: usize, K: i32, acc: i32): void {
  let a00 = f32x4.splat(0), a01 = f32x4.splat(0), a02 = f32x4.splat(0), a03 = f32x4.splat(0);
  let a10 = f32x4.splat(0), a11 = f32x4.splat(0), a12 = f32x4.splat(0), a13 = f32x4.splat(0);
  const x1 = x + ldx, w1 = w + ldw, w2 = w1 + ldw, w3 = w2 + ldw;
  const k4 = K & ~3;
  let k: usize = 0;
  const end = <usize>k4 << 2;
  for (; k < end; k += 16) {
    const v0 = v128.load(x + k), v1 = v128.load(x1 + k);
    let b = v128.load(w + k);
    a00 = fma(v0, b, a00); a10 = fma(v1, b, a10);
    b = v128.load(w1 + k);
    a01 = fma(v0, b, a01); a11 = fma(v1, b, a11);
    b = v128.load(w2 + k);
    a02 = fma(v0, b, a02); a12 = fma(v1, b, a12);
    b = v128.load(w3 + k);
    a03 = fma(v0, b, a03); a13 = fma(v1, b, a13);
  }
  if (k4 == K) {
    put4(y, hsum4(a00, a01, a02, a03), acc);
    put4(y + ldy, hsum4(a10, a11, a12, a13), acc);
    return;
  }
  let s00 = hsum(a00), s01 = hsum(a01), s02 = hsum(a02), s03 = hsum(a03);
  let s10 = hsum(a10), s11 = hsum(a11), s12 = hsum(a12), s13 = hsum(a13);
  for (let kk = k4; kk < K; kk++) {
    const o = <usize>kk << 2;
    const v0 = load<f32>(x + o), v1 = load<f32>(x1 + o);
    const b0 = load<f32>(w + o), b1 = load<f32>(w1 + o), b2 = load<f32>(w2 + o), b3 = load<f32>(w3 + o);
    s00 += v0 * b0; s01 += v0 * b1; s02 += v0 * b2; s03 += v0 * b3;
    s10 += v1 * b0; s11 += v1 * b1; s12 += v1 * b2; s13 += v1 * b3;
  }
  put(y, s00, acc); put(y + 4, s01, acc); put(y + 8, s02, acc); put(y + 12, s03, acc);
  y += ldy; put(y, s10, acc); put(y + 4, s11, acc); put(y + 8, s12, acc); put(y + 12, s13, acc);
}

export function tile1x4(x: usize, w: usize, ldw: usize, y: usize, K: i32, acc: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const w1 = w + ldw, w2 = w1 + ldw, w3 = w2 + ldw;
  const k4 = K & ~3;
  let k: usize = 0;
  const end = <usize>k4 << 2;
  for (; k < end; k += 16) {
    const v = v128.load(x + k);
    a0 = fma(v, v128.load(w + k), a0);
    a1 = fma(v, v128.load(w1 + k), a1);
    a2 = fma(v, v128.load(w2 + k), a2);
    a3 = fma(v, v128.load(w3 + k), a3);
  }
  if (k4 == K) { put4(y, hsum4(a0, a1, a2, a3), acc); return; }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (let kk = k4; kk < K; kk++) {
    const o = <usize>kk << 2;
    const v = load<f32>(x + o);
    s0 += v * load<f32>(w + o); s1 += v * load<f32>(w1 + o); s2 += v * load<f32>(w2 + o); s3 += v * load<f32>(w3 + o);
  }
  put(y, s0, acc); put(y + 4, s1, acc); put(y + 8, s2, acc); put(y + 12, s3, acc);
}

export function tile1x1(x: usize, w: usize, y: usize, K: i32, acc: i32): void {
  let a = f32x4.splat(0);
  const k4 = K & ~3;
  let k: usize = 0;
  const end = <usize>k4 << 2;
  for (; k < end; k += 16) a = fma(v128.load(x + k), v128.load(w + k), a);
  let s = hsum(a);
  for (let kk = k4; kk < K; kk++) {
    const o = <usize>kk << 2;
    s += load<f32>(x + o) * load<f32>(w + o);
  }
  put(y, s, acc);
}

/** Rows [m0, M) of X (fewer than 4) against rows [n0, n1) of W: 2 × 4 and 1 × 4 tiles. Strides in bytes. */
// @ts-ignore: decorator
@inline export function rest_rows(X: usize, sx: usize, W: usize, sw: usize, Y: usize, sy: usize,
  m0: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const n4 = n0 + ((n1 - n0) & ~3);
  let m = m0;
  if (m + 2 <= M) {
    const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
    let n = n0;
    for (; n < n4; n += 4) tile2x4(xr, sx, W + <usize>n * sw, sw, yr + (<usize>n << 2), sy, K, acc);
    for (; n < n1; n++) {
      tile1x1(xr, W + <usize>n * sw, yr + (<usize>n << 2), K, acc);
      tile1x1(xr + sx, W + <usize>n * sw, yr + sy + (<usize>n << 2), K, acc);
    }
    m += 2;
  }
  if (m < M) {
    const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
    let n = n0;
    for (; n < n4; n += 4) tile1x4(xr, W + <usize>n * sw, sw, yr + (<usize>n << 2), K, acc);
    for (; n < n1; n++) tile1x1(xr, W + <usize>n * sw, yr + (<usize>n << 2), K, acc);
  }
}

/**
 * Y[m, n] (=|+=) Σ_k X[m, k]·W[n, k] for m < M, n in [n0, n1). Leading dimensions in elements.
 * acc != 0 adds into Y. Every tile shape sums an element in the same order (4 lanes over k, then
 * the lanes, then the k tail), so results do not depend on M or on how callers split [n0, n1).
 */
export function gemm_f32(X: usize, ldx: i32, W: usize, ldw: i32, Y: usize, ldy: i32,
  M: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const sx = <usize>ldx << 2, sw = <usize>ldw << 2, sy = <usize>ldy << 2;
  // Rows of W per block: keep the block within ~192 KiB so it stays in L2 across all of X.
  let nb = <i32>(196608 / (<u32>K * 4 + 64));
  if (nb < 4) nb = 4;
  nb &= ~3;
  const m4 = M & ~3;
  for (let nbs = n0; nbs < n1; nbs += nb) {
    const nbe = min(nbs + nb, n1);
    const npair = nbs + ((nbe - nbs) & ~1);
    for (let m = 0; m < m4; m += 4) {
      const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
      let n = nbs;
      for (; n < npair; n += 2) tile4x2(xr, sx, W + <usize>n * sw, sw, yr + (<usize>n << 2), sy, K, acc);
      if (n < nbe) tile4x1(xr, sx, W + <usize>n * sw, yr + (<usize>n << 2), sy, K, acc);
    }
    rest_rows(X, sx, W, sw, Y, sy, m4, M, nbs, nbe, K, acc);
  }
}

/** B[c, r] = A[r, c] for an R×C matrix A (leading dimensions in elements), in 8×8 blocks. */
export function transpose_f32(A: usize, lda: i32, B: usize, ldb: i32, R: i32, C: i32): void {
  const sa = <usize>lda << 2, sb = <usize>ldb << 2;
  for (let r0 = 0; r0 < R; r0 += 8) {
    const r1 = min(r0 + 8, R);
    for (let c0 = 0; c0 < C; c0 += 8) {
      const c1 = min(c0 + 8, C);
      for (let r = r0; r < r1; r++) {
        const src = A + <usize>r * sa;
        for (let c = c0; c < c1; c++) store<f32>(B + <usize>c * sb + (<usize>r << 2), load<f32>(src + (<usize>c << 2)));
      }
    }
  }
}
