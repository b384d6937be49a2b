/**
 * ggml's tensor storage types: block layouts, reference dequantization, the reference quantizers
 * llama-quantize uses (bit-exact; the k-quant ones live in kquant-quantize.ts), and scalar dot
 * products that follow llama.cpp's CPU arithmetic.
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
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './dtypes.js';
import { quantizeQ4K, quantizeQ5K, quantizeQ6K } from './kquant-quantize.js';
import type { DType } from './tensor-source.js';

/** One storage type: its ggml id, how many elements a block holds and how many bytes it takes. */
export interface GgmlTypeInfo {
  /** ggml's own name (`ggml_type_name`), e.g. "Q4_K". */
  name: string;
  /** `enum ggml_type` value, as stored in GGUF tensor infos. */
  id: number;
  /** Elements per block (1 for float types). */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

/** Every DType this engine reads, with ggml's ids and block geometry (ggml.c `type_traits`). */
export const GGML_TYPES: Readonly<Record<DType, GgmlTypeInfo>> = Object.freeze({
  f32: { name: 'F32', id: 0, blockSize: 1, typeSize: 4 },
  f16: { name: 'F16', id: 1, blockSize: 1, typeSize: 2 },
  q4_0: { name: 'Q4_0', id: 2, blockSize: 32, typeSize: 18 },
  q4_1: { name: 'Q4_1', id: 3, blockSize: 32, typeSize: 20 },
  q5_0: { name: 'Q5_0', id: 6, blockSize: 32, typeSize: 22 },
  q5_1: { name: 'Q5_1', id: 7, blockSize: 32, typeSize: 24 },
  q8_0: { name: 'Q8_0', id: 8, blockSize: 32, typeSize: 34 },
  q2_k: { name: 'Q2_K', id: 10, blockSize: 256, typeSize: 84 },
  q3_k: { name: 'Q3_K', id: 11, blockSize: 256, typeSize: 110 },
  q4_k: { name: 'Q4_K', id: 12, blockSize: 256, typeSize: 144 },
  q5_k: { name: 'Q5_K', id: 13, blockSize: 256, typeSize: 176 },
  q6_k: { name: 'Q6_K', id: 14, blockSize: 256, typeSize: 210 },
  bf16: { name: 'BF16', id: 30, blockSize: 1, typeSize: 2 },
});

/** ggml type ids this engine does not implement, by name, so errors can say what the file holds. */
const OTHER_GGML_TYPE_NAMES: Record<number, string> = {
  4: 'Q4_2 (removed from ggml)',
  5: 'Q4_3 (removed from ggml)',
  9: 'Q8_1',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
  31: 'Q4_0_4_4',
  32: 'Q4_0_4_8',
  33: 'Q4_0_8_8',
  34: 'TQ1_0',
  35: 'TQ2_0',
  36: 'IQ4_NL_4_4',
  37: 'IQ4_NL_4_8',
  38: 'IQ4_NL_8_8',
  39: 'MXFP4',
};

const BY_ID = new Map<number, DType>(
  (Object.entries(GGML_TYPES) as [DType, GgmlTypeInfo][]).map(([k, v]) => [v.id, k]),
);

/** The DType of a ggml type id, or undefined for ids this engine does not implement. */
export function dtypeOfGgmlType(id: number): DType | undefined {
  return BY_ID.get(id);
}

/** A readable name for any ggml type id (for error messages). */
export function ggmlTypeName(id: number): string {
  const d = BY_ID.get(id);
  if (d !== undefined) return GGML_TYPES[d].name;
  return OTHER_GGML_TYPE_NAMES[id] ?? `unknown type ${id}`;
}

/** Bytes that `count` elements of `dtype` occupy; count must be a whole number of blocks. */
export function byteLengthOf(dtype: DType, count: number): number {
  const t = GGML_TYPES[dtype];
  if (t === undefined) throw new UnsupportedError(`unknown tensor dtype "${String(dtype)}"`);
  if (!Number.isSafeInteger(count) || count < 0) throw new FormatError(`invalid element count ${count}`);
  if (count % t.blockSize !== 0) {
    throw new FormatError(
      `${t.name} stores blocks of ${t.blockSize} values; ${count} values is not a whole number of blocks`,
    );
  }
  return (count / t.blockSize) * t.typeSize;
}

// ---------------------------------------------------------------------------------------------
// fp16 / bf16 (conversions from dtypes.ts: IEEE round to nearest even, as ggml's F16C path)
// ---------------------------------------------------------------------------------------------

let halfTable: Float32Array | undefined;
/** All 65,536 fp16 values widened to float32 (exact), for the inner loops below. */
function halfToFloatTable(): Float32Array {
  if (halfTable === undefined) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = f16ToF32(h);
  }
  return halfTable;
}

function halfToFloat(h: number): number {
  return halfToFloatTable()[h & 0xffff]!;
}

/** Rounds to the nearest integer, ties to even (x86 `roundps` nearest, ggml's `nearest_int`). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

/** C's roundf: nearest, ties away from zero. */
function roundAway(v: number): number {
  return v < 0 ? -Math.round(-v) : Math.round(v);
}

// ---------------------------------------------------------------------------------------------
// Dequantization (ggml's dequantize_row_*, float32 arithmetic reproduced)
// ---------------------------------------------------------------------------------------------

const fr = Math.fround;

function checkBytes(dtype: DType, bytes: Uint8Array, count: number): void {
  const need = byteLengthOf(dtype, count);
  if (bytes.length < need) {
    throw new FormatError(`${GGML_TYPES[dtype].name}: ${count} values need ${need} bytes, got ${bytes.length}`);
  }
}

/** get_scale_min_k4: the j-th 6-bit scale and min packed in q4_K / q5_K's 12 scale bytes. */
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j]! & 63, q[o + j + 4]! & 63];
  return [(q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >> 6) << 4), (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4)];
}

/** The 16 signed 6-bit scales of a q3_K block (already minus 32). */
function q3kScales(b: Uint8Array, o: number, out: Int32Array): void {
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? b[o + j]! & 0xf : b[o + j - 8]! >> 4;
    const high = (b[o + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3;
    out[j] = (low | (high << 4)) - 32;
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
  const h = halfToFloatTable();
  const b = bytes;
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
      for (let i = 0, o = 0; i < count; i += 32, o += 34) {
        const d = h[dv.getUint16(o, true)]!;
        for (let j = 0; j < 32; j++) y[i + j] = fr(dv.getInt8(o + 2 + j) * d);
      }
      return y;
    case 'q4_0':
      for (let i = 0, o = 0; i < count; i += 32, o += 18) {
        const d = h[dv.getUint16(o, true)]!;
        for (let j = 0; j < 16; j++) {
          const q = b[o + 2 + j]!;
          y[i + j] = fr(((q & 0xf) - 8) * d);
          y[i + j + 16] = fr(((q >> 4) - 8) * d);
        }
      }
      return y;
    case 'q4_1':
      for (let i = 0, o = 0; i < count; i += 32, o += 20) {
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
      for (let i = 0, o = 0; i < count; i += 32, o += 22) {
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
      for (let i = 0, o = 0; i < count; i += 32, o += 24) {
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
      for (let i = 0, o = 0; i < count; i += 256, o += 84) {
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
      for (let i = 0, o = 0; i < count; i += 256, o += 110) {
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
      for (let i = 0, o = 0; i < count; i += 256, o += 144) {
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
      for (let i = 0, o = 0; i < count; i += 256, o += 176) {
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
      for (let i = 0, o = 0; i < count; i += 256, o += 210) {
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
export const QUANTIZABLE_TYPES: readonly DType[] = [
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
];

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
      for (let i = 0, o = 0; i < n; i += 32, o += 34) {
        let amax = 0;
        for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i + j]!));
        const d = fr(amax / 127);
        const id = d ? fr(1 / d) : 0;
        dv.setUint16(o, f32ToF16(d), true);
        for (let j = 0; j < 32; j++) dv.setInt8(o + 2 + j, roundAway(fr(x[i + j]! * id)));
      }
      return out;
    case 'q4_0':
    case 'q5_0': {
      const is5 = dtype === 'q5_0';
      const nmax = is5 ? 16 : 8;
      const top = is5 ? 31 : 15;
      const bs = is5 ? 22 : 18;
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
      const bs = is5 ? 24 : 20;
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

// ---------------------------------------------------------------------------------------------
// llama.cpp's dot products: activations converted to the weight type's vec_dot_type first
// ---------------------------------------------------------------------------------------------

/** What ggml converts float32 activations to before a dot product with weights of a type. */
export type ActivationType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q8_1' | 'q8_K';

/** ggml-cpu's `vec_dot_type` per weight type (x86). */
export function activationTypeOf(dtype: DType): ActivationType {
  switch (dtype) {
    case 'f32':
      return 'f32';
    case 'f16':
      return 'f16';
    case 'bf16':
      return 'bf16';
    case 'q8_0':
    case 'q4_0':
    case 'q5_0':
      return 'q8_0';
    case 'q4_1':
    case 'q5_1':
      return 'q8_1';
    default:
      return 'q8_K';
  }
}

/**
 * Activations in the form llama.cpp multiplies them: `f` for float types (f16/bf16-rounded
 * values for those types), or integer quants `q` with one scale `d` per block (32 values for
 * q8_0/q8_1, 256 for q8_K), q8_1's `s` = fp16(d·Σq), and q8_K's `bsums` (sums of 16 quants).
 */
export interface QuantizedActivations {
  type: ActivationType;
  length: number;
  f?: Float64Array;
  q?: Int8Array;
  d?: Float64Array;
  s?: Float64Array;
  bsums?: Int32Array;
}

/**
 * Converts float32 activations as ggml-cpu does on x86 before a matrix product:
 * - q8_0 (`quantize_row_q8_0`, AVX path): amax per 32; d = fp16(amax/127);
 *   q = round_half_even(x · fround(127/amax)).
 * - q8_1: the same q and d, plus s = fp16(fround(amax/127) · Σq) (unrounded d).
 * - q8_K (`quantize_row_q8_K_ref`): per 256, max = the first value of largest |x| with its sign;
 *   iscale = −127/max; q = min(127, round_half_even(iscale·x)); d = 1/iscale kept as float32.
 * - f16 / bf16: each value rounded to that type; f32: unchanged.
 */
export function quantizeActivations(type: ActivationType, x: Float32Array): QuantizedActivations {
  const n = x.length;
  if (type === 'f32' || type === 'f16' || type === 'bf16') {
    const f = new Float64Array(n);
    if (type === 'f32') for (let i = 0; i < n; i++) f[i] = x[i]!;
    else if (type === 'f16') for (let i = 0; i < n; i++) f[i] = halfToFloat(f32ToF16(x[i]!));
    else for (let i = 0; i < n; i++) f[i] = bf16ToF32(f32ToBf16(x[i]!));
    return { type, length: n, f };
  }
  if (type === 'q8_0' || type === 'q8_1') {
    if (n % 32 !== 0) throw new FormatError(`${type}: ${n} activations is not a multiple of 32`);
    const q = new Int8Array(n);
    const d = new Float64Array(n / 32);
    const s = type === 'q8_1' ? new Float64Array(n / 32) : undefined;
    for (let b = 0; b < n / 32; b++) {
      const i0 = 32 * b;
      let amax = 0;
      for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[i0 + j]!));
      const dd = fr(amax / 127);
      const id = amax !== 0 ? fr(127 / amax) : 0;
      let sum = 0;
      for (let j = 0; j < 32; j++) {
        const v = roundHalfEven(fr(x[i0 + j]! * id));
        q[i0 + j] = v;
        sum += v;
      }
      d[b] = halfToFloat(f32ToF16(dd));
      if (s) s[b] = halfToFloat(f32ToF16(fr(dd * sum)));
    }
    return s ? { type, length: n, q, d, s } : { type, length: n, q, d };
  }
  if (n % 256 !== 0) throw new FormatError(`q8_K: ${n} activations is not a multiple of 256`);
  const q = new Int8Array(n);
  const d = new Float64Array(n / 256);
  const bsums = new Int32Array(n / 16);
  for (let b = 0; b < n / 256; b++) {
    const i0 = 256 * b;
    let amax = 0,
      max = 0;
    for (let j = 0; j < 256; j++) {
      const ax = Math.abs(x[i0 + j]!);
      if (ax > amax) {
        amax = ax;
        max = x[i0 + j]!;
      }
    }
    if (amax === 0) continue; // d = 0, q = 0, bsums = 0
    const iscale = fr(-127 / max);
    for (let j = 0; j < 256; j++) q[i0 + j] = Math.min(127, roundHalfEven(fr(iscale * x[i0 + j]!)));
    for (let g = 0; g < 16; g++) {
      let sum = 0;
      for (let l = 0; l < 16; l++) sum += q[i0 + 16 * g + l]!;
      bsums[16 * b + g] = sum;
    }
    d[b] = fr(1 / iscale);
  }
  return { type: 'q8_K', length: n, q, d, bsums };
}

/**
 * A weight matrix unpacked for repeated products: every stored integer quant as int8, with
 * per-block (or per-sub-block) integer scales/mins and float block factors, so that a product
 * is integer sums times the same float factors llama.cpp multiplies.
 */
export class QuantMatrix {
  readonly actType: ActivationType;
  /** float types: the stored values widened (exact). */
  private readonly f?: Float64Array;
  /** integer quants, one per element. */
  private readonly q?: Int8Array;
  /** per 32-block (simple types) or per super-block (k-quants): d as float32. */
  private readonly d?: Float64Array;
  /** q4_1/q5_1: m per block; k-quants with mins: dmin per super-block. */
  private readonly m?: Float64Array;
  /** k-quants: integer scale per sub-block. */
  private readonly sc?: Int32Array;
  /** k-quants with mins (q2_K, q4_K, q5_K): integer min per sub-block. */
  private readonly mn?: Int32Array;
  /** k-quants: elements per sub-block (16 or 32). */
  private readonly sub: number = 0;

  constructor(
    readonly dtype: DType,
    bytes: Uint8Array,
    readonly rows: number,
    readonly cols: number,
  ) {
    const bs = GGML_TYPES[dtype].blockSize;
    if (cols % bs !== 0)
      throw new FormatError(`${GGML_TYPES[dtype].name} rows need a multiple of ${bs} columns, got ${cols}`);
    const count = rows * cols;
    checkBytes(dtype, bytes, count);
    this.actType = activationTypeOf(dtype);
    const h = halfToFloatTable();
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const b = bytes;
    if (dtype === 'f32' || dtype === 'f16' || dtype === 'bf16') {
      this.f = Float64Array.from(dequantize(dtype, bytes, count));
      return;
    }
    const q = new Int8Array(count);
    this.q = q;
    if (bs === 32) {
      const nb = count / 32;
      const d = new Float64Array(nb);
      const m = dtype === 'q4_1' || dtype === 'q5_1' ? new Float64Array(nb) : undefined;
      const ts = GGML_TYPES[dtype].typeSize;
      for (let k = 0; k < nb; k++) {
        const o = k * ts;
        const i = 32 * k;
        d[k] = h[dv.getUint16(o, true)]!;
        if (dtype === 'q8_0') {
          for (let j = 0; j < 32; j++) q[i + j] = dv.getInt8(o + 2 + j);
        } else if (dtype === 'q4_0' || dtype === 'q4_1') {
          const qs = dtype === 'q4_0' ? o + 2 : o + 4;
          const off = dtype === 'q4_0' ? 8 : 0;
          if (m) m[k] = h[dv.getUint16(o + 2, true)]!;
          for (let j = 0; j < 16; j++) {
            q[i + j] = (b[qs + j]! & 0xf) - off;
            q[i + j + 16] = (b[qs + j]! >> 4) - off;
          }
        } else {
          const is1 = dtype === 'q5_1';
          const qh = dv.getUint32(is1 ? o + 4 : o + 2, true);
          const qs = is1 ? o + 8 : o + 6;
          const off = is1 ? 0 : 16;
          if (m) m[k] = h[dv.getUint16(o + 2, true)]!;
          for (let j = 0; j < 16; j++) {
            q[i + j] = ((b[qs + j]! & 0xf) | (((qh >>> j) << 4) & 0x10)) - off;
            q[i + j + 16] = ((b[qs + j]! >> 4) | ((qh >>> (j + 12)) & 0x10)) - off;
          }
        }
      }
      this.d = d;
      this.m = m;
      return;
    }
    // k-quants
    const nsb = count / 256;
    const d = new Float64Array(nsb);
    const ts = GGML_TYPES[dtype].typeSize;
    const sub = dtype === 'q4_k' || dtype === 'q5_k' ? 32 : 16;
    this.sub = sub;
    const nsub = 256 / sub;
    const sc = new Int32Array(nsb * nsub);
    const withMins = dtype === 'q2_k' || dtype === 'q4_k' || dtype === 'q5_k';
    const mn = withMins ? new Int32Array(nsb * nsub) : undefined;
    const dmin = withMins ? new Float64Array(nsb) : undefined;
    const tmp = new Int32Array(16);
    for (let k = 0; k < nsb; k++) {
      const o = k * ts;
      const i = 256 * k;
      if (dtype === 'q2_k') {
        d[k] = h[dv.getUint16(o + 80, true)]!;
        dmin![k] = h[dv.getUint16(o + 82, true)]!;
        for (let j = 0; j < 16; j++) {
          sc[16 * k + j] = b[o + j]! & 0xf;
          mn![16 * k + j] = b[o + j]! >> 4;
        }
        let p = i;
        for (let n = 0; n < 2; n++) {
          for (let shift = 0; shift < 8; shift += 2) {
            for (let l = 0; l < 32; l++) q[p++] = (b[o + 16 + 32 * n + l]! >> shift) & 3;
          }
        }
      } else if (dtype === 'q3_k') {
        d[k] = h[dv.getUint16(o + 108, true)]!;
        q3kScales(b, o + 96, tmp);
        for (let j = 0; j < 16; j++) sc[16 * k + j] = tmp[j]!;
        let p = i;
        let mask = 1;
        for (let n = 0; n < 2; n++) {
          for (let shift = 0; shift < 8; shift += 2) {
            for (let l = 0; l < 32; l++) q[p++] = ((b[o + 32 + 32 * n + l]! >> shift) & 3) - (b[o + l]! & mask ? 0 : 4);
            mask <<= 1;
          }
        }
      } else if (dtype === 'q4_k' || dtype === 'q5_k') {
        d[k] = h[dv.getUint16(o, true)]!;
        dmin![k] = h[dv.getUint16(o + 2, true)]!;
        for (let j = 0; j < 8; j++) {
          const [s, mm] = scaleMinK4(j, b, o + 4);
          sc[8 * k + j] = s;
          mn![8 * k + j] = mm;
        }
        const is5 = dtype === 'q5_k';
        const qs = is5 ? o + 48 : o + 16;
        let p = i;
        let u1 = 1,
          u2 = 2;
        for (let j = 0; j < 4; j++) {
          for (let l = 0; l < 32; l++) q[p++] = (b[qs + 32 * j + l]! & 0xf) + (is5 && b[o + 16 + l]! & u1 ? 16 : 0);
          for (let l = 0; l < 32; l++) q[p++] = (b[qs + 32 * j + l]! >> 4) + (is5 && b[o + 16 + l]! & u2 ? 16 : 0);
          u1 <<= 2;
          u2 <<= 2;
        }
      } else {
        // q6_k
        d[k] = h[dv.getUint16(o + 208, true)]!;
        for (let j = 0; j < 16; j++) sc[16 * k + j] = dv.getInt8(o + 192 + j);
        for (let n = 0; n < 2; n++) {
          const ql = o + 64 * n,
            qh = o + 128 + 32 * n,
            p = i + 128 * n;
          for (let l = 0; l < 32; l++) {
            const hb = b[qh + l]!;
            q[p + l] = ((b[ql + l]! & 0xf) | ((hb & 3) << 4)) - 32;
            q[p + l + 32] = ((b[ql + l + 32]! & 0xf) | (((hb >> 2) & 3) << 4)) - 32;
            q[p + l + 64] = ((b[ql + l]! >> 4) | (((hb >> 4) & 3) << 4)) - 32;
            q[p + l + 96] = ((b[ql + l + 32]! >> 4) | (((hb >> 6) & 3) << 4)) - 32;
          }
        }
      }
    }
    this.d = d;
    this.m = dmin;
    this.sc = sc;
    this.mn = mn;
  }

  /** Converts activations to this matrix's activation type (once per input vector). */
  prepare(x: Float32Array): QuantizedActivations {
    if (x.length !== this.cols) throw new FormatError(`expected ${this.cols} activations, got ${x.length}`);
    return quantizeActivations(this.actType, x);
  }

  /** Dot product of row `r` with prepared activations, in llama.cpp's arithmetic. */
  dotRow(r: number, a: QuantizedActivations): number {
    const cols = this.cols;
    const base = r * cols;
    if (this.f) {
      const f = this.f,
        x = a.f!;
      let s = 0;
      for (let j = 0; j < cols; j++) s += f[base + j]! * x[j]!;
      return s;
    }
    const q = this.q!,
      xq = a.q!,
      xd = a.d!;
    if (this.sc === undefined) {
      // 32-blocks: sumi · fround(d_w·d_x) (+ m_w · s_x for q4_1 / q5_1)
      const d = this.d!,
        m = this.m,
        xs = a.s;
      const b0 = base / 32;
      let acc = 0;
      for (let k = 0; k < cols / 32; k++) {
        const o = base + 32 * k,
          xo = 32 * k;
        let sumi = 0;
        for (let j = 0; j < 32; j++) sumi += q[o + j]! * xq[xo + j]!;
        let v = fr(sumi * fr(d[b0 + k]! * xd[k]!));
        if (m) v = fr(v + fr(m[b0 + k]! * xs![k]!));
        acc += v;
      }
      return acc;
    }
    // k-quants: Σ_sub scale·Σ q·q8, times d_w·d_x; minus dmin_w·d_x · Σ bsums·min
    const d = this.d!,
      dmin = this.m,
      sc = this.sc,
      mn = this.mn,
      sub = this.sub;
    const nsub = 256 / sub;
    const bsums = a.bsums!;
    const s0 = base / 256;
    let acc = 0;
    for (let k = 0; k < cols / 256; k++) {
      const o = base + 256 * k,
        xo = 256 * k;
      const sk = (s0 + k) * nsub;
      let isum = 0;
      for (let s = 0; s < nsub; s++) {
        let part = 0;
        const so = s * sub;
        for (let l = 0; l < sub; l++) part += q[o + so + l]! * xq[xo + so + l]!;
        isum += sc[sk + s]! * part;
      }
      let v = fr(fr(d[s0 + k]! * xd[k]!) * isum);
      if (dmin && mn) {
        let summs = 0;
        for (let g = 0; g < 16; g++) summs += bsums[16 * k + g]! * mn[sk + Math.floor((16 * g) / sub)]!;
        v = fr(v - fr(fr(dmin[s0 + k]! * xd[k]!) * summs));
      }
      acc += v;
    }
    return acc;
  }

  /** y = W·x for every row, activations converted once as llama.cpp does. */
  matvec(x: Float32Array, out = new Float32Array(this.rows)): Float32Array {
    const a = this.prepare(x);
    for (let r = 0; r < this.rows; r++) out[r] = this.dotRow(r, a);
    return out;
  }
}

/**
 * Reference scalar dot product of one stored weight row with float32 activations, in
 * llama.cpp's CPU arithmetic: `x` is first converted to the weight type's vec_dot_type
 * (f16, bf16, q8_0, q8_1 or q8_K; see quantizeActivations), then integer block sums are scaled
 * by the same float factors ggml uses. Float accumulation order differs from ggml's SIMD code,
 * which changes the result only at float-rounding level.
 */
export function vecDotQ(dtype: DType, weightRowBytes: Uint8Array, x: Float32Array): number {
  const m = new QuantMatrix(dtype, weightRowBytes, 1, x.length);
  return m.dotRow(0, m.prepare(x));
}
