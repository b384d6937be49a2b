/**
 * ggml's reference k-quant quantizers for Q4_K, Q5_K and Q6_K (`quantize_row_q{4,5,6}_K_ref` in
 * ggml/src/ggml-quants.c): what llama-quantize writes for these types when it has no importance
 * matrix (`quantize_q4_K(…, quant_weights = NULL)` calls the _ref row quantizer). Written from
 * the C semantics, not translated line by line.
 *
 * Bit-exactness rests on reproducing ggml-base's scalar float32 arithmetic (built without FMA
 * contraction and without fast-math): every product, sum, quotient and square root is rounded
 * to float32 (Math.fround) in the C expression's own order, accumulations run in element order,
 * `nearest_int` is the 1.5·2^23 trick (round half to even, wrapping far outside ±2^22), and the
 * block scales are rounded to fp16 before the final requantization reads them back.
 *
 * The search helpers keep C's quirks that change bytes: make_qkx2_quants reuses the running
 * best `min` in later search steps, quants of a sub-block whose integer scale rounds to 0 are
 * the search's own (not requantized), int-to-uint8/int8 stores wrap.
 */
import { f16ToF32, f32ToF16 } from './dtypes.js';
import { FormatError } from '../errors.js';
import { GGML_TYPES } from './ggml-types.js';
import { packScalesMinsK4, scaleMinK4 } from './kquant-scales.js';
import { wasmKQuant, type KQuantType } from './kquant-wasm.js';

const fr = Math.fround;
const QK_K = 256;
/** GROUP_MAX_EPS: below this |x| a group counts as all zero. */
const GROUP_MAX_EPS = fr(1e-15);
const F0_1 = fr(0.1);

const nearestF32 = new Float32Array(1);
const nearestI32 = new Int32Array(nearestF32.buffer);

/**
 * ggml's `nearest_int(fval)`: (bits of float32(fval + 12582912)) & 0x7fffff − 0x400000. Round
 * half to even for |fval| ≤ 4194303; beyond that (asserts are off in release builds) the same
 * bit trick wraps, and so does this.
 */
function nearestInt(v: number): number {
  if (v <= 4194303 && v >= -4194303) {
    const r = Math.round(v);
    return r - v === 0.5 && (r & 1) !== 0 ? r - 1 : r;
  }
  nearestF32[0] = v + 12582912;
  return (nearestI32[0]! & 0x7fffff) - 0x400000;
}

const halfToFloat = (h: number): number => f16ToF32(h);

/**
 * make_qkx2_quants with use_mad = false (the q4_K / q5_K setting): fits x ≈ scale·L − min with
 * L in [0, nmax], min ≤ 0 clamped, by weighted least squares over nstep+1 trial inverse scales.
 * Writes L[lo..lo+n) and returns [scale, theMin] with theMin = −min (≥ 0 or −0).
 */
function makeQkx2Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  w: Float32Array,
  L: Uint8Array,
  lo: number,
  Laux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
): [number, number] {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = w[0]!;
  let sumX = fr(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const v = x[xo + i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = fr(sumW + w[i]!);
    sumX = fr(sumX + fr(w[i]! * v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return [0, -min];
  }
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(v - min)))));
    L[lo + i] = l;
    const diff = fr(fr(fr(scale * l) + min) - v);
    bestError = fr(bestError + fr(w[i]! * fr(diff * diff)));
  }
  if (nstep < 1) return [scale, -min];
  for (let is = 0; is <= nstep; is++) {
    // `min` here is the best fit so far, as in C (the trial grid moves with it).
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    let sumL = 0,
      sumL2 = 0,
      sumXL = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * fr(v - min)))));
      Laux[i] = l;
      const wl = fr(w[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * v));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        const diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        curError = fr(curError + fr(w[i]! * fr(diff * diff)));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/**
 * make_qx_quants with rmse_type 1 and no importance weights (the q6_K setting): symmetric
 * quants L − nmax in [−nmax, nmax−1], weights x², the scale refined over 18 trial inverse
 * scales. Writes L[lo..lo+n) (offset by nmax) and returns the scale.
 */
function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number): number {
  let max = 0,
    amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = fr(-nmax / max);
  let sumLX = 0,
    sumL2 = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * v))));
    L[lo + i] = l + nmax;
    const w = fr(v * v);
    sumLX = fr(sumLX + fr(fr(w * v) * l));
    sumL2 = fr(sumL2 + fr(fr(w * l) * l));
  }
  let scale = sumL2 !== 0 ? fr(sumLX / sumL2) : 0; // C truthiness: NaN counts as true
  let best = fr(scale * sumLX);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(F0_1 * is)) / max);
    sumLX = 0;
    sumL2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * v))));
      const w = fr(v * v);
      sumLX = fr(sumLX + fr(fr(w * v) * l));
      sumL2 = fr(sumL2 + fr(fr(w * l) * l));
    }
    if (sumL2 > 0 && fr(sumLX * sumLX) > fr(best * sumL2)) {
      for (let i = 0; i < n; i++) {
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(fr(iscale * x[xo + i]!))));
      }
      scale = fr(sumLX / sumL2);
      best = fr(scale * sumLX);
    }
  }
  return scale;
}

function checkInput(name: string, x: Float32Array): void {
  if (x.length % QK_K !== 0) {
    throw new FormatError(
      `${name} stores super-blocks of ${QK_K} values; ${x.length} values is not a whole number of them`,
    );
  }
}

/**
 * quantize_row_q4_K_ref / quantize_row_q5_K_ref: per 256 values, 8 sub-blocks of 32 fitted as
 * d·sc·q − dmin·m with q in [0, 15] (Q4_K) or [0, 31] (Q5_K), 6-bit sc and m, fp16 d and dmin.
 */
function quantizeQ45K(x: Float32Array, five: boolean): Uint8Array {
  checkInput(five ? 'Q5_K' : 'Q4_K', x);
  const nmax = five ? 31 : 15;
  const rmin = five ? -0.5 : -1;
  const nstep = five ? 15 : 20;
  const bs = GGML_TYPES[five ? 'q5_k' : 'q4_k'].typeSize;
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * bs);
  const L = new Uint8Array(QK_K);
  const Laux = new Uint8Array(32);
  const weights = new Float32Array(32);
  const scales = new Float32Array(8);
  const mins = new Float32Array(8);
  const ls = new Uint8Array(8);
  const lm = new Uint8Array(8);
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = i * bs;
    let maxScale = 0,
      maxMin = 0;
    for (let j = 0; j < 8; j++) {
      const xo = xb + 32 * j;
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[xo + l]! * x[xo + l]!));
      const avX = fr(Math.sqrt(fr(sumX2 / 32)));
      for (let l = 0; l < 32; l++) weights[l] = avX + Math.abs(x[xo + l]!); // float32 store rounds
      const [s, m] = makeQkx2Quants(32, nmax, x, xo, weights, L, 32 * j, Laux, rmin, F0_1, nstep);
      scales[j] = s;
      mins[j] = m;
      if (scales[j]! > maxScale) maxScale = scales[j]!;
      if (mins[j]! > maxMin) maxMin = mins[j]!;
    }
    const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
    for (let j = 0; j < 8; j++) {
      // uint8_t ls = nearest_int(...): the store wraps, then MIN(63, ·)
      ls[j] = Math.min(63, nearestInt(fr(invScale * scales[j]!)) & 0xff);
      lm[j] = Math.min(63, nearestInt(fr(invMin * mins[j]!)) & 0xff);
    }
    packScalesMinsK4(ls, lm, out, o + 4);
    const dh = f32ToF16(fr(maxScale / 63));
    const mh = f32ToF16(fr(maxMin / 63));
    out[o] = dh & 0xff;
    out[o + 1] = dh >> 8;
    out[o + 2] = mh & 0xff;
    out[o + 3] = mh >> 8;
    const dAll = halfToFloat(dh);
    const mAll = halfToFloat(mh);
    for (let j = 0; j < 8; j++) {
      const [sc, m] = scaleMinK4(j, out, o + 4);
      const d = fr(dAll * sc);
      if (d === 0) continue; // keep the search's quants, as C does (C's `!d`: NaN goes on)
      const dm = fr(mAll * m);
      for (let ii = 0; ii < 32; ii++) {
        const l = nearestInt(fr(fr(x[xb + 32 * j + ii]! + dm) / d));
        L[32 * j + ii] = Math.max(0, Math.min(nmax, l));
      }
    }
    if (!five) {
      const q = o + 16;
      for (let j = 0, k = 0; j < QK_K; j += 64, k += 32) {
        for (let l = 0; l < 32; l++) out[q + k + l] = L[j + l]! | (L[j + l + 32]! << 4);
      }
    } else {
      const qh = o + 16;
      const ql = o + 48;
      let m1 = 1,
        m2 = 2;
      for (let n = 0, k = 0; n < QK_K; n += 64, k += 32) {
        for (let j = 0; j < 32; j++) {
          let l1 = L[n + j]!;
          if (l1 > 15) {
            l1 -= 16;
            out[qh + j]! |= m1;
          }
          let l2 = L[n + j + 32]!;
          if (l2 > 15) {
            l2 -= 16;
            out[qh + j]! |= m2;
          }
          out[ql + k + j] = l1 | (l2 << 4);
        }
        m1 <<= 2;
        m2 <<= 2;
      }
    }
  }
  return out;
}

/** quantize_row_q4_K_ref: `x.length` must be a multiple of 256. */
export function quantizeQ4K(x: Float32Array): Uint8Array {
  return fast('q4_k', x) ?? quantizeQ45K(x, false);
}

/** quantize_row_q5_K_ref: `x.length` must be a multiple of 256. */
export function quantizeQ5K(x: Float32Array): Uint8Array {
  return fast('q5_k', x) ?? quantizeQ45K(x, true);
}

/** quantize_row_q6_K_ref: `x.length` must be a multiple of 256. */
export function quantizeQ6K(x: Float32Array): Uint8Array {
  return fast('q6_k', x) ?? quantizeQ6KJs(x);
}

/** The wasm copy of these quantizers (kquant-wasm.ts: same bytes, faster), when it loads. */
function fast(dtype: KQuantType, x: Float32Array): Uint8Array | null {
  checkInput(dtype === 'q4_k' ? 'Q4_K' : dtype === 'q5_k' ? 'Q5_K' : 'Q6_K', x);
  return wasmKQuant()?.quantize(dtype, x) ?? null;
}

/** The plain-JS quantizers, whatever wasmKQuant() says (the reference the wasm copy is tested against). */
export const kquantJs: Record<KQuantType, (x: Float32Array) => Uint8Array> = {
  q4_k: (x) => quantizeQ45K(x, false),
  q5_k: (x) => quantizeQ45K(x, true),
  q6_k: (x) => quantizeQ6KJs(x),
};

/**
 * quantize_row_q6_K_ref: per 256 values, 16 sub-blocks of 16 with signed 8-bit scales and
 * q in [−32, 31]; d = fp16(max_scale / −128). `x.length` must be a multiple of 256.
 */
function quantizeQ6KJs(x: Float32Array): Uint8Array {
  checkInput('Q6_K', x);
  const nb = x.length / QK_K;
  const bs = GGML_TYPES.q6_k.typeSize;
  const out = new Uint8Array(nb * bs);
  const L = new Uint8Array(QK_K);
  const scales = new Float32Array(16);
  const isc = new Int8Array(16);
  for (let i = 0; i < nb; i++) {
    const xb = i * QK_K;
    const o = i * bs;
    let maxScale = 0,
      maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const s = makeQxQuants(16, 32, x, xb + 16 * ib, L, 16 * ib);
      scales[ib] = s;
      const a = Math.abs(s);
      if (a > maxAbsScale) {
        maxAbsScale = a;
        maxScale = s;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) continue; // an all-zero block: every byte 0, d = +0
    const iscale = fr(-128 / maxScale);
    const dh = f32ToF16(fr(1 / iscale));
    out[o + 208] = dh & 0xff;
    out[o + 209] = dh >> 8;
    for (let ib = 0; ib < 16; ib++) {
      isc[ib] = Math.min(127, nearestInt(fr(iscale * scales[ib]!))); // int8 store wraps
      out[o + 192 + ib] = isc[ib]! & 0xff;
    }
    const dAll = halfToFloat(dh);
    for (let j = 0; j < 16; j++) {
      const d = fr(dAll * isc[j]!);
      if (d === 0) continue; // C's `!d`, which NaN does not satisfy
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(fr(x[xb + 16 * j + ii]! / d));
        L[16 * j + ii] = Math.max(-32, Math.min(31, l)) + 32;
      }
    }
    for (let j = 0, qlo = o, qho = o + 128; j < QK_K; j += 128, qlo += 64, qho += 32) {
      for (let l = 0; l < 32; l++) {
        const a = L[j + l]!,
          b = L[j + l + 32]!,
          c = L[j + l + 64]!,
          e = L[j + l + 96]!;
        out[qlo + l] = (a & 0xf) | ((c & 0xf) << 4);
        out[qlo + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
        out[qho + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
    }
  }
  return out;
}
