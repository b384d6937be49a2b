// Activations quantized to 8 bits per block of 32, as llama.cpp's x86 `quantize_row_q8_0` does
// before a product with q8_0 / q4_0 weights: amax per block, d = fp16(amax/127),
// q = round_half_even(x · (127/amax)) in f32, |q| <= 127.
//
// Rows are kept in groups of 4 ("group record", one per 4 rows) so that a kernel working on 4
// rows follows one pointer. A group record for K values (nb = K/32 blocks, nb4 = nb rounded up
// to a multiple of 4) holds, in bytes:
//   QX   [nb][4][32] i8       quants of block b of row t at b·128 + t·32
//   DX4  [nb][4]     f32      d of (b, t) at QX_END + b·16 + t·4           (4 rows of one block)
//   SX4  [nb][4]     i32      8·Σq of (b, t), same indexing after DX4      (q4_0's -8 offset)
//   DX1  [4][nb4]    f32      d·U of (b, t) at t·nb4·4 + b·4           (4 blocks of one row)
//   SX1  [4][nb4]    i32      8·Σq, same indexing after DX1
//
// A single activation row (a decode step's input) is quantized instead as a "row record"
// (quantize_act_q8_row): SX1 and DX1 of that row alone ([nb4] each, SX1 at 0, DX1 at
// row_off_dx), then QX [nb][32] (block b at row_off_qx + b·32); it fits in group_bytes(nb). (Only
// SX1, which q8_0 does not read, starts at the record's address: a loop pointer that starts at a
// function's argument costs V8 a register copy per iteration, one computed from it does not.) A decode kernel streams
// one weight row group after another against the same activation row, so it wants that row
// dense: in a group record each 32-byte block of a row takes a 64-byte cache line of its own, and
// for K = 8192 the row's lines (16 KiB) no longer stay in a 32 KiB L1 cache beside the streamed
// weights (gemm-q.ts, gemv_q4_0x4).
import { f16_round_nonneg, f16_to_f32, f32_to_f16 } from './half';
import { x4_unit } from './x4-scale';

// @ts-ignore: decorator
@inline export function nb4_of(nb: i32): i32 { return (nb + 3) & ~3; }
// @ts-ignore: decorator
@inline export function off_dx4(nb: i32): usize { return <usize>nb * 128; }
// @ts-ignore: decorator
@inline export function off_sx4(nb: i32): usize { return <usize>nb * 144; }
// @ts-ignore: decorator
@inline export function off_dx1(nb: i32): usize { return <usize>nb * 160; }
// @ts-ignore: decorator
@inline export function off_sx1(nb: i32): usize { return <usize>nb * 160 + <usize>nb4_of(nb) * 16; }
/** Offsets of DX1 / QX in a row record (SX1 at 0). */
// @ts-ignore: decorator
@inline export function row_off_dx(nb: i32): usize { return <usize>nb4_of(nb) * 4; }
// @ts-ignore: decorator
@inline export function row_off_qx(nb: i32): usize { return <usize>nb4_of(nb) * 8; }
/** Bytes of one group record (4 rows). */
// @ts-ignore: decorator
@inline export function group_bytes(nb: i32): usize { return <usize>nb * 160 + <usize>nb4_of(nb) * 32; }

/**
 * Quantizes the 32 values at p: quants to q, 8·Σq to s (i32); returns d (fp16-rounded).
 *
 * Two steps that V8 11.3 makes expensive are done in integer form, with the same results while
 * every value is finite and 127/amax is too (otherwise quant_block_rare, the former code):
 * - wasm's f32x4.max costs about 8 instructions for its NaN and ±0 rules, but the bits of
 *   non-negative floats order as their values, so |x|'s maximum is i32x4.max_s of the bits (one
 *   instruction; Inf and NaN bits lie above every finite value's, hence the test);
 * - trunc_sat(nearest(v)) (vroundps, then about 7 for the saturation) is, for |v| <= 127.00002,
 *   the bits of v + 1.5·2^23 minus those of 1.5·2^23: the sum lies in [2^23, 2^24), where f32's
 *   spacing is 1, so it rounds v to the nearest integer, ties to even (1.5·2^23 is even), and
 *   its low bits hold that integer plus 2^22. Here |v| = |x·(127/amax)| <= 127·(1 + 2^-23)².
 */
// @ts-ignore: decorator
@inline function quant_block(p: usize, q: usize, s: usize): f32 {
  const x0 = v128.load(p), x1 = v128.load(p, 16), x2 = v128.load(p, 32), x3 = v128.load(p, 48);
  const x4 = v128.load(p, 64), x5 = v128.load(p, 80), x6 = v128.load(p, 96), x7 = v128.load(p, 112);
  const ab = i32x4.splat(0x7fffffff);
  let mb = i32x4.max_s(i32x4.max_s(v128.and(x0, ab), v128.and(x1, ab)), i32x4.max_s(v128.and(x2, ab), v128.and(x3, ab)));
  mb = i32x4.max_s(mb, i32x4.max_s(i32x4.max_s(v128.and(x4, ab), v128.and(x5, ab)), i32x4.max_s(v128.and(x6, ab), v128.and(x7, ab))));
  mb = i32x4.max_s(mb, v128.shuffle<u32>(mb, mb, 2, 3, 0, 1));
  const bits = max(i32x4.extract_lane(mb, 0), i32x4.extract_lane(mb, 1));
  // Inf / NaN, or 0 < amax < 2^-120, where 127/amax may overflow to Inf (0·Inf is NaN)
  if (bits >= 0x7f800000 || <u32>(bits - 1) < 0x037fffff) return quant_block_rare(p, q, s);
  const amax = reinterpret<f32>(bits);
  const d = f16_round_nonneg(amax / <f32>127);
  const id = amax != 0 ? <f32>127 / amax : <f32>0;
  const vid = f32x4.splat(id), big = f32x4.splat(12582912), bigBits = i32x4.splat(0x4b400000);
  const q0 = i32x4.sub(f32x4.add(f32x4.mul(x0, vid), big), bigBits);
  const q1 = i32x4.sub(f32x4.add(f32x4.mul(x1, vid), big), bigBits);
  const q2 = i32x4.sub(f32x4.add(f32x4.mul(x2, vid), big), bigBits);
  const q3 = i32x4.sub(f32x4.add(f32x4.mul(x3, vid), big), bigBits);
  const q4 = i32x4.sub(f32x4.add(f32x4.mul(x4, vid), big), bigBits);
  const q5 = i32x4.sub(f32x4.add(f32x4.mul(x5, vid), big), bigBits);
  const q6 = i32x4.sub(f32x4.add(f32x4.mul(x6, vid), big), bigBits);
  const q7 = i32x4.sub(f32x4.add(f32x4.mul(x7, vid), big), bigBits);
  return quant_block_store(q, s, d, q0, q1, q2, q3, q4, q5, q6, q7);
}

/** The quants (|q| <= 127) to q, 8·Σq to s; returns d. */
// @ts-ignore: decorator
@inline function quant_block_store(q: usize, s: usize, d: f32, q0: v128, q1: v128, q2: v128, q3: v128, q4: v128, q5: v128,
  q6: v128, q7: v128): f32 {
  v128.store(q, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  v128.store(q, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q4, q5), i16x8.narrow_i32x4_s(q6, q7)), 16);
  let t = i32x4.add(i32x4.add(i32x4.add(q0, q1), i32x4.add(q2, q3)), i32x4.add(i32x4.add(q4, q5), i32x4.add(q6, q7)));
  t = i32x4.add(t, v128.shuffle<u32>(t, t, 2, 3, 0, 1));
  store<i32>(s, 8 * (i32x4.extract_lane(t, 0) + i32x4.extract_lane(t, 1)));
  return d;
}

/** quant_block through wasm's max and trunc_sat, whose NaN and saturation rules decide the result of its rare blocks. */
function quant_block_rare(p: usize, q: usize, s: usize): f32 {
  const x0 = v128.load(p), x1 = v128.load(p, 16), x2 = v128.load(p, 32), x3 = v128.load(p, 48);
  const x4 = v128.load(p, 64), x5 = v128.load(p, 80), x6 = v128.load(p, 96), x7 = v128.load(p, 112);
  let mx = f32x4.max(f32x4.max(f32x4.abs(x0), f32x4.abs(x1)), f32x4.max(f32x4.abs(x2), f32x4.abs(x3)));
  mx = f32x4.max(mx, f32x4.max(f32x4.max(f32x4.abs(x4), f32x4.abs(x5)), f32x4.max(f32x4.abs(x6), f32x4.abs(x7))));
  mx = f32x4.max(mx, v128.shuffle<u32>(mx, mx, 2, 3, 0, 1));
  const amax = max(f32x4.extract_lane(mx, 0), f32x4.extract_lane(mx, 1));
  const d = f16_to_f32(f32_to_f16(amax / <f32>127));
  const id = amax != 0 ? <f32>127 / amax : <f32>0;
  const vid = f32x4.splat(id);
  const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x0, vid)));
  const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x1, vid)));
  const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x2, vid)));
  const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x3, vid)));
  const q4 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x4, vid)));
  const q5 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x5, vid)));
  const q6 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x6, vid)));
  const q7 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(x7, vid)));
  return quant_block_store(q, s, d, q0, q1, q2, q3, q4, q5, q6, q7);
}

/**
 * Quantizes rows [m0, m1) of X (row m at X + m·ldx·4, K values, K a multiple of 32) into the
 * group records at A.
 */
export function quantize_act_q8(X: usize, ldx: i32, m0: i32, m1: i32, K: i32, A: usize): void {
  quantize_act_q8_span(X, ldx, m0, m1, K, A, 0, K >> 5);
}

/**
 * Blocks [b0, b1) (32 values each) of rows [m0, m1) into their group records, as quantize_act_q8
 * writes them (the zero padding after the last block too when b1 is the last): a product's work
 * item quantizes the outputs it made, for the next product (executor.ts, decode passes).
 */
export function quantize_act_q8_span(X: usize, ldx: i32, m0: i32, m1: i32, K: i32, A: usize, b0: i32, b1: i32): void {
  const nb = K >> 5, nb4 = nb4_of(nb);
  const gb = group_bytes(nb), unit = x4_unit();
  for (let m = m0; m < m1; m++) {
    const x = X + (<usize>m * <usize>ldx << 2);
    const g = A + <usize>(m >> 2) * gb, t = <usize>(m & 3);
    let q = g + t * 32 + (<usize>b0 << 7);
    let d4 = g + off_dx4(nb) + t * 4 + (<usize>b0 << 4), s4 = g + off_sx4(nb) + t * 4 + (<usize>b0 << 4);
    let d1 = g + off_dx1(nb) + t * <usize>nb4 * 4 + (<usize>b0 << 2), s1 = g + off_sx1(nb) + t * <usize>nb4 * 4 + (<usize>b0 << 2);
    for (let b = b0; b < b1; b++) {
      const d = quant_block(x + (<usize>b << 7), q, s4);
      store<f32>(d4, d); store<f32>(d1, d * unit); // DX1 holds d·2^102 (x4-scale.ts; 2^112 with raw scales)
      store<i32>(s1, load<i32>(s4));
      q += 128; d4 += 16; s4 += 16; d1 += 4; s1 += 4;
    }
    if (b1 == nb) for (let b = nb; b < nb4; b++) { store<f32>(d1, 0); store<i32>(s1, 0); d1 += 4; s1 += 4; }
  }
}

/** Quantizes the one row at X (K values, K a multiple of 32) as a row record at A. */
export function quantize_act_q8_row(X: usize, K: i32, A: usize): void {
  quantize_act_q8_row_span(X, K, A, 0, K >> 5);
}

/** Blocks [b0, b1) of the row record quantize_act_q8_row writes (its zero padding too when b1 is the last). */
export function quantize_act_q8_row_span(X: usize, K: i32, A: usize, b0: i32, b1: i32): void {
  const nb = K >> 5, nb4 = nb4_of(nb);
  let q = A + row_off_qx(nb) + (<usize>b0 << 5), d1 = A + row_off_dx(nb) + (<usize>b0 << 2), s1 = A + (<usize>b0 << 2);
  const unit = x4_unit();
  for (let b = b0; b < b1; b++) {
    const d = quant_block(X + (<usize>b << 7), q, s1);
    store<f32>(d1, d * unit); // as DX1 of a group record
    q += 32; d1 += 4; s1 += 4;
  }
  if (b1 == nb) for (let b = nb; b < nb4; b++) { store<f32>(d1, 0); store<i32>(s1, 0); d1 += 4; s1 += 4; }
}
