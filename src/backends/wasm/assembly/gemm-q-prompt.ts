// Prompt products (many activation rows) over row-interleaved q4_0x4 / q8_0x4 weights (repack.ts:
// per group of 4 weight rows and per 32-weight block, the 4 fp16 scales, then the 4 rows' quants).
//
// Tile: 4 weight rows × up to 16 activation rows (tokens), lanes = weight rows. Relaxed SIMD: per
// block the 4 rows' quants are transposed into 4-byte chunks (chunk j of all 4 rows in one
// vector) and prepared once (q4_0: nibbles; q8_0: |w| and sign masks), their scales converted
// once; each token's activation chunks are broadcast from memory against them, so every
// vpmaddubsw leaves each row's products in its own lanes and the block sums need no
// transposition. Plain SIMD: the q4_0 tile reduces each token's 4 rows with a transpose
// (reduce4_i16 / tsum4); q8_0 runs gemm_q8_0x4. docs/cpu-profile.md has the instruction counts.
// Per (row, token) the arithmetic is the 4-row tile's in gemm-q.ts: exact integer block sum (minus
// 8·Σq_x for q4_0), times d_w·d_x, added block after block in K order, so the results are
// bit-identical to gemm_q4_0 / gemm_q8_0 on the plain matrix for activation rows in whole groups of 4.
import { C_F16_RAWMASK, C_NIBBLE_MASK, C_ONES_I16, C_X4_UNIT } from './tables';
import { group_bytes, off_dx4, off_sx4 } from './quant-act';
import { dot_nib, gemm_q4_0, gemm_q8_0x4, half4_scaled, reduce4_i16, tsum4 } from './gemm-q';
import { dot_chunks8 } from './gemm-q-dot';
import { q8_half_dot, q8_neg_dot } from './gemm-q8-dot';

/**
 * Weight bytes of a row block: its rows stay in L2 while every activation row passes over them
 * (16-token tiles), so the activations of all M tokens are read once per row block, from L3 once
 * M·K no longer fits L2. 256 KiB (with a 16-token tile's activations, under 600 KiB at K = 16384)
 * instead of 96 KiB reads them a third as often at K >= 8192: 1.02–1.09× on the down products
 * (decode-ab --m 128 --only prompt, busy host, alternated; docs/cpu-profile.md), no change elsewhere.
 */
const ROW_BLOCK_BYTES: usize = 262144;

/** Bytes of one q4_0x4 block (4 scales + 4 × 16 quant bytes). */
const QB4: usize = 72;

/** The 4 rows' scales at w as f32x4, exact (half4_scaled's d_w·2^-102 times 2^102, x4-scale.ts). */
// @ts-ignore: decorator
@inline function scales_x4(w: usize, rawmask: v128, kunit: v128): v128 {
  return f32x4.mul(half4_scaled(w, rawmask), kunit);
}

/** [Σ row 0, …, Σ row 3] of nibbles · activations of one token's block at xp (l_r / h_r: row r's low / high nibbles). */
// @ts-ignore: decorator
@inline function row_sums4(l0: v128, h0: v128, l1: v128, h1: v128, l2: v128, h2: v128, l3: v128, h3: v128, xp: usize, ones: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) {
    const xa = v128.load(xp), xb = v128.load(xp, 16);
    return reduce4_i16(
      i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xa, l0), i16x8.relaxed_dot_i8x16_i7x16_s(xb, h0)),
      i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xa, l1), i16x8.relaxed_dot_i8x16_i7x16_s(xb, h1)),
      i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xa, l2), i16x8.relaxed_dot_i8x16_i7x16_s(xb, h2)),
      i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(xa, l3), i16x8.relaxed_dot_i8x16_i7x16_s(xb, h3)), ones);
  }
  return tsum4(dot_nib(l0, h0, xp), dot_nib(l1, h1, xp), dot_nib(l2, h2, xp), dot_nib(l3, h3, xp));
}

/** a + (S - 8·Σq_x) · (d_w · d_x) for one token: dx / sx = its d_x and 8·Σq_x (f32 / i32 at these addresses). */
// @ts-ignore: decorator
@inline function fma_block(a: v128, s: v128, dw: v128, dx: usize, sx: usize): v128 {
  return f32x4.add(a, f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(s, v128.load32_splat(sx))), f32x4.mul(dw, v128.load32_splat(dx))));
}

// @ts-ignore: decorator
@inline function put4(y: usize, v: v128, acc: i32): void {
  if (acc) v128.store(y, f32x4.add(v128.load(y), v));
  else v128.store(y, v);
}

/**
 * 4 weight rows (the group at w) × T tokens (T = 1..4, a constant after inlining): token j's
 * quants of block b at xp + b·128 + j·32, its d_x at dp + b·16 + j·4 and 8·Σq_x at sp + b·16 + j·4
 * (a group record of quant-act.ts, from the tile's first token); its 4 outputs to y + j·sy.
 */
// @ts-ignore: decorator
@inline function tile_body(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, y: usize, sy: usize, acc: i32, T: i32, m: v128, ones: v128, rm: v128, kunit: v128): void {
  let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
  const wend = w + <usize>nb * QB4;
  while (w < wend) {
    const dw = scales_x4(w, rm, kunit);
    const v0 = v128.load(w, 8), v1 = v128.load(w, 24), v2 = v128.load(w, 40), v3 = v128.load(w, 56);
    const l0 = v128.and(v0, m), h0 = v128.and(i16x8.shr_u(v0, 4), m);
    const l1 = v128.and(v1, m), h1 = v128.and(i16x8.shr_u(v1, 4), m);
    const l2 = v128.and(v2, m), h2 = v128.and(i16x8.shr_u(v2, 4), m);
    const l3 = v128.and(v3, m), h3 = v128.and(i16x8.shr_u(v3, 4), m);
    a0 = fma_block(a0, row_sums4(l0, h0, l1, h1, l2, h2, l3, h3, xp, ones), dw, dp, sp);
    if (T > 1) a1 = fma_block(a1, row_sums4(l0, h0, l1, h1, l2, h2, l3, h3, xp + 32, ones), dw, dp + 4, sp + 4);
    if (T > 2) a2 = fma_block(a2, row_sums4(l0, h0, l1, h1, l2, h2, l3, h3, xp + 64, ones), dw, dp + 8, sp + 8);
    if (T > 3) a3 = fma_block(a3, row_sums4(l0, h0, l1, h1, l2, h2, l3, h3, xp + 96, ones), dw, dp + 12, sp + 12);
    w += QB4; xp += 128; dp += 16; sp += 16;
  }
  put4(y, a0, acc);
  if (T > 1) put4(y + sy, a1, acc);
  if (T > 2) put4(y + 2 * sy, a2, acc);
  if (T > 3) put4(y + 3 * sy, a3, acc);
}

/**
 * Stage boundaries and accumulators. TurboFan schedules every memory load of a basic block ahead
 * of the block's arithmetic, so a tile that loads all it needs at the top of an iteration runs out
 * of the 16 xmm registers and spills. A store of a finished value puts it on the effect chain:
 * loads written after the store stay after it, and the arithmetic feeding it is done before.
 * Wasm globals are per instance, i.e. per thread, so the tiles keep their token accumulators in
 * globals (a load and a store per block, no vector ALU work) and store a partial sum to `stage`.
 */
let stage: v128 = v128.splat<i32>(0);
export let acc0: v128 = v128.splat<i32>(0);
export let acc1: v128 = v128.splat<i32>(0);
export let acc2: v128 = v128.splat<i32>(0);
export let acc3: v128 = v128.splat<i32>(0);
export let acc4: v128 = v128.splat<i32>(0);
export let acc5: v128 = v128.splat<i32>(0);
export let acc6: v128 = v128.splat<i32>(0);
export let acc7: v128 = v128.splat<i32>(0);
export let acc8: v128 = v128.splat<i32>(0);
export let acc9: v128 = v128.splat<i32>(0);
export let acc10: v128 = v128.splat<i32>(0);
export let acc11: v128 = v128.splat<i32>(0);
export let acc12: v128 = v128.splat<i32>(0);
export let acc13: v128 = v128.splat<i32>(0);
export let acc14: v128 = v128.splat<i32>(0);
export let acc15: v128 = v128.splat<i32>(0);

// @ts-ignore: decorator
@inline export function zero_accs(T: i32 = 8): void {
  const z = f32x4.splat(0);
  acc0 = z; acc1 = z; acc2 = z; acc3 = z; acc4 = z; acc5 = z; acc6 = z; acc7 = z;
  if (T > 8) { acc8 = z; acc9 = z; acc10 = z; acc11 = z; acc12 = z; acc13 = z; acc14 = z; acc15 = z; }
}

/** Tokens 0..T-1's accumulators to y + j·sy (acc != 0 adds into Y). */
// @ts-ignore: decorator
@inline export function put_accs(y: usize, sy: usize, acc: i32, T: i32): void {
  put4(y, acc0, acc);
  if (T > 1) put4(y + sy, acc1, acc);
  if (T > 2) put4(y + 2 * sy, acc2, acc);
  if (T > 3) put4(y + 3 * sy, acc3, acc);
  if (T > 4) put4(y + 4 * sy, acc4, acc);
  if (T > 5) put4(y + 5 * sy, acc5, acc);
  if (T > 6) put4(y + 6 * sy, acc6, acc);
  if (T > 7) put4(y + 7 * sy, acc7, acc);
  if (T > 8) put4(y + 8 * sy, acc8, acc);
  if (T > 9) put4(y + 9 * sy, acc9, acc);
  if (T > 10) put4(y + 10 * sy, acc10, acc);
  if (T > 11) put4(y + 11 * sy, acc11, acc);
  if (T > 12) put4(y + 12 * sy, acc12, acc);
  if (T > 13) put4(y + 13 * sy, acc13, acc);
  if (T > 14) put4(y + 14 * sy, acc14, acc);
  if (T > 15) put4(y + 15 * sy, acc15, acc);
}

/** The 4 rows' scales of the current block (f32), kept out of the registers between tokens. */
let scales: v128 = v128.splat<i32>(0);

/**
 * The 32-bit value at p + 4j broadcast (j = 0..3, a constant after inlining: token j's d_x or
 * 8·Σq_x in a group record). A constant offset instead of p + 4j: V8 keeps memory base + 4j in a
 * register for the activation chunks' broadcasts already, so the load needs no address arithmetic
 * (one leal a token and value less in the prompt tiles' loops).
 */
// @ts-ignore: decorator
@inline function splat_at(p: usize, j: i32): v128 {
  if (j == 0) return v128.load32_splat(p);
  if (j == 1) return v128.load32_splat(p, 4);
  if (j == 2) return v128.load32_splat(p, 8);
  return v128.load32_splat(p, 12);
}

/** i16 lane sums of the nibbles l0..l3 (4-byte chunks j = 0..3, 4 rows each) times the 4-byte activation chunks at xq + 4j, broadcast. */
// @ts-ignore: decorator
@inline function chunk_dots(l0: v128, l1: v128, l2: v128, l3: v128, xq: usize): v128 {
  return i16x8.add(
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load32_splat(xq), l0), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load32_splat(xq, 4), l1)),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(v128.load32_splat(xq, 8), l2), i16x8.relaxed_dot_i8x16_i7x16_s(v128.load32_splat(xq, 12), l3)));
}

/**
 * One token's block (quants at xq; token j of the record whose d_x / 8·Σq_x start at dx / sx) against the 4 rows' nibbles in chunk
 * form. Relaxed build: 4-byte chunks (l_j / h_j: elements 4j..4j+3 / 16+4j..16+4j+3 of each row,
 * rows in i32 lanes): every vpmaddubsw gives each row's products in its own lanes, so the 8 of
 * them add up (i16 lanes stay <= 8·2·15·127 = 30480) and one i32x4.dot with ones finishes the 4
 * block sums, no transposition; three stages (see `stage`): low-nibble chunks, high-nibble chunks,
 * then the scales, d_x, 8·Σq_x and the constant ones loaded for the f32 step. Dot-add build:
 * 8-byte chunks (l0 / l1: elements 0..7 / 8..15 of rows 0 and 1, l2 / l3 the same of rows 2 and 3,
 * h_j from element 16), the activations broadcast 8 bytes at a time: half the broadcasts, and a
 * dot-add chain per row pair leaves each row's sum in two i32 lanes, folded by two shuffles and an
 * add; one stage store. (The 8-byte form in the relaxed build spills two nibble vectors a token
 * and measured 0.95–1.0×; with one stage store fewer, or a vpmaddwd on a constant in memory
 * instead of the ones register, V8 still spills one nibble vector a token: 15 xmm registers are
 * allocatable, xmm15 is its scratch.) Returns the block's (S - 8·Σq_x)·d_w·d_x.
 */
// @ts-ignore: decorator
@inline function token_block(l0: v128, l1: v128, l2: v128, l3: v128, h0: v128, h1: v128, h2: v128, h3: v128, xq: usize, dx: usize, sx: usize, j: i32): v128 {
  let r: v128;
  if (DOT_ADD_TILES) {
    const x0 = v128.load64_splat(xq), x1 = v128.load64_splat(xq, 8), x2 = v128.load64_splat(xq, 16), x3 = v128.load64_splat(xq, 24);
    const a = dot_chunks8(x0, x1, x2, x3, l0, l1, h0, h1), b = dot_chunks8(x0, x1, x2, x3, l2, l3, h2, h3);
    r = i32x4.add(v128.shuffle<u32>(a, b, 0, 2, 4, 6), v128.shuffle<u32>(a, b, 1, 3, 5, 7));
    stage = r;
  } else {
    const p = chunk_dots(l0, l1, l2, l3, xq);
    stage = p;
    const q = i16x8.add(p, chunk_dots(h0, h1, h2, h3, xq + 16));
    stage = q;
    r = i32x4.dot_i16x8_s(q, v128.load(C_ONES_I16));
  }
  return f32x4.mul(f32x4.convert_i32x4_s(i32x4.sub(r, splat_at(sx, j))), f32x4.mul(scales, splat_at(dx, j)));
}

/**
 * Relaxed SIMD, 4 weight rows × T tokens (T = 1..16; token 4r + j from the group record at
 * xp + r·gb: quants at + 32j, d_x at dp + r·gb + 4j, 8·Σq_x at sp + r·gb + 4j): per block the 4
 * rows' quant bytes are transposed into chunks (4-byte chunks, chunk j of all 4 rows in one
 * vector; dot-add build: 8-byte chunks of two rows, see token_block) and split into nibbles once,
 * then each token's activation chunks are broadcast from memory (load-port work) against them.
 * With 16 tokens that prologue (loads, 8 shuffles, 12 nibble ops, the scales) serves 64 (row,
 * token) pairs instead of 32.
 */
// @ts-ignore: decorator
@inline function splat_body(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, gb: usize, y: usize, sy: usize, acc: i32, T: i32): void {
  zero_accs(T);
  const gb2 = gb << 1, gb3 = gb2 + gb;
  const wend = w + <usize>nb * QB4;
  while (w < wend) {
    const v0 = v128.load(w, 8), v1 = v128.load(w, 24), v2 = v128.load(w, 40), v3 = v128.load(w, 56);
    const m = v128.load(C_NIBBLE_MASK); // from memory: no register held across the token stages
    let c0: v128, c1: v128, c2: v128, c3: v128;
    if (DOT_ADD_TILES) {
      // 8-byte chunks: rows 0 and 1 (elements 0..7, 8..15), rows 2 and 3 (see token_block)
      c0 = v128.shuffle<u64>(v0, v1, 0, 2); c1 = v128.shuffle<u64>(v0, v1, 1, 3);
      c2 = v128.shuffle<u64>(v2, v3, 0, 2); c3 = v128.shuffle<u64>(v2, v3, 1, 3);
    } else {
      // 4-byte chunks: chunk j of all 4 rows
      const t0 = v128.shuffle<u32>(v0, v1, 0, 4, 1, 5), t1 = v128.shuffle<u32>(v0, v1, 2, 6, 3, 7);
      const t2 = v128.shuffle<u32>(v2, v3, 0, 4, 1, 5), t3 = v128.shuffle<u32>(v2, v3, 2, 6, 3, 7);
      c0 = v128.shuffle<u64>(t0, t2, 0, 2); c1 = v128.shuffle<u64>(t0, t2, 1, 3);
      c2 = v128.shuffle<u64>(t1, t3, 0, 2); c3 = v128.shuffle<u64>(t1, t3, 1, 3);
    }
    const l0 = v128.and(c0, m), l1 = v128.and(c1, m), l2 = v128.and(c2, m), l3 = v128.and(c3, m);
    const h0 = v128.and(i16x8.shr_u(c0, 4), m), h1 = v128.and(i16x8.shr_u(c1, 4), m);
    const h2 = v128.and(i16x8.shr_u(c2, 4), m), h3 = v128.and(i16x8.shr_u(c3, 4), m);
    scales = scales_x4(w, v128.load(C_F16_RAWMASK), v128.load(C_X4_UNIT));
    acc0 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp, dp, sp, 0), acc0);
    if (T > 1) acc1 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + 32, dp, sp, 1), acc1);
    if (T > 2) acc2 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + 64, dp, sp, 2), acc2);
    if (T > 3) acc3 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + 96, dp, sp, 3), acc3);
    if (T > 4) acc4 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb, dp + gb, sp + gb, 0), acc4);
    if (T > 5) acc5 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb + 32, dp + gb, sp + gb, 1), acc5);
    if (T > 6) acc6 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb + 64, dp + gb, sp + gb, 2), acc6);
    if (T > 7) acc7 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb + 96, dp + gb, sp + gb, 3), acc7);
    if (T > 8) acc8 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb2, dp + gb2, sp + gb2, 0), acc8);
    if (T > 9) acc9 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb2 + 32, dp + gb2, sp + gb2, 1), acc9);
    if (T > 10) acc10 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb2 + 64, dp + gb2, sp + gb2, 2), acc10);
    if (T > 11) acc11 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb2 + 96, dp + gb2, sp + gb2, 3), acc11);
    if (T > 12) acc12 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb3, dp + gb3, sp + gb3, 0), acc12);
    if (T > 13) acc13 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb3 + 32, dp + gb3, sp + gb3, 1), acc13);
    if (T > 14) acc14 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb3 + 64, dp + gb3, sp + gb3, 2), acc14);
    if (T > 15) acc15 = f32x4.add(token_block(l0, l1, l2, l3, h0, h1, h2, h3, xp + gb3 + 96, dp + gb3, sp + gb3, 3), acc15);
    w += QB4; xp += 128; dp += 16; sp += 16;
  }
  put_accs(y, sy, acc, T);
}

// @ts-ignore: decorator
@inline function tile(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, y: usize, sy: usize, acc: i32, T: i32, m: v128, ones: v128, rm: v128, kunit: v128): void {
  if (ASC_FEATURE_RELAXED_SIMD) splat_body(w, nb, xp, dp, sp, 0, y, sy, acc, T);
  else tile_body(w, nb, xp, dp, sp, y, sy, acc, T, m, ones, rm, kunit);
}

// One function per tile width: V8 allocates registers per function (see gemm-q.ts).
function tile_q4x4_t1(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128, rm: v128, kunit: v128): void { tile(w, nb, xp, dp, sp, y, sy, acc, 1, m, ones, rm, kunit); }
function tile_q4x4_t2(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128, rm: v128, kunit: v128): void { tile(w, nb, xp, dp, sp, y, sy, acc, 2, m, ones, rm, kunit); }
function tile_q4x4_t3(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128, rm: v128, kunit: v128): void { tile(w, nb, xp, dp, sp, y, sy, acc, 3, m, ones, rm, kunit); }
/** Tokens 4r..4r+3 from the group record at xp / dp / sp + r·gb (T = 8, 16). */
// @ts-ignore: decorator
@inline function tile_wide(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, gb: usize, y: usize, sy: usize, acc: i32, T: i32, m: v128, ones: v128, rm: v128, kunit: v128): void {
  if (ASC_FEATURE_RELAXED_SIMD) splat_body(w, nb, xp, dp, sp, gb, y, sy, acc, T);
  else {
    for (let r = 0; r < T; r += 4) {
      const o = <usize>(r >> 2) * gb;
      tile_body(w, nb, xp + o, dp + o, sp + o, y + <usize>r * sy, sy, acc, 4, m, ones, rm, kunit);
    }
  }
}
function tile_q4x4_t8(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, gb: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128, rm: v128, kunit: v128): void { tile_wide(w, nb, xp, dp, sp, gb, y, sy, acc, 8, m, ones, rm, kunit); }
function tile_q4x4_t16(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, gb: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128, rm: v128, kunit: v128): void { tile_wide(w, nb, xp, dp, sp, gb, y, sy, acc, 16, m, ones, rm, kunit); }
function tile_q4x4_t4(w: usize, nb: i32, xp: usize, dp: usize, sp: usize, y: usize, sy: usize, acc: i32, m: v128, ones: v128, rm: v128, kunit: v128): void { tile(w, nb, xp, dp, sp, y, sy, acc, 4, m, ones, rm, kunit); }

/**
 * q4_0x4 weights W (repack.ts; N rows, K columns) times the activations quantized at A
 * (quantize_act_q8, M rows): rows [n0, n1) of Y [M][ldy] (acc != 0 adds into Y). n0 must be a
 * multiple of 4 (the executor's row chunks are); rows at or after 4·floor(N/4), plain q4_0 rows
 * in the repacked matrix, go to gemm_q4_0. Returns a lane of the last stage value, a meaningless
 * number that keeps the `stage` global read (Binaryen removes a global nobody reads, and its stores
 * with it).
 */
export function gemm_q4_0x4_prompt(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32): i32 {
  const nb = K >> 5;
  const groupStride = <usize>nb * QB4, gb = group_bytes(nb), sy = <usize>ldy << 2;
  const dx = off_dx4(nb), sx = off_sx4(nb);
  const packed = N & ~3, p1 = min(n1, packed);
  let rb = <i32>(ROW_BLOCK_BYTES / (<usize>nb * 18)) & ~3;
  if (rb < 4) rb = 4;
  const mk = v128.load(C_NIBBLE_MASK), ones = v128.load(C_ONES_I16), rm = v128.load(C_F16_RAWMASK), kunit = v128.load(C_X4_UNIT);
  for (let r0 = n0; r0 < p1; r0 += rb) {
    const r1 = min(r0 + rb, p1);
    for (let m = 0; m < M; m += 4) {
      const g = A + <usize>(m >> 2) * gb, yr = Y + <usize>m * sy;
      const left = M - m;
      if (left >= 16) m += 12; // four group records per tile
      else if (left >= 8) m += 4; // two
      for (let n = r0; n < r1; n += 4) {
        const w = W + <usize>(n >> 2) * groupStride, y = yr + (<usize>n << 2);
        if (left >= 16) tile_q4x4_t16(w, nb, g, g + dx, g + sx, gb, y, sy, acc, mk, ones, rm, kunit);
        else if (left >= 8) tile_q4x4_t8(w, nb, g, g + dx, g + sx, gb, y, sy, acc, mk, ones, rm, kunit);
        else if (left >= 4) tile_q4x4_t4(w, nb, g, g + dx, g + sx, y, sy, acc, mk, ones, rm, kunit);
        else if (left == 3) tile_q4x4_t3(w, nb, g, g + dx, g + sx, y, sy, acc, mk, ones, rm, kunit);
        else if (left == 2) tile_q4x4_t2(w, nb, g, g + dx, g + sx, y, sy, acc, mk, ones, rm, kunit);
        else tile_q4x4_t1(w, nb, g, g + dx, g + sx, y, sy, acc, mk, ones, rm, kunit);
      }
    }
  }
  if (n1 > packed) gemm_q4_0(A, W, Y, ldy, M, max(n0, packed), n1, K, acc);
  return i32x4.extract_lane(stage, 0);
}

// ---- q8_0x4 (per block: 4 fp16 scales, then each row's 32 int8 quants) ----

/** Bytes of one q8_0x4 block. */
const QB8: usize = 136;

/** Each token's half-block sum (elements 0..15) between the two halves of a q8_0 block. */
let part0: v128 = v128.splat<i32>(0);
let part1: v128 = v128.splat<i32>(0);
let part2: v128 = v128.splat<i32>(0);
let part3: v128 = v128.splat<i32>(0);
let part4: v128 = v128.splat<i32>(0);
let part5: v128 = v128.splat<i32>(0);
let part6: v128 = v128.splat<i32>(0);
let part7: v128 = v128.splat<i32>(0);
let part8: v128 = v128.splat<i32>(0);
let part9: v128 = v128.splat<i32>(0);
let part10: v128 = v128.splat<i32>(0);
let part11: v128 = v128.splat<i32>(0);
let part12: v128 = v128.splat<i32>(0);
let part13: v128 = v128.splat<i32>(0);
let part14: v128 = v128.splat<i32>(0);
let part15: v128 = v128.splat<i32>(0);

/**
 * The block's correction (see q8_half), per row: Σ over its negative weights of -|w|. Between the
 * halves an i16 partial (|lane| <= 16·128), then the i32 sum of the block (the dot-add build:
 * i32 throughout).
 */
let negw: v128 = v128.splat<i32>(0);

/** i16 pair sums of -|w| over the negative weights of chunks a_j / s_j (|w| and sign masks): each vpmaddubsw multiplies |w| by -1 or 0. */
// @ts-ignore: decorator
@inline function neg_sums(a0: v128, a1: v128, a2: v128, a3: v128, s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  return i16x8.add(
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(s0, a0), i16x8.relaxed_dot_i8x16_i7x16_s(s1, a1)),
    i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(s2, a2), i16x8.relaxed_dot_i8x16_i7x16_s(s3, a3)));
}

/**
 * i32 sums (rows in lanes) of one half block, short of the block's correction: the 4 rows' quants
 * in chunk form as |w| (a_j) and sign masks (s_j), times the activation chunks at xq + 4j
 * broadcast, each xor-ed with the weights' sign masks (vpmaddubsw takes its first operand
 * unsigned). Where w < 0 the xor gives ~x = -x - 1, so each such product comes out |w| short:
 * Σ|w|·(x ^ s) = Σw·x - Σ_{w<0}|w|, and the weight-only Σ_{w<0}|w| (negw) is added back once a
 * token block, instead of a subtraction per chunk and token. The lanes stay exact: |w| <= 127
 * with x ^ s = x in [-127, 127], |w| <= 128 with ~x in [-128, 126], pair sums in [-32768, 32258]; two products of 127·127 already
 * fill an i16 lane, so every vpmaddubsw is widened by a dot with ones at once.
 */
// @ts-ignore: decorator
@inline function q8_half(a0: v128, a1: v128, a2: v128, a3: v128, s0: v128, s1: v128, s2: v128, s3: v128, xq: usize, ones: v128): v128 {
  if (DOT_ADD_TILES) return q8_half_dot(a0, a1, a2, a3, s0, s1, s2, s3, xq, i32x4.splat(0));
  const b0 = v128.load32_splat(xq), b1 = v128.load32_splat(xq, 4), b2 = v128.load32_splat(xq, 8), b3 = v128.load32_splat(xq, 12);
  const d0 = i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.xor(b0, s0), a0), ones);
  const d1 = i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.xor(b1, s1), a1), ones);
  const d2 = i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.xor(b2, s2), a2), ones);
  const d3 = i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(v128.xor(b3, s3), a3), ones);
  return i32x4.add(i32x4.add(d0, d1), i32x4.add(d2, d3));
}

/** The second half of a token's block (quants at xq + 16) added to its first (`part`) and the correction, times d_w·d_x (d_x at dx). */
// @ts-ignore: decorator
@inline function q8_finish(a0: v128, a1: v128, a2: v128, a3: v128, s0: v128, s1: v128, s2: v128, s3: v128, xq: usize, dx: usize, j: i32, part: v128, ones: v128): v128 {
  const s = DOT_ADD_TILES
    ? i32x4.sub(q8_half_dot(a0, a1, a2, a3, s0, s1, s2, s3, xq + 16, part), negw) // the chain starts at the first half's sum
    : i32x4.sub(i32x4.add(q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xq + 16, ones), part), negw);
  return f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(scales, splat_at(dx, j)));
}

/**
 * One half (0: elements 0..15, 1: 16..31; a constant after inlining) of the block at w for T
 * tokens: the 4 rows' 16 bytes transposed into chunks, their absolute values and sign masks (8
 * registers) serving every token. Half 0 leaves each token's sums in its `part` global (the
 * stores are the stage boundaries), half 1 finishes the block into the accumulators.
 */
// @ts-ignore: decorator
@inline function q8_stage(w: usize, half: i32, xp: usize, dp: usize, gb: usize, T: i32, ones: v128): void {
  const gb2 = gb << 1, gb3 = gb2 + gb;
  const o = <usize>half * 16;
  const v0 = v128.load(w + o, 8), v1 = v128.load(w + o, 40), v2 = v128.load(w + o, 72), v3 = v128.load(w + o, 104);
  const t0 = v128.shuffle<u32>(v0, v1, 0, 4, 1, 5), t1 = v128.shuffle<u32>(v0, v1, 2, 6, 3, 7);
  const t2 = v128.shuffle<u32>(v2, v3, 0, 4, 1, 5), t3 = v128.shuffle<u32>(v2, v3, 2, 6, 3, 7);
  const c0 = v128.shuffle<u64>(t0, t2, 0, 2), c1 = v128.shuffle<u64>(t0, t2, 1, 3);
  const c2 = v128.shuffle<u64>(t1, t3, 0, 2), c3 = v128.shuffle<u64>(t1, t3, 1, 3);
  const zero = i8x16.splat(0);
  const a0 = i8x16.abs(c0), a1 = i8x16.abs(c1), a2 = i8x16.abs(c2), a3 = i8x16.abs(c3);
  const s0 = i8x16.lt_s(c0, zero), s1 = i8x16.lt_s(c1, zero), s2 = i8x16.lt_s(c2, zero), s3 = i8x16.lt_s(c3, zero);
  if (half == 0) {
    negw = DOT_ADD_TILES ? q8_neg_dot(a0, a1, a2, a3, s0, s1, s2, s3, i32x4.splat(0)) : neg_sums(a0, a1, a2, a3, s0, s1, s2, s3);
    part0 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp, ones);
    if (T > 1) part1 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + 32, ones);
    if (T > 2) part2 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + 64, ones);
    if (T > 3) part3 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + 96, ones);
    if (T > 4) part4 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb, ones);
    if (T > 5) part5 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb + 32, ones);
    if (T > 6) part6 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb + 64, ones);
    if (T > 7) part7 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb + 96, ones);
    if (T > 8) part8 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2, ones);
    if (T > 9) part9 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2 + 32, ones);
    if (T > 10) part10 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2 + 64, ones);
    if (T > 11) part11 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2 + 96, ones);
    if (T > 12) part12 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3, ones);
    if (T > 13) part13 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3 + 32, ones);
    if (T > 14) part14 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3 + 64, ones);
    if (T > 15) part15 = q8_half(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3 + 96, ones);
  } else {
    negw = DOT_ADD_TILES
      ? q8_neg_dot(a0, a1, a2, a3, s0, s1, s2, s3, negw)
      : i32x4.dot_i16x8_s(i16x8.add(negw, neg_sums(a0, a1, a2, a3, s0, s1, s2, s3)), ones);
    scales = scales_x4(w, v128.load(C_F16_RAWMASK), v128.load(C_X4_UNIT));
    acc0 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp, dp, 0, part0, ones), acc0);
    if (T > 1) acc1 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + 32, dp, 1, part1, ones), acc1);
    if (T > 2) acc2 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + 64, dp, 2, part2, ones), acc2);
    if (T > 3) acc3 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + 96, dp, 3, part3, ones), acc3);
    if (T > 4) acc4 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb, dp + gb, 0, part4, ones), acc4);
    if (T > 5) acc5 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb + 32, dp + gb, 1, part5, ones), acc5);
    if (T > 6) acc6 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb + 64, dp + gb, 2, part6, ones), acc6);
    if (T > 7) acc7 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb + 96, dp + gb, 3, part7, ones), acc7);
    if (T > 8) acc8 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2, dp + gb2, 0, part8, ones), acc8);
    if (T > 9) acc9 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2 + 32, dp + gb2, 1, part9, ones), acc9);
    if (T > 10) acc10 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2 + 64, dp + gb2, 2, part10, ones), acc10);
    if (T > 11) acc11 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb2 + 96, dp + gb2, 3, part11, ones), acc11);
    if (T > 12) acc12 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3, dp + gb3, 0, part12, ones), acc12);
    if (T > 13) acc13 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3 + 32, dp + gb3, 1, part13, ones), acc13);
    if (T > 14) acc14 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3 + 64, dp + gb3, 2, part14, ones), acc14);
    if (T > 15) acc15 = f32x4.add(q8_finish(a0, a1, a2, a3, s0, s1, s2, s3, xp + gb3 + 96, dp + gb3, 3, part15, ones), acc15);
  }
}

/**
 * Relaxed SIMD, q8_0x4: 4 weight rows × T tokens (as splat_body), a block at a time in two
 * stages (q8_stage), written out rather than looped (a loop over the halves cost V8 ~13
 * instructions of control and address arithmetic per half).
 */
// @ts-ignore: decorator
@inline function q8_body(w: usize, nb: i32, xp: usize, dp: usize, gb: usize, y: usize, sy: usize, acc: i32, T: i32, ones: v128): void {
  zero_accs(T);
  const wend = w + <usize>nb * QB8;
  while (w < wend) {
    q8_stage(w, 0, xp, dp, gb, T, ones);
    q8_stage(w, 1, xp, dp, gb, T, ones);
    w += QB8; xp += 128; dp += 16;
  }
  put_accs(y, sy, acc, T);
}

function tile_q8x4_t1(w: usize, nb: i32, xp: usize, dp: usize, y: usize, sy: usize, acc: i32, ones: v128): void { q8_body(w, nb, xp, dp, 0, y, sy, acc, 1, ones); }
function tile_q8x4_t2(w: usize, nb: i32, xp: usize, dp: usize, y: usize, sy: usize, acc: i32, ones: v128): void { q8_body(w, nb, xp, dp, 0, y, sy, acc, 2, ones); }
function tile_q8x4_t3(w: usize, nb: i32, xp: usize, dp: usize, y: usize, sy: usize, acc: i32, ones: v128): void { q8_body(w, nb, xp, dp, 0, y, sy, acc, 3, ones); }
function tile_q8x4_t4(w: usize, nb: i32, xp: usize, dp: usize, y: usize, sy: usize, acc: i32, ones: v128): void { q8_body(w, nb, xp, dp, 0, y, sy, acc, 4, ones); }
function tile_q8x4_t8(w: usize, nb: i32, xp: usize, dp: usize, gb: usize, y: usize, sy: usize, acc: i32, ones: v128): void { q8_body(w, nb, xp, dp, gb, y, sy, acc, 8, ones); }
/** Tokens 4r..4r+3 from the group record at xp + r·gb (d_x at dp + r·gb). */
function tile_q8x4_t16(w: usize, nb: i32, xp: usize, dp: usize, gb: usize, y: usize, sy: usize, acc: i32, ones: v128): void { q8_body(w, nb, xp, dp, gb, y, sy, acc, 16, ones); }

/**
 * q8_0x4 weights (repack.ts), otherwise as gemm_q4_0x4_prompt. The plain-SIMD build has no prompt
 * tile for q8_0 and runs gemm_q8_0x4.
 */
export function gemm_q8_0x4_prompt(A: usize, W: usize, Y: usize, ldy: i32, M: i32, N: i32, n0: i32, n1: i32, K: i32, acc: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) {
    gemm_q8_0x4(A, W, Y, ldy, M, N, n0, n1, K, acc);
    return 0;
  }
  const nb = K >> 5;
  const groupStride = <usize>nb * QB8, gb = group_bytes(nb), sy = <usize>ldy << 2;
  const dx = off_dx4(nb);
  const packed = N & ~3, p1 = min(n1, packed);
  let rb = <i32>(ROW_BLOCK_BYTES / (<usize>nb * 34)) & ~3;
  if (rb < 4) rb = 4;
  const ones = v128.load(C_ONES_I16);
  for (let r0 = n0; r0 < p1; r0 += rb) {
    const r1 = min(r0 + rb, p1);
    for (let m = 0; m < M; m += 4) {
      const g = A + <usize>(m >> 2) * gb, yr = Y + <usize>m * sy;
      const left = M - m;
      if (left >= 16) m += 12; // four group records per tile
      else if (left >= 8) m += 4; // two
      for (let n = r0; n < r1; n += 4) {
        const w = W + <usize>(n >> 2) * groupStride, y = yr + (<usize>n << 2);
        if (left >= 16) tile_q8x4_t16(w, nb, g, g + dx, gb, y, sy, acc, ones);
        else if (left >= 8) tile_q8x4_t8(w, nb, g, g + dx, gb, y, sy, acc, ones);
        else if (left >= 4) tile_q8x4_t4(w, nb, g, g + dx, y, sy, acc, ones);
        else if (left == 3) tile_q8x4_t3(w, nb, g, g + dx, y, sy, acc, ones);
        else if (left == 2) tile_q8x4_t2(w, nb, g, g + dx, y, sy, acc, ones);
        else tile_q8x4_t1(w, nb, g, g + dx, y, sy, acc, ones);
      }
    }
  }
  if (n1 > packed) gemm_q8_0x4(A, W, Y, ldy, M, N, max(n0, packed), n1, K, acc);
  return i32x4.extract_lane(stage, 0);
}
