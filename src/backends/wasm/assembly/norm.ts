// Row normalisations: LayerNorm (torch.nn.LayerNorm: biased variance, eps inside the sqrt) and
// RMSNorm (llm-foundry: x·rsqrt(mean(x²) + eps)·w). Sums in f32 lanes, two passes.
import { hsum_f32 } from './math';

/**
 * Y[m, :] = LayerNorm(X[m, :]) for M rows of n values; w / b are optional (0 = absent).
 * Leading dimensions in elements. Y may equal X.
 */
export function layernorm(X: usize, ldx: i32, Y: usize, ldy: i32, M: i32, n: i32, w: usize, b: usize, eps: f32): void {
  const n4 = n & ~3;
  const inv_n = <f32>1 / <f32>n;
  for (let m = 0; m < M; m++) {
    const x = X + (<usize>m * <usize>ldx << 2), y = Y + (<usize>m * <usize>ldy << 2);
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i < n4; i += 4) acc = f32x4.add(acc, v128.load(x + (<usize>i << 2)));
    let s = hsum_f32(acc);
    for (; i < n; i++) s += load<f32>(x + (<usize>i << 2));
    const mean = s * inv_n;
    const vm = f32x4.splat(mean);
    acc = f32x4.splat(0);
    for (i = 0; i < n4; i += 4) {
      const d = f32x4.sub(v128.load(x + (<usize>i << 2)), vm);
      acc = f32x4.add(acc, f32x4.mul(d, d));
    }
    let v = hsum_f32(acc);
    for (; i < n; i++) { const d = load<f32>(x + (<usize>i << 2)) - mean; v += d * d; }
    const inv = <f32>1 / Mathf.sqrt(v * inv_n + eps);
    const vi = f32x4.splat(inv);
    for (i = 0; i < n4; i += 4) {
      const o = <usize>i << 2;
      let z = f32x4.mul(f32x4.sub(v128.load(x + o), vm), vi);
      if (w) z = f32x4.mul(z, v128.load(w + o));
      if (b) z = f32x4.add(z, v128.load(b + o));
      v128.store(y + o, z);
    }
    for (; i < n; i++) {
      const o = <usize>i << 2;
      let z = (load<f32>(x + o) - mean) * inv;
      if (w) z *= load<f32>(w + o);
      if (b) z += load<f32>(b + o);
      store<f32>(y + o, z);
    }
  }
}

/** Y[m, :] = RMSNorm(X[m, :]); w optional (0 = absent). Y may equal X. */
export function rmsnorm(X: usize, ldx: i32, Y: usize, ldy: i32, M: i32, n: i32, w: usize, eps: f32): void {
  const n4 = n & ~3;
  for (let m = 0; m < M; m++) {
    const x = X + (<usize>m * <usize>ldx << 2), y = Y + (<usize>m * <usize>ldy << 2);
    let acc = f32x4.splat(0);
    let i = 0;
    for (; i < n4; i += 4) { const v = v128.load(x + (<usize>i << 2)); acc = f32x4.add(acc, f32x4.mul(v, v)); }
    let s = hsum_f32(acc);
    for (; i < n; i++) { const v = load<f32>(x + (<usize>i << 2)); s += v * v; }
    const inv = <f32>1 / Mathf.sqrt(s / <f32>n + eps);
    const vi = f32x4.splat(inv);
    for (i = 0; i < n4; i += 4) {
      const o = <usize>i << 2;
      let z = f32x4.mul(v128.load(x + o), vi);
      if (w) z = f32x4.mul(z, v128.load(w + o));
      v128.store(y + o, z);
    }
    for (; i < n; i++) {
      const o = <usize>i << 2;
      let z = load<f32>(x + o) * inv;
      if (w) z *= load<f32>(w + o);
      store<f32>(y + o, z);
    }
  }
}
