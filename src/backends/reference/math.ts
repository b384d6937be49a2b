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

/**
 * The error function to about 1e-15: Taylor series below |x| = 3, the continued fraction of
 * erfc above (JavaScript has no Math.erf).
 */
export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax >= 6) return Math.sign(x);
  if (ax < 3) {
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 200; n++) {
      term *= -x2 / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
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
