// Token sampling over a row of logits: the largest logit, the tempered weights of the tokens a
// sampler keeps and their total, and the draw. Written so that plain JavaScript
// (runtime/sampling-weights.ts) can reproduce every bit: f32 arithmetic lane by lane, f64 sums in
// a fixed order.

// 1.5 · 2^23: adding it to an f32 of magnitude < 2^22 rounds to an integer (nearest, ties to
// even) held in the low mantissa bits.
const ROUND_MAGIC: f32 = 12582912.0;
const ROUND_MAGIC_BITS: i32 = 0x4b400000;
import { exp_reduced_f32x4 } from './math';

const EXP_MIN: f32 = -87.33654;

/**
 * e^x for 4 lanes of x <= 0 (Cephes expf: x = n·ln2 + r, degree-6 polynomial in r); 0 below
 * -87.33654 (no subnormal results), NaN stays NaN.
 */
// @ts-ignore: decorator
@inline function exp_nonpos_f32x4(x0: v128): v128 {
  const x = f32x4.pmax(x0, f32x4.splat(EXP_MIN));
  const t = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504088896341)), f32x4.splat(ROUND_MAGIC));
  const fx = f32x4.sub(t, f32x4.splat(ROUND_MAGIC));
  let r = f32x4.sub(x, f32x4.mul(fx, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(fx, f32x4.splat(-2.12194440e-4)));
  const p = exp_reduced_f32x4(r);
  // 2^n with n = round(x·log2 e) in [-126, 0]
  const n = i32x4.sub(t, i32x4.splat(ROUND_MAGIC_BITS));
  const y = f32x4.mul(p, i32x4.shl(i32x4.add(n, i32x4.splat(127)), 23));
  return v128.andnot(y, f32x4.lt(x0, f32x4.splat(EXP_MIN)));
}

/**
 * The largest of X[0..n) (-Infinity when none is larger; NaN is ignored), returned; the number of
 * values > -Infinity is stored as an i32 at `count`.
 */
export function sampling_max(X: usize, n: i32, count: usize): f32 {
  const ninf = f32x4.splat(-Infinity);
  let m = ninf;
  let c = i32x4.splat(0);
  const n4 = n & ~3;
  for (let i = 0; i < n4; i += 4) {
    const x = v128.load(X + (<usize>i << 2));
    const fin = f32x4.gt(x, ninf);
    c = i32x4.sub(c, fin);
    m = f32x4.pmax(m, v128.bitselect(x, ninf, fin));
  }
  let best = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  let cnt = i32x4.extract_lane(c, 0) + i32x4.extract_lane(c, 1) + i32x4.extract_lane(c, 2) + i32x4.extract_lane(c, 3);
  for (let i = n4; i < n; i++) {
    const x = load<f32>(X + (<usize>i << 2));
    if (x > -Infinity) {
      cnt++;
      if (x > best) best = x;
    }
  }
  store<i32>(count, cnt);
  return best;
}

/** Weights per block of the draw: one f64 sum per DRAW_BLOCK consecutive weights (a multiple of 4). */
const DRAW_BLOCK: i32 = 64;

/**
 * W[i] = e^((X[i] - maxLogit) · invT) where X[i] >= threshold (and X[i] > -Inf), else 0, for
 * i < n; X[i] <= maxLogit and invT > 0. Also the f64 sum of each block of DRAW_BLOCK weights
 * into S[b]: element i goes into partial sum i mod 4 of its block, and the block's sum is
 * (s0 + s1) + (s2 + s3). Returns the total, S[0] + S[1] + ... in order.
 */
export function sampling_weights(X: usize, W: usize, S: usize, n: i32, threshold: f32, maxLogit: f32, invT: f32): f64 {
  const vt = f32x4.splat(threshold), vm = f32x4.splat(maxLogit), vi = f32x4.splat(invT);
  const ninf = f32x4.splat(-Infinity);
  const n4 = n & ~3;
  let total: f64 = 0;
  for (let b = 0; b < n; b += DRAW_BLOCK) {
    let s01 = f64x2.splat(0), s23 = f64x2.splat(0);
    const e4 = min(b + DRAW_BLOCK, n4);
    let i = b;
    for (; i + 8 <= e4; i += 8) {
      const o = <usize>i << 2;
      const x = v128.load(X + o), xb = v128.load(X + o + 16);
      const keep = v128.and(f32x4.ge(x, vt), f32x4.gt(x, ninf));
      const keepb = v128.and(f32x4.ge(xb, vt), f32x4.gt(xb, ninf));
      const w = v128.and(exp_nonpos_f32x4(f32x4.mul(f32x4.sub(x, vm), vi)), keep);
      const wb = v128.and(exp_nonpos_f32x4(f32x4.mul(f32x4.sub(xb, vm), vi)), keepb);
      v128.store(W + o, w);
      v128.store(W + o + 16, wb);
      s01 = f64x2.add(s01, f64x2.promote_low_f32x4(w));
      s23 = f64x2.add(s23, f64x2.promote_low_f32x4(v128.shuffle<u32>(w, w, 2, 3, 0, 1)));
      s01 = f64x2.add(s01, f64x2.promote_low_f32x4(wb));
      s23 = f64x2.add(s23, f64x2.promote_low_f32x4(v128.shuffle<u32>(wb, wb, 2, 3, 0, 1)));
    }
    for (; i < e4; i += 4) {
      const o = <usize>i << 2;
      const x = v128.load(X + o);
      const keep = v128.and(f32x4.ge(x, vt), f32x4.gt(x, ninf));
      const w = v128.and(exp_nonpos_f32x4(f32x4.mul(f32x4.sub(x, vm), vi)), keep);
      v128.store(W + o, w);
      s01 = f64x2.add(s01, f64x2.promote_low_f32x4(w));
      s23 = f64x2.add(s23, f64x2.promote_low_f32x4(v128.shuffle<u32>(w, w, 2, 3, 0, 1)));
    }
    let s0 = f64x2.extract_lane(s01, 0), s1 = f64x2.extract_lane(s01, 1);
    let s2 = f64x2.extract_lane(s23, 0);
    const s3 = f64x2.extract_lane(s23, 1);
    // The last elements (n not a multiple of 4) fall in the last block.
    for (let i = max(e4, b); i < min(b + DRAW_BLOCK, n); i++) {
      const x = load<f32>(X + (<usize>i << 2));
      const w: f32 = x >= threshold && x > -Infinity
        ? f32x4.extract_lane(exp_nonpos_f32x4(f32x4.splat((x - maxLogit) * invT)), 0) : 0;
      store<f32>(W + (<usize>i << 2), w);
      const j = i - n4;
      if (j == 0) s0 += <f64>w;
      else if (j == 1) s1 += <f64>w;
      else s2 += <f64>w;
    }
    const sb = (s0 + s1) + (s2 + s3);
    store<f64>(S + (<usize>(b / DRAW_BLOCK) << 3), sb);
    total += sb;
  }
  return total;
}

/**
 * The draw for `target` in [0, total): blocks are passed whole while the running f64 sum of
 * their sums S[b] stays <= target; in the block where it would exceed it, the first i whose
 * running sum (from the sum before that block, adding W[i] > 0 in order) exceeds target. When
 * rounding leaves no such i, the walk goes on from the next block; when none is found at all,
 * the last i with W[i] > 0; -1 when all are 0.
 */
export function sampling_draw(W: usize, S: usize, n: i32, target: f64): i32 {
  let acc: f64 = 0;
  for (let b = 0; b < n; b += DRAW_BLOCK) {
    const next = acc + load<f64>(S + (<usize>(b / DRAW_BLOCK) << 3));
    if (target < next) {
      let a = acc;
      const e = min(b + DRAW_BLOCK, n);
      for (let i = b; i < e; i++) {
        const w = load<f32>(W + (<usize>i << 2));
        if (w > 0) {
          a += <f64>w;
          if (target < a) return i;
        }
      }
    }
    acc = next;
  }
  for (let i = n - 1; i >= 0; i--) if (load<f32>(W + (<usize>i << 2)) > 0) return i;
  return -1;
}

/**
 * The k-th largest of the values of X[0..n) that are > -Infinity (NaN ignored), k >= 1, kept in
 * descending order in the f32 buffer B[0..k) (which starts as -Infinity): a value enters when it
 * is larger than B[k-1], moving smaller ones down. Blocks of 4 values none of which can enter are
 * skipped with one vector comparison.
 */
export function sampling_kth(X: usize, n: i32, k: i32, B: usize): f32 {
  for (let j = 0; j < k; j++) store<f32>(B + (<usize>j << 2), -Infinity);
  const lastAt = B + (<usize>(k - 1) << 2);
  const n4 = n & ~3;
  for (let i = 0; i < n; i += 4) {
    if (i < n4 && !v128.any_true(f32x4.gt(v128.load(X + (<usize>i << 2)), f32x4.splat(load<f32>(lastAt))))) continue;
    const e = min(i + 4, n);
    for (let t = i; t < e; t++) {
      const v = load<f32>(X + (<usize>t << 2));
      if (!(v > load<f32>(lastAt))) continue;
      let j = k - 1;
      while (j > 0 && load<f32>(B + (<usize>(j - 1) << 2)) < v) {
        store<f32>(B + (<usize>j << 2), load<f32>(B + (<usize>(j - 1) << 2)));
        j--;
      }
      store<f32>(B + (<usize>j << 2), v);
    }
  }
  return load<f32>(lastAt);
}

/** Stores at I, in ascending order, the ids i < n with X[i] >= threshold and X[i] > -Infinity; returns their number. */
export function sampling_gather(X: usize, n: i32, threshold: f32, I: usize): i32 {
  const vt = f32x4.splat(threshold), ninf = f32x4.splat(-Infinity);
  const n4 = n & ~3;
  let c = 0;
  for (let i = 0; i < n; i += 4) {
    if (i < n4) {
      const v = v128.load(X + (<usize>i << 2));
      if (!v128.any_true(v128.and(f32x4.ge(v, vt), f32x4.gt(v, ninf)))) continue;
    }
    const e = min(i + 4, n);
    for (let t = i; t < e; t++) {
      const v = load<f32>(X + (<usize>t << 2));
      if (v >= threshold && v > -Infinity) {
        store<i32>(I + (<usize>c << 2), t);
        c++;
      }
    }
  }
  return c;
}

/**
 * Greedy choice over X[n0..n1), merged into the running best at `slot` (f32 value, then i32
 * index): X[i] replaces the best when it is larger, or equal with a lower index, so the slot
 * ends holding the argmax of every range merged into it with the lowest index among equal
 * maxima (-0 equals +0). NaN and -Infinity never enter (a slot that starts as (-Infinity, -1)
 * stays so when nothing else does). First the range's maximum (four independent pmax chains:
 * a single chain's compare-and-select latency bounds a one-pass argmax at about a third of this
 * speed), then, only when it can change the slot, the first index holding it.
 */
export function sampling_argmax(X: usize, n0: i32, n1: i32, slot: usize): void {
  const ninf = f32x4.splat(-Infinity);
  let m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf;
  let i = n0;
  for (; i + 16 <= n1; i += 16) {
    const p = X + (<usize>i << 2);
    m0 = f32x4.pmax(m0, v128.load(p));
    m1 = f32x4.pmax(m1, v128.load(p, 16));
    m2 = f32x4.pmax(m2, v128.load(p, 32));
    m3 = f32x4.pmax(m3, v128.load(p, 48));
  }
  for (; i + 4 <= n1; i += 4) m0 = f32x4.pmax(m0, v128.load(X + (<usize>i << 2)));
  // pmax(a, b) keeps a unless a < b: NaN never enters, and the lanes hold no NaN to merge.
  const m = f32x4.pmax(f32x4.pmax(m0, m1), f32x4.pmax(m2, m3));
  let best = max(max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  for (; i < n1; i++) {
    const x = load<f32>(X + (<usize>i << 2));
    if (x > best) best = x;
  }
  const had = load<f32>(slot);
  if (!(best > -Infinity) || best < had) return;
  // The first index holding the maximum.
  const vb = f32x4.splat(best);
  let at = n0;
  for (; at + 4 <= n1; at += 4) if (v128.any_true(f32x4.eq(v128.load(X + (<usize>at << 2)), vb))) break;
  while (load<f32>(X + (<usize>at << 2)) != best) at++;
  if (best > had || at < load<i32>(slot, 4)) {
    store<f32>(slot, best);
    store<i32>(slot, at, 4);
  }
}
