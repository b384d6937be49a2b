/**
 * ggml's tensor storage types: block layouts, reference dequantization, the reference quantizers
 * llama-quantize uses (bit-exact; the k-quant ones live in kquant-quantize.ts) and the one q8_0
 * row codec. The type table (ids, block geometry) is ggml-types.ts; llama.cpp's dot products,
 * which only tests need, are test/helpers/llamacpp-dot.ts.
 *
 * Everything here is plain TypeScript meant as the reference the wasm kernels are checked
 * against, not as the fast path. Float32 arithmetic of the C code is reproduced with Math.fround
 * wherever the rounding of an intermediate changes the result (scales, dequantized values,
 * quantizer inputs), so dequantize() gives the same float32 values as ggml's dequantize_row_*.
 *
 * Layouts (all little-endian; "fp16" is IEEE half; QK_K = 256):
 *   q4_0  {d: fp16, qs[16]}               x = d * (nibble - 8)         low nibbles = elements 0..15
 *   q4_1  {d, m: fp16, qs[16]}            x = d * nibble + m
 *   q5_0  {d, qh: u32, qs[16]}            x = d * ((nibble | bit<<4) - 16)
 *   q5_1  {d, m, qh: u32, qs[16]}         x = d * (nibble | bit<<4) + m
 *   q8_0  {d, qs: i8[32]}                 x = d * q
 *   q2_K  {scales[16], qs[64], d, dmin}   16 sub-blocks of 16: x = d*(sc&15)*q - dmin*(sc>>4)
 *   q3_K  {hmask[32], qs[64], scales[12], d}   16×16, 6-bit signed scales, q in [-4, 3]
 *   q4_K  {d, dmin, scales[12], qs[128]}  8 sub-blocks of 32, 6-bit scales and mins
 *   q5_K  {d, dmin, scales[12], qh[32], qs[128]}
 *   q6_K  {ql[128], qh[64], scales: i8[16], d}  16×16, q in [-32, 31]
 */
import { FormatError, InputError, UnsupportedError } from '../errors.js';
import { byteLengthOf, GGML_TYPES } from './ggml-types.js';
import { bf16ToF32, f16Values, f32ToBf16, f32ToF16 } from './dtypes.js';
import { quantizeQ4K, quantizeQ5K, quantizeQ6K } from './kquant-quantize.js';
import { q3kScales, scaleMinK4 } from './kquant-scales.js';
import type { DType } from './tensor-source.js';

export {
  byteLengthOf,
  dtypeOfGgmlType,
  GGML_TYPES,
  type GgmlTypeInfo,
  ggmlTypeName,
  paddedByteLengthOf,
} from './ggml-types.js';

const fr = Math.fround;

/** C's roundf: nearest, ties away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

// ---------------------------------------------------------------------------------------------
// q8_0 rows: the one encoder and decoder (weights, prompt cache files)
// ---------------------------------------------------------------------------------------------

/** Bytes of n values as q8_0: 34 a block of 32; a short last block takes 2 + its length. */
export function q8_0ByteLength(n: number): number {
  return 2 * Math.ceil(n / 32) + n;
}

/**
 * Encodes n float32 values x[xo..xo+n) as q8_0 into out[o..] with ggml's rounding
 * (`quantize_row_q8_0_ref`): per block d = fround(amax/127), stored as fp16, and
 * q = roundf(fround(x · fround(1/d))) (ties away from zero). n need not be a whole number of
 * blocks: a short last block is encoded over the values it has and takes 2 + its length bytes
 * (the prompt cache's rows; ggml tensors always hold whole blocks). Values that went through
 * q8_0 before (q · fp16(d), with some |q| = 127 in the block) come back bit for bit.
 */
export function encodeQ8_0(x: Float32Array, xo: number, n: number, out: Uint8Array, o: number): void {
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  for (let b = 0; b < n; b += 32) {
    const end = Math.min(b + 32, n);
    let amax = 0;
    for (let i = b; i < end; i++) amax = Math.max(amax, Math.abs(x[xo + i]!));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    dv.setUint16(o, f32ToF16(d), true);
    o += 2;
    for (let i = b; i < end; i++) dv.setInt8(o++, roundAway(fr(x[xo + i]! * id)));
  }
}

/** Decodes n values of q8_0 at bytes[o..] into y[yo..yo+n) as ggml does: fround(q · fp16(d)). */
export function decodeQ8_0(bytes: Uint8Array, o: number, n: number, y: Float32Array, yo: number): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = f16Values();
  for (let b = 0; b < n; b += 32) {
    const end = Math.min(b + 32, n);
    const d = h[dv.getUint16(o, true)]!;
    o += 2;
    for (let i = b; i < end; i++) y[yo + i] = fr(dv.getInt8(o++) * d);
  }
}

// ---------------------------------------------------------------------------------------------
// Dequantization (ggml's dequantize_row_*, float32 arithmetic reproduced)
// ---------------------------------------------------------------------------------------------

export function checkBytes(dtype: DType, bytes: Uint8Array, count: number): void {
  const need = byteLengthOf(dtype, count);
  if (bytes.length < need) {
    throw new FormatError(`${GGML_TYPES[dtype].name}: ${count} values need ${need} bytes, got ${bytes.length}`);
  }
}

/**
 * Decodes `count` values of `dtype` from `bytes` into float32, exactly as ggml's
 * `dequantize_row_*` (or the plain widening for f16/bf16/f32) computes them. Into `into` when
 * given (it must hold `count` values), else into a new array.
 */
export function dequantize(dtype: DType, bytes: Uint8Array, count: number, into?: Float32Array): Float32Array {
  checkBytes(dtype, bytes, count);
  if (into && into.length !== count)
    throw new RangeError(`dequantize: the output holds ${into.length} values, not ${count}`);
  const y = into ?? new Float32Array(count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const h = f16Values();
  const b = bytes;
  const ts = GGML_TYPES[dtype].typeSize;
  switch (dtype) {
    case 'f32':
      for (let i = 0; i < count; i++) y[i] = dv.getFloat32(4 * i, true);
      return y;
    case 'f16':
      for (let i = 0; i < count; i++) y[i] = h[dv.getUint16(2 * i, true)]!;
      return y;
    case 'bf16':
      for (let i = 0; i < count; i++) y[i] = bf16ToF32(dv.getUint16(2 * i, true));
      return y;
    case 'q8_0':
      decodeQ8_0(bytes, 0, count, y, 0);
      return y;
    case 'q4_0':
      for (let i = 0, o = 0; i < count; i += 32, o += ts) {
        const d = h[dv.getUint16(o, true)]!;
        for (let j = 0; j < 16; j++) {
          const q = b[o + 2 + j]!;
          y[i + j] = fr(((q & 0xf) - 8) * d);
          y[i + j + 16] = fr(((q >> 4) - 8) * d);
        }
      }
      return y;
    case 'q4_1':
      for (let i = 0, o = 0; i < count; i += 32, o += ts) {
        const d = h[dv.getUint16(o, true)]!;
        const m = h[dv.getUint16(o + 2, true)]!;
        for (let j = 0; j < 16; j++) {
          const q = b[o + 4 + j]!;
          y[i + j] = fr(fr((q & 0xf) * d) + m);
          y[i + j + 16] = fr(fr((q >> 4) * d) + m);
        }
      }
      return y;
    case 'q5_0':
      for (let i = 0, o = 0; i < count; i += 32, o += ts) {
        const d = h[dv.getUint16(o, true)]!;
        const qh = dv.getUint32(o + 2, true);
        for (let j = 0; j < 16; j++) {
          const q = b[o + 6 + j]!;
          y[i + j] = fr((((q & 0xf) | (((qh >>> j) << 4) & 0x10)) - 16) * d);
          y[i + j + 16] = fr((((q >> 4) | ((qh >>> (j + 12)) & 0x10)) - 16) * d);
        }
      }
      return y;
    case 'q5_1':
      for (let i = 0, o = 0; i < count; i += 32, o += ts) {
        const d = h[dv.getUint16(o, true)]!;
        const m = h[dv.getUint16(o + 2, true)]!;
        const qh = dv.getUint32(o + 4, true);
        for (let j = 0; j < 16; j++) {
          const q = b[o + 8 + j]!;
          y[i + j] = fr(fr(((q & 0xf) | (((qh >>> j) << 4) & 0x10)) * d) + m);
          y[i + j + 16] = fr(fr(((q >> 4) | ((qh >>> (j + 12)) & 0x10)) * d) + m);
        }
      }
      return y;
    case 'q2_k':
      for (let i = 0, o = 0; i < count; i += 256, o += ts) {
        const d = h[dv.getUint16(o + 80, true)]!;
        const dmin = h[dv.getUint16(o + 82, true)]!;
        let p = i;
        let is = 0;
        for (let n = 0; n < 2; n++) {
          const q = o + 16 + 32 * n;
          for (let shift = 0; shift < 8; shift += 2) {
            for (let half = 0; half < 2; half++) {
              const sc = b[o + is++]!;
              const dl = fr(d * (sc & 0xf));
              const ml = fr(dmin * (sc >> 4));
              for (let l = 0; l < 16; l++) y[p++] = fr(fr(dl * ((b[q + 16 * half + l]! >> shift) & 3)) - ml);
            }
          }
        }
      }
      return y;
    case 'q3_k': {
      const sc = new Int32Array(16);
      for (let i = 0, o = 0; i < count; i += 256, o += ts) {
        const d = h[dv.getUint16(o + 108, true)]!;
        q3kScales(b, o + 96, sc);
        let p = i;
        let is = 0;
        let m = 1;
        for (let n = 0; n < 2; n++) {
          const q = o + 32 + 32 * n;
          for (let shift = 0; shift < 8; shift += 2) {
            for (let half = 0; half < 2; half++) {
              const dl = fr(d * sc[is++]!);
              for (let l = 16 * half; l < 16 * half + 16; l++) {
                const v = ((b[q + l]! >> shift) & 3) - (b[o + l]! & m ? 0 : 4);
                y[p++] = fr(dl * v);
              }
            }
            m <<= 1;
          }
        }
      }
      return y;
    }
    case 'q4_k':
      for (let i = 0, o = 0; i < count; i += 256, o += ts) {
        const d = h[dv.getUint16(o, true)]!;
        const dmin = h[dv.getUint16(o + 2, true)]!;
        let p = i;
        for (let j = 0; j < 4; j++) {
          const [sc1, m1i] = scaleMinK4(2 * j, b, o + 4);
          const [sc2, m2i] = scaleMinK4(2 * j + 1, b, o + 4);
          const d1 = fr(d * sc1),
            m1 = fr(dmin * m1i),
            d2 = fr(d * sc2),
            m2 = fr(dmin * m2i);
          const q = o + 16 + 32 * j;
          for (let l = 0; l < 32; l++) y[p++] = fr(fr(d1 * (b[q + l]! & 0xf)) - m1);
          for (let l = 0; l < 32; l++) y[p++] = fr(fr(d2 * (b[q + l]! >> 4)) - m2);
        }
      }
      return y;
    case 'q5_k':
      for (let i = 0, o = 0; i < count; i += 256, o += ts) {
        const d = h[dv.getUint16(o, true)]!;
        const dmin = h[dv.getUint16(o + 2, true)]!;
        let p = i;
        let u1 = 1,
          u2 = 2;
        for (let j = 0; j < 4; j++) {
          const [sc1, m1i] = scaleMinK4(2 * j, b, o + 4);
          const [sc2, m2i] = scaleMinK4(2 * j + 1, b, o + 4);
          const d1 = fr(d * sc1),
            m1 = fr(dmin * m1i),
            d2 = fr(d * sc2),
            m2 = fr(dmin * m2i);
          const q = o + 48 + 32 * j;
          for (let l = 0; l < 32; l++) y[p++] = fr(fr(d1 * ((b[q + l]! & 0xf) + (b[o + 16 + l]! & u1 ? 16 : 0))) - m1);
          for (let l = 0; l < 32; l++) y[p++] = fr(fr(d2 * ((b[q + l]! >> 4) + (b[o + 16 + l]! & u2 ? 16 : 0))) - m2);
          u1 <<= 2;
          u2 <<= 2;
        }
      }
      return y;
    case 'q6_k':
      for (let i = 0, o = 0; i < count; i += 256, o += ts) {
        const d = h[dv.getUint16(o + 208, true)]!;
        for (let n = 0; n < 2; n++) {
          const ql = o + 64 * n;
          const qh = o + 128 + 32 * n;
          const sc = o + 192 + 8 * n;
          const p = i + 128 * n;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const hb = b[qh + l]!;
            const q1 = ((b[ql + l]! & 0xf) | ((hb & 3) << 4)) - 32;
            const q2 = ((b[ql + l + 32]! & 0xf) | (((hb >> 2) & 3) << 4)) - 32;
            const q3 = ((b[ql + l]! >> 4) | (((hb >> 4) & 3) << 4)) - 32;
            const q4 = ((b[ql + l + 32]! >> 4) | (((hb >> 6) & 3) << 4)) - 32;
            y[p + l] = fr(fr(d * dv.getInt8(sc + is)) * q1);
            y[p + l + 32] = fr(fr(d * dv.getInt8(sc + is + 2)) * q2);
            y[p + l + 64] = fr(fr(d * dv.getInt8(sc + is + 4)) * q3);
            y[p + l + 96] = fr(fr(d * dv.getInt8(sc + is + 6)) * q4);
          }
        }
      }
      return y;
    default:
      throw new UnsupportedError(`dequantize: unknown dtype "${String(dtype)}"`);
  }
}

// ---------------------------------------------------------------------------------------------
// Reference quantizers (ggml's quantize_row_*_ref: what llama-quantize runs without an imatrix)
// ---------------------------------------------------------------------------------------------

/** C's `(int8_t)v` for the small positive floats the quantizers feed it: truncation toward zero. */
function truncI8(v: number): number {
  return Math.trunc(v);
}

/** The types `quantize` can write. */
export const QUANTIZABLE_TYPES = [
  'f32',
  'f16',
  'bf16',
  'q8_0',
  'q4_0',
  'q4_1',
  'q5_0',
  'q5_1',
  'q4_k',
  'q5_k',
  'q6_k',
] as const satisfies readonly DType[];
export type QuantizableType = (typeof QUANTIZABLE_TYPES)[number];

/**
 * Encodes float32 values as `dtype`. Supported: f32, f16, bf16 (round to nearest even) and
 * q8_0, q4_0, q4_1, q5_0, q5_1, q4_K, q5_K, q6_K with ggml's reference quantizers
 * (`quantize_row_*_ref`, what llama-quantize runs without an imatrix), bit for bit. q2_K and
 * q3_K are not implemented (UnsupportedError). The length must be a whole number of blocks.
 */
export function quantize(dtype: DType, x: Float32Array): Uint8Array {
  const n = x.length;
  if (dtype === 'q4_k' || dtype === 'q5_k' || dtype === 'q6_k') {
    byteLengthOf(dtype, n); // FormatError for partial super-blocks
    return dtype === 'q4_k' ? quantizeQ4K(x) : dtype === 'q5_k' ? quantizeQ5K(x) : quantizeQ6K(x);
  }
  const out = new Uint8Array(byteLengthOf(dtype, n));
  const dv = new DataView(out.buffer);
  switch (dtype) {
    case 'f32':
      for (let i = 0; i < n; i++) dv.setFloat32(4 * i, x[i]!, true);
      return out;
    case 'f16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToF16(x[i]!), true);
      return out;
    case 'bf16':
      for (let i = 0; i < n; i++) dv.setUint16(2 * i, f32ToBf16(x[i]!), true);
      return out;
    case 'q8_0':
      encodeQ8_0(x, 0, n, out, 0);
      return out;
    case 'q4_0':
    case 'q5_0': {
      const is5 = dtype === 'q5_0';
      const nmax = is5 ? 16 : 8;
      const top = is5 ? 31 : 15;
      const bs = GGML_TYPES[dtype].typeSize;
      const qs = is5 ? 6 : 2;
      for (let i = 0, o = 0; i < n; i += 32, o += bs) {
        let amax = 0,
          max = 0;
        for (let j = 0; j < 32; j++) {
          const v = x[i + j]!;
          if (amax < Math.abs(v)) {
            amax = Math.abs(v);
            max = v;
          }
        }
        const d = fr(max / -nmax);
        const id = d ? fr(1 / d) : 0;
        dv.setUint16(o, f32ToF16(d), true);
        const bias = nmax + 0.5;
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          const x0 = Math.min(top, truncI8(fr(fr(x[i + j]! * id) + bias)));
          const x1 = Math.min(top, truncI8(fr(fr(x[i + 16 + j]! * id) + bias)));
          out[o + qs + j] = (x0 & 0xf) | ((x1 & 0xf) << 4);
          if (is5) {
            qh |= ((x0 & 0x10) >> 4) << j;
            qh |= ((x1 & 0x10) >> 4) << (j + 16);
          }
        }
        if (is5) dv.setUint32(o + 2, qh >>> 0, true);
      }
      return out;
    }
    case 'q4_1':
    case 'q5_1': {
      const is5 = dtype === 'q5_1';
      const levels = is5 ? 31 : 15;
      const bs = GGML_TYPES[dtype].typeSize;
      const qs = is5 ? 8 : 4;
      for (let i = 0, o = 0; i < n; i += 32, o += bs) {
        let min = Infinity,
          max = -Infinity;
        for (let j = 0; j < 32; j++) {
          const v = x[i + j]!;
          if (v < min) min = v;
          if (v > max) max = v;
        }
        const d = fr(fr(max - min) / levels);
        const id = d ? fr(1 / d) : 0;
        dv.setUint16(o, f32ToF16(d), true);
        dv.setUint16(o + 2, f32ToF16(min), true);
        let qh = 0;
        for (let j = 0; j < 16; j++) {
          // q5_1's reference has no clamp at 31; (x - min) * id never exceeds 31.5 there.
          let x0 = truncI8(fr(fr(fr(x[i + j]! - min) * id) + 0.5));
          let x1 = truncI8(fr(fr(fr(x[i + 16 + j]! - min) * id) + 0.5));
          if (!is5) {
            x0 = Math.min(15, x0);
            x1 = Math.min(15, x1);
          }
          out[o + qs + j] = (x0 & 0xf) | ((x1 & 0xf) << 4);
          if (is5) {
            qh |= ((x0 & 0x10) >> 4) << j;
            qh |= ((x1 & 0x10) >> 4) << (j + 16);
          }
        }
        if (is5) dv.setUint32(o + 4, qh >>> 0, true);
      }
      return out;
    }
    default:
      throw new UnsupportedError(
        `quantizing to ${GGML_TYPES[dtype]?.name ?? String(dtype)} is not implemented (supported: ${QUANTIZABLE_TYPES.join(', ')})`,
      );
  }
}

/**
 * Quantizes one matrix (`rows` × `cols`, rows contiguous) as `dtype`, refusing with an
 * InputError that names `tensor` when a row is not a whole number of the type's blocks (ggml
 * blocks never straddle rows; k-quants need rows of 256·k values).
 */
export function quantizeMatrix(dtype: DType, x: Float32Array, rows: number, cols: number, tensor: string): Uint8Array {
  checkMatrixShape(dtype, x.length, rows, cols, tensor);
  return quantize(dtype, x);
}

/** Throws quantizeMatrix's errors for a matrix that cannot be stored as `dtype`. */
export function checkMatrixShape(dtype: DType, length: number, rows: number, cols: number, tensor: string): void {
  const t = GGML_TYPES[dtype];
  if (t === undefined) throw new UnsupportedError(`${tensor}: unknown tensor dtype "${String(dtype)}"`);
  if (rows * cols !== length)
    throw new InputError(`${tensor}: ${length} values do not form a ${rows} × ${cols} matrix`);
  if (cols % t.blockSize !== 0) {
    throw new InputError(
      `${tensor}: rows of ${cols} values cannot be stored as ${t.name}, which needs rows that are a multiple of ${t.blockSize} values`,
    );
  }
}
