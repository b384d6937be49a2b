/**
 * Scalar math for the reference backend. Activations are Float64Array (plain JS numbers), weights
 * Float32Array: every sum is accumulated in float64, which lands within MosaicML's own float32
 * rounding of the exact result.
 */

/** y[t, o] = sum_i x[t, i] * W[o, i] + b[o] for T rows: PyTorch's Linear (W is [out, in]). */
export function linear(
  x: Float64Array,
  T: number,
  W: Float32Array,
  inDim: number,
  outDim: number,
  b?: Float32Array,
): Float64Array {
  const y = new Float64Array(T * outDim);
  for (let t = 0; t < T; t++) {
    const xo = t * inDim;
    for (let o = 0; o < outDim; o++) {
      const wo = o * inDim;
      let s = 0;
      for (let i = 0; i < inDim; i++) s += x[xo + i]! * W[wo + i]!;
      y[t * outDim + o] = b ? s + b[o]! : s;
    }
  }
  return y;
}

/** LayerNorm over the last dim (biased variance, eps inside the sqrt), as torch.nn.LayerNorm. */
export function layerNorm(
  x: Float64Array,
  T: number,
  n: number,
  w: Float32Array | undefined,
  b: Float32Array | undefined,
  eps: number,
): Float64Array {
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++) {
    const o = t * n;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[o + i]!;
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) {
      const dx = x[o + i]! - mean;
      v += dx * dx;
    }
    const inv = 1 / Math.sqrt(v / n + eps);
    for (let i = 0; i < n; i++) {
      let z = (x[o + i]! - mean) * inv;
      if (w) z *= w[i]!;
      if (b) z += b[i]!;
      y[o + i] = z;
    }
  }
  return y;
}

/** RMSNorm as llm-foundry defines it: x * rsqrt(mean(x^2) + eps) * weight. */
export function rmsNorm(x: Float64Array, T: number, n: number, w: Float32Array | undefined, eps: number): Float64Array {
  const y = new Float64Array(T * n);
  for (let t = 0; t < T; t++) {
    const o = t * n;
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[o + i] = x[o + i]! * inv * (w ? w[i]! : 1);
  }
  return y;
}

/** Terms of erf's Taylor series kept: the 46th term is below 1e-17 of the sum at |x| = 2.5. */
const ERF_TERMS = 46;
/** erf(x)/x as a polynomial in x²: 2/√π · (−1)^n / (n!·(2n+1)). */
const ERF_TAYLOR = (() => {
  const c = new Float64Array(ERF_TERMS);
  let factorial = 1;
  for (let n = 0; n < ERF_TERMS; n++) {
    if (n > 0) factorial *= n;
    c[n] = ((n % 2 === 0 ? 2 : -2) / Math.sqrt(Math.PI)) * (1 / (factorial * (2 * n + 1)));
  }
  return c;
})();

/**
 * The error function to about 1e-14 absolute (JavaScript has no Math.erf): the Taylor series by
 * Horner's rule below |x| = 2.5, where it loses under a digit to cancellation, the continued
 * fraction of erfc from there to 6, ±1 beyond (erfc(6) < 3e-17). The one erf of the TypeScript
 * code: the reference forward, the trainer's GELU and its tests all call this (the wasm kernels
 * and the WGSL shaders have their own, one each; test/fixtures/erf-table.json checks all three).
 * The Horner form costs about what a one-exp approximation does, so the trainer pays nothing for
 * the precision.
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  if (ax < 2.5) {
    const z = x * x;
    let p = ERF_TAYLOR[ERF_TERMS - 1]!;
    for (let n = ERF_TERMS - 2; n >= 0; n--) p = p * z + ERF_TAYLOR[n]!;
    return x * p;
  }
  // erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + 1/2/(x + 1/(x + 3/2/(x + ...)))) evaluated with Lentz's method.
  const tiny = 1e-300;
  let f = ax;
  let C = ax;
  let D = 0;
  for (let n = 1; n < 500; n++) {
    const a = n / 2;
    D = ax + a * D;
    D = D === 0 ? tiny : D;
    C = ax + a / C;
    C = C === 0 ? tiny : C;
    D = 1 / D;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / f;
  return Math.sign(x) * (1 - erfc);
}

/** GELU in its exact erf form (torch's default). */
export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

/** GELU, tanh approximation (torch approximate='tanh'). */
export function geluTanh(x: number): number {
  return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
}

export function silu(x: number): number {
  return x / (1 + Math.exp(-x));
}
