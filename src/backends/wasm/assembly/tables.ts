// Lookup tables every arena holds at address 0 (the host keeps [0, TABLES_END) free).
import { f16_to_f32 } from './half';

/** f16 bits → f32 for all 65536 patterns, at address 0 (256 KiB). */
export const F16_TABLE: usize = 0;
/**
 * Vector constants, read from memory on purpose: Binaryen folds constant arguments into callees
 * and V8 then rebuilds a v128.const at every use inside a loop (3 instructions); a value loaded
 * once before the loop stays in a register.
 */
export const CONSTS: usize = 262144;
export const C_NIBBLE_MASK: usize = CONSTS;       // i8x16 0x0F
export const C_ONES_I16: usize = CONSTS + 16;     // i16x8 1
export const C_SIGN32: usize = CONSTS + 32;       // i32x4 0x80000000
export const C_F16_SCALE: usize = CONSTS + 48;    // f32x4 2^112 (f16 exponent rebias)
export const C_F16_RAWMASK: usize = CONSTS + 64;  // i32x4 0x8fffffff (gemm-half.ts raw_lo)
export const C_X4_UNIT: usize = CONSTS + 80;      // f32x4 2^102, or 2^112 for raw x4 scales (x4-scale.ts)
export const C_X4_PLAIN: usize = CONSTS + 96;     // f32 2^112 / C_X4_UNIT (x4-scale.ts)
export const TABLES_END: usize = 262144 + 256;

/** Fills the tables; call once per memory. */
export function init_tables(): void {
  for (let h: u32 = 0; h < 65536; h++) store<f32>(F16_TABLE + (<usize>h << 2), f16_to_f32(h));
  v128.store(C_NIBBLE_MASK, i8x16.splat(15));
  v128.store(C_ONES_I16, i16x8.splat(1));
  v128.store(C_SIGN32, i32x4.splat(0x80000000));
  v128.store(C_F16_SCALE, f32x4.splat(5.192296858534828e33));
  v128.store(C_F16_RAWMASK, i32x4.splat(0x8fffffff));
  v128.store(C_X4_UNIT, f32x4.splat(5.070602400912918e30)); // 2^102: scales encoded (x4-scale.ts)
  store<f32>(C_X4_PLAIN, 1024);
}

/** fp16 scale at p, widened through the table. */
// @ts-ignore: decorator
@inline export function f16_at(p: usize): f32 {
  return load<f32>(f16_addr(p));
}

/** The address of f16_at's table entry for the fp16 bits at p. */
// @ts-ignore: decorator
@inline export function f16_addr(p: usize): usize {
  return F16_TABLE + (<usize>load<u16>(p) << 2);
}
