// q4_Kx4: q4_K weight rows interleaved by 4 (repack.ts), times q8_K activations (gemm-k.ts
// quantize_act_q8k). Per group of 4 rows and 256-value super-block, 576 bytes:
//   0-7 the 4 rows' fp16 d, 8-15 their fp16 dmin, 16-63 their 6-bit scales and mins packed as
//   the tiles use them (three vectors A, B, C: gemm-k.ts unpack_x4), then the quants in chunk form: chunk j (each row's
//   bytes 32j..32j+31: low nibbles = values 64j..64j+31, high nibbles = 64j+32..64j+63) at
//   64 + 128j, its vector k (16 bytes at + 16k) holding bytes 4k..4k+3 of rows 0-3, row r in i32
//   lane r.
// In chunk form every vpmaddubsw leaves each row's products in its own lanes (lanes = rows, as
// llama.cpp's q4_K_8x8 repack and gemv do with 256-bit vectors), so no horizontal sums are needed:
// a 4-byte activation chunk broadcast from memory (one vbroadcastss) serves the 4 rows. The prompt
// tile (gemm-k-prompt.ts) reads the same vectors as they are; it used to transpose 4 contiguous rows
// into this form (16 shuffles a chunk).
//
// A row's value is gemm_k's on the plain matrix, bit for bit: the same exact integers, then
// (d·d_x)·sumi − (dmin·d_x)·summ in f32 (d, dmin exact: gemm_k's fp16 table values), summed over
// super-blocks in four chains (blocks mod 4), joined ((0 + 2) + (1 + 3)), then the leftovers.
import { C_NIBBLE_MASK } from './tables';
import {
  Q8K_BYTES, X4K_BYTES, dequant45, dequant_row_k, f32_x4, gemm_k, mins_of_x4, udot16, unpack_x4, x4_scale_byte,
} from './gemm-k';
import { x4_scale_at, x4_scale_bits, x4_scales4 } from './x4-scale';
import { chunk_of, prompt_rows_x4 } from './gemm-k-prompt';

/** Bytes of one plain q4_K super-block (block_q4_K). */
const Q4K_BYTES: usize = 144;
/** gemm_k's type id of q4_K. */
const KIND_Q4K = 5;

// The super-block's 6-bit scales and mins as unpack_x4 leaves them (kx_u0 / kx_u1: the scales of
// sub-blocks 0-3 / 4-7, byte 4j + r = row r's; kx_e0 / kx_e1: the mins as mins_of_x4 pairs them),
// each chunk's two pmaddwd operands widened from them just before it (chunk_scales), and a stage
// value written to order loads (chunk_x4). Wasm globals are per instance, i.e. per thread; V8
// reads and writes them as memory: four vectors stored and read back where the eight scale vectors
// and four mins vectors widened up front were twelve of each (512 → 498 instructions a group
// super-block: `bash bench/wasm-code.sh tile1x4_q4k`, loop-mix). A write keeps the loads written
// after it after it: without one TurboFan issues all of a super-block's 64 loads first and spills
// them (~530 stack accesses).
let kx_u0: v128 = i32x4.splat(0), kx_u1: v128 = i32x4.splat(0), kx_e0: v128 = i32x4.splat(0), kx_e1: v128 = i32x4.splat(0);
let kx_stage: v128 = i32x4.splat(0);

/** The 6-bit scales and mins of the 4 rows of the q4_Kx4 group super-block at w (unpack_x4) into kx_u0, kx_u1, kx_e0, kx_e1. */
// @ts-ignore: decorator
@inline function scales_x4(w: usize, m: v128): void {
  const a = v128.load(w, 16), b = v128.load(w, 32), c = v128.load(w, 48);
  const m30 = i8x16.splat(0x30);
  kx_u0 = unpack_x4(a, b, c, m, m30, 0);
  kx_u1 = unpack_x4(a, b, c, m, m30, 1);
  kx_e0 = unpack_x4(a, b, c, m, m30, 2);
  kx_e1 = unpack_x4(a, b, c, m, m30, 3);
}

/**
 * Chunk j's scales (sub-blocks 2j, 2j + 1) from u (kx_u0 for j < 2, else kx_u1): each row's byte
 * doubled and widened, row r's scale at i16 lanes 2r, 2r + 1 (the pmaddwd operand for sums with
 * lanes = rows); low: sub-block 2j (high = false) or 2j + 1.
 */
// @ts-ignore: decorator
@inline function chunk_scales(u: v128, j: i32, high: bool): v128 {
  const t = (j & 1) == 0
    ? v128.shuffle<u8>(u, u, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7)
    : v128.shuffle<u8>(u, u, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
  return high ? i16x8.extend_high_i8x16_u(t) : i16x8.extend_low_i8x16_u(t);
}

/** i16 sums (row r's pairs in lanes 2r, 2r + 1) of the 4 weight vectors a0..a3 × the 4-byte activation pieces at xp..xp+15. */
// @ts-ignore: decorator
@inline function dot4_x4(a0: v128, a1: v128, a2: v128, a3: v128, xp: usize): v128 {
  return i16x8.add(
    i16x8.add(udot16(a0, v128.load32_splat(xp)), udot16(a1, v128.load32_splat(xp, 4))),
    i16x8.add(udot16(a2, v128.load32_splat(xp, 8)), udot16(a3, v128.load32_splat(xp, 12))));
}

/**
 * Chunk j of a q4_Kx4 super-block (its 8 vectors at q) × the activations at xp (= x + 64j), lanes
 * = rows, added to s (first: s is zero, not added). Per half h (vectors q + 64h.., bytes
 * 16h..16h+15 of the 4 rows' 32): sub-block 2j from the low nibbles (activations xp + 16h..),
 * 2j + 1 from the high nibbles (xp + 32 + 16h..), summed in i16 (row r's pairs in lanes 2r, 2r + 1,
 * at most 4·2·15·127 = 15240 a half), the two halves added (30480: still i16), then scaled by one
 * pmaddwd per sub-block (sl, sh: row r's scale at lanes 2r, 2r + 1). The stores order the loads:
 * each half's high-nibble activations after its low sums, the second half's loads after the first
 * half's sums; s itself stays in a register (a sum read back from memory puts a store-to-load
 * wait on the chain).
 */
// @ts-ignore: decorator
@inline function chunk_x4(q: usize, xp: usize, sl: v128, sh: v128, m: v128, s: v128, first: bool): v128 {
  const a0 = v128.load(q), a1 = v128.load(q, 16), a2 = v128.load(q, 32), a3 = v128.load(q, 48);
  const lo0 = dot4_x4(v128.and(a0, m), v128.and(a1, m), v128.and(a2, m), v128.and(a3, m), xp);
  kx_stage = lo0;
  const hi0 = dot4_x4(v128.and(i16x8.shr_u(a0, 4), m), v128.and(i16x8.shr_u(a1, 4), m),
    v128.and(i16x8.shr_u(a2, 4), m), v128.and(i16x8.shr_u(a3, 4), m), xp + 32);
  kx_stage = hi0;
  const b0 = v128.load(q, 64), b1 = v128.load(q, 80), b2 = v128.load(q, 96), b3 = v128.load(q, 112);
  const lo = i16x8.add(lo0, dot4_x4(v128.and(b0, m), v128.and(b1, m), v128.and(b2, m), v128.and(b3, m), xp + 16));
  kx_stage = lo;
  const hi = i16x8.add(hi0, dot4_x4(v128.and(i16x8.shr_u(b0, 4), m), v128.and(i16x8.shr_u(b1, 4), m),
    v128.and(i16x8.shr_u(b2, 4), m), v128.and(i16x8.shr_u(b3, 4), m), xp + 48));
  const c = i32x4.add(i32x4.dot_i16x8_s(lo, sl), i32x4.dot_i16x8_s(hi, sh));
  const r = first ? c : i32x4.add(s, c);
  kx_stage = r;
  return r;
}

/**
 * One q4_Kx4 group super-block at w × the q8_K record at x; lanes = the 4 rows. Row r's lane is
 * four45's value for that row: the same exact integers, then (d·d_x)·sumi − (dmin·d_x)·summ.
 * Inlined into the row loop: as a function, each call cost ~40 instructions of spills and call
 * overhead around it (`bash bench/wasm-code.sh tile1x4_q4k`: 485 a super-block inlined, the
 * row loop's main loop).
 */
// @ts-ignore: decorator
@inline function sb_q4kx4(w: usize, x: usize, m: v128): v128 {
  scales_x4(w, m);
  const q = w + 64;
  let u = kx_u0;
  let s = chunk_x4(q, x, chunk_scales(u, 0, false), chunk_scales(u, 0, true), m, i32x4.splat(0), true);
  u = kx_u0;
  s = chunk_x4(q + 128, x + 64, chunk_scales(u, 1, false), chunk_scales(u, 1, true), m, s, false);
  u = kx_u1;
  s = chunk_x4(q + 256, x + 128, chunk_scales(u, 2, false), chunk_scales(u, 2, true), m, s, false);
  u = kx_u1;
  s = chunk_x4(q + 384, x + 192, chunk_scales(u, 3, false), chunk_scales(u, 3, true), m, s, false);
  const e0 = kx_e0, e1 = kx_e1;
  const summ = mins_of_x4(i16x8.extend_low_i8x16_u(e0), i16x8.extend_high_i8x16_u(e0), i16x8.extend_low_i8x16_u(e1), i16x8.extend_high_i8x16_u(e1), x);
  return f32_x4(x4_scales4(w), x4_scales4(w + 8), x, s, summ);
}

/** Stores lanes [l0, l1) of s (the group's weight rows) at y + 4·lane (also gemm-q6k-x4.ts). */
// @ts-ignore: decorator
@inline export function put_lanes(y: usize, s: v128, acc: i32, l0: i32, l1: i32): void {
  if (l0 == 0 && l1 == 4) {
    v128.store(y, acc ? f32x4.add(v128.load(y), s) : s);
    return;
  }
  for (let r = 0; r < 4; r++) {
    if (r >= l0 && r < l1) {
      const v = f32x4.extract_lane(s, 0);
      const p = y + (<usize>r << 2);
      store<f32>(p, acc ? load<f32>(p) + v : v);
    }
    s = v128.shuffle<u32>(s, s, 1, 2, 3, 0);
  }
}

/**
 * The 4 rows of the q4_Kx4 group at w (nb super-blocks) × one activation row (records at x), lanes
 * = rows: super-block values summed in four chains (blocks mod 4, rotated through a0..a3), joined
 * ((0 + 2) + (1 + 3)), then the leftover blocks in order — gemm_k's order, so each row's bits are
 * gemm_k's. Stores lanes [l0, l1) at y + lane·4 (a group cut by a thread's row range).
 */
function tile1x4_q4k(w: usize, nb: i32, x: usize, y: usize, acc: i32, l0: i32, l1: i32, m: v128): void {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const nb4 = nb & ~3;
  for (let b = 0; b < nb4; b++) {
    const v = f32x4.add(a0, sb_q4kx4(w, x, m));
    a0 = a1; a1 = a2; a2 = a3; a3 = v;
    w += X4K_BYTES; x += Q8K_BYTES;
  }
  let s = f32x4.add(f32x4.add(a0, a2), f32x4.add(a1, a3));
  for (let b = nb4; b < nb; b++) {
    s = f32x4.add(s, sb_q4kx4(w, x, m));
    w += X4K_BYTES; x += Q8K_BYTES;
  }
  put_lanes(y, s, acc, l0, l1);
}

/**
 * Weight rows [n0, n1) of the q4_Kx4 matrix W (N rows) × the one activation row at x (nb records)
 * into y (row n at y + 4n): the groups through tile1x4_q4k (lanes cut to [n0, n1)), the plain rows
 * after the last group through gemm_k.
 */
function rows_one(x: usize, W: usize, y: usize, N: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const nb = K >> 8;
  const grp = <usize>nb * Q4K_BYTES * 4;
  const ng = N & ~3, p1 = min(n1, ng);
  const m = v128.load(C_NIBBLE_MASK);
  for (let n = n0; n < p1; ) {
    const gs = n & ~3;
    tile1x4_q4k(W + <usize>(gs >> 2) * grp, nb, x, y + (<usize>gs << 2), acc, n - gs, min(4, p1 - gs), m);
    n = gs + 4;
  }
  if (n1 > ng) gemm_k(KIND_Q4K, x, W, y, 0, 1, max(n0, ng), n1, K, acc);
}

/**
 * Activation rows from which gemm_q4_kx4 takes the prompt tile; fewer go one at a time through the
 * decode tile. Against plain gemm_k (`decode-ab MAIN NEW --only q4_k --m 1,2,3,4,8,15 --cold
 * --k-paths plain,x4`, busy host, CPU time p25, 1B and 7B shapes): the prompt tile ran 0.75-1.09×
 * at 2 rows (its per-super-block setup shared by too few tokens), 0.93-1.15× at 4, 1.05-1.27× at
 * 8-15; the decode tile per row 1.04-1.38× at 2 rows, 0.95-1.04× at 3.
 */
const DECODE_TILE_ROWS = 4;

/**
 * q4_Kx4 weights W (N rows of K/256 super-blocks) times the q8_K activations at A (M rows): rows
 * [n0, n1) of Y [M][ldy] (acc != 0 adds into Y), each value with gemm_k's bits on the plain matrix.
 * Under DECODE_TILE_ROWS activation rows: tile1x4_q4k per activation row, 4 weight rows per
 * activation load. More: the whole groups through the prompt tile (4 weight rows × up to 16
 * tokens); rows of a group cut by [n0, n1) and the plain rows after the last group one activation
 * row at a time.
 */
export function gemm_q4_kx4(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32): void {
  const xs = <usize>(K >> 8) * Q8K_BYTES, sy = <usize>ldy << 2;
  if (M < DECODE_TILE_ROWS) {
    // blocks of ~96 KiB of weight rows stay in L2 while each activation row passes over them
    let rb = <i32>(<usize>98304 / (<usize>(K >> 8) * Q4K_BYTES)) & ~3;
    if (rb < 4) rb = 4;
    for (let r0 = n0; r0 < n1; r0 += rb) {
      const r1 = min(r0 + rb, n1);
      for (let t = 0; t < M; t++) rows_one(A + <usize>t * xs, W, Y + <usize>t * sy, N, r0, r1, K, acc);
    }
    return;
  }
  const g0 = min((n0 + 3) & ~3, n1), g1 = max(g0, min(n1, N & ~3) & ~3);
  if (g0 < g1) prompt_rows_x4(A, W, Y, ldy, M, g0, g1, K, acc);
  for (let t = 0; t < M; t++) {
    const x = A + <usize>t * xs, y = Y + <usize>t * sy;
    if (n0 < g0) rows_one(x, W, y, N, n0, g0, K, acc);
    if (g1 < n1) rows_one(x, W, y, N, g1, n1, K, acc);
  }
}

/**
 * gemm_q4_kx4 under the prompt kernels' name (benches and tests call it). Returns a meaningless lane of
 * kx_stage, which keeps that global read (Binaryen removes a global nobody reads, and its stores).
 */
export function gemm_q4_kx4_prompt(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32): i32 {
  gemm_q4_kx4(A, W, Y, ldy, M, N, n0, n1, K, acc);
  return i32x4.extract_lane(kx_stage, 0);
}

/**
 * Rows [0, rows) (a multiple of 4) of a plain q4_K matrix at W rewritten in place as q4_Kx4
 * groups, d and dmin in x4-scale.ts's encoding (raw != 0: fp16 as stored, for a model switched to
 * raw scales; a half without an encoding is written as 0: x4_scales_check first); tmp: scratch of
 * 4 rows' bytes. Each chunk's quants are transposed 16 bytes a row at a time (chunk_of): 0.8 ms
 * for 9.4 MB against 2.2 ms with a u32 load and store per piece.
 */
export function repack_q4_kx4(W: usize, rows: i32, K: i32, tmp: usize, raw: i32): void {
  const nb = K >> 8;
  const rb = <usize>nb * Q4K_BYTES, grp = <usize>nb * X4K_BYTES;
  for (let gi = 0; gi < (rows >> 2); gi++) {
    const gw = W + <usize>gi * grp;
    memory.copy(tmp, gw, grp);
    let src = tmp, dst = gw;
    for (let b = 0; b < nb; b++) {
      for (let i: usize = 0; i < 4; i++) {
        const h = src + i * rb;
        const d = <u32>load<u16>(h), dmin = <u32>load<u16>(h + 2);
        store<u16>(dst + 2 * i, <u16>(raw ? d : max(x4_scale_bits(d), 0)));
        store<u16>(dst + 8 + 2 * i, <u16>(raw ? dmin : max(x4_scale_bits(dmin), 0)));
      }
      for (let i = 0; i < 16; i++) {
        store<u8>(dst + 16 + <usize>i, x4_scale_byte(src + 4, rb, i, 0));
        store<u8>(dst + 32 + <usize>i, x4_scale_byte(src + 4, rb, i, 1));
        store<u8>(dst + 48 + <usize>i, x4_scale_byte(src + 4, rb, i, 2));
      }
      for (let j: usize = 0; j < 4; j++) {
        const q = src + 16 + 32 * j, c = dst + 64 + 128 * j;
        const a0 = v128.load(q), a1 = v128.load(q + rb), a2 = v128.load(q + 2 * rb), a3 = v128.load(q + 3 * rb);
        v128.store(c, chunk_of(a0, a1, a2, a3, 0));
        v128.store(c, chunk_of(a0, a1, a2, a3, 1), 16);
        v128.store(c, chunk_of(a0, a1, a2, a3, 2), 32);
        v128.store(c, chunk_of(a0, a1, a2, a3, 3), 48);
        const b0 = v128.load(q, 16), b1 = v128.load(q + rb, 16), b2 = v128.load(q + 2 * rb, 16), b3 = v128.load(q + 3 * rb, 16);
        v128.store(c, chunk_of(b0, b1, b2, b3, 0), 64);
        v128.store(c, chunk_of(b0, b1, b2, b3, 1), 80);
        v128.store(c, chunk_of(b0, b1, b2, b3, 2), 96);
        v128.store(c, chunk_of(b0, b1, b2, b3, 3), 112);
      }
      src += Q4K_BYTES; dst += X4K_BYTES;
    }
  }
}

/** out[0..K) = row r of a q4_Kx4 matrix of N rows, widened to f32 (as dequant_row_k). */
export function dequant_row_q4_kx4(W: usize, N: i32, K: i32, r: i32, out: usize): void {
  if (r >= (N & ~3)) {
    dequant_row_k(KIND_Q4K, W, K, r, out);
    return;
  }
  const nb = K >> 8;
  const i = <usize>(r & 3);
  let w = W + <usize>(r >> 2) * <usize>nb * X4K_BYTES;
  let y = out;
  for (let b = 0; b < nb; b++) {
    dequant45(x4_scale_at(w + 2 * i), x4_scale_at(w + 8 + 2 * i), w + i, true, w + 64 + 4 * i, false, w, y);
    w += X4K_BYTES;
    y += 1024;
  }
}
