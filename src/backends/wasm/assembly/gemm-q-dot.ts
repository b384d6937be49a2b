// Integer block sums on i32x4.relaxed_dot_i8x16_i7x16_add_s, for the third kernel build
// (kernels-dot.wasm, compiled with DOT_ADD_TILES = 1; scripts/build-wasm.mjs). Where the engine
// lowers the dot-add to one instruction (V8 ≥ 12 on an x86 CPU with AVX-VNNI: vpdpbusd, 16
// multiply-adds summed into 4 i32 lanes and added to the accumulator), it replaces the relaxed
// build's vpmaddubsw + vpaddw chains and their widening vpmaddwd; where it does not (V8 11.3,
// Node 20: three instructions), it is slower, and module-loader.ts keeps the relaxed build
// (it times dot-probe.ts to decide). The i7 operand is the weights' unsigned side (q4_0 nibbles,
// or |w| of q8_0 with the signs moved onto the activations) and the products are summed exactly
// in i32 either way, so the block sums, and every result, have the bits of the relaxed build.

/** Σ_j x_j · c_j in i32 lanes (4 byte products each): 8-byte activation chunks x_j (broadcast) times two rows' nibbles c_j. */
// @ts-ignore: decorator
@inline export function dot_chunks8(x0: v128, x1: v128, x2: v128, x3: v128, c0: v128, c1: v128, c2: v128, c3: v128): v128 {
  const c = i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, c0, i32x4.splat(0));
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(x3, c3, i32x4.relaxed_dot_i8x16_i7x16_add_s(x2, c2, i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, c1, c)));
}

/** One row's q4_0 block (16 quant bytes v) times the activations xa (elements 0..15), xb (16..31): i32 lanes of 8 products each. */
// @ts-ignore: decorator
@inline export function nib_dot(v: v128, xa: v128, xb: v128, m: v128): v128 {
  const lo = i32x4.relaxed_dot_i8x16_i7x16_add_s(xa, v128.and(v, m), i32x4.splat(0));
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(xb, v128.and(i16x8.shr_u(v, 4), m), lo);
}
