// Weight quantization (ggml's reference quantizers, the ones llama-quantize uses without an
// importance matrix) and fast random weights for benchmarks.
import { f32_to_f16, f32_to_bf16 } from './half';

// C's roundf: nearest, ties away from zero.
// @ts-ignore: decorator
@inline function roundf(x: f32): f32 {
  return x < 0 ? -Mathf.floor(-x + 0.5) : Mathf.floor(x + 0.5);
}

/** quantize_row_q8_0_ref: n values (a multiple of 32) → n/32 blocks of 34 bytes. */
export function quantize_q8_0(src: usize, n: i32, dst: usize): void {
  for (let b = 0; b < (n >> 5); b++) {
    const x = src + (<usize>b << 7);
    const o = dst + <usize>b * 34;
    let amax: f32 = 0;
    for (let j = 0; j < 32; j++) amax = max(amax, Mathf.abs(load<f32>(x + (<usize>j << 2))));
    const d = amax / <f32>127;
    const id: f32 = d != 0 ? <f32>1 / d : 0;
    store<u16>(o, <u16>f32_to_f16(d));
    for (let j = 0; j < 32; j++) store<i8>(o + 2 + j, <i8><i32>roundf(load<f32>(x + (<usize>j << 2)) * id));
  }
}

/** quantize_row_q4_0_ref: n values (a multiple of 32) → n/32 blocks of 18 bytes. */
export function quantize_q4_0(src: usize, n: i32, dst: usize): void {
  for (let b = 0; b < (n >> 5); b++) {
    const x = src + (<usize>b << 7);
    const o = dst + <usize>b * 18;
    let amax: f32 = 0, mx: f32 = 0;
    for (let j = 0; j < 32; j++) {
      const v = load<f32>(x + (<usize>j << 2));
      if (amax < Mathf.abs(v)) { amax = Mathf.abs(v); mx = v; }
    }
    const d = mx / <f32>-8;
    const id: f32 = d != 0 ? <f32>1 / d : 0;
    store<u16>(o, <u16>f32_to_f16(d));
    for (let j = 0; j < 16; j++) {
      const x0 = load<f32>(x + (<usize>j << 2)) * id + <f32>8.5;
      const x1 = load<f32>(x + (<usize>(j + 16) << 2)) * id + <f32>8.5;
      const q0 = min(15, <i32><i8><i32>x0), q1 = min(15, <i32><i8><i32>x1);
      store<u8>(o + 2 + j, <u8>((q0 & 15) | ((q1 & 15) << 4)));
    }
  }
}

// xorshift64* state step
// @ts-ignore: decorator
@inline function next(s: u64): u64 {
  s ^= s >> 12;
  s ^= s << 25;
  s ^= s >> 27;
  return s;
}

/** Fills n bytes (a multiple of 8) with pseudo-random bits. */
export function fill_random_bytes(dst: usize, n: usize, seed: i32): void {
  let s: u64 = (<u64><u32>seed << 32) ^ 0x9E3779B97F4A7C15;
  for (let i: usize = 0; i < n; i += 8) {
    s = next(s);
    store<u64>(dst + i, s * 0x2545F4914F6CDD1D);
  }
}

/**
 * Random weights of a storage type (0 f32, 1 f16, 2 bf16, 3 q8_0, 4 q4_0) for n values, about
 * uniform in ±scale (quantized types: random quants with block scales near scale/127 resp.
 * scale/8). For benchmarks: fast, finite, roughly the right magnitude.
 */
export function fill_random_weights(t: i32, dst: usize, n: i32, seed: i32, scale: f32): void {
  let s: u64 = (<u64><u32>seed << 32) ^ 0xD1B54A32D192ED03;
  if (t == 0) {
    for (let i = 0; i < n; i++) {
      s = next(s);
      const r = <f32>(<i32>((s * 0x2545F4914F6CDD1D) >> 40) - 8388608) * (<f32>1 / <f32>8388608); // [-1, 1)
      store<f32>(dst + (<usize>i << 2), r * scale);
    }
    return;
  }
  if (t == 1 || t == 2) {
    // random sign, mantissa and one of 4 exponents below scale: |v| in [scale/16, scale), 4 values per draw
    const bias = t == 1 ? 15 : 127, mbits = t == 1 ? 10 : 7;
    // floor(log2(scale)) read off the exponent bits (scale is a positive normal f32): Mathf.log2
    // would bring the standard library's 256-byte table, a data segment that every instantiation
    // on a shared memory writes again, over fp16 table entries (build-wasm.mjs refuses one).
    let e = <i32>((reinterpret<u32>(scale) >> 23) & 0xff) - 127 + bias;
    if (e < 4) e = 4;
    if (e > (t == 1 ? 30 : 254)) e = t == 1 ? 30 : 254;
    const mmask: u64 = (<u64>1 << mbits) - 1;
    for (let i = 0; i < n; i += 4) {
      s = next(s);
      let r = s * 0x2545F4914F6CDD1D;
      for (let j = 0; j < 4 && i + j < n; j++) {
        const h = (<u32>(r >> 15) & 0x8000) | (<u32>(e - <i32>((r >> 13) & 3)) << mbits) | <u32>(r & mmask);
        store<u16>(dst + (<usize>(i + j) << 1), <u16>h);
        r = (r >> 16) | (r << 48);
      }
    }
    return;
  }
  const bs: usize = t == 3 ? 34 : 18;
  const nb = n >> 5;
  fill_random_bytes(dst, ((<usize>nb * bs + 7) & ~7), seed);
  const d0: f32 = t == 3 ? scale / 127 : scale / 8;
  for (let b = 0; b < nb; b++) {
    s = next(s);
    const r = <f32>(<u32>((s * 0x2545F4914F6CDD1D) >> 40)) * (<f32>1 / <f32>16777216); // [0, 1)
    const p = dst + <usize>b * bs;
    store<u16>(p, <u16>f32_to_f16(d0 * (<f32>0.5 + r)));
    // q8_0 quants stay in [-127, 127], as ggml's quantizer writes them
    if (t == 3) for (let j = 0; j < 32; j++) if (load<i8>(p + 2 + j) == -128) store<i8>(p + 2 + j, -127);
  }
}

/**
 * Replaces the quant -128 (which ggml's quantizer never writes) by -127 in n/32 q8_0 blocks, so
 * that |q| fits the 7-bit operand of the relaxed-SIMD dot product. Returns 1 when any changed.
 */
export function clamp_q8_0(p: usize, n: i32): i32 {
  // SIMD: runs on every q8_0 weight at load time (6.6 GiB for a 7B model).
  const lim = i8x16.splat(-127);
  let hits = i8x16.splat(0);
  for (let b = 0; b < (n >> 5); b++) {
    const q = p + <usize>b * 34 + 2;
    const a = v128.load(q), c = v128.load(q, 16);
    hits = v128.or(hits, v128.or(i8x16.eq(a, i8x16.splat(-128)), i8x16.eq(c, i8x16.splat(-128))));
    v128.store(q, i8x16.max_s(a, lim));
    v128.store(q, i8x16.max_s(c, lim), 16);
  }
  return v128.any_true(hits) ? 1 : 0;
}

/** dst[i] = value for n f32. */
export function fill_f32(dst: usize, n: i32, value: f32): void {
  for (let i = 0; i < n; i++) store<f32>(dst + (<usize>i << 2), value);
}

/** Sum of n bytes read as i32x4 lanes: a memory-bandwidth probe for bench/kernels.ts. */
export function read_probe(p: usize, n: usize): i32 {
  let a = i32x4.splat(0), b = i32x4.splat(0);
  const end = p + (n & ~31);
  while (p < end) {
    a = i32x4.add(a, v128.load(p));
    b = i32x4.add(b, v128.load(p, 16));
    p += 32;
  }
  a = i32x4.add(a, b);
  return i32x4.extract_lane(a, 0) + i32x4.extract_lane(a, 3);
}
