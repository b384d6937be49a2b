/**
 * llama.cpp's CPU dot products, for tests: activations converted to the weight type's
 * `vec_dot_type` (q8_0, q8_1, q8_K, f16, bf16) first, then integer block sums scaled by the same
 * float factors ggml multiplies. The oracle the wasm kernels' products and the llama.cpp logits
 * fixture are checked against; nothing in src/ computes this way.
 */
import { FormatError } from '../../src/errors.js';
import { bf16ToF32, f16Values, f32ToBf16, f32ToF16 } from '../../src/formats/dtypes.js';
import { checkBytes, dequantize, GGML_TYPES } from '../../src/formats/ggml-quants.js';
import { q3kScales, scaleMinK4 } from '../../src/formats/kquant-scales.js';
import type { DType } from '../../src/formats/tensor-source.js';

const fr = Math.fround;

function halfToFloat(h: number): number {
  return f16Values()[h & 0xffff]!;
}

/** Rounds to the nearest integer, ties to even (x86 `roundps` nearest, ggml's `nearest_int`). */
function roundHalfEven(v: number): number {
  const r = Math.round(v);
  return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
}

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
    const h = f16Values();
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
