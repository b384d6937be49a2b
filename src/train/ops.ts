/**
 * Row-wise building blocks of the MPT forward and their backward passes (LayerNorm, RMSNorm, exact GELU,
 * clip), written for f32 arrays with f64 accumulation.
 */
import { erf } from '../backends/reference/math.js';

const INV_SQRT2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);

/** y = x·Φ(x) (PyTorch's GELU, approximate='none'); keeps Φ(x) in `cdf` for the backward pass. */
export function geluForward(y: Float32Array, x: Float32Array, n: number, cdf: Float32Array): void {
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    const c = 0.5 * (1 + erf(v * INV_SQRT2));
    cdf[i] = c;
    y[i] = v * c;
  }
}

/** dx = dy·(Φ(x) + x·φ(x)); overwrites dx. */
export function geluBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, cdf: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i]!;
    dx[i] = dy[i]! * (cdf[i]! + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v));
  }
}

/**
 * LayerNorm over the last `dim` features of `rows` rows (biased variance, eps inside the sqrt, as
 * torch.nn.LayerNorm). Saves each row's mean and 1/std for the backward pass.
 */
export function layerNormForward(
  y: Float32Array,
  x: Float32Array,
  w: Float32Array | null,
  b: Float32Array | null,
  rows: number,
  dim: number,
  eps: number,
  mean: Float32Array,
  rstd: Float32Array,
  xStride = dim,
  xOff = 0,
): void {
  for (let r = 0; r < rows; r++) {
    const xo = r * xStride + xOff,
      yo = r * dim;
    let s = 0;
    for (let i = 0; i < dim; i++) s += x[xo + i]!;
    const mu = s / dim;
    let v = 0;
    for (let i = 0; i < dim; i++) {
      const d = x[xo + i]! - mu;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / dim + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let i = 0; i < dim; i++) {
      let o = (x[xo + i]! - mu) * rs;
      if (w) o *= w[i]!;
      if (b) o += b[i]!;
      y[yo + i] = o;
    }
  }
}

/**
 * Backward of layerNormForward. Writes (or adds, with `accumulate`) dx; adds to dw/db when given.
 */
export function layerNormBackward(
  dx: Float32Array,
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array | null,
  dw: Float32Array | null,
  db: Float32Array | null,
  rows: number,
  dim: number,
  mean: Float32Array,
  rstd: Float32Array,
  accumulate: boolean,
  xStride = dim,
  xOff = 0,
  dxStride = dim,
  dxOff = 0,
): void {
  for (let r = 0; r < rows; r++) {
    const xo = r * xStride + xOff,
      go = r * dim,
      dxo = r * dxStride + dxOff;
    const mu = mean[r]!,
      rs = rstd[r]!;
    let sumG = 0,
      sumGX = 0;
    for (let i = 0; i < dim; i++) {
      const xh = (x[xo + i]! - mu) * rs;
      const g = dy[go + i]!;
      if (dw) dw[i]! += g * xh;
      if (db) db[i]! += g;
      const gh = w ? g * w[i]! : g;
      sumG += gh;
      sumGX += gh * xh;
    }
    const mG = sumG / dim,
      mGX = sumGX / dim;
    for (let i = 0; i < dim; i++) {
      const xh = (x[xo + i]! - mu) * rs;
      const gh = w ? dy[go + i]! * w[i]! : dy[go + i]!;
      const v = rs * (gh - mG - xh * mGX);
      if (accumulate) dx[dxo + i]! += v;
      else dx[dxo + i] = v;
    }
  }
}

/**
 * RMSNorm as llm-foundry defines it, `x · rsqrt(mean(x²) + eps) · weight` (no bias), with the same
 * arguments as layerNormForward; saves 1/rms per row (and mean 0, unused) for the backward pass.
 */
export function rmsNormForward(
  y: Float32Array,
  x: Float32Array,
  w: Float32Array | null,
  _b: Float32Array | null,
  rows: number,
  dim: number,
  eps: number,
  mean: Float32Array,
  rstd: Float32Array,
  xStride = dim,
  xOff = 0,
): void {
  for (let r = 0; r < rows; r++) {
    const xo = r * xStride + xOff,
      yo = r * dim;
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[xo + i]! * x[xo + i]!;
    const rs = 1 / Math.sqrt(ss / dim + eps);
    mean[r] = 0;
    rstd[r] = rs;
    for (let i = 0; i < dim; i++) y[yo + i] = x[xo + i]! * rs * (w ? w[i]! : 1);
  }
}

/**
 * Backward of rmsNormForward (arguments as layerNormBackward's; no bias gradient): with
 * x̂ = x·r and g = dy·w, dx = r · (g − x̂ · mean(g · x̂)).
 */
export function rmsNormBackward(
  dx: Float32Array,
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array | null,
  dw: Float32Array | null,
  _db: Float32Array | null,
  rows: number,
  dim: number,
  _mean: Float32Array,
  rstd: Float32Array,
  accumulate: boolean,
  xStride = dim,
  xOff = 0,
  dxStride = dim,
  dxOff = 0,
): void {
  for (let r = 0; r < rows; r++) {
    const xo = r * xStride + xOff,
      go = r * dim,
      dxo = r * dxStride + dxOff;
    const rs = rstd[r]!;
    let sumGX = 0;
    for (let i = 0; i < dim; i++) {
      const xh = x[xo + i]! * rs;
      const g = dy[go + i]!;
      if (dw) dw[i]! += g * xh;
      sumGX += (w ? g * w[i]! : g) * xh;
    }
    const mGX = sumGX / dim;
    for (let i = 0; i < dim; i++) {
      const xh = x[xo + i]! * rs;
      const gh = w ? dy[go + i]! * w[i]! : dy[go + i]!;
      const v = rs * (gh - xh * mGX);
      if (accumulate) dx[dxo + i]! += v;
      else dx[dxo + i] = v;
    }
  }
}

/** The forward and backward of each norm kind (model/facts.ts `norm.kind`). */
export const NORM_OPS = {
  layernorm: { forward: layerNormForward, backward: layerNormBackward },
  rmsnorm: { forward: rmsNormForward, backward: rmsNormBackward },
} as const;
