// Causal attention with ALiBi, padding mask and online softmax (FlashAttention-style tiles):
// up to 4 query rows of one head at a time walk the keys in tiles of 32, keeping a running max,
// a running sum and an f32 output accumulator per row. Memory is O(tile), never T×T; the same
// code serves prefill, chunked prefill and single-token decode.
//
// MosaicML semantics: key j is visible to the query at position p when j <= p and j is not
// padding; scores are q·k·scale + slope·(j - p) (ALiBi; MosaicML's bias differs by a per-row
// constant, which softmax ignores); a row that sees no key at all (a left-pad position) gets a
// uniform softmax over all nKeys keys, as finfo.min scores give in MosaicML's code.
import { exp_f32, exp_f32x4, hmax_f32, hsum_f32 } from './math';
import { f16_to_f32, f32_to_f16 } from './half';

const BK = 32;

// @ts-ignore: decorator
@inline function dot4(q0: usize, q1: usize, q2: usize, q3: usize, k: usize, hd: i32, out: usize): void {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  const h4 = hd & ~3;
  let e = 0;
  for (; e < h4; e += 4) {
    const o = <usize>e << 2;
    const kv = v128.load(k + o);
    a0 = f32x4.add(a0, f32x4.mul(v128.load(q0 + o), kv));
    a1 = f32x4.add(a1, f32x4.mul(v128.load(q1 + o), kv));
    a2 = f32x4.add(a2, f32x4.mul(v128.load(q2 + o), kv));
    a3 = f32x4.add(a3, f32x4.mul(v128.load(q3 + o), kv));
  }
  let s0 = hsum_f32(a0), s1 = hsum_f32(a1), s2 = hsum_f32(a2), s3 = hsum_f32(a3);
  for (; e < hd; e++) {
    const o = <usize>e << 2;
    const kv = load<f32>(k + o);
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
 * One tile of R <= 4 query rows (positions pos0 .. pos0+R-1).
 * S: scratch of 4·BK + 4·hd f32 (scores, then output accumulators).
 */
function tile(Q: usize, sq: usize, R: i32, pos0: i32, K: usize, V: usize, sk: usize, valid: usize, nKeys: i32,
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
      dot4(q0, q1, q2, q3, K + <usize>j * sk, hd, out);
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
        // exp(-Inf - m) is exactly 0 (exp_f32x4 returns 0 below its range)
        const e = exp_f32x4(f32x4.sub(v128.load(p + (<usize>jj << 2)), vm));
        v128.store(p + (<usize>jj << 2), e);
        sum = f32x4.add(sum, e);
      }
      const corr: f32 = mOld == -Infinity ? 0 : exp_f32(mOld - mNew);
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
      for (; e < h4; e += 4) {
        const o = <usize>e << 2;
        const vv = v128.load(v + o);
        v128.store(a0 + o, f32x4.add(v128.load(a0 + o), f32x4.mul(vp0, vv)));
        v128.store(a1 + o, f32x4.add(v128.load(a1 + o), f32x4.mul(vp1, vv)));
        v128.store(a2 + o, f32x4.add(v128.load(a2 + o), f32x4.mul(vp2, vv)));
        v128.store(a3 + o, f32x4.add(v128.load(a3 + o), f32x4.mul(vp3, vv)));
      }
      for (; e < hd; e++) {
        const o = <usize>e << 2;
        const vv = load<f32>(v + o);
        store<f32>(a0 + o, load<f32>(a0 + o) + p0 * vv);
        store<f32>(a1 + o, load<f32>(a1 + o) + p1 * vv);
        store<f32>(a2 + o, load<f32>(a2 + o) + p2 * vv);
        store<f32>(a3 + o, load<f32>(a3 + o) + p3 * vv);
      }
    }
  }
  // normalise; rows that saw no key: uniform average of all nKeys values
  for (let r = 0; r < R; r++) {
    const l = r == 0 ? l0 : r == 1 ? l1 : r == 2 ? l2 : l3;
    const a = acc + <usize>r * hb;
    const o = O + <usize>r * so;
    if (l > 0) {
      const inv = <f32>1 / l;
      for (let e = 0; e < hd; e++) store<f32>(o + (<usize>e << 2), load<f32>(a + (<usize>e << 2)) * inv);
    } else {
      for (let e = 0; e < hd; e++) {
        let s: f32 = 0;
        for (let j = 0; j < nKeys; j++) s += load<f32>(V + <usize>j * sk + (<usize>e << 2));
        store<f32>(o + (<usize>e << 2), s / <f32>nKeys);
      }
    }
  }
}

/**
 * Attention of nq consecutive query rows of one head (row i at position pos0 + i) against the
 * first nKeys cached keys/values of its K/V head.
 *   Q, ldq: query rows (f32, leading dimension in elements); K, V: keys/values, one row of hd
 *   f32 per position (leading dimension ldk elements); valid: one byte per position (1 = real
 *   token); O, ldo: output rows; S: per-thread scratch of (4·32 + 4·hd) f32.
 */
export function attention(Q: usize, ldq: i32, nq: i32, pos0: i32, K: usize, V: usize, ldk: i32, valid: usize,
  nKeys: i32, hd: i32, scale: f32, slope: f32, O: usize, ldo: i32, S: usize): void {
  const sq = <usize>ldq << 2, so = <usize>ldo << 2, sk = <usize>ldk << 2;
  for (let i = 0; i < nq; i += 4) {
    tile(Q + <usize>i * sq, sq, min(4, nq - i), pos0 + i, K, V, sk, valid, nKeys, hd, scale, slope, O + <usize>i * so, so, S);
  }
}

/**
 * Rounds n values in place through a KV storage type, as the reference backend's cache does:
 * mode 1 = fp16 (nearest even); mode 2 = q8_0 blocks of 32 along the row (the last one may be
 * shorter): d = amax/127, q = round(x/d) (ties up), value = q·fp16(d), in f64 like the reference.
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

/**
 * Writes the keys and values of one token into a cache laid out [kvHeads][capacity][hd] f32:
 * K[g][pos] = k[g·hd ..], V[g][pos] = v[g·hd ..].
 */
export function store_kv(k: usize, v: usize, kvH: i32, hd: i32, Kc: usize, Vc: usize, cap: i32, pos: i32): void {
  const hb = <usize>hd << 2;
  for (let g = 0; g < kvH; g++) {
    const off = (<usize>g * <usize>cap + <usize>pos) * hb;
    memory.copy(Kc + off, k + <usize>g * hb, hb);
    memory.copy(Vc + off, v + <usize>g * hb, hb);
  }
}
