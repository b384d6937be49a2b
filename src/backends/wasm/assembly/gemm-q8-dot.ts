// q8_0 block sums on i32x4.relaxed_dot_i8x16_i7x16_add_s, for the dot-add kernel build
// (kernels-dot.wasm, DOT_ADD_TILES = 1; gemm-q-dot.ts says where the engine lowers it to VNNI's
// vpdpbusd and how the build is chosen). The relaxed build widens every vpmaddubsw with a
// vpmaddwd against ones and adds the i32 results; the dot-add does all three in one instruction.
// The i7 operand is the unsigned side the relaxed build already gives vpmaddubsw (|w| in the
// prompt tile, |x| in the decode tile), the signed side is the same xor-ed bytes, and the products
// are summed exactly in i32 either way: the block sums, and every result, keep the relaxed
// build's bits.

/**
 * c + Σ_j (the activation chunk at xq + 4j, broadcast, xor the weights' sign masks s_j) · |w|
 * chunks a_j: the prompt tile's half block (gemm-q-prompt.ts q8_half, which says why the xor
 * alone leaves each negative weight's product |w| short), rows in i32 lanes.
 */
// @ts-ignore: decorator
@inline export function q8_half_dot(a0: v128, a1: v128, a2: v128, a3: v128, s0: v128, s1: v128, s2: v128, s3: v128, xq: usize, c: v128): v128 {
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.xor(v128.load32_splat(xq), s0), a0, c);
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.xor(v128.load32_splat(xq, 4), s1), a1, c);
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.xor(v128.load32_splat(xq, 8), s2), a2, c);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.xor(v128.load32_splat(xq, 12), s3), a3, c);
}

/** c + Σ_j s_j · a_j: the sign masks (-1 / 0) times |w|, i.e. c - Σ over the negative weights of |w|, rows in i32 lanes. */
// @ts-ignore: decorator
@inline export function q8_neg_dot(a0: v128, a1: v128, a2: v128, a3: v128, s0: v128, s1: v128, s2: v128, s3: v128, c: v128): v128 {
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(s0, a0, c);
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(s1, a1, c);
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(s2, a2, c);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(s3, a3, c);
}

/**
 * One row's q8_0 block (quants wa: elements 0..15, wb: 16..31) times an activation block given
 * as |x| (ua, ub) and sign masks (ma, mb): (w ^ m) - m is w·sign(x), |x| <= 127 the i7 operand
 * (gemm-q.ts dot_q8_xs, the relaxed build's form). i32 lanes of 8 products each.
 */
// @ts-ignore: decorator
@inline export function q8_row_dot(wa: v128, wb: v128, ua: v128, ub: v128, ma: v128, mb: v128): v128 {
  const lo = i32x4.relaxed_dot_i8x16_i7x16_add_s(i8x16.sub(v128.xor(wa, ma), ma), ua, i32x4.splat(0));
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(i8x16.sub(v128.xor(wb, mb), mb), ub, lo);
}
