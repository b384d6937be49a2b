// f32 matrix products in "dot" form: Y[m, n] (=|+=) Σ_k X[m, k] · W[n, k].
// Both operands are read along k (contiguous), which is the layout of PyTorch Linear weights
// ([out, in]) and of activations ([tokens, features]). Register tile: 4 rows of X × 2 rows of W
// (8 f32x4 accumulators; V8 has 16 xmm registers). W is walked in blocks small enough to stay in
// L2 while every group of 4 X rows passes over it, so each weight is read from memory once per
// call.

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
    a00 = f32x4.add(a00, f32x4.mul(v, b0)); a01 = f32x4.add(a01, f32x4.mul(v, b1));
    v = v128.load(x1 + k);
    a10 = f32x4.add(a10, f32x4.mul(v, b0)); a11 = f32x4.add(a11, f32x4.mul(v, b1));
    v = v128.load(x2 + k);
    a20 = f32x4.add(a20, f32x4.mul(v, b0)); a21 = f32x4.add(a21, f32x4.mul(v, b1));
    v = v128.load(x3 + k);
    a30 = f32x4.add(a30, f32x4.mul(v, b0)); a31 = f32x4.add(a31, f32x4.mul(v, b1));
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
    a0 = f32x4.add(a0, f32x4.mul(v128.load(x + k), b));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(x1 + k), b));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(x2 + k), b));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(x3 + k), b));
  }
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (let kk = k4; kk < K; kk++) {
    const o = <usize>kk << 2;
    const b = load<f32>(w + o);
    s0 += load<f32>(x + o) * b; s1 += load<f32>(x1 + o) * b; s2 += load<f32>(x2 + o) * b; s3 += load<f32>(x3 + o) * b;
  }
  put(y, s0, acc); y += ldy; put(y, s1, acc); y += ldy; put(y, s2, acc); y += ldy; put(y, s3, acc);
}

export function tile1x4(x: usize, w: usize, ldw: usize, y: usize, K: i32, acc: i32): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const w1 = w + ldw, w2 = w1 + ldw, w3 = w2 + ldw;
  const k4 = K & ~3;
  let k: usize = 0;
  const end = <usize>k4 << 2;
  for (; k < end; k += 16) {
    const v = v128.load(x + k);
    a0 = f32x4.add(a0, f32x4.mul(v, v128.load(w + k)));
    a1 = f32x4.add(a1, f32x4.mul(v, v128.load(w1 + k)));
    a2 = f32x4.add(a2, f32x4.mul(v, v128.load(w2 + k)));
    a3 = f32x4.add(a3, f32x4.mul(v, v128.load(w3 + k)));
  }
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
  for (; k < end; k += 16) a = f32x4.add(a, f32x4.mul(v128.load(x + k), v128.load(w + k)));
  let s = hsum(a);
  for (let kk = k4; kk < K; kk++) {
    const o = <usize>kk << 2;
    s += load<f32>(x + o) * load<f32>(w + o);
  }
  put(y, s, acc);
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
    for (let m = m4; m < M; m++) {
      const xr = X + <usize>m * sx, yr = Y + <usize>m * sy;
      let n = nbs;
      const n4 = nbs + ((nbe - nbs) & ~3);
      for (; n < n4; n += 4) tile1x4(xr, W + <usize>n * sw, sw, yr + (<usize>n << 2), K, acc);
      for (; n < nbe; n++) tile1x1(xr, W + <usize>n * sw, yr + (<usize>n << 2), K, acc);
    }
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
