/**
 * Exact conversions between float32 and the 16-bit float formats checkpoints store (IEEE binary16
 * "f16" and bfloat16 "bf16"), one value at a time and in bulk over raw little-endian bytes.
 * Narrowing rounds to nearest, ties to even, like PyTorch and numpy; NaN payloads are kept where
 * the narrower format can hold them, so f16 -> f32 -> f16 is the identity on all 65536 patterns.
 */
import { boundedText, FormatError, MptError, nameForMessage } from '../errors.js';
import type { DType, TensorInfo } from './tensor-source.js';

// Typed-array views below read the host's byte order; every platform Node runs on is little-endian.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new MptError('mpt-ts needs a little-endian host (checkpoint bytes are little-endian)');
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** Bit pattern of `x` rounded to float32. */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** The float32 whose bit pattern is `bits` (as a JS number, exact). */
export function f32FromBits(bits: number): number {
  scratchU32[0] = bits;
  return scratchF32[0]!;
}

/** float32 bit pattern of the f16 bit pattern `h` (exact; NaN payload kept). */
export function f16BitsToF32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exp = (h >>> 10) & 0x1f;
  let mant = h & 0x3ff;
  if (exp === 0x1f) return (sign | 0x7f800000 | (mant << 13)) >>> 0;
  if (exp !== 0) return (sign | ((exp + 112) << 23) | (mant << 13)) >>> 0;
  if (mant === 0) return sign >>> 0;
  // Subnormal f16: normalise, every f16 subnormal is a normal float32.
  let e = 113; // float32 biased exponent of 2^-14
  while ((mant & 0x400) === 0) {
    mant <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((mant & 0x3ff) << 13)) >>> 0;
}

/** f16 bit pattern nearest to the float32 bit pattern `bits` (ties to even; overflow to ±inf). */
export function f32BitsToF16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) {
    if (mant === 0) return sign | 0x7c00;
    // NaN: keep the top payload bits; a payload that would vanish becomes the quiet bit.
    return sign | 0x7c00 | (mant >>> 13 || 0x200);
  }
  const e = exp - 112; // f16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e >= 1) {
    let h = (e << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    // A carry out of the mantissa bumps the exponent, and from the largest finite gives inf.
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) !== 0)) h++;
    return sign | h;
  }
  // Subnormal (or zero) result: shift the 24-bit significand into the 10-bit field.
  const shift = 14 - e;
  if (shift > 24) return sign;
  const sig = mant | 0x800000;
  let h = sig >>> shift;
  const rest = sig & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (h & 1) !== 0)) h++;
  return sign | h;
}

/** float32 bit pattern of the bf16 bit pattern `b` (exact). */
export function bf16BitsToF32Bits(b: number): number {
  return (b << 16) >>> 0;
}

/** bf16 bit pattern nearest to the float32 bit pattern `bits` (ties to even; NaN stays NaN). */
export function f32BitsToBf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The value of f16 bit pattern `h`. */
export function f16ToF32(h: number): number {
  return f32FromBits(f16BitsToF32Bits(h));
}

/** The value of bf16 bit pattern `b`. */
export function bf16ToF32(b: number): number {
  return f32FromBits(bf16BitsToF32Bits(b));
}

/** f16 bit pattern of `x` (first rounded to float32, as a Float32Array element would be). */
export function f32ToF16(x: number): number {
  return f32BitsToF16Bits(f32Bits(x));
}

/** bf16 bit pattern of `x` (first rounded to float32). */
export function f32ToBf16(x: number): number {
  return f32BitsToBf16Bits(f32Bits(x));
}

let f16Table: Float32Array | undefined;
/**
 * The value of every f16 bit pattern (256 KiB, built on first use; exact): bulk widening and the
 * block decoders are one lookup per value. The one f16 table in the engine.
 */
export function f16Values(): Float32Array {
  if (f16Table === undefined) {
    const bits = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) bits[h] = f16BitsToF32Bits(h);
    f16Table = new Float32Array(bits.buffer);
  }
  return f16Table;
}

/** A Uint16Array over `bytes`, copying only when the view would be misaligned. */
function u16View(bytes: Uint8Array, what: string): Uint16Array {
  if (bytes.byteLength % 2 !== 0)
    throw new FormatError(`${what}: ${bytes.byteLength} bytes is not a whole number of 16-bit values`);
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  return new Uint16Array(bytes.slice().buffer);
}

/** Widens little-endian f16 bytes to float32 (exact). */
export function f16BytesToF32(bytes: Uint8Array): Float32Array {
  const src = u16View(bytes, 'f16 data');
  const table = new Uint32Array(f16Values().buffer);
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]!]!;
  return new Float32Array(out.buffer);
}

/** Widens little-endian bf16 bytes to float32 (exact). */
export function bf16BytesToF32(bytes: Uint8Array): Float32Array {
  const src = u16View(bytes, 'bf16 data');
  const out = new Uint32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return new Float32Array(out.buffer);
}

/** Narrows float32 values to little-endian f16 bytes (round to nearest even). */
export function f32ToF16Bytes(values: Float32Array): Uint8Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToF16Bits(src[i]!);
  return new Uint8Array(out.buffer);
}

/** Narrows float32 values to little-endian bf16 bytes (round to nearest even). */
export function f32ToBf16Bytes(values: Float32Array): Uint8Array {
  const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  for (let i = 0; i < src.length; i++) out[i] = f32BitsToBf16Bits(src[i]!);
  return new Uint8Array(out.buffer);
}

/** Bytes per element of the unquantized dtypes; quantized ones are block formats (see ggml-quants). */
export const FLOAT_DTYPE_BYTES: Readonly<Partial<Record<DType, number>>> = { f32: 4, f16: 2, bf16: 2 };

/** Number of elements of a tensor with this shape (1 for a scalar). */
export function shapeElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * A tensor's stored bytes as float32 values (f32, f16 or bf16). For f32 input whose bytes are
 * 4-byte aligned the result is a view sharing memory with `bytes` (no copy); otherwise it is new.
 * Quantized dtypes are refused here: they go through ggml-quants' `dequantize`.
 */
export function tensorToFloat32(info: TensorInfo, bytes: Uint8Array): Float32Array {
  const size = FLOAT_DTYPE_BYTES[info.dtype];
  if (size === undefined) {
    throw new FormatError(
      `tensor ${info.name} is ${info.dtype}, a quantized type: dequantize it instead of widening it`,
    );
  }
  const count = shapeElements(info.shape);
  if (bytes.byteLength !== count * size) {
    throw new FormatError(
      `tensor ${nameForMessage(info.name)}: ${bytes.byteLength} bytes for shape ${boundedText(`[${info.shape.join(', ')}]`)} of ${info.dtype} (expected ${count * size})`,
    );
  }
  if (info.dtype === 'f16') return f16BytesToF32(bytes);
  if (info.dtype === 'bf16') return bf16BytesToF32(bytes);
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
  return new Float32Array(bytes.slice().buffer);
}
