// Integer block sums on i32x4.relaxed_dot_i8x16_i7x16_add_s, for the third kernel build
// (kernels-dot.wasm, compiled with DOT_ADD_TILES = 1; scripts/build-wasm.mjs). Where the engine
// lowers the dot-add to one instruction (V8 ≥ 12 on an x86 CPU with AVX-VNNI: vpdpbusd, 16
// multiply-adds summed into 4 i32 lanes and added to the accumulator), it replaces the relaxed
// build's vpmaddubsw + vpaddw chains and their widening vpmaddwd; where it does not (V8 11.3,
// Node 20: three instructions), it is slower, and module-loader.ts keeps the relaxed build
// (it times dot-probe.ts to decide). The i7 operand is the weights' unsigned side (q4_0 nibbles,
// or |w| of q8_0 with the signs moved onto the activations) and the products are summed exactly
// in i32 either way, so the block sums, and every result, have the bits of the relaxed build.

/** c + Σ_j the 4-byte activation chunk at xq + 4j (broadcast) · chunk form l_j (4 rows in i32 lanes). */
// @ts-ignore: decorator
@inline export function dot_chunks4(l0: v128, l1: v128, l2: v128, l3: v128, xq: usize, c: v128): v128 {
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq), l0, c);
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq, 4), l1, c);
  c = i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq, 8), l2, c);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load32_splat(xq, 12), l3, c);
}

/** One row's q4_0 block (16 quant bytes v) times the activations xa (elements 0..15), xb (16..31): i32 lanes of 8 products each. */
// @ts-ignore: decorator
@inline export function nib_dot(v: v128, xa: v128, xb: v128, m: v128): v128 {
  const lo = i32x4.relaxed_dot_i8x16_i7x16_add_s(xa, v128.and(v, m), i32x4.splat(0));
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(xb, v128.and(i16x8.shr_u(v, 4), m), lo);
}
