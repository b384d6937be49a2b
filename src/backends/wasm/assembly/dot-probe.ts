// A timing probe of i32x4.relaxed_dot_i8x16_i7x16_add_s (the entry of dist/wasm/dot-probe.wasm,
// a module of its own), for module-loader.ts to tell whether the
// engine lowers it to one instruction (x86 vpdpbusd with AVX-VNNI; V8 ≥ 12 does where the CPU has
// it) or to the three (vpmaddubsw, vpmaddwd with ones, vpaddd) that the i16 path of the other
// tiles already spends. The same 8 independent chains of dot-adds run either as the fused
// instruction (fused != 0) or spelled out as those three steps; on an engine without the fused
// lowering both compile to the same code and take the same time, with VNNI the fused loop does a
// third of the work. Operands come from memory at p (any bytes: the time does not depend on them),
// the 8 activation vectors (one per chain, so that no product is shared) reloaded every round from
// 2 KiB that cycles (so that no step is loop invariant).
// Returns a lane of the sums so that nothing is dead code.

/** `iters` rounds of 8 dot-adds, fused or spelled out, over the 2 KiB + 144 bytes at p. */
export function dot_probe(p: usize, iters: i32, fused: i32): i32 {
  if (!ASC_FEATURE_RELAXED_SIMD) return 0;
  const b = v128.load(p), ones = i16x8.splat(1);
  let a0 = v128.load(p, 16), a1 = v128.load(p, 32), a2 = v128.load(p, 48), a3 = v128.load(p, 64);
  let a4 = v128.load(p, 80), a5 = v128.load(p, 96), a6 = v128.load(p, 112), a7 = v128.load(p, 128);
  if (fused) {
    for (let i = 0; i < iters; i++) {
      const q = p + 144 + ((<usize>i & 15) << 7);
      const x0 = v128.load(q), x1 = v128.load(q, 16), x2 = v128.load(q, 32), x3 = v128.load(q, 48);
      const x4 = v128.load(q, 64), x5 = v128.load(q, 80), x6 = v128.load(q, 96), x7 = v128.load(q, 112);
      a0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, b, a0);
      a1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, b, a1);
      a2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x2, b, a2);
      a3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x3, b, a3);
      a4 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x4, b, a4);
      a5 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x5, b, a5);
      a6 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x6, b, a6);
      a7 = i32x4.relaxed_dot_i8x16_i7x16_add_s(x7, b, a7);
    }
  } else {
    for (let i = 0; i < iters; i++) {
      const q = p + 144 + ((<usize>i & 15) << 7);
      const x0 = v128.load(q), x1 = v128.load(q, 16), x2 = v128.load(q, 32), x3 = v128.load(q, 48);
      const x4 = v128.load(q, 64), x5 = v128.load(q, 80), x6 = v128.load(q, 96), x7 = v128.load(q, 112);
      a0 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x0, b), ones), a0);
      a1 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x1, b), ones), a1);
      a2 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x2, b), ones), a2);
      a3 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x3, b), ones), a3);
      a4 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x4, b), ones), a4);
      a5 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x5, b), ones), a5);
      a6 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x6, b), ones), a6);
      a7 = i32x4.add(i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(x7, b), ones), a7);
    }
  }
  const s = i32x4.add(i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)), i32x4.add(i32x4.add(a4, a5), i32x4.add(a6, a7)));
  return i32x4.extract_lane(s, 0);
}
