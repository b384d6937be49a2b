// Prompt products (many activation rows) of q4_K weights times q8_K activations (gemm-k.ts
// quantize_act_q8k, one record of 368 bytes per super-block and row), over either layout:
// - q4_Kx4 groups (gemm-k-x4.ts: per group of 4 weight rows and 256-value super-block, the 4 rows'
//   fp16 d and dmin, their scales and mins packed in their unpacked forms' order, then the quants already in
//   the chunk form below): prompt_rows_x4, which gemm_q4_kx4 calls for 2 or more tokens;
// - plain rows (ggml's block_q4_K, 144 bytes: d, dmin, 12 scale bytes, 128 quant bytes), any 4
//   consecutive rows: gemm_q4_k_prompt; and plain q5_K rows (block_q5_K, 176 bytes: the same
//   header, 32 qh bytes of fifth bits, 128 quant bytes): gemm_q5_k_prompt, whose fifth bits are
//   transposed like the quants once per super-block and added to each chunk's nibbles. Per super-block the 4 rows' 16-byte headers are loaded and
//   transposed (8 shuffles) into the x4 header's form, and each chunk's bytes are read from 4 row
//   pointers instead of one group; the rest is the same code. In a prompt the 4 rows' super-block
//   serves every token of the tile, so the four interleaved 144-byte streams that cost a 4-plain-row
//   decode tile its gain (docs/cpu-profile.md) are read once per 16 tokens.
//
// Tile: 4 weight rows × up to 16 activation rows (tokens), lanes = weight rows, as the q4_0 prompt
// tile (gemm-q-prompt.ts). Per super-block the 4 rows' scales and mins are unpacked once; per
// 64-value chunk (sub-blocks 2j and 2j + 1: the low and high nibbles of 32 bytes a row) the 4 rows'
// bytes are transposed into 4-byte chunks (chunk k of all 4 rows in one vector) and split into
// nibbles once for all tokens. Each token's activation chunks are broadcast from memory against
// them, so every vpmaddubsw leaves each row's products in its own lanes: 8 of them and 7 adds give a
// sub-block's 4 row sums in i16 pairs (at most 8·2·15·127 = 30480), and one pmaddwd with the 4
// rows' scales (in i16 lane pairs) adds them to the token's i32 sums. The mins term (Σ min·bsums32)
// and the f32 step come once per super-block and token, for 4 rows at once.
//
// A row's value is gemm_k's on the plain matrix, bit for bit: the same exact integers, then
// (d·d_x)·sumi − (dmin·d_x)·summ in f32 (d, dmin exact), summed over super-blocks in four chains
// (blocks mod 4), joined ((0 + 2) + (1 + 3)), then the leftover blocks in order. The chains are
// run one after another (blocks c, c + 4, …), so a token needs one running sum, not four.
import { C_NIBBLE_MASK, f16_at } from './tables';
import { chunk3, pair_scales6 } from './gemm-q6k-x4';
// The running f32 sums of tokens 0..15 (the current chain, then the joined chains): the q4_0 prompt
// tile's per-thread token accumulators acc0..acc15, written out by its put_accs.
import * as P from './gemm-q-prompt';
import {
  OFF_B16, OFF_D, Q8K_BYTES, X4K_BYTES, f32_x4, gather4, gemm_k, hi45, lo45, mins_of_x4, mins_pairs_x4, six_bits_x4,
  udot16, unpack_x4,
} from './gemm-k';
import { x4_scales4 } from './x4-scale';

/** Bytes of one plain q4_K / q5_K / q6_K super-block (block_q4_K, block_q5_K, block_q6_K). */
const Q4K_BYTES: usize = 144, Q5K_BYTES: usize = 176, Q6K_BYTES: usize = 210;
/** gemm_k's type ids of q4_K, q5_K and q6_K. */
const KIND_Q4K = 5, KIND_Q5K = 6, KIND_Q6K = 7;
/** What the tile reads (a compile-time argument of the inlined tile code): q4_Kx4 groups, plain q4_K, q5_K or q6_K rows, q6_Kx4 groups. */
const L_X4 = 0, L_Q4K = 1, L_Q5K = 2, L_Q6K = 3, L_Q6X4 = 4;

// Per-thread state (wasm globals are per instance, i.e. per worker). V8 reads and writes them as
// memory: a store of a finished value is on the effect chain and keeps the loads written after it
// after it (TurboFan otherwise issues all loads of a basic block first, and 8 tokens' activation
// chunks next to 8 weight vectors would spill), and values kept here leave the 16 xmm registers to
// the weight chunks, a token's 4 broadcasts and its partial sum.
/** A token's first half of a sub-block (the stage boundary); read once at the end so that it is kept. */
let kp_stage: v128 = i32x4.splat(0);
/** The high nibbles (sub-block 2j + 1) of the current chunk, while the low ones serve every token. */
let kp_h0: v128 = i32x4.splat(0), kp_h1: v128 = i32x4.splat(0), kp_h2: v128 = i32x4.splat(0), kp_h3: v128 = i32x4.splat(0);
let kp_h4: v128 = i32x4.splat(0), kp_h5: v128 = i32x4.splat(0), kp_h6: v128 = i32x4.splat(0), kp_h7: v128 = i32x4.splat(0);
/** q5_K: the 4 rows' fifth bits (qh bytes) in chunk form as the quants, shifted right by 2 after each chunk (bit 0: sub-block 2j, bit 1: 2j + 1). */
let kp_q0: v128 = i32x4.splat(0), kp_q1: v128 = i32x4.splat(0), kp_q2: v128 = i32x4.splat(0), kp_q3: v128 = i32x4.splat(0);
let kp_q4: v128 = i32x4.splat(0), kp_q5: v128 = i32x4.splat(0), kp_q6: v128 = i32x4.splat(0), kp_q7: v128 = i32x4.splat(0);
/** Scale bytes of the current chunk's two sub-blocks (0-3: sub-block 2j, rows 0-3; 4-7: 2j + 1), then the next chunk's; kp_sq2: chunks 2-3's until rotated in. */
let kp_sq: v128 = i32x4.splat(0), kp_sq2: v128 = i32x4.splat(0);
/** The current sub-block's 4 row scales, each in a pair of i16 lanes (the pmaddwd operand). */
let kp_sc: v128 = i32x4.splat(0);
/** Mins of sub-blocks (2k, 2k + 1) of row r in i16 lanes (2r, 2r + 1), k = 0..3. */
let kp_mn0: v128 = i32x4.splat(0), kp_mn1: v128 = i32x4.splat(0), kp_mn2: v128 = i32x4.splat(0), kp_mn3: v128 = i32x4.splat(0);
/** The super-block's d and dmin of the 4 rows (f32, exact). */
let kp_d: v128 = i32x4.splat(0), kp_dmin: v128 = i32x4.splat(0);
/** Per token (0..15): the super-block's integer sums Σ scale·Σ q_w·q_x (i32, lanes = rows). */
let kp_s0: v128 = i32x4.splat(0), kp_s1: v128 = i32x4.splat(0), kp_s2: v128 = i32x4.splat(0), kp_s3: v128 = i32x4.splat(0);
let kp_s4: v128 = i32x4.splat(0), kp_s5: v128 = i32x4.splat(0), kp_s6: v128 = i32x4.splat(0), kp_s7: v128 = i32x4.splat(0);
let kp_s8: v128 = i32x4.splat(0), kp_s9: v128 = i32x4.splat(0), kp_s10: v128 = i32x4.splat(0), kp_s11: v128 = i32x4.splat(0);
let kp_s12: v128 = i32x4.splat(0), kp_s13: v128 = i32x4.splat(0), kp_s14: v128 = i32x4.splat(0), kp_s15: v128 = i32x4.splat(0);
/** Per token: chain 0 (then chains 0 + 2) and chain 1, kept while the later chains run. */
let kp_c0: v128 = i32x4.splat(0), kp_c1: v128 = i32x4.splat(0), kp_c2: v128 = i32x4.splat(0), kp_c3: v128 = i32x4.splat(0);
let kp_c4: v128 = i32x4.splat(0), kp_c5: v128 = i32x4.splat(0), kp_c6: v128 = i32x4.splat(0), kp_c7: v128 = i32x4.splat(0);
let kp_c8: v128 = i32x4.splat(0), kp_c9: v128 = i32x4.splat(0), kp_c10: v128 = i32x4.splat(0), kp_c11: v128 = i32x4.splat(0);
let kp_c12: v128 = i32x4.splat(0), kp_c13: v128 = i32x4.splat(0), kp_c14: v128 = i32x4.splat(0), kp_c15: v128 = i32x4.splat(0);
let kp_e0: v128 = i32x4.splat(0), kp_e1: v128 = i32x4.splat(0), kp_e2: v128 = i32x4.splat(0), kp_e3: v128 = i32x4.splat(0);
let kp_e4: v128 = i32x4.splat(0), kp_e5: v128 = i32x4.splat(0), kp_e6: v128 = i32x4.splat(0), kp_e7: v128 = i32x4.splat(0);
let kp_e8: v128 = i32x4.splat(0), kp_e9: v128 = i32x4.splat(0), kp_e10: v128 = i32x4.splat(0), kp_e11: v128 = i32x4.splat(0);
let kp_e12: v128 = i32x4.splat(0), kp_e13: v128 = i32x4.splat(0), kp_e14: v128 = i32x4.splat(0), kp_e15: v128 = i32x4.splat(0);

/**
 * One token's sub-block (32 activations at xq) against the 4 rows' nibbles in chunk form (w_k:
 * elements 4k..4k+3 of each row, rows in i32 lanes), scaled by kp_sc: row r's Σ scale·Σ q_w·q_x in
 * lane r. Two stages of 4 chunks (see kp_stage); the chunks' offsets are load immediates, which V8
 * folds into the addresses. q5_K (five): weights up to 31, so 8 chunks' pair sums (up to 62992)
 * would overflow i16; each stage is scaled on its own (up to 4·2·31·127 = 31496).
 */
// @ts-ignore: decorator
@inline function sub_block(w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, xq: usize, five: bool): v128 {
  const p = i16x8.add(
    i16x8.add(udot16(w0, v128.load32_splat(xq)), udot16(w1, v128.load32_splat(xq, 4))),
    i16x8.add(udot16(w2, v128.load32_splat(xq, 8)), udot16(w3, v128.load32_splat(xq, 12))));
  // q5_K: the first stage scaled before the stage store, so that its read of kp_sc stays before the
  // store and the second stage's comes after it: neither holds a register through the other stage
  // (one read for both spilled a nibble vector a token)
  const r = five ? i32x4.dot_i16x8_s(p, kp_sc) : p;
  kp_stage = r;
  const u = i16x8.add(
    i16x8.add(udot16(w4, v128.load32_splat(xq, 16)), udot16(w5, v128.load32_splat(xq, 20))),
    i16x8.add(udot16(w6, v128.load32_splat(xq, 24)), udot16(w7, v128.load32_splat(xq, 28))));
  if (five) return i32x4.add(r, i32x4.dot_i16x8_s(u, kp_sc));
  return i32x4.dot_i16x8_s(i16x8.add(p, u), kp_sc);
}

/** One sub-block (activations of token t at xq + t·xs) against the 4 rows' chunks w0..w7, for T tokens: added to kp_s_t. */
// @ts-ignore: decorator
@inline function tokens(w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, xq: usize, xs: usize, T: i32, five: bool): void {
  kp_s0 = i32x4.add(kp_s0, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq, five));
  if (T > 1) kp_s1 = i32x4.add(kp_s1, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + xs, five));
  if (T > 2) kp_s2 = i32x4.add(kp_s2, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 2 * xs, five));
  if (T > 3) kp_s3 = i32x4.add(kp_s3, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 3 * xs, five));
  if (T > 4) kp_s4 = i32x4.add(kp_s4, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 4 * xs, five));
  if (T > 5) kp_s5 = i32x4.add(kp_s5, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 5 * xs, five));
  if (T > 6) kp_s6 = i32x4.add(kp_s6, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 6 * xs, five));
  if (T > 7) kp_s7 = i32x4.add(kp_s7, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 7 * xs, five));
  if (T > 8) kp_s8 = i32x4.add(kp_s8, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 8 * xs, five));
  if (T > 9) kp_s9 = i32x4.add(kp_s9, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 9 * xs, five));
  if (T > 10) kp_s10 = i32x4.add(kp_s10, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 10 * xs, five));
  if (T > 11) kp_s11 = i32x4.add(kp_s11, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 11 * xs, five));
  if (T > 12) kp_s12 = i32x4.add(kp_s12, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 12 * xs, five));
  if (T > 13) kp_s13 = i32x4.add(kp_s13, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 13 * xs, five));
  if (T > 14) kp_s14 = i32x4.add(kp_s14, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 14 * xs, five));
  if (T > 15) kp_s15 = i32x4.add(kp_s15, sub_block(w0, w1, w2, w3, w4, w5, w6, w7, xq + 15 * xs, five));
}

/** The value of one super-block for one token (its q8_K record at x) from its integer sums s, as gemm_q4_kx4's tiles end. */
// @ts-ignore: decorator
@inline function sb_value(s: v128, x: usize): v128 {
  return f32_x4(kp_d, kp_dmin, x, s, mins_of_x4(kp_mn0, kp_mn1, kp_mn2, kp_mn3, x));
}

/**
 * The 4 rows' super-block header into the kp_ globals: scales (kp_sq, kp_sq2), mins (kp_mn0..3),
 * d and dmin (kp_d, kp_dmin). x4 (plain = false): the group super-block at w, its header unpacked
 * as it is stored (unpack_x4). Plain: row r's
 * super-block at w + r·rs; the 4 rows' 16 header bytes (u32 lanes: d | dmin << 16, scale bytes
 * 0-3, 4-7, 8-11) transposed so that lane r of each vector is row r's, the x4 header's form.
 */
// @ts-ignore: decorator
@inline function header(w: usize, rs: usize, plain: bool, m: v128): void {
  if (!plain) {
    // the x4 header holds the unpacked forms (gemm-k.ts unpack_x4): scales in byte 4j + r, mins as E0 / E1
    const a = v128.load(w, 16), b = v128.load(w, 32), c = v128.load(w, 48);
    const m30 = i8x16.splat(0x30);
    kp_sq = unpack_x4(a, b, c, m, m30, 0);
    kp_sq2 = unpack_x4(a, b, c, m, m30, 1);
    const e0 = unpack_x4(a, b, c, m, m30, 2), e1 = unpack_x4(a, b, c, m, m30, 3);
    kp_mn0 = i16x8.extend_low_i8x16_u(e0);
    kp_mn1 = i16x8.extend_high_i8x16_u(e0);
    kp_mn2 = i16x8.extend_low_i8x16_u(e1);
    kp_mn3 = i16x8.extend_high_i8x16_u(e1);
    kp_d = x4_scales4(w);
    kp_dmin = x4_scales4(w + 8);
    return;
  }
  const h0 = v128.load(w), h1 = v128.load(w + rs), h2 = v128.load(w + 2 * rs), h3 = v128.load(w + 3 * rs);
  const t0 = v128.shuffle<u32>(h0, h1, 0, 4, 1, 5), t1 = v128.shuffle<u32>(h0, h1, 2, 6, 3, 7);
  const t2 = v128.shuffle<u32>(h2, h3, 0, 4, 1, 5), t3 = v128.shuffle<u32>(h2, h3, 2, 6, 3, 7);
  const v0 = v128.shuffle<u64>(t0, t2, 1, 3);
  const v1 = v128.shuffle<u64>(t1, t3, 0, 2);
  const v2 = v128.shuffle<u64>(t1, t3, 1, 3);
  kp_d = gather4(w, rs, true);
  kp_dmin = gather4(w + 2, rs, true);
  // get_scale_min_k4 on 4 rows at once; the scales to byte 4j + r (sub-block j, row r), so that
  // chunk j's two sub-blocks are 8 bytes in a row
  const s03 = six_bits_x4(v0, v1, v2, m, 0), s47 = six_bits_x4(v0, v1, v2, m, 1);
  kp_sq = v128.shuffle<u8>(s03, s03, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  kp_sq2 = v128.shuffle<u8>(s47, s47, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const n03 = six_bits_x4(v0, v1, v2, m, 2), n47 = six_bits_x4(v0, v1, v2, m, 3);
  kp_mn0 = mins_pairs_x4(n03, false);
  kp_mn1 = mins_pairs_x4(n03, true);
  kp_mn2 = mins_pairs_x4(n47, false);
  kp_mn3 = mins_pairs_x4(n47, true);
}

/** Chunk k (0-3) of 4 rows' 16 bytes a0..a3: bytes 4k..4k+3 of each row, row r in i32 lane r. */
// @ts-ignore: decorator
@inline export function chunk_of(a0: v128, a1: v128, a2: v128, a3: v128, k: i32): v128 {
  const lo = k < 2;
  const t01 = lo ? v128.shuffle<u32>(a0, a1, 0, 4, 1, 5) : v128.shuffle<u32>(a0, a1, 2, 6, 3, 7);
  const t23 = lo ? v128.shuffle<u32>(a2, a3, 0, 4, 1, 5) : v128.shuffle<u32>(a2, a3, 2, 6, 3, 7);
  return k & 1 ? v128.shuffle<u64>(t01, t23, 1, 3) : v128.shuffle<u64>(t01, t23, 0, 2);
}

/** q5_K: the 4 rows' 32 qh bytes (row r's at q + r·rs) in chunk form into kp_q0..7. */
// @ts-ignore: decorator
@inline function fifth_bits(q: usize, rs: usize): void {
  const rs2 = rs << 1, rs3 = rs2 + rs;
  const a0 = v128.load(q), a1 = v128.load(q + rs), a2 = v128.load(q + rs2), a3 = v128.load(q + rs3);
  kp_q0 = chunk_of(a0, a1, a2, a3, 0);
  kp_q1 = chunk_of(a0, a1, a2, a3, 1);
  kp_q2 = chunk_of(a0, a1, a2, a3, 2);
  kp_q3 = chunk_of(a0, a1, a2, a3, 3);
  const b0 = v128.load(q, 16), b1 = v128.load(q + rs, 16), b2 = v128.load(q + rs2, 16), b3 = v128.load(q + rs3, 16);
  kp_q4 = chunk_of(b0, b1, b2, b3, 0);
  kp_q5 = chunk_of(b0, b1, b2, b3, 1);
  kp_q6 = chunk_of(b0, b1, b2, b3, 2);
  kp_q7 = chunk_of(b0, b1, b2, b3, 3);
}

/**
 * One super-block of the 4 weight rows (L_X4: the group super-block at w; plain q4_K / q5_K: row
 * r's at w + r·rs) × T tokens (token t's record at x + t·xs): adds each token's value to its
 * running sum (P.acc_t).
 */
// @ts-ignore: decorator
@inline function super_block(w: usize, rs: usize, x: usize, xs: usize, T: i32, lay: i32): void {
  const plain = lay != L_X4, five = lay == L_Q5K;
  const m = v128.load(C_NIBBLE_MASK);
  header(w, rs, plain, m);
  if (five) fifth_bits(w + 16, rs);
  const z = i32x4.splat(0);
  kp_s0 = z; kp_s1 = z; kp_s2 = z; kp_s3 = z; kp_s4 = z; kp_s5 = z; kp_s6 = z; kp_s7 = z;
  if (T > 8) { kp_s8 = z; kp_s9 = z; kp_s10 = z; kp_s11 = z; kp_s12 = z; kp_s13 = z; kp_s14 = z; kp_s15 = z; }
  // plain: row r's 32 bytes of the chunk at q + r·rs; x4: the chunk's 8 vectors at q (chunk form)
  let q = w + (five ? 48 : plain ? 16 : 64), xq = x;
  const rs2 = rs << 1, rs3 = rs2 + rs;
  for (let j = 0; j < 4; j++) {
    let c0 = m, c1 = m, c2 = m, c3 = m, c4 = m, c5 = m, c6 = m, c7 = m;
    if (!plain) {
      c0 = v128.load(q); c1 = v128.load(q, 16); c2 = v128.load(q, 32); c3 = v128.load(q, 48);
      c4 = v128.load(q, 64); c5 = v128.load(q, 80); c6 = v128.load(q, 96); c7 = v128.load(q, 112);
    } else {
      // rows' bytes 0-15 (a) and 16-31 (b) of the chunk, transposed to 4-byte chunks 0-3 and 4-7
      const a0 = v128.load(q), a1 = v128.load(q + rs), a2 = v128.load(q + rs2), a3 = v128.load(q + rs3);
      const b0 = v128.load(q, 16), b1 = v128.load(q + rs, 16), b2 = v128.load(q + rs2, 16), b3 = v128.load(q + rs3, 16);
      const ta0 = v128.shuffle<u32>(a0, a1, 0, 4, 1, 5), ta1 = v128.shuffle<u32>(a0, a1, 2, 6, 3, 7);
      const ta2 = v128.shuffle<u32>(a2, a3, 0, 4, 1, 5), ta3 = v128.shuffle<u32>(a2, a3, 2, 6, 3, 7);
      const tb0 = v128.shuffle<u32>(b0, b1, 0, 4, 1, 5), tb1 = v128.shuffle<u32>(b0, b1, 2, 6, 3, 7);
      const tb2 = v128.shuffle<u32>(b2, b3, 0, 4, 1, 5), tb3 = v128.shuffle<u32>(b2, b3, 2, 6, 3, 7);
      c0 = v128.shuffle<u64>(ta0, ta2, 0, 2); c1 = v128.shuffle<u64>(ta0, ta2, 1, 3);
      c2 = v128.shuffle<u64>(ta1, ta3, 0, 2); c3 = v128.shuffle<u64>(ta1, ta3, 1, 3);
      c4 = v128.shuffle<u64>(tb0, tb2, 0, 2); c5 = v128.shuffle<u64>(tb0, tb2, 1, 3);
      c6 = v128.shuffle<u64>(tb1, tb3, 0, 2); c7 = v128.shuffle<u64>(tb1, tb3, 1, 3);
    }
    // q5_K: + 16 where bit 0 (low nibbles) / bit 1 (high) of a byte's fifth bits is set (gemm-k.ts lo45 / hi45)
    const b16 = i8x16.sub(m, i8x16.eq(m, m)); // 0x10 bytes, from the register holding 0x0F
    const u0 = kp_q0, u1 = kp_q1, u2 = kp_q2, u3 = kp_q3, u4 = kp_q4, u5 = kp_q5, u6 = kp_q6, u7 = kp_q7;
    kp_h0 = hi45(c0, u0, five, m, b16); kp_h1 = hi45(c1, u1, five, m, b16);
    kp_h2 = hi45(c2, u2, five, m, b16); kp_h3 = hi45(c3, u3, five, m, b16);
    kp_h4 = hi45(c4, u4, five, m, b16); kp_h5 = hi45(c5, u5, five, m, b16);
    kp_h6 = hi45(c6, u6, five, m, b16); kp_h7 = hi45(c7, u7, five, m, b16);
    const l0 = lo45(c0, u0, five, m, b16), l1 = lo45(c1, u1, five, m, b16), l2 = lo45(c2, u2, five, m, b16), l3 = lo45(c3, u3, five, m, b16);
    const l4 = lo45(c4, u4, five, m, b16), l5 = lo45(c5, u5, five, m, b16), l6 = lo45(c6, u6, five, m, b16), l7 = lo45(c7, u7, five, m, b16);
    if (five) {
      kp_q0 = i16x8.shr_u(u0, 2); kp_q1 = i16x8.shr_u(u1, 2); kp_q2 = i16x8.shr_u(u2, 2); kp_q3 = i16x8.shr_u(u3, 2);
      kp_q4 = i16x8.shr_u(u4, 2); kp_q5 = i16x8.shr_u(u5, 2); kp_q6 = i16x8.shr_u(u6, 2); kp_q7 = i16x8.shr_u(u7, 2);
    }
    // sub-block 2j: the low nibbles, scales in bytes 0-3 of kp_sq; 2j + 1: the high ones, bytes 4-7
    const sq = kp_sq;
    kp_sc = v128.shuffle<u8>(sq, z, 0, 16, 0, 16, 1, 16, 1, 16, 2, 16, 2, 16, 3, 16, 3, 16);
    tokens(l0, l1, l2, l3, l4, l5, l6, l7, xq, xs, T, five);
    const sh = kp_sq;
    kp_sc = v128.shuffle<u8>(sh, z, 4, 16, 4, 16, 5, 16, 5, 16, 6, 16, 6, 16, 7, 16, 7, 16);
    kp_sq = v128.shuffle<u8>(sh, kp_sq2, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23);
    kp_sq2 = v128.shuffle<u8>(kp_sq2, kp_sq2, 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15);
    tokens(kp_h0, kp_h1, kp_h2, kp_h3, kp_h4, kp_h5, kp_h6, kp_h7, xq + 32, xs, T, five);
    q += plain ? 32 : 128; xq += 64;
  }
  P.acc0 = f32x4.add(P.acc0, sb_value(kp_s0, x));
  if (T > 1) P.acc1 = f32x4.add(P.acc1, sb_value(kp_s1, x + 1 * xs));
  if (T > 2) P.acc2 = f32x4.add(P.acc2, sb_value(kp_s2, x + 2 * xs));
  if (T > 3) P.acc3 = f32x4.add(P.acc3, sb_value(kp_s3, x + 3 * xs));
  if (T > 4) P.acc4 = f32x4.add(P.acc4, sb_value(kp_s4, x + 4 * xs));
  if (T > 5) P.acc5 = f32x4.add(P.acc5, sb_value(kp_s5, x + 5 * xs));
  if (T > 6) P.acc6 = f32x4.add(P.acc6, sb_value(kp_s6, x + 6 * xs));
  if (T > 7) P.acc7 = f32x4.add(P.acc7, sb_value(kp_s7, x + 7 * xs));
  if (T > 8) P.acc8 = f32x4.add(P.acc8, sb_value(kp_s8, x + 8 * xs));
  if (T > 9) P.acc9 = f32x4.add(P.acc9, sb_value(kp_s9, x + 9 * xs));
  if (T > 10) P.acc10 = f32x4.add(P.acc10, sb_value(kp_s10, x + 10 * xs));
  if (T > 11) P.acc11 = f32x4.add(P.acc11, sb_value(kp_s11, x + 11 * xs));
  if (T > 12) P.acc12 = f32x4.add(P.acc12, sb_value(kp_s12, x + 12 * xs));
  if (T > 13) P.acc13 = f32x4.add(P.acc13, sb_value(kp_s13, x + 13 * xs));
  if (T > 14) P.acc14 = f32x4.add(P.acc14, sb_value(kp_s14, x + 14 * xs));
  if (T > 15) P.acc15 = f32x4.add(P.acc15, sb_value(kp_s15, x + 15 * xs));
}

// q6_K (block_q6_K, 210 bytes: 128 ql bytes of low nibbles, 64 qh bytes of 2-bit high parts, 16
// signed scales, fp16 d): value 128n + 32q + l of a super-block (half n, quarter q, l < 32) is
// nibble q >> 1 of ql byte 64n + 32(q & 1) + l with bits 2q, 2q + 1 of qh byte 32n + l above it,
// scaled by scale 8n + 2q + (l >> 4): a scale per 16 values. The tile takes a half's 32 ql bytes
// at a time as the q4_K tile takes a chunk: their low nibbles are quarter q = 0 or 1, their high
// ones quarter q + 2, each of two 16-value groups (chunks 0-3, 4-7). Weights are 0..63 (the -32
// goes through the activations' bsums16, as gemm_k's): two chunks' pair sums reach 2·2·63·127 =
// 32004, so each pair of chunks gets its own pmaddwd with the group's 4 row scales.
/** Quarter q (0..3) of the current half: its two groups' 4 row scales sign-extended, i16 lanes 0-3 = group a of rows 0-3, 4-7 = group b. */
let k6_e0: v128 = i32x4.splat(0), k6_e1: v128 = i32x4.splat(0), k6_e2: v128 = i32x4.splat(0), k6_e3: v128 = i32x4.splat(0);
/** Per pair of scales (2j, 2j + 1), j = 0..7: (row r: scale 2j, 2j + 1) in i16 lanes (2r, 2r + 1); pmaddwd with a broadcast pair of bsums16 gives each row's share of the -32 term. */
let k6_p0: v128 = i32x4.splat(0), k6_p1: v128 = i32x4.splat(0), k6_p2: v128 = i32x4.splat(0), k6_p3: v128 = i32x4.splat(0);
let k6_p4: v128 = i32x4.splat(0), k6_p5: v128 = i32x4.splat(0), k6_p6: v128 = i32x4.splat(0), k6_p7: v128 = i32x4.splat(0);
/** The current 32 values' second group's row scales (as kp_sc: each in a pair of i16 lanes). */
let k6_sc2: v128 = i32x4.splat(0);

/** The 4 rows' scales 4i + k of e (bytes 4k + r: scale k of row r), k = 0, 1 (hi: 2, 3), sign-extended: i16 lanes 0-3 = the first, 4-7 = the second. */
// @ts-ignore: decorator
@inline function scale_pair6(e: v128, hi: bool): v128 {
  // each byte twice, then shifted down arithmetically: sign-extended i16
  return i16x8.shr_s(hi ? v128.shuffle<u8>(e, e, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15)
    : v128.shuffle<u8>(e, e, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7), 8);
}

/** scale_pair6's v as k6_p_j's form: lanes 0-3 and 4-7 interleaved. */
// @ts-ignore: decorator
@inline function row_pairs6(v: v128): v128 {
  return v128.shuffle<u16>(v, v128.shuffle<u32>(v, v, 2, 3, 2, 3), 0, 8, 1, 9, 2, 10, 3, 11);
}

/** Bytes 4k + r = scale k of row r (k 0-3), then scales 4-7 (second vector), of 4 rows' 8 scales each (s0..s3, lanes 0-7). */
// @ts-ignore: decorator
@inline function scale_rows6(s0: v128, s1: v128, s2: v128, s3: v128, second: bool): v128 {
  const l01 = v128.shuffle<u8>(s0, s1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const l23 = v128.shuffle<u8>(s2, s3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  return second ? v128.shuffle<u16>(l01, l23, 4, 12, 5, 13, 6, 14, 7, 15) : v128.shuffle<u16>(l01, l23, 0, 8, 1, 9, 2, 10, 3, 11);
}

/** The 4 q6_K rows' d (kp_d, f32 as f16_at gives them) and scale pairs (k6_p0..7) of the super-blocks at w + r·rs. */
// @ts-ignore: decorator
@inline function header6(w: usize, rs: usize): void {
  const rs2 = rs << 1, rs3 = rs2 + rs;
  let d = f32x4.splat(f16_at(w + 208));
  d = f32x4.replace_lane(d, 1, f16_at(w + rs + 208));
  d = f32x4.replace_lane(d, 2, f16_at(w + rs2 + 208));
  kp_d = f32x4.replace_lane(d, 3, f16_at(w + rs3 + 208));
  const s0 = v128.load(w + 192), s1 = v128.load(w + rs + 192), s2 = v128.load(w + rs2 + 192), s3 = v128.load(w + rs3 + 192);
  const a0 = scale_rows6(s0, s1, s2, s3, false), a1 = scale_rows6(s0, s1, s2, s3, true);
  // scales 8-15: the upper 8 bytes of each row's 16
  const t0 = v128.shuffle<u64>(s0, s0, 1, 1), t1 = v128.shuffle<u64>(s1, s1, 1, 1), t2 = v128.shuffle<u64>(s2, s2, 1, 1), t3 = v128.shuffle<u64>(s3, s3, 1, 1);
  const b0 = scale_rows6(t0, t1, t2, t3, false), b1 = scale_rows6(t0, t1, t2, t3, true);
  k6_p0 = row_pairs6(scale_pair6(a0, false)); k6_p1 = row_pairs6(scale_pair6(a0, true));
  k6_p2 = row_pairs6(scale_pair6(a1, false)); k6_p3 = row_pairs6(scale_pair6(a1, true));
  k6_p4 = row_pairs6(scale_pair6(b0, false)); k6_p5 = row_pairs6(scale_pair6(b0, true));
  k6_p6 = row_pairs6(scale_pair6(b1, false)); k6_p7 = row_pairs6(scale_pair6(b1, true));
}

/** The q6_Kx4 group super-block at w (gemm-q6k-x4.ts): the 4 rows' d (kp_d) and its scale pairs, already k6_p0..7's form. */
// @ts-ignore: decorator
@inline function header6x4(w: usize): void {
  kp_d = gather4(w + 832, 2, true);
  const s = w + 768;
  k6_p0 = v128.load8x8_s(s); k6_p1 = v128.load8x8_s(s + 8); k6_p2 = v128.load8x8_s(s + 16); k6_p3 = v128.load8x8_s(s + 24);
  k6_p4 = v128.load8x8_s(s + 32); k6_p5 = v128.load8x8_s(s + 40); k6_p6 = v128.load8x8_s(s + 48); k6_p7 = v128.load8x8_s(s + 56);
}

/**
 * Sub-blocks 2p, 2p + 1 of the q6_Kx4 group super-block at w (two triples: chunks 0-2 one mask each,
 * chunk 3 from their top bits) × T tokens (activations at x + 32p + t·xs), added to kp_s_t.
 */
// @ts-ignore: decorator
@inline function pair6x4(w: usize, x: usize, xs: usize, T: i32, p: usize, hi: v128): void {
  const q = w + 96 * p;
  const a0 = v128.load(q), a1 = v128.load(q, 16), a2 = v128.load(q, 32);
  const b0 = v128.load(q, 48), b1 = v128.load(q, 64), b2 = v128.load(q, 80);
  const t = v128.load8x8_s(w + 768 + 8 * p);
  kp_sc = pair_scales6(t, false);
  k6_sc2 = pair_scales6(t, true);
  const s0 = v128.and(a0, hi), s1 = v128.and(a1, hi), s2 = v128.and(a2, hi);
  const u0 = v128.and(b0, hi), u1 = v128.and(b1, hi), u2 = v128.and(b2, hi);
  tokens6(v128.xor(a0, s0), v128.xor(a1, s1), v128.xor(a2, s2), chunk3(s0, s1, s2),
    v128.xor(b0, u0), v128.xor(b1, u1), v128.xor(b2, u2), chunk3(u0, u1, u2), x + 32 * p, xs, T);
}

/** Half n's scales (8 a row at w + r·rs + 192 + 8n) per quarter into k6_e0..3. */
// @ts-ignore: decorator
@inline function half_scales6(w: usize, rs: usize): void {
  const rs2 = rs << 1, rs3 = rs2 + rs;
  const s0 = v128.load64_zero(w), s1 = v128.load64_zero(w + rs), s2 = v128.load64_zero(w + rs2), s3 = v128.load64_zero(w + rs3);
  const a0 = scale_rows6(s0, s1, s2, s3, false), a1 = scale_rows6(s0, s1, s2, s3, true);
  k6_e0 = scale_pair6(a0, false);
  k6_e1 = scale_pair6(a0, true);
  k6_e2 = scale_pair6(a1, false);
  k6_e3 = scale_pair6(a1, true);
}

/**
 * One token's 32 values (activations at xq) against the 4 rows' q6_K weights in chunk form (w0-w3:
 * group a, scales kp_sc; w4-w7: group b, k6_sc2): row r's Σ scale·Σ q_w·q_x in lane r. Each pair
 * of chunks is scaled on its own (see the q6_K note above); the stage store keeps the second
 * group's broadcasts after the first group's products (as sub_block).
 */
// @ts-ignore: decorator
@inline function sub_block6(w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, xq: usize): v128 {
  const sa = kp_sc;
  const r = i32x4.add(
    i32x4.dot_i16x8_s(i16x8.add(udot16(w0, v128.load32_splat(xq)), udot16(w1, v128.load32_splat(xq, 4))), sa),
    i32x4.dot_i16x8_s(i16x8.add(udot16(w2, v128.load32_splat(xq, 8)), udot16(w3, v128.load32_splat(xq, 12))), sa));
  kp_stage = r;
  const sb = k6_sc2;
  const u = i32x4.add(
    i32x4.dot_i16x8_s(i16x8.add(udot16(w4, v128.load32_splat(xq, 16)), udot16(w5, v128.load32_splat(xq, 20))), sb),
    i32x4.dot_i16x8_s(i16x8.add(udot16(w6, v128.load32_splat(xq, 24)), udot16(w7, v128.load32_splat(xq, 28))), sb));
  return i32x4.add(r, u);
}

/** sub_block6 for T tokens (token t's activations at xq + t·xs), added to kp_s_t. */
// @ts-ignore: decorator
@inline function tokens6(w0: v128, w1: v128, w2: v128, w3: v128, w4: v128, w5: v128, w6: v128, w7: v128, xq: usize, xs: usize, T: i32): void {
  kp_s0 = i32x4.add(kp_s0, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq));
  if (T > 1) kp_s1 = i32x4.add(kp_s1, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + xs));
  if (T > 2) kp_s2 = i32x4.add(kp_s2, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 2 * xs));
  if (T > 3) kp_s3 = i32x4.add(kp_s3, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 3 * xs));
  if (T > 4) kp_s4 = i32x4.add(kp_s4, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 4 * xs));
  if (T > 5) kp_s5 = i32x4.add(kp_s5, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 5 * xs));
  if (T > 6) kp_s6 = i32x4.add(kp_s6, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 6 * xs));
  if (T > 7) kp_s7 = i32x4.add(kp_s7, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 7 * xs));
  if (T > 8) kp_s8 = i32x4.add(kp_s8, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 8 * xs));
  if (T > 9) kp_s9 = i32x4.add(kp_s9, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 9 * xs));
  if (T > 10) kp_s10 = i32x4.add(kp_s10, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 10 * xs));
  if (T > 11) kp_s11 = i32x4.add(kp_s11, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 11 * xs));
  if (T > 12) kp_s12 = i32x4.add(kp_s12, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 12 * xs));
  if (T > 13) kp_s13 = i32x4.add(kp_s13, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 13 * xs));
  if (T > 14) kp_s14 = i32x4.add(kp_s14, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 14 * xs));
  if (T > 15) kp_s15 = i32x4.add(kp_s15, sub_block6(w0, w1, w2, w3, w4, w5, w6, w7, xq + 15 * xs));
}

/** Sets kp_sc / k6_sc2 to the two groups' row scales of quarter q of the current half (each scale in two i16 lanes). */
// @ts-ignore: decorator
@inline function scales6(q: i32): void {
  const e = q == 0 ? k6_e0 : q == 1 ? k6_e1 : q == 2 ? k6_e2 : k6_e3;
  kp_sc = v128.shuffle<u16>(e, e, 0, 0, 1, 1, 2, 2, 3, 3);
  k6_sc2 = v128.shuffle<u16>(e, e, 4, 4, 5, 5, 6, 6, 7, 7);
}

/**
 * The value of one q6_K super-block for one token (its q8_K record at x) from its integer sums s:
 * (d·d_x)·(s − 32·Σ_k scale_k·bsums16_k), lanes = rows, as gemm_k's block6.
 */
// @ts-ignore: decorator
@inline function sb6_value(s: v128, x: usize): v128 {
  const b0 = i16x8.narrow_i32x4_s(v128.load(x + OFF_B16), v128.load(x + OFF_B16, 16));
  const b1 = i16x8.narrow_i32x4_s(v128.load(x + OFF_B16, 32), v128.load(x + OFF_B16, 48));
  const c = i32x4.add(
    i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(k6_p0, v128.shuffle<u32>(b0, b0, 0, 0, 0, 0)), i32x4.dot_i16x8_s(k6_p1, v128.shuffle<u32>(b0, b0, 1, 1, 1, 1))),
      i32x4.add(i32x4.dot_i16x8_s(k6_p2, v128.shuffle<u32>(b0, b0, 2, 2, 2, 2)), i32x4.dot_i16x8_s(k6_p3, v128.shuffle<u32>(b0, b0, 3, 3, 3, 3)))),
    i32x4.add(
      i32x4.add(i32x4.dot_i16x8_s(k6_p4, v128.shuffle<u32>(b1, b1, 0, 0, 0, 0)), i32x4.dot_i16x8_s(k6_p5, v128.shuffle<u32>(b1, b1, 1, 1, 1, 1))),
      i32x4.add(i32x4.dot_i16x8_s(k6_p6, v128.shuffle<u32>(b1, b1, 2, 2, 2, 2)), i32x4.dot_i16x8_s(k6_p7, v128.shuffle<u32>(b1, b1, 3, 3, 3, 3)))));
  const sumi = i32x4.sub(s, i32x4.shl(c, 5));
  return f32x4.mul(f32x4.mul(kp_d, v128.load32_splat(x + OFF_D)), f32x4.convert_i32x4_s(sumi));
}

/**
 * ql bytes 32p..32p + 31 of a q6_K half (row r's at ql + r·rs) × T tokens (activations of the
 * half at xq + t·xs, xq already + 32p): their low nibbles are quarter p, their high ones quarter
 * p + 2 (each with its qh bits from kp_q0..7); added to kp_s_t.
 */
// @ts-ignore: decorator
@inline function quarters6(ql: usize, rs: usize, xq: usize, xs: usize, T: i32, p: i32, m: v128): void {
  const rs2 = rs << 1, rs3 = rs2 + rs;
  const a0 = v128.load(ql), a1 = v128.load(ql + rs), a2 = v128.load(ql + rs2), a3 = v128.load(ql + rs3);
  const b0 = v128.load(ql, 16), b1 = v128.load(ql + rs, 16), b2 = v128.load(ql + rs2, 16), b3 = v128.load(ql + rs3, 16);
  const c0 = chunk_of(a0, a1, a2, a3, 0), c1 = chunk_of(a0, a1, a2, a3, 1), c2 = chunk_of(a0, a1, a2, a3, 2), c3 = chunk_of(a0, a1, a2, a3, 3);
  const c4 = chunk_of(b0, b1, b2, b3, 0), c5 = chunk_of(b0, b1, b2, b3, 1), c6 = chunk_of(b0, b1, b2, b3, 2), c7 = chunk_of(b0, b1, b2, b3, 3);
  const m30 = i8x16.shl(i8x16.shr_u(m, 2), 4); // 0x30 bytes, from the register holding 0x0F
  // quarter p + 2's high parts: bits 4-5 (p = 0) or 6-7 of the qh bytes, at bits 4-5
  kp_h0 = hi6(c0, kp_q0, 4 + 2 * p, m, m30); kp_h1 = hi6(c1, kp_q1, 4 + 2 * p, m, m30);
  kp_h2 = hi6(c2, kp_q2, 4 + 2 * p, m, m30); kp_h3 = hi6(c3, kp_q3, 4 + 2 * p, m, m30);
  kp_h4 = hi6(c4, kp_q4, 4 + 2 * p, m, m30); kp_h5 = hi6(c5, kp_q5, 4 + 2 * p, m, m30);
  kp_h6 = hi6(c6, kp_q6, 4 + 2 * p, m, m30); kp_h7 = hi6(c7, kp_q7, 4 + 2 * p, m, m30);
  const l0 = lo6(c0, kp_q0, 2 * p, m, m30), l1 = lo6(c1, kp_q1, 2 * p, m, m30), l2 = lo6(c2, kp_q2, 2 * p, m, m30), l3 = lo6(c3, kp_q3, 2 * p, m, m30);
  const l4 = lo6(c4, kp_q4, 2 * p, m, m30), l5 = lo6(c5, kp_q5, 2 * p, m, m30), l6 = lo6(c6, kp_q6, 2 * p, m, m30), l7 = lo6(c7, kp_q7, 2 * p, m, m30);
  scales6(p);
  tokens6(l0, l1, l2, l3, l4, l5, l6, l7, xq, xs, T);
  scales6(p + 2);
  tokens6(kp_h0, kp_h1, kp_h2, kp_h3, kp_h4, kp_h5, kp_h6, kp_h7, xq + 64, xs, T);
}

/**
 * One q6_K super-block of 4 plain rows (row r's at w + r·rs) or of a q6_Kx4 group (x4, at w) × T
 * tokens (token t's record at x + t·xs): adds each token's value to its running sum (P.acc_t).
 */
// @ts-ignore: decorator
@inline function super_block6(w: usize, rs: usize, x: usize, xs: usize, T: i32, x4: bool): void {
  const m = v128.load(C_NIBBLE_MASK);
  if (x4) header6x4(w);
  else header6(w, rs);
  const z = i32x4.splat(0);
  kp_s0 = z; kp_s1 = z; kp_s2 = z; kp_s3 = z; kp_s4 = z; kp_s5 = z; kp_s6 = z; kp_s7 = z;
  if (T > 8) { kp_s8 = z; kp_s9 = z; kp_s10 = z; kp_s11 = z; kp_s12 = z; kp_s13 = z; kp_s14 = z; kp_s15 = z; }
  if (x4) {
    const hi = i8x16.shl(i8x16.shr_u(m, 2), 6); // 0xC0 bytes
    for (let p: usize = 0; p < 8; p++) pair6x4(w, x, xs, T, p, hi);
  } else for (let n = 0; n < 2; n++) {
    const qh = w + 128 + (<usize>n << 5), ql = w + (<usize>n << 6), xn = x + (<usize>n << 7);
    // the half's qh bytes in chunk form (kp_q0..7): the high parts of every quarter
    fifth_bits(qh, rs);
    half_scales6(w + 192 + (<usize>n << 3), rs);
    quarters6(ql, rs, xn, xs, T, 0, m);
    quarters6(ql + 32, rs, xn + 32, xs, T, 1, m);
  }
  P.acc0 = f32x4.add(P.acc0, sb6_value(kp_s0, x));
  if (T > 1) P.acc1 = f32x4.add(P.acc1, sb6_value(kp_s1, x + 1 * xs));
  if (T > 2) P.acc2 = f32x4.add(P.acc2, sb6_value(kp_s2, x + 2 * xs));
  if (T > 3) P.acc3 = f32x4.add(P.acc3, sb6_value(kp_s3, x + 3 * xs));
  if (T > 4) P.acc4 = f32x4.add(P.acc4, sb6_value(kp_s4, x + 4 * xs));
  if (T > 5) P.acc5 = f32x4.add(P.acc5, sb6_value(kp_s5, x + 5 * xs));
  if (T > 6) P.acc6 = f32x4.add(P.acc6, sb6_value(kp_s6, x + 6 * xs));
  if (T > 7) P.acc7 = f32x4.add(P.acc7, sb6_value(kp_s7, x + 7 * xs));
  if (T > 8) P.acc8 = f32x4.add(P.acc8, sb6_value(kp_s8, x + 8 * xs));
  if (T > 9) P.acc9 = f32x4.add(P.acc9, sb6_value(kp_s9, x + 9 * xs));
  if (T > 10) P.acc10 = f32x4.add(P.acc10, sb6_value(kp_s10, x + 10 * xs));
  if (T > 11) P.acc11 = f32x4.add(P.acc11, sb6_value(kp_s11, x + 11 * xs));
  if (T > 12) P.acc12 = f32x4.add(P.acc12, sb6_value(kp_s12, x + 12 * xs));
  if (T > 13) P.acc13 = f32x4.add(P.acc13, sb6_value(kp_s13, x + 13 * xs));
  if (T > 14) P.acc14 = f32x4.add(P.acc14, sb6_value(kp_s14, x + 14 * xs));
  if (T > 15) P.acc15 = f32x4.add(P.acc15, sb6_value(kp_s15, x + 15 * xs));
}

/** qh moved so that its bits b, b + 1 (b even) land on bits 4-5 of each byte (the bits around them are masked off after). */
// @ts-ignore: decorator
@inline function bits_to_45(h: v128, b: i32): v128 {
  return b < 4 ? i16x8.shl(h, 4 - b) : b == 4 ? h : i16x8.shr_u(h, b - 4);
}

/** q6_K weights (0..63) from quant bytes c (low nibbles) and qh bytes h (bits b, b + 1), chunk form. */
// @ts-ignore: decorator
@inline function lo6(c: v128, h: v128, b: i32, m: v128, m30: v128): v128 {
  return v128.or(v128.and(c, m), v128.and(bits_to_45(h, b), m30));
}
/** As lo6 from the high nibbles of c. */
// @ts-ignore: decorator
@inline function hi6(c: v128, h: v128, b: i32, m: v128, m30: v128): v128 {
  return v128.or(v128.and(i16x8.shr_u(c, 4), m), v128.and(bits_to_45(h, b), m30));
}

// One function per layout and tile width: V8 allocates registers per function.
function sb_t1(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 1, L_X4); }
function sb_t2(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 2, L_X4); }
function sb_t3(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 3, L_X4); }
function sb_t4(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 4, L_X4); }
function sb_t8(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 8, L_X4); }
function sb_t16(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 16, L_X4); }
function sbp_t1(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 1, L_Q4K); }
function sbp_t2(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 2, L_Q4K); }
function sbp_t3(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 3, L_Q4K); }
function sbp_t4(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 4, L_Q4K); }
function sbp_t8(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 8, L_Q4K); }
function sbp_t16(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 16, L_Q4K); }
function sb5_t1(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 1, L_Q5K); }
function sb5_t2(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 2, L_Q5K); }
function sb5_t3(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 3, L_Q5K); }
function sb5_t4(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 4, L_Q5K); }
function sb5_t8(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 8, L_Q5K); }
function sb5_t16(w: usize, rs: usize, x: usize, xs: usize): void { super_block(w, rs, x, xs, 16, L_Q5K); }
function sb6_t1(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 1, false); }
function sb6_t2(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 2, false); }
function sb6_t3(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 3, false); }
function sb6_t4(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 4, false); }
function sb6_t8(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 8, false); }
function sb6_t16(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 16, false); }
function sb6x_t1(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 1, true); }
function sb6x_t2(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 2, true); }
function sb6x_t3(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 3, true); }
function sb6x_t4(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 4, true); }
function sb6x_t8(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 8, true); }
function sb6x_t16(w: usize, rs: usize, x: usize, xs: usize): void { super_block6(w, rs, x, xs, 16, true); }

// @ts-ignore: decorator
@inline function sb(w: usize, rs: usize, x: usize, xs: usize, T: i32, lay: i32): void {
  if (lay == L_Q6X4) {
    if (T == 16) sb6x_t16(w, rs, x, xs);
    else if (T == 8) sb6x_t8(w, rs, x, xs);
    else if (T == 4) sb6x_t4(w, rs, x, xs);
    else if (T == 3) sb6x_t3(w, rs, x, xs);
    else if (T == 2) sb6x_t2(w, rs, x, xs);
    else sb6x_t1(w, rs, x, xs);
  } else if (lay == L_Q6K) {
    if (T == 16) sb6_t16(w, rs, x, xs);
    else if (T == 8) sb6_t8(w, rs, x, xs);
    else if (T == 4) sb6_t4(w, rs, x, xs);
    else if (T == 3) sb6_t3(w, rs, x, xs);
    else if (T == 2) sb6_t2(w, rs, x, xs);
    else sb6_t1(w, rs, x, xs);
  } else if (lay == L_Q5K) {
    if (T == 16) sb5_t16(w, rs, x, xs);
    else if (T == 8) sb5_t8(w, rs, x, xs);
    else if (T == 4) sb5_t4(w, rs, x, xs);
    else if (T == 3) sb5_t3(w, rs, x, xs);
    else if (T == 2) sb5_t2(w, rs, x, xs);
    else sb5_t1(w, rs, x, xs);
  } else if (lay == L_Q4K) {
    if (T == 16) sbp_t16(w, rs, x, xs);
    else if (T == 8) sbp_t8(w, rs, x, xs);
    else if (T == 4) sbp_t4(w, rs, x, xs);
    else if (T == 3) sbp_t3(w, rs, x, xs);
    else if (T == 2) sbp_t2(w, rs, x, xs);
    else sbp_t1(w, rs, x, xs);
  } else {
    if (T == 16) sb_t16(w, rs, x, xs);
    else if (T == 8) sb_t8(w, rs, x, xs);
    else if (T == 4) sb_t4(w, rs, x, xs);
    else if (T == 3) sb_t3(w, rs, x, xs);
    else if (T == 2) sb_t2(w, rs, x, xs);
    else sb_t1(w, rs, x, xs);
  }
}

/** Tokens' running sums after chain c (0..3) of super-blocks: kept (c 0, 1), joined (c 2: 0 + 2; c 3: (0 + 2) + (1 + 3)). */
// @ts-ignore: decorator
@inline function end_chain(c: i32, T: i32): void {
  if (c == 0) {
    kp_c0 = P.acc0; kp_c1 = P.acc1; kp_c2 = P.acc2; kp_c3 = P.acc3; kp_c4 = P.acc4; kp_c5 = P.acc5; kp_c6 = P.acc6; kp_c7 = P.acc7;
    if (T > 8) { kp_c8 = P.acc8; kp_c9 = P.acc9; kp_c10 = P.acc10; kp_c11 = P.acc11; kp_c12 = P.acc12; kp_c13 = P.acc13; kp_c14 = P.acc14; kp_c15 = P.acc15; }
  } else if (c == 1) {
    kp_e0 = P.acc0; kp_e1 = P.acc1; kp_e2 = P.acc2; kp_e3 = P.acc3; kp_e4 = P.acc4; kp_e5 = P.acc5; kp_e6 = P.acc6; kp_e7 = P.acc7;
    if (T > 8) { kp_e8 = P.acc8; kp_e9 = P.acc9; kp_e10 = P.acc10; kp_e11 = P.acc11; kp_e12 = P.acc12; kp_e13 = P.acc13; kp_e14 = P.acc14; kp_e15 = P.acc15; }
  } else if (c == 2) {
    kp_c0 = f32x4.add(kp_c0, P.acc0);
    if (T > 1) kp_c1 = f32x4.add(kp_c1, P.acc1);
    if (T > 2) kp_c2 = f32x4.add(kp_c2, P.acc2);
    if (T > 3) kp_c3 = f32x4.add(kp_c3, P.acc3);
    if (T > 4) kp_c4 = f32x4.add(kp_c4, P.acc4);
    if (T > 5) kp_c5 = f32x4.add(kp_c5, P.acc5);
    if (T > 6) kp_c6 = f32x4.add(kp_c6, P.acc6);
    if (T > 7) kp_c7 = f32x4.add(kp_c7, P.acc7);
    if (T > 8) kp_c8 = f32x4.add(kp_c8, P.acc8);
    if (T > 9) kp_c9 = f32x4.add(kp_c9, P.acc9);
    if (T > 10) kp_c10 = f32x4.add(kp_c10, P.acc10);
    if (T > 11) kp_c11 = f32x4.add(kp_c11, P.acc11);
    if (T > 12) kp_c12 = f32x4.add(kp_c12, P.acc12);
    if (T > 13) kp_c13 = f32x4.add(kp_c13, P.acc13);
    if (T > 14) kp_c14 = f32x4.add(kp_c14, P.acc14);
    if (T > 15) kp_c15 = f32x4.add(kp_c15, P.acc15);
  } else {
    P.acc0 = f32x4.add(kp_c0, f32x4.add(kp_e0, P.acc0));
    if (T > 1) P.acc1 = f32x4.add(kp_c1, f32x4.add(kp_e1, P.acc1));
    if (T > 2) P.acc2 = f32x4.add(kp_c2, f32x4.add(kp_e2, P.acc2));
    if (T > 3) P.acc3 = f32x4.add(kp_c3, f32x4.add(kp_e3, P.acc3));
    if (T > 4) P.acc4 = f32x4.add(kp_c4, f32x4.add(kp_e4, P.acc4));
    if (T > 5) P.acc5 = f32x4.add(kp_c5, f32x4.add(kp_e5, P.acc5));
    if (T > 6) P.acc6 = f32x4.add(kp_c6, f32x4.add(kp_e6, P.acc6));
    if (T > 7) P.acc7 = f32x4.add(kp_c7, f32x4.add(kp_e7, P.acc7));
    if (T > 8) P.acc8 = f32x4.add(kp_c8, f32x4.add(kp_e8, P.acc8));
    if (T > 9) P.acc9 = f32x4.add(kp_c9, f32x4.add(kp_e9, P.acc9));
    if (T > 10) P.acc10 = f32x4.add(kp_c10, f32x4.add(kp_e10, P.acc10));
    if (T > 11) P.acc11 = f32x4.add(kp_c11, f32x4.add(kp_e11, P.acc11));
    if (T > 12) P.acc12 = f32x4.add(kp_c12, f32x4.add(kp_e12, P.acc12));
    if (T > 13) P.acc13 = f32x4.add(kp_c13, f32x4.add(kp_e13, P.acc13));
    if (T > 14) P.acc14 = f32x4.add(kp_c14, f32x4.add(kp_e14, P.acc14));
    if (T > 15) P.acc15 = f32x4.add(kp_c15, f32x4.add(kp_e15, P.acc15));
  }
}

/** Sum of one word per 64-byte line of the group; kept in a global read at the end so that the optimizer keeps the loads. */
let kp_touched: i32 = 0;

/**
 * Reads one word of every 64-byte line of [p, p + n) in order: the chains visit the rows'
 * super-blocks 4 apart, which the hardware prefetchers follow badly where the weights come from
 * memory (the first tokens of a row block); loaded in order first, they arrive as a stream.
 */
// @ts-ignore: decorator
@inline function touch(p: usize, n: usize): void {
  let s: i32 = 0;
  for (let q = p; q < p + n; q += 64) s += load<i32>(q);
  kp_touched = s;
}

/**
 * 4 weight rows × T tokens (records at x + t·xs): L_X4, the group at w (super-block b at w + 576b);
 * plain, rows at w + r·rs (super-block b at + 144b or + 176b). Either way the 4 rows are the 4·rs
 * bytes from w. The chains of super-blocks one after another, then the leftover blocks; token t's
 * 4 values to y + t·sy (acc != 0 adds into Y).
 */
// @ts-ignore: decorator
@inline function tile(w: usize, rs: usize, nb: i32, x: usize, xs: usize, y: usize, sy: usize, acc: i32, T: i32, lay: i32): void {
  const bs: usize = lay == L_X4 ? X4K_BYTES : lay == L_Q4K ? Q4K_BYTES : lay == L_Q5K ? Q5K_BYTES : lay == L_Q6X4 ? 4 * Q6K_BYTES : Q6K_BYTES;
  const nb4 = nb & ~3;
  touch(w, rs << 2);
  P.zero_accs(T);
  if (nb4 > 0) {
    for (let c = 0; c < 4; c++) {
      if (c > 0) P.zero_accs(T);
      for (let b = c; b < nb4; b += 4) sb(w + <usize>b * bs, rs, x + <usize>b * Q8K_BYTES, xs, T, lay);
      end_chain(c, T);
    }
  }
  for (let b = nb4; b < nb; b++) sb(w + <usize>b * bs, rs, x + <usize>b * Q8K_BYTES, xs, T, lay);
  P.put_accs(y, sy, acc, T);
}

/** Weight rows [r0, r1) (4 at a time from r0; row n's bytes at W + n·rs, which is also an x4 group's start for n ≡ 0 mod 4) × T tokens. */
// @ts-ignore: decorator
@inline function row_block(W: usize, rs: usize, r0: i32, r1: i32, nb: i32, x: usize, xs: usize, yr: usize, sy: usize, acc: i32, T: i32, lay: i32): void {
  for (let n = r0; n < r1; n += 4) tile(W + <usize>n * rs, rs, nb, x, xs, yr + (<usize>n << 2), sy, acc, T, lay);
}

/**
 * Whether tiles take 16 tokens: with relaxed SIMD (one vpmaddubsw a udot16) 1.04-1.06× the 8-token
 * tile; in the plain-SIMD build (udot16 widens to i16: 5 more vector ops each) the 16-token tile ran
 * 0.76-0.80× gemm_k, the 8-token one 1.05× (`kprompt-ab`, busy host, CPU time alternated).
 */
const WIDE: bool = ASC_FEATURE_RELAXED_SIMD;

/**
 * Weight rows [r0, r1) (a multiple of 4 rows) × the M tokens at A into Y, 16 tokens at a time
 * where WIDE (then 8, 4, 3, 2, 1), in blocks of rows that stay in L2 while all tokens pass over them.
 */
// @ts-ignore: decorator
@inline function prompt_rows(A: usize, W: usize, Y: usize, ldy: i32, M: i32, r0: i32, r1: i32, K: i32, acc: i32, lay: i32): void {
  const nb = K >> 8;
  const rs = <usize>nb * (lay == L_Q6K || lay == L_Q6X4 ? Q6K_BYTES : lay == L_Q5K ? Q5K_BYTES : Q4K_BYTES), xs = <usize>nb * Q8K_BYTES, sy = <usize>ldy << 2;
  // Rows per block: ~96 KiB of weights stay in L2 while all activation rows pass over them.
  let rb = <i32>(<usize>98304 / rs) & ~3;
  if (rb < 4) rb = 4;
  for (let b0 = r0; b0 < r1; b0 += rb) {
    const b1 = min(b0 + rb, r1);
    for (let t = 0; t < M; ) {
      const left = M - t;
      const x = A + <usize>t * xs, yr = Y + <usize>t * sy;
      if (left >= 16 && WIDE) row_block(W, rs, b0, b1, nb, x, xs, yr, sy, acc, 16, lay);
      else if (left >= 8) row_block(W, rs, b0, b1, nb, x, xs, yr, sy, acc, 8, lay);
      else if (left >= 4) row_block(W, rs, b0, b1, nb, x, xs, yr, sy, acc, 4, lay);
      else if (left == 3) row_block(W, rs, b0, b1, nb, x, xs, yr, sy, acc, 3, lay);
      else if (left == 2) row_block(W, rs, b0, b1, nb, x, xs, yr, sy, acc, 2, lay);
      else row_block(W, rs, b0, b1, nb, x, xs, yr, sy, acc, 1, lay);
      t += left >= 16 && WIDE ? 16 : left >= 8 ? 8 : left >= 4 ? 4 : left;
    }
  }
}

/**
 * Whole q4_Kx4 groups: weight rows [g0, g1) (multiples of 4) of W times the M tokens at A into Y
 * [M][ldy] (acc != 0 adds into Y), each value with gemm_k's bits on the plain matrix; gemm-k-x4.ts
 * gemm_q4_kx4 calls it for 2 or more tokens.
 */
export function prompt_rows_x4(A: usize, W: usize, Y: usize, ldy: i32, M: i32, g0: i32, g1: i32, K: i32, acc: i32): void {
  prompt_rows(A, W, Y, ldy, M, g0, g1, K, acc, L_X4);
}

/**
 * Whole q6_Kx4 groups (gemm-q6k-x4.ts): weight rows [g0, g1) (multiples of 4) of W times the M
 * tokens at A into Y, each value with gemm_k's bits on the plain matrix; gemm_q6_kx4 calls it for 4
 * or more tokens.
 */
export function prompt_rows_q6x4(A: usize, W: usize, Y: usize, ldy: i32, M: i32, g0: i32, g1: i32, K: i32, acc: i32): void {
  prompt_rows(A, W, Y, ldy, M, g0, g1, K, acc, L_Q6X4);
}

/**
 * Plain q4_K weights W (rows of K/256 block_q4_K) times the q8_K activations at A (M rows,
 * quantize_act_q8k): rows [n0, n1) of Y [M][ldy] (acc != 0 adds into Y), as gemm_k gives them, bit
 * for bit. Rows 4 at a time from n0 through the tile; the 1-3 rows left go to gemm_k. Returns a
 * meaningless number that keeps the `kp_stage` and `kp_touched` globals read (Binaryen removes a
 * global nobody reads, and its stores with it).
 */
export function gemm_q4_k_prompt(A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): i32 {
  const g1 = n0 + ((n1 - n0) & ~3);
  if (n0 < g1) prompt_rows(A, W, Y, ldy, M, n0, g1, K, acc, L_Q4K);
  if (g1 < n1) gemm_k(KIND_Q4K, A, W, Y, ldy, M, g1, n1, K, acc);
  return i32x4.extract_lane(kp_stage, 0) + kp_touched;
}

/** Plain q5_K weights (rows of K/256 block_q5_K) as gemm_q4_k_prompt: each value with gemm_k's bits. */
export function gemm_q5_k_prompt(A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): i32 {
  const g1 = n0 + ((n1 - n0) & ~3);
  if (n0 < g1) prompt_rows(A, W, Y, ldy, M, n0, g1, K, acc, L_Q5K);
  if (g1 < n1) gemm_k(KIND_Q5K, A, W, Y, ldy, M, g1, n1, K, acc);
  return i32x4.extract_lane(kp_stage, 0) + kp_touched;
}

/** Plain q6_K weights (rows of K/256 block_q6_K) as gemm_q4_k_prompt: each value with gemm_k's bits. */
export function gemm_q6_k_prompt(A: usize, W: usize, Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, K: i32, acc: i32): i32 {
  const g1 = n0 + ((n1 - n0) & ~3);
  if (n0 < g1) prompt_rows(A, W, Y, ldy, M, n0, g1, K, acc, L_Q6K);
  if (g1 < n1) gemm_k(KIND_Q6K, A, W, Y, ldy, M, g1, n1, K, acc);
  return i32x4.extract_lane(kp_stage, 0) + kp_touched;
}
