// q6_Kx4: q6_K weight rows interleaved by 4 (repack_q6_kx4 below; repack.ts for the host), times
// q8_K activations (gemm-k.ts quantize_act_q8k). Per group of 4 rows and 256-value super-block, 840
// bytes (4 × 210: repacked in place, no second copy):
//   0-767   16 triples, sub-block j (values 16j..16j+15 of each row, scale j) at 48j: vectors V0, V1,
//           V2 (+0, +16, +32), byte 4r + e of V_i (row r in i32 lane r) = q(r, 16j + 4i + e) |
//           ((q(r, 16j + 12 + e) >> 2i) & 3) << 6, q the 6-bit quant (0..63);
//   768-831 the scales, byte 768 + 8p + 2r + s = scale 2p + s of row r (i8);
//   832-839 row r's fp16 d at 832 + 2r.
// Each byte's low 6 bits are a whole quant, so chunks 0-2 of a sub-block are one mask each and chunk
// 3 is gathered from the three bytes' top bits (3 masks, 3 shifts, 2 ors: the i16 shifts move bits
// 6-7 of both bytes of a lane without crossing, once masked): 11 operations for 4 weight vectors,
// where ggml's split into 4-bit ql and 2-bit qh costs 17 (a nibble split and a shifted, masked or for
// each). Lanes are rows, as in the q4_Kx4 tiles (gemm-k-x4.ts): a 4-byte activation broadcast serves
// 4 rows, and the 4 rows' scales of a sub-block are one pmaddwd operand (row r's at i16 lanes 2r,
// 2r + 1) with no folds or horizontal sums. Two products' pair sums reach 2·2·63·127 = 32004, so a
// sub-block's four products take two pmaddwd.
//
// A row's value is gemm_k's on the plain matrix, bit for bit: the same exact integers Σ_j sc_j·(Σ q·x
// − 32·bsums16_j), then (d·d_x)·sumi in f32 (d through gemm_k's fp16 table), summed over super-blocks
// in four chains (blocks mod 4), joined ((0 + 2) + (1 + 3)), then the leftovers in order.
import { C_NIBBLE_MASK, f16_at } from './tables';
import { OFF_B16, OFF_D, Q8K_BYTES, dequant_row_k, gather4, gemm_k, udot16 } from './gemm-k';
import { chunk_of, prompt_rows_q6x4 } from './gemm-k-prompt';
import { put_lanes } from './gemm-k-x4';

/** Bytes of one plain q6_K super-block (block_q6_K) and of one q6_Kx4 group super-block. */
const Q6K_BYTES: usize = 210, X6_BYTES: usize = 840;
/** gemm_k's type id of q6_K. */
const KIND_Q6K = 7;

/**
 * A sub-block's running sum, written after each pair of sub-blocks: a global is memory to V8, so
 * TurboFan keeps the next loads after the store (issued first, a super-block's loads spill).
 */
let k6x_stage: v128 = i32x4.splat(0);

/**
 * Chunk 3 of a triple from its vectors' top bits t0, t1, t2 (each vector and 0xC0 bytes): (t &
 * 0xC0C0) >> s moves bits 6-7 of both bytes of an i16 lane to 6 - s, 7 - s, so nothing crosses.
 */
// @ts-ignore: decorator
@inline export function chunk3(t0: v128, t1: v128, t2: v128): v128 {
  return v128.or(v128.or(i16x8.shr_u(t0, 6), i16x8.shr_u(t1, 4)), i16x8.shr_u(t2, 2));
}

/**
 * Sub-block j of a group super-block (its triple at q) × its 16 activations at xq; lanes = rows:
 * scale·Σ q·x, sc the 4 rows' scales (row r's at i16 lanes 2r, 2r + 1).
 */
// @ts-ignore: decorator
@inline function sub6(q: usize, xq: usize, sc: v128, hi: v128): v128 {
  const v0 = v128.load(q), v1 = v128.load(q, 16), v2 = v128.load(q, 32);
  // chunks 0-2 are the vectors less their top bits (an xor: V8's andnot is a copy and vandnps)
  const t0 = v128.and(v0, hi), t1 = v128.and(v1, hi), t2 = v128.and(v2, hi);
  const p01 = i16x8.add(udot16(v128.xor(v0, t0), v128.load32_splat(xq)), udot16(v128.xor(v1, t1), v128.load32_splat(xq, 4)));
  const p23 = i16x8.add(udot16(v128.xor(v2, t2), v128.load32_splat(xq, 8)), udot16(chunk3(t0, t1, t2), v128.load32_splat(xq, 12)));
  return i32x4.add(i32x4.dot_i16x8_s(p01, sc), i32x4.dot_i16x8_s(p23, sc));
}

/**
 * Pair p's scales as two pmaddwd operands, from t = its 8 bytes sign-extended (load8x8_s at w + 768 +
 * 8p: row r's scales 2p, 2p + 1 at i16 lanes 2r, 2r + 1, the -32 term's form): scale 2p (second:
 * 2p + 1) of row r at lanes 2r and 2r + 1. V8 emits a pshuflw and a pshufhw (a byte shuffle's mask
 * is a constant built anew each time: 4 more instructions).
 */
// @ts-ignore: decorator
@inline export function pair_scales6(t: v128, second: bool): v128 {
  return second ? v128.shuffle<u16>(t, t, 1, 1, 3, 3, 5, 5, 7, 7) : v128.shuffle<u16>(t, t, 0, 0, 2, 2, 4, 4, 6, 6);
}

/** Sub-blocks 2p, 2p + 1 of the group super-block at w × the activations at x, added to s (first: s is zero). */
// @ts-ignore: decorator
@inline function pair6(w: usize, x: usize, p: i32, s: v128, first: bool, hi: v128): v128 {
  const t = v128.load8x8_s(w + 768 + 8 * <usize>p);
  const q = w + 96 * <usize>p, xq = x + 32 * <usize>p;
  const a = sub6(q, xq, pair_scales6(t, false), hi);
  k6x_stage = a;
  const r = i32x4.add(a, sub6(q + 48, xq + 16, pair_scales6(t, true), hi));
  const v = first ? r : i32x4.add(s, r);
  k6x_stage = v;
  return v;
}

/**
 * Σ_j sc_j·bsums16_j of the q8_K record at x for the 4 rows of the group super-block at w (lanes =
 * rows): the pair bytes sign-extended are (row r: scales 2p, 2p + 1) in i16 lanes 2r, 2r + 1, against
 * the broadcast pair (bsums16 2p, 2p + 1). Also the prompt tile's -32 term.
 */
// @ts-ignore: decorator
@inline export function corr_x6(w: usize, x: usize): v128 {
  const b0 = i16x8.narrow_i32x4_s(v128.load(x + OFF_B16), v128.load(x + OFF_B16, 16));
  const b1 = i16x8.narrow_i32x4_s(v128.load(x + OFF_B16, 32), v128.load(x + OFF_B16, 48));
  const s = w + 768;
  return i32x4.add(
    i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(s), v128.shuffle<u32>(b0, b0, 0, 0, 0, 0)), i32x4.dot_i16x8_s(v128.load8x8_s(s + 8), v128.shuffle<u32>(b0, b0, 1, 1, 1, 1))),
      i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(s + 16), v128.shuffle<u32>(b0, b0, 2, 2, 2, 2)), i32x4.dot_i16x8_s(v128.load8x8_s(s + 24), v128.shuffle<u32>(b0, b0, 3, 3, 3, 3)))),
    i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(s + 32), v128.shuffle<u32>(b1, b1, 0, 0, 0, 0)), i32x4.dot_i16x8_s(v128.load8x8_s(s + 40), v128.shuffle<u32>(b1, b1, 1, 1, 1, 1))),
      i32x4.add(i32x4.dot_i16x8_s(v128.load8x8_s(s + 48), v128.shuffle<u32>(b1, b1, 2, 2, 2, 2)), i32x4.dot_i16x8_s(v128.load8x8_s(s + 56), v128.shuffle<u32>(b1, b1, 3, 3, 3, 3)))));
}

/**
 * One q6_Kx4 group super-block at w × the q8_K record at x; lanes = the 4 rows, each four6's value
 * for that row: (d·d_x)·(Σ_j sc_j·Σ q·x − 32·Σ_j sc_j·bsums16_j).
 */
// @ts-ignore: decorator
@inline function sb_q6kx4(w: usize, x: usize, hi: v128): v128 {
  let s = pair6(w, x, 0, i32x4.splat(0), true, hi);
  s = pair6(w, x, 1, s, false, hi);
  s = pair6(w, x, 2, s, false, hi);
  s = pair6(w, x, 3, s, false, hi);
  s = pair6(w, x, 4, s, false, hi);
  s = pair6(w, x, 5, s, false, hi);
  s = pair6(w, x, 6, s, false, hi);
  s = pair6(w, x, 7, s, false, hi);
  const sumi = i32x4.sub(s, i32x4.shl(corr_x6(w, x), 5));
  return f32x4.mul(f32x4.mul(gather4(w + 832, 2, true), v128.load32_splat(x + OFF_D)), f32x4.convert_i32x4_s(sumi));
}

/**
 * The 4 rows of the q6_Kx4 group at w (nb super-blocks) × one activation row (records at x), lanes
 * = rows, in gemm_k's order (four chains rotated through a0..a3, joined ((0 + 2) + (1 + 3)), then
 * the leftovers); stores lanes [l0, l1) at y + lane·4.
 */
function tile1x4_q6k(w: usize, nb: i32, x: usize, y: usize, acc: i32, l0: i32, l1: i32, hi: v128): void {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const nb4 = nb & ~3;
  for (let b = 0; b < nb4; b++) {
    const v = f32x4.add(a0, sb_q6kx4(w, x, hi));
    a0 = a1; a1 = a2; a2 = a3; a3 = v;
    w += X6_BYTES; x += Q8K_BYTES;
  }
  let s = f32x4.add(f32x4.add(a0, a2), f32x4.add(a1, a3));
  for (let b = nb4; b < nb; b++) {
    s = f32x4.add(s, sb_q6kx4(w, x, hi));
    w += X6_BYTES; x += Q8K_BYTES;
  }
  put_lanes(y, s, acc, l0, l1);
}

/** 0xC0 bytes, from the nibble mask (a register-held value: a v128.const is rematerialized per use). */
// @ts-ignore: decorator
@inline function top2(): v128 {
  const m = v128.load(C_NIBBLE_MASK);
  return i8x16.shl(i8x16.shr_u(m, 2), 6);
}

/**
 * Weight rows [n0, n1) of the q6_Kx4 matrix W (N rows) × the one activation row at x into y (row n
 * at y + 4n): the groups through tile1x4_q6k (lanes cut to [n0, n1)), the plain rows after the last
 * group through gemm_k.
 */
function rows_one6(x: usize, W: usize, y: usize, N: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const nb = K >> 8;
  const grp = <usize>nb * X6_BYTES;
  const ng = N & ~3, p1 = min(n1, ng);
  const hi = top2();
  for (let n = n0; n < p1; ) {
    const gs = n & ~3;
    tile1x4_q6k(W + <usize>(gs >> 2) * grp, nb, x, y + (<usize>gs << 2), acc, n - gs, min(4, p1 - gs), hi);
    n = gs + 4;
  }
  if (n1 > ng) gemm_k(KIND_Q6K, x, W, y, 0, 1, max(n0, ng), n1, K, acc);
}

/** Activation rows from which gemm_q6_kx4 takes the prompt tile (as gemm_q4_kx4). */
const DECODE_TILE_ROWS = 4;

/**
 * q6_Kx4 weights W (N rows of K/256 super-blocks) times the q8_K activations at A (M rows): rows
 * [n0, n1) of Y [M][ldy] (acc != 0 adds into Y), each value with gemm_k's bits on the plain matrix.
 * Under DECODE_TILE_ROWS activation rows: tile1x4_q6k per activation row. More: the whole groups
 * through the q6_K prompt tile (4 weight rows × up to 16 tokens); rows of a group cut by [n0, n1)
 * and the plain rows after the last group one activation row at a time. Returns a meaningless lane
 * of k6x_stage (Binaryen removes a global nobody reads, and its stores).
 */
export function gemm_q6_kx4(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32): i32 {
  const xs = <usize>(K >> 8) * Q8K_BYTES, sy = <usize>ldy << 2;
  if (M < DECODE_TILE_ROWS) {
    // blocks of ~96 KiB of weight rows stay in L2 while each activation row passes over them
    let rb = <i32>(<usize>98304 / (<usize>(K >> 8) * Q6K_BYTES)) & ~3;
    if (rb < 4) rb = 4;
    for (let r0 = n0; r0 < n1; r0 += rb) {
      const r1 = min(r0 + rb, n1);
      for (let t = 0; t < M; t++) rows_one6(A + <usize>t * xs, W, Y + <usize>t * sy, N, r0, r1, K, acc);
    }
    return i32x4.extract_lane(k6x_stage, 0);
  }
  const g0 = min((n0 + 3) & ~3, n1), g1 = max(g0, min(n1, N & ~3) & ~3);
  if (g0 < g1) prompt_rows_q6x4(A, W, Y, ldy, M, g0, g1, K, acc);
  for (let t = 0; t < M; t++) {
    const x = A + <usize>t * xs, y = Y + <usize>t * sy;
    if (n0 < g0) rows_one6(x, W, y, N, n0, g0, K, acc);
    if (g1 < n1) rows_one6(x, W, y, N, g1, n1, K, acc);
  }
  return i32x4.extract_lane(k6x_stage, 0);
}

/** The 256 quants (0..63) of the plain q6_K super-block at w into u (value v at u + v), as dequant_row_k reads them. */
// @ts-ignore: decorator
@inline function quants6(w: usize, u: usize, m: v128, m30: v128): void {
  for (let n: usize = 0; n < 2; n++) {
    const ql = w + (n << 6), qh = w + 128 + (n << 5), o = u + (n << 7);
    for (let g: usize = 0; g < 32; g += 16) {
      const a = v128.load(ql + g), c = v128.load(ql + 32 + g), h = v128.load(qh + g);
      v128.store(o + g, v128.or(v128.and(a, m), v128.and(i16x8.shl(h, 4), m30)));
      v128.store(o + 32 + g, v128.or(v128.and(c, m), v128.and(i16x8.shl(h, 2), m30)));
      v128.store(o + 64 + g, v128.or(v128.and(i16x8.shr_u(a, 4), m), v128.and(h, m30)));
      v128.store(o + 96 + g, v128.or(v128.and(i16x8.shr_u(c, 4), m), v128.and(i16x8.shr_u(h, 2), m30)));
    }
  }
}

/**
 * Bytes 0-11 of a row's triple from its 16 quants a (sub-block j): chunks 0-2 (bytes 0-11), chunk i
 * with bits 2i, 2i + 1 of chunk 3's bytes at 6-7 (i16 left shifts: bits 6-7 of each byte come from
 * its own byte); k0..k2: 0xC0 bytes in i32 lane 0, 1, 2 only.
 */
// @ts-ignore: decorator
@inline function triple_row(a: v128, k0: v128, k1: v128, k2: v128): v128 {
  const h = v128.shuffle<u8>(a, a, 12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15, 12, 13, 14, 15);
  const t = v128.or(v128.or(v128.and(i16x8.shl(h, 6), k0), v128.and(i16x8.shl(h, 4), k1)), v128.and(i16x8.shl(h, 2), k2));
  return v128.or(a, t);
}

/**
 * Rows [0, rows) (a multiple of 4) of a plain q6_K matrix at W rewritten in place as q6_Kx4 groups;
 * tmp: scratch of 4 rows' bytes plus 1 KiB (a super-block's quants of 4 rows).
 */
export function repack_q6_kx4(W: usize, rows: i32, K: i32, tmp: usize): void {
  const nb = K >> 8;
  const rb = <usize>nb * Q6K_BYTES, grp = rb * 4;
  const m = v128.load(C_NIBBLE_MASK);
  const m30 = i8x16.shl(i8x16.shr_u(m, 2), 4);
  const k0 = i32x4(0xc0c0c0c0, 0, 0, 0), k1 = i32x4(0, 0xc0c0c0c0, 0, 0), k2 = i32x4(0, 0, 0xc0c0c0c0, 0);
  const u = tmp + grp;
  for (let gi = 0; gi < (rows >> 2); gi++) {
    const gw = W + <usize>gi * grp;
    memory.copy(tmp, gw, grp);
    let dst = gw;
    for (let b = 0; b < nb; b++) {
      const src = tmp + <usize>b * Q6K_BYTES;
      for (let r: usize = 0; r < 4; r++) quants6(src + r * rb, u + (r << 8), m, m30);
      for (let j: usize = 0; j < 16; j++) {
        const t0 = triple_row(v128.load(u + (j << 4)), k0, k1, k2), t1 = triple_row(v128.load(u + 256 + (j << 4)), k0, k1, k2);
        const t2 = triple_row(v128.load(u + 512 + (j << 4)), k0, k1, k2), t3 = triple_row(v128.load(u + 768 + (j << 4)), k0, k1, k2);
        const q = dst + 48 * j;
        v128.store(q, chunk_of(t0, t1, t2, t3, 0));
        v128.store(q, chunk_of(t0, t1, t2, t3, 1), 16);
        v128.store(q, chunk_of(t0, t1, t2, t3, 2), 32);
      }
      for (let r: usize = 0; r < 4; r++) {
        const sc = src + r * rb + 192;
        for (let p: usize = 0; p < 8; p++) store<u16>(dst + 768 + 8 * p + 2 * r, load<u16>(sc + 2 * p));
        store<u16>(dst + 832 + 2 * r, load<u16>(src + r * rb + 208));
      }
      dst += X6_BYTES;
    }
  }
}

/** out[0..K) = row r of a q6_Kx4 matrix of N rows, widened to f32 (as dequant_row_k). */
export function dequant_row_q6_kx4(W: usize, N: i32, K: i32, r: i32, out: usize): void {
  if (r >= (N & ~3)) {
    dequant_row_k(KIND_Q6K, W, K, r, out);
    return;
  }
  const nb = K >> 8;
  const i = <usize>(r & 3);
  let w = W + <usize>(r >> 2) * <usize>nb * X6_BYTES;
  let y = out;
  for (let b = 0; b < nb; b++) {
    const d = f16_at(w + 832 + 2 * i);
    for (let j: usize = 0; j < 16; j++) {
      const q = w + 48 * j + 4 * i;
      const ds = d * <f32>load<i8>(w + 768 + 8 * (j >> 1) + 2 * i + (j & 1));
      for (let e: usize = 0; e < 4; e++) {
        const c0 = <i32>load<u8>(q + e), c1 = <i32>load<u8>(q + 16 + e), c2 = <i32>load<u8>(q + 32 + e);
        const p = y + (((j << 4) + e) << 2);
        store<f32>(p, ds * <f32>((c0 & 63) - 32));
        store<f32>(p, ds * <f32>((c1 & 63) - 32), 16);
        store<f32>(p, ds * <f32>((c2 & 63) - 32), 32);
        store<f32>(p, ds * <f32>(((c0 >> 6) | ((c1 >> 6) << 2) | ((c2 >> 6) << 4)) - 32), 48);
      }
    }
    w += X6_BYTES;
    y += 1024;
  }
}
