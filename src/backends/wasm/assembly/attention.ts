// Causal attention with ALiBi, padding mask and online softmax (FlashAttention-style tiles):
// up to 4 query rows of one head at a time walk the keys in tiles of 32, keeping a running max,
// a running sum and an f32 output accumulator per row. Memory is O(tile), never T×T; the same
// code serves prefill, chunked prefill and single-token decode. Keys and values are read in the
// cache's storage type (f32, fp16 or q8_0 blocks) and widened in registers, exactly.
//
// MosaicML semantics: key j is visible to the query at position p when j <= p and j is not
// padding; scores are q·k·scale + slope·(j - p) (ALiBi; MosaicML's bias differs by a per-row
// constant, which softmax ignores); a row that sees no key at all (a left-pad position) gets a
// uniform softmax over all nKeys keys, as finfo.min scores give in MosaicML's code.
import { exp_nonpos_f32, exp_nonpos_f32x4, hmax_f32, hsum_f32 } from './math';
import { f16_to_f32, f32_to_f16 } from './half';

const BK = 32;

// KV storage modes (see layout.ts kvGeometry): rows of f32, of fp16, or of ggml q8_0 blocks
// (fp16 scale + 32 int8 quants, 34 bytes). The kernels read each mode widened to f32 in
// registers; every stored value widens exactly (q·d is exact in f32: 8-bit q, 11-bit d).
const KV_F32 = 0, KV_F16 = 1, KV_Q8 = 2;

/**
 * fp16 bits, sign-extended into i32 lanes, → f32x4, exactly (subnormals included; ±Inf and NaN
 * are not expected in a KV cache and come out as finite values): shifted left by 13 the lane
 * holds the sign at bit 31 (the extension) and exponent + mantissa at bits 27..13, an f32
 * whose value times 2^112 is the fp16 value.
 */
// @ts-ignore: decorator
@inline function f16s_to_f32x4(x: v128): v128 {
  return f32x4.mul(v128.and(i32x4.shl(x, 13), i32x4.splat(0x8fffe000)), f32x4.splat(5.192296858534828e33));
}

/** The scale of the q8_0 block at blk, in all four lanes. */
// @ts-ignore: decorator
@inline function q8_scale(blk: usize): v128 {
  return f16s_to_f32x4(i32x4.extend_low_i16x8_s(v128.load16_splat(blk)));
}

/**
 * Values e..e+3 of a stored row widened to f32. A q8_0 row starts e0 values into its first
 * block (a head that begins inside a block shared with the previous head); sc is the scale of
 * the block holding value e (q8_scale; the caller tracks it). e0 + e is a multiple of 4
 * whenever head_dim is, so the four values then lie in one block.
 */
// @ts-ignore: decorator
@inline function load4(mode: i32, row: usize, e0: i32, e: i32, sc: v128): v128 {
  if (mode == KV_F32) return v128.load(row + (<usize>e << 2));
  if (mode == KV_F16) return f16s_to_f32x4(v128.load16x4_s(row + (<usize>e << 1)));
  const i = e0 + e;
  const w = i & 31;
  if (w <= 28) {
    const q = v128.load32_zero(row + <usize>(i >> 5) * 34 + 2 + <usize>w);
    return f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(i16x8.extend_low_i8x16_s(q))), sc);
  }
  let r = f32x4.splat(load1(mode, row, e0, e));
  r = f32x4.replace_lane(r, 1, load1(mode, row, e0, e + 1));
  r = f32x4.replace_lane(r, 2, load1(mode, row, e0, e + 2));
  return f32x4.replace_lane(r, 3, load1(mode, row, e0, e + 3));
}

/** Value e of a stored row widened to f32. */
// @ts-ignore: decorator
@inline function load1(mode: i32, row: usize, e0: i32, e: i32): f32 {
  if (mode == KV_F32) return load<f32>(row + (<usize>e << 2));
  if (mode == KV_F16) return f16_to_f32(load<u16>(row + (<usize>e << 1)));
  const i = e0 + e;
  const blk = row + <usize>(i >> 5) * 34;
  return <f32>load<i8>(blk + 2 + <usize>(i & 31)) * f16_to_f32(load<u16>(blk));
}

/** Four int32 quants → f32 times the block scale sc (exact). */
// @ts-ignore: decorator
@inline function q8_widen(q: v128, sc: v128): v128 {
  return f32x4.mul(f32x4.convert_i32x4_s(q), sc);
}

// acc rows a0..a3 at o += p_r · vv
// @ts-ignore: decorator
@inline function pv4(a0: usize, a1: usize, a2: usize, a3: usize, o: usize, vp0: v128, vp1: v128, vp2: v128, vp3: v128, vv: v128): void {
  v128.store(a0 + o, f32x4.add(v128.load(a0 + o), f32x4.mul(vp0, vv)));
  v128.store(a1 + o, f32x4.add(v128.load(a1 + o), f32x4.mul(vp1, vv)));
  v128.store(a2 + o, f32x4.add(v128.load(a2 + o), f32x4.mul(vp2, vv)));
  v128.store(a3 + o, f32x4.add(v128.load(a3 + o), f32x4.mul(vp3, vv)));
}

// a + x[o..o+3]·kv
// @ts-ignore: decorator
@inline function fma4(a: v128, x: usize, o: usize, kv: v128): v128 {
  return f32x4.add(a, f32x4.mul(v128.load(x + o), kv));
}

// @ts-ignore: decorator
@inline function dot4(mode: i32, q0: usize, q1: usize, q2: usize, q3: usize, k: usize, e0: i32, hd: i32, out: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const h4 = hd & ~3;
  let e = 0;
  if (mode == KV_Q8 && e0 == 0 && (hd & 31) == 0) {
    // whole blocks: the scale once per block, 16 quants per load (same sums in the same order)
    for (; e < hd; e += 32) {
      const blk = k + <usize>(e >> 5) * 34;
      const sc = q8_scale(blk);
      for (let hh = 0; hh < 32; hh += 16) {
        const raw = v128.load(blk + 2 + <usize>hh);
        const lo = i16x8.extend_low_i8x16_s(raw), hi = i16x8.extend_high_i8x16_s(raw);
        const o = <usize>(e + hh) << 2;
        let kv = q8_widen(i32x4.extend_low_i16x8_s(lo), sc);
        a0 = fma4(a0, q0, o, kv); a1 = fma4(a1, q1, o, kv); a2 = fma4(a2, q2, o, kv); a3 = fma4(a3, q3, o, kv);
        kv = q8_widen(i32x4.extend_high_i16x8_s(lo), sc);
        a0 = fma4(a0, q0, o + 16, kv); a1 = fma4(a1, q1, o + 16, kv); a2 = fma4(a2, q2, o + 16, kv); a3 = fma4(a3, q3, o + 16, kv);
        kv = q8_widen(i32x4.extend_low_i16x8_s(hi), sc);
        a0 = fma4(a0, q0, o + 32, kv); a1 = fma4(a1, q1, o + 32, kv); a2 = fma4(a2, q2, o + 32, kv); a3 = fma4(a3, q3, o + 32, kv);
        kv = q8_widen(i32x4.extend_high_i16x8_s(hi), sc);
        a0 = fma4(a0, q0, o + 48, kv); a1 = fma4(a1, q1, o + 48, kv); a2 = fma4(a2, q2, o + 48, kv); a3 = fma4(a3, q3, o + 48, kv);
      }
    }
  }
  let sc = f32x4.splat(0), blk = -1;
  for (; e < h4; e += 4) {
    const o = <usize>e << 2;
    if (mode == KV_Q8 && (e0 + e) >> 5 != blk) { blk = (e0 + e) >> 5; sc = q8_scale(k + <usize>blk * 34); }
    const kv = load4(mode, k, e0, e, sc);
    a0 = f32x4.add(a0, f32x4.mul(v128.load(q0 + o), kv));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(q1 + o), kv));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(q2 + o), kv));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(q3 + o), kv));
  }
  let s0 = hsum_f32(a0), s1 = hsum_f32(a1), s2 = hsum_f32(a2), s3 = hsum_f32(a3);
  for (; e < hd; e++) {
    const o = <usize>e << 2;
    const kv = load1(mode, k, e0, e);
    s0 += load<f32>(q0 + o) * kv; s1 += load<f32>(q1 + o) * kv;
    s2 += load<f32>(q2 + o) * kv; s3 += load<f32>(q3 + o) * kv;
  }
  store<f32>(out, s0); store<f32>(out + BK * 4, s1); store<f32>(out + BK * 8, s2); store<f32>(out + BK * 12, s3);
}

// O[0..hd) *= c
// @ts-ignore: decorator
@inline function scale_row(o: usize, hd: i32, c: f32): void {
  const vc = f32x4.splat(c);
  const h4 = hd & ~3;
  let e = 0;
  for (; e < h4; e += 4) v128.store(o + (<usize>e << 2), f32x4.mul(v128.load(o + (<usize>e << 2)), vc));
  for (; e < hd; e++) store<f32>(o + (<usize>e << 2), load<f32>(o + (<usize>e << 2)) * c);
}

/**
 * One tile of R <= 4 query rows (positions pos0 .. pos0+R-1), K and V stored as `mode`, key j's
 * row at K + j·sk (bytes), e0 as in load4.
 * S: scratch of 4·BK + 4·hd f32 (scores, then output accumulators).
 */
// @ts-ignore: decorator
@inline function tile(mode: i32, Q: usize, sq: usize, R: i32, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, so: usize, S: usize): void {
  const acc = S + BK * 16; // 4 rows × hd
  memory.fill(acc, 0, <usize>hd << 4);
  let m0: f32 = -Infinity, m1: f32 = -Infinity, m2: f32 = -Infinity, m3: f32 = -Infinity;
  let l0: f32 = 0, l1: f32 = 0, l2: f32 = 0, l3: f32 = 0;
  // Rows past R alias row 0: computed and ignored, so the loops need no bounds per row.
  const q0 = Q, q1 = R > 1 ? Q + sq : Q, q2 = R > 2 ? Q + 2 * sq : Q, q3 = R > 3 ? Q + 3 * sq : Q;
  const jEnd = min(nKeys, pos0 + R);
  const hb = <usize>hd << 2;
  for (let j0 = 0; j0 < jEnd; j0 += BK) {
    const jn = min(BK, jEnd - j0);
    // scores
    for (let jj = 0; jj < jn; jj++) {
      const j = j0 + jj;
      const out = S + (<usize>jj << 2);
      if (!load<u8>(valid + j)) {
        store<f32>(out, -Infinity); store<f32>(out, -Infinity, BK * 4);
        store<f32>(out, -Infinity, BK * 8); store<f32>(out, -Infinity, BK * 12);
        continue;
      }
      dot4(mode, q0, q1, q2, q3, K + <usize>j * sk, e0, hd, out);
      for (let r = 0; r < 4; r++) {
        const p = out + (<usize>r * BK << 2);
        const pos = pos0 + r;
        store<f32>(p, j > pos ? -Infinity : load<f32>(p) * scale + slope * <f32>(j - pos));
      }
    }
    for (let r = 0; r < 4; r++) {
      const p = S + (<usize>r * BK << 2);
      for (let jj = jn; jj < BK; jj++) store<f32>(p + (<usize>jj << 2), -Infinity);
    }
    // online softmax, row by row: scores become unnormalised probabilities; rows with nothing
    // visible in this tile (and the alias rows past R) get zeros
    for (let r = 0; r < 4; r++) {
      const p = S + (<usize>r * BK << 2);
      let mt: f32 = -Infinity;
      if (r < R) {
        let mx = v128.load(p);
        for (let jj = 4; jj < BK; jj += 4) mx = f32x4.max(mx, v128.load(p + (<usize>jj << 2)));
        mt = hmax_f32(mx);
      }
      if (mt == -Infinity) {
        memory.fill(p, 0, BK * 4);
        continue;
      }
      const mOld = r == 0 ? m0 : r == 1 ? m1 : r == 2 ? m2 : m3;
      const mNew = max(mOld, mt);
      const vm = f32x4.splat(mNew);
      let sum = f32x4.splat(0);
      for (let jj = 0; jj < BK; jj += 4) {
        // s - m <= 0 (m is the row's maximum so far; NaN if a score is): exp_f32x4's bits in
        // fewer instructions; exp(-Inf - m) is exactly 0 (0 below the range)
        const e = exp_nonpos_f32x4(f32x4.sub(v128.load(p + (<usize>jj << 2)), vm));
        v128.store(p + (<usize>jj << 2), e);
        sum = f32x4.add(sum, e);
      }
      const corr: f32 = mOld == -Infinity ? 0 : exp_nonpos_f32(mOld - mNew);
      const ts = hsum_f32(sum);
      if (corr != 1) scale_row(acc + <usize>r * hb, hd, corr);
      if (r == 0) { l0 = l0 * corr + ts; m0 = mNew; }
      else if (r == 1) { l1 = l1 * corr + ts; m1 = mNew; }
      else if (r == 2) { l2 = l2 * corr + ts; m2 = mNew; }
      else { l3 = l3 * corr + ts; m3 = mNew; }
    }
    // acc += P·V
    const a0 = acc, a1 = acc + hb, a2 = acc + 2 * hb, a3 = acc + 3 * hb;
    const h4 = hd & ~3;
    for (let jj = 0; jj < jn; jj++) {
      const p = S + (<usize>jj << 2);
      const p0 = load<f32>(p), p1 = load<f32>(p, BK * 4), p2 = load<f32>(p, BK * 8), p3 = load<f32>(p, BK * 12);
      if (p0 == 0 && p1 == 0 && p2 == 0 && p3 == 0) continue;
      const v = V + <usize>(j0 + jj) * sk;
      const vp0 = f32x4.splat(p0), vp1 = f32x4.splat(p1), vp2 = f32x4.splat(p2), vp3 = f32x4.splat(p3);
      let e = 0;
      if (mode == KV_Q8 && e0 == 0 && (hd & 31) == 0) {
        for (; e < hd; e += 32) {
          const blk = v + <usize>(e >> 5) * 34;
          const sc = q8_scale(blk);
          for (let hh = 0; hh < 32; hh += 16) {
            const raw = v128.load(blk + 2 + <usize>hh);
            const lo = i16x8.extend_low_i8x16_s(raw), hi = i16x8.extend_high_i8x16_s(raw);
            const o = <usize>(e + hh) << 2;
            pv4(a0, a1, a2, a3, o, vp0, vp1, vp2, vp3, q8_widen(i32x4.extend_low_i16x8_s(lo), sc));
            pv4(a0, a1, a2, a3, o + 16, vp0, vp1, vp2, vp3, q8_widen(i32x4.extend_high_i16x8_s(lo), sc));
            pv4(a0, a1, a2, a3, o + 32, vp0, vp1, vp2, vp3, q8_widen(i32x4.extend_low_i16x8_s(hi), sc));
            pv4(a0, a1, a2, a3, o + 48, vp0, vp1, vp2, vp3, q8_widen(i32x4.extend_high_i16x8_s(hi), sc));
          }
        }
      }
      let sc = f32x4.splat(0), blk = -1;
      for (; e < h4; e += 4) {
        const o = <usize>e << 2;
        if (mode == KV_Q8 && (e0 + e) >> 5 != blk) { blk = (e0 + e) >> 5; sc = q8_scale(v + <usize>blk * 34); }
        const vv = load4(mode, v, e0, e, sc);
        v128.store(a0 + o, f32x4.add(v128.load(a0 + o), f32x4.mul(vp0, vv)));
        v128.store(a1 + o, f32x4.add(v128.load(a1 + o), f32x4.mul(vp1, vv)));
        v128.store(a2 + o, f32x4.add(v128.load(a2 + o), f32x4.mul(vp2, vv)));
        v128.store(a3 + o, f32x4.add(v128.load(a3 + o), f32x4.mul(vp3, vv)));
      }
      for (; e < hd; e++) {
        const o = <usize>e << 2;
        const vv = load1(mode, v, e0, e);
        store<f32>(a0 + o, load<f32>(a0 + o) + p0 * vv);
        store<f32>(a1 + o, load<f32>(a1 + o) + p1 * vv);
        store<f32>(a2 + o, load<f32>(a2 + o) + p2 * vv);
        store<f32>(a3 + o, load<f32>(a3 + o) + p3 * vv);
      }
    }
  }
  for (let r = 0; r < R; r++) {
    finish_row(mode, acc + <usize>r * hb, r == 0 ? l0 : r == 1 ? l1 : r == 2 ? l2 : l3, O + <usize>r * so, V, sk, e0, nKeys, hd);
  }
}

/**
 * Output row o = the accumulated a / l; a row that saw no key (l = 0, a left-pad position) gets
 * the uniform average of all nKeys values, as MosaicML's finfo.min scores give.
 */
// @ts-ignore: decorator
@inline function finish_row(mode: i32, a: usize, l: f32, o: usize, V: usize, sk: usize, e0: i32, nKeys: i32, hd: i32): void {
  if (l > 0) {
    const inv = <f32>1 / l;
    for (let e = 0; e < hd; e++) store<f32>(o + (<usize>e << 2), load<f32>(a + (<usize>e << 2)) * inv);
  } else {
    for (let e = 0; e < hd; e++) {
      let s: f32 = 0;
      for (let j = 0; j < nKeys; j++) s += load1(mode, V + <usize>j * sk, e0, e);
      store<f32>(o + (<usize>e << 2), s / <f32>nKeys);
    }
  }
}

/**
 * q·k of one query row against two keys (k1 may repeat k0), each summed exactly as dot4 sums its
 * row 0 (one accumulator over e in steps of 4, its lanes, then the scalar tail): two independent
 * chains hide the add latency that bounds a single one.
 */
// @ts-ignore: decorator
@inline function dot1x2(mode: i32, q: usize, k0: usize, k1: usize, e0: i32, hd: i32, out: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  const h4 = hd & ~3;
  let e = 0;
  if (mode == KV_Q8 && e0 == 0 && (hd & 31) == 0) {
    // whole blocks: the scale once per block, 16 quants per load (the same values, same order)
    for (; e < hd; e += 32) {
      const b0 = k0 + <usize>(e >> 5) * 34, b1 = k1 + <usize>(e >> 5) * 34;
      const s0 = q8_scale(b0), s1 = q8_scale(b1);
      for (let hh = 0; hh < 32; hh += 16) {
        const r0 = v128.load(b0 + 2 + <usize>hh), r1 = v128.load(b1 + 2 + <usize>hh);
        const lo0 = i16x8.extend_low_i8x16_s(r0), hi0 = i16x8.extend_high_i8x16_s(r0);
        const lo1 = i16x8.extend_low_i8x16_s(r1), hi1 = i16x8.extend_high_i8x16_s(r1);
        const o = q + (<usize>(e + hh) << 2);
        let x = v128.load(o);
        a0 = f32x4.add(a0, f32x4.mul(x, q8_widen(i32x4.extend_low_i16x8_s(lo0), s0)));
        a1 = f32x4.add(a1, f32x4.mul(x, q8_widen(i32x4.extend_low_i16x8_s(lo1), s1)));
        x = v128.load(o, 16);
        a0 = f32x4.add(a0, f32x4.mul(x, q8_widen(i32x4.extend_high_i16x8_s(lo0), s0)));
        a1 = f32x4.add(a1, f32x4.mul(x, q8_widen(i32x4.extend_high_i16x8_s(lo1), s1)));
        x = v128.load(o, 32);
        a0 = f32x4.add(a0, f32x4.mul(x, q8_widen(i32x4.extend_low_i16x8_s(hi0), s0)));
        a1 = f32x4.add(a1, f32x4.mul(x, q8_widen(i32x4.extend_low_i16x8_s(hi1), s1)));
        x = v128.load(o, 48);
        a0 = f32x4.add(a0, f32x4.mul(x, q8_widen(i32x4.extend_high_i16x8_s(hi0), s0)));
        a1 = f32x4.add(a1, f32x4.mul(x, q8_widen(i32x4.extend_high_i16x8_s(hi1), s1)));
      }
    }
  }
  let sc0 = f32x4.splat(0), sc1 = f32x4.splat(0), blk = -1;
  for (; e < h4; e += 4) {
    const o = <usize>e << 2;
    if (mode == KV_Q8 && (e0 + e) >> 5 != blk) {
      blk = (e0 + e) >> 5;
      sc0 = q8_scale(k0 + <usize>blk * 34); sc1 = q8_scale(k1 + <usize>blk * 34);
    }
    const x = v128.load(q + o);
    a0 = f32x4.add(a0, f32x4.mul(x, load4(mode, k0, e0, e, sc0)));
    a1 = f32x4.add(a1, f32x4.mul(x, load4(mode, k1, e0, e, sc1)));
  }
  let s0 = hsum_f32(a0), s1 = hsum_f32(a1);
  for (let e = h4; e < hd; e++) {
    const x = load<f32>(q + (<usize>e << 2));
    s0 += x * load1(mode, k0, e0, e); s1 += x * load1(mode, k1, e0, e);
  }
  store<f32>(out, s0); store<f32>(out, s1, 4);
}

/**
 * The tile for a single query row (decode): the 4-row tile computes three alias rows it then
 * ignores, 4x the work. Same arithmetic for the row as `tile` gives it, so the same bits: scores
 * as dot4's row 0, the same online softmax, and every output element accumulates p·v over the
 * keys in order (here 16 elements at a time in registers, across the keys of a tile).
 */
// @ts-ignore: decorator
@inline function tile1(mode: i32, Q: usize, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, S: usize): void {
  const acc = S + BK * 16;
  memory.fill(acc, 0, <usize>hd << 2);
  let m0: f32 = -Infinity, l0: f32 = 0;
  const jEnd = min(nKeys, pos0 + 1);
  const h4 = hd & ~3, h16 = hd & ~15;
  for (let j0 = 0; j0 < jEnd; j0 += BK) {
    const jn = min(BK, jEnd - j0);
    for (let jj = 0; jj < jn; jj += 2) {
      const j = j0 + jj, j1 = jj + 1 < jn ? j + 1 : j;
      const out = S + (<usize>jj << 2);
      dot1x2(mode, Q, K + <usize>j * sk, K + <usize>j1 * sk, e0, hd, out);
      store<f32>(out, !load<u8>(valid + j) || j > pos0 ? -Infinity : load<f32>(out) * scale + slope * <f32>(j - pos0));
      if (jj + 1 < jn) store<f32>(out, !load<u8>(valid + j1) || j1 > pos0 ? -Infinity : load<f32>(out, 4) * scale + slope * <f32>(j1 - pos0), 4);
    }
    for (let jj = jn; jj < BK; jj++) store<f32>(S + (<usize>jj << 2), -Infinity);
    let mx = v128.load(S);
    for (let jj = 4; jj < BK; jj += 4) mx = f32x4.max(mx, v128.load(S + (<usize>jj << 2)));
    const mt = hmax_f32(mx);
    if (mt == -Infinity) continue; // nothing visible in this tile: p = 0 for all its keys
    const mNew = max(m0, mt);
    const vm = f32x4.splat(mNew);
    let sum = f32x4.splat(0);
    for (let jj = 0; jj < BK; jj += 4) {
      const e = exp_nonpos_f32x4(f32x4.sub(v128.load(S + (<usize>jj << 2)), vm)); // as in tile
      v128.store(S + (<usize>jj << 2), e);
      sum = f32x4.add(sum, e);
    }
    const corr: f32 = m0 == -Infinity ? 0 : exp_nonpos_f32(m0 - mNew);
    const ts = hsum_f32(sum);
    if (corr != 1) scale_row(acc, hd, corr);
    l0 = l0 * corr + ts; m0 = mNew;
    // acc += P·V, 16 output elements at a time held in registers over the tile's keys
    for (let e = 0; e < h16; e += 16) {
      const o = <usize>e << 2;
      let c0 = v128.load(acc + o), c1 = v128.load(acc + o, 16), c2 = v128.load(acc + o, 32), c3 = v128.load(acc + o, 48);
      for (let jj = 0; jj < jn; jj++) {
        const p = load<f32>(S + (<usize>jj << 2));
        if (p == 0) continue;
        const vp = f32x4.splat(p);
        const v = V + <usize>(j0 + jj) * sk;
        if (mode == KV_Q8 && e0 == 0 && (hd & 31) == 0) {
          // 16 values inside one block: its scale once, its quants in one load (same values)
          const b = v + <usize>(e >> 5) * 34;
          const sc = q8_scale(b);
          const raw = v128.load(b + 2 + <usize>(e & 31));
          const lo = i16x8.extend_low_i8x16_s(raw), hi = i16x8.extend_high_i8x16_s(raw);
          c0 = f32x4.add(c0, f32x4.mul(vp, q8_widen(i32x4.extend_low_i16x8_s(lo), sc)));
          c1 = f32x4.add(c1, f32x4.mul(vp, q8_widen(i32x4.extend_high_i16x8_s(lo), sc)));
          c2 = f32x4.add(c2, f32x4.mul(vp, q8_widen(i32x4.extend_low_i16x8_s(hi), sc)));
          c3 = f32x4.add(c3, f32x4.mul(vp, q8_widen(i32x4.extend_high_i16x8_s(hi), sc)));
        } else if (mode == KV_Q8) {
          c0 = f32x4.add(c0, f32x4.mul(vp, load4(mode, v, e0, e, q8_scale(v + <usize>((e0 + e) >> 5) * 34))));
          c1 = f32x4.add(c1, f32x4.mul(vp, load4(mode, v, e0, e + 4, q8_scale(v + <usize>((e0 + e + 4) >> 5) * 34))));
          c2 = f32x4.add(c2, f32x4.mul(vp, load4(mode, v, e0, e + 8, q8_scale(v + <usize>((e0 + e + 8) >> 5) * 34))));
          c3 = f32x4.add(c3, f32x4.mul(vp, load4(mode, v, e0, e + 12, q8_scale(v + <usize>((e0 + e + 12) >> 5) * 34))));
        } else {
          const z = f32x4.splat(0);
          c0 = f32x4.add(c0, f32x4.mul(vp, load4(mode, v, e0, e, z)));
          c1 = f32x4.add(c1, f32x4.mul(vp, load4(mode, v, e0, e + 4, z)));
          c2 = f32x4.add(c2, f32x4.mul(vp, load4(mode, v, e0, e + 8, z)));
          c3 = f32x4.add(c3, f32x4.mul(vp, load4(mode, v, e0, e + 12, z)));
        }
      }
      v128.store(acc + o, c0); v128.store(acc + o, c1, 16); v128.store(acc + o, c2, 32); v128.store(acc + o, c3, 48);
    }
    for (let jj = 0; jj < jn; jj++) {
      const p = load<f32>(S + (<usize>jj << 2));
      if (p == 0) continue;
      const v = V + <usize>(j0 + jj) * sk;
      const vp = f32x4.splat(p);
      let e = h16;
      for (; e < h4; e += 4) {
        const o = <usize>e << 2;
        const sc = mode == KV_Q8 ? q8_scale(v + <usize>((e0 + e) >> 5) * 34) : f32x4.splat(0);
        v128.store(acc + o, f32x4.add(v128.load(acc + o), f32x4.mul(vp, load4(mode, v, e0, e, sc))));
      }
      for (; e < hd; e++) {
        const o = <usize>e << 2;
        store<f32>(acc + o, load<f32>(acc + o) + p * load1(mode, v, e0, e));
      }
    }
  }
  finish_row(mode, acc, l0, O, V, sk, e0, nKeys, hd);
}
function tile1_f32(Q: usize, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, S: usize): void {
  tile1(KV_F32, Q, pos0, K, V, sk, e0, valid, nKeys, hd, scale, slope, O, S);
}
function tile1_f16(Q: usize, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, S: usize): void {
  tile1(KV_F16, Q, pos0, K, V, sk, e0, valid, nKeys, hd, scale, slope, O, S);
}
function tile1_q8(Q: usize, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, S: usize): void {
  tile1(KV_Q8, Q, pos0, K, V, sk, e0, valid, nKeys, hd, scale, slope, O, S);
}

// One specialised copy of the tile per storage mode (the mode folds away inside each).
function tile_f32(Q: usize, sq: usize, R: i32, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, so: usize, S: usize): void {
  tile(KV_F32, Q, sq, R, pos0, K, V, sk, e0, valid, nKeys, hd, scale, slope, O, so, S);
}
function tile_f16(Q: usize, sq: usize, R: i32, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, so: usize, S: usize): void {
  tile(KV_F16, Q, sq, R, pos0, K, V, sk, e0, valid, nKeys, hd, scale, slope, O, so, S);
}
function tile_q8(Q: usize, sq: usize, R: i32, pos0: i32, K: usize, V: usize, sk: usize, e0: i32, valid: usize, nKeys: i32,
  hd: i32, scale: f32, slope: f32, O: usize, so: usize, S: usize): void {
  tile(KV_Q8, Q, sq, R, pos0, K, V, sk, e0, valid, nKeys, hd, scale, slope, O, so, S);
}

/**
 * Attention of nq consecutive query rows of one head (row i at position pos0 + i) against the
 * first nKeys cached keys/values of its K/V head, stored as `mode` (0 f32, 1 fp16, 2 q8_0).
 *   Q, ldq: query rows (f32, leading dimension in elements); K, V: the head's row of position 0
 *   (for q8_0: its first block, the head starting e0 values into it); sk: bytes from one
 *   position's row to the next; valid: one byte per position (1 = real token); O, ldo: output
 *   rows; S: per-thread scratch of (4·32 + 4·hd) f32.
 */
export function attention_kv(mode: i32, Q: usize, ldq: i32, nq: i32, pos0: i32, K: usize, V: usize, sk: i32, e0: i32, valid: usize,
  nKeys: i32, hd: i32, scale: f32, slope: f32, O: usize, ldo: i32, S: usize): void {
  const sq = <usize>ldq << 2, so = <usize>ldo << 2, skb = <usize>sk;
  for (let i = 0; i < nq; i += 4) {
    const R = min(4, nq - i), Qi = Q + <usize>i * sq, Oi = O + <usize>i * so;
    if (R == 1) {
      if (mode == KV_F16) tile1_f16(Qi, pos0 + i, K, V, skb, e0, valid, nKeys, hd, scale, slope, Oi, S);
      else if (mode == KV_Q8) tile1_q8(Qi, pos0 + i, K, V, skb, e0, valid, nKeys, hd, scale, slope, Oi, S);
      else tile1_f32(Qi, pos0 + i, K, V, skb, 0, valid, nKeys, hd, scale, slope, Oi, S);
      continue;
    }
    if (mode == KV_F16) tile_f16(Qi, sq, R, pos0 + i, K, V, skb, e0, valid, nKeys, hd, scale, slope, Oi, so, S);
    else if (mode == KV_Q8) tile_q8(Qi, sq, R, pos0 + i, K, V, skb, e0, valid, nKeys, hd, scale, slope, Oi, so, S);
    else tile_f32(Qi, sq, R, pos0 + i, K, V, skb, 0, valid, nKeys, hd, scale, slope, Oi, so, S);
  }
}

/**
 * attention_kv for f32 rows with a leading dimension ldk in elements (K, V: [position][ldk]).
 */
export function attention(Q: usize, ldq: i32, nq: i32, pos0: i32, K: usize, V: usize, ldk: i32, valid: usize,
  nKeys: i32, hd: i32, scale: f32, slope: f32, O: usize, ldo: i32, S: usize): void {
  attention_kv(KV_F32, Q, ldq, nq, pos0, K, V, ldk << 2, 0, valid, nKeys, hd, scale, slope, O, ldo, S);
}

/**
 * Rounds n values in place through a KV storage type, as the reference backend's cache does:
 * mode 1 = fp16 (nearest even); mode 2 = q8_0 blocks of 32 along the row (the last one may be
 * shorter): d = amax/127, q = round(x/d) (ties up), value = q·fp16(d), in f64 like the reference.
 * The backend stores the types themselves (store_kv); this gives the values they widen to.
 */
export function round_kv(p: usize, n: i32, mode: i32): void {
  if (mode == 1) {
    for (let i = 0; i < n; i++) {
      const o = p + (<usize>i << 2);
      store<f32>(o, f16_to_f32(f32_to_f16(load<f32>(o))));
    }
  } else if (mode == 2) {
    for (let b = 0; b < n; b += 32) {
      const e = min(b + 32, n);
      let amax: f64 = 0;
      for (let i = b; i < e; i++) amax = max(amax, Math.abs(<f64>load<f32>(p + (<usize>i << 2))));
      const d = amax / 127;
      const id = d != 0 ? 1 / d : 0;
      const dh = <f64>f16_to_f32(f32_to_f16(<f32>d));
      for (let i = b; i < e; i++) {
        const o = p + (<usize>i << 2);
        store<f32>(o, <f32>(Math.floor(<f64>load<f32>(o) * id + 0.5) * dh));
      }
    }
  }
}

/** Bytes of one stored segment of n values (see layout.ts kvGeometry). */
// @ts-ignore: decorator
@inline function seg_bytes(mode: i32, n: i32): usize {
  return mode == KV_F32 ? <usize>n << 2 : mode == KV_F16 ? <usize>n << 1 : <usize>((n + 31) >> 5) * 34;
}

/**
 * Stores one position's row of n values (f32 at src) into a cache part C laid out
 * [n / seg segments][cap positions][segment of seg values as `mode`]: f32 copied, fp16 rounded
 * to nearest even, q8_0 quantized in blocks of 32 along the segment (the last one may be
 * shorter: its unused quants are 0) exactly as round_kv rounds them.
 */
export function store_kv_row(src: usize, n: i32, seg: i32, mode: i32, C: usize, cap: i32, pos: i32): void {
  store_kv_segs(src, 0, (n + seg - 1) / seg, seg, mode, C, cap, pos);
}

/**
 * Segments [s0, s1) of the row store_kv_row stores (src: the row's start): a product's work item
 * stores the keys and values it made (executor.ts, decode passes).
 */
export function store_kv_segs(src: usize, s0: i32, s1: i32, seg: i32, mode: i32, C: usize, cap: i32, pos: i32): void {
  const sb = seg_bytes(mode, seg);
  for (let s = s0; s < s1; s++) {
    const dst = C + (<usize>s * <usize>cap + <usize>pos) * sb;
    const x = src + (<usize>(s * seg) << 2);
    if (mode == KV_F32) {
      memory.copy(dst, x, <usize>seg << 2);
    } else if (mode == KV_F16) {
      for (let i = 0; i < seg; i++) store<u16>(dst + (<usize>i << 1), <u16>f32_to_f16(load<f32>(x + (<usize>i << 2))));
    } else {
      for (let b = 0; b < seg; b += 32) {
        const e = min(b + 32, seg);
        const blk = dst + <usize>(b >> 5) * 34;
        let amax: f64 = 0;
        for (let i = b; i < e; i++) amax = max(amax, Math.abs(<f64>load<f32>(x + (<usize>i << 2))));
        const d = amax / 127;
        const id = d != 0 ? 1 / d : 0;
        store<u16>(blk, <u16>f32_to_f16(<f32>d));
        for (let i = b; i < e; i++) {
          store<i8>(blk + 2 + <usize>(i - b), <i8>Math.floor(<f64>load<f32>(x + (<usize>i << 2)) * id + 0.5));
        }
        // a short last block: unused quants 0 (as if padded with zeros), so equal rows store equal bytes
        if (e - b < 32) memory.fill(blk + 2 + <usize>(e - b), 0, <usize>(32 - (e - b)));
      }
    }
  }
}

/** Reads one position's row of n values from a cache part (layout of store_kv_row) as f32 into dst. */
export function load_kv_row(C: usize, n: i32, seg: i32, mode: i32, cap: i32, pos: i32, dst: usize): void {
  const sb = seg_bytes(mode, seg);
  for (let s = 0, o = 0; o < n; s++, o += seg) {
    const row = C + (<usize>s * <usize>cap + <usize>pos) * sb;
    const y = dst + (<usize>o << 2);
    if (mode == KV_F32) memory.copy(y, row, <usize>seg << 2);
    else if (mode == KV_F16) for (let i = 0; i < seg; i++) store<f32>(y + (<usize>i << 2), load1(KV_F16, row, 0, i));
    else for (let i = 0; i < seg; i++) store<f32>(y + (<usize>i << 2), load1(KV_Q8, row, 0, i));
  }
}

/** Writes the keys and values of one token (rows of n f32 at k and v) into a layer's K and V parts. */
export function store_kv(k: usize, v: usize, n: i32, seg: i32, mode: i32, Kc: usize, Vc: usize, cap: i32, pos: i32): void {
  store_kv_row(k, n, seg, mode, Kc, cap, pos);
  store_kv_row(v, n, seg, mode, Vc, cap, pos);
}
