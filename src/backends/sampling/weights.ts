/**
 * The arithmetic of a sampling draw, shared by every sampler: tempered weights of the kept
 * tokens, e^((x - max) / T) in f32 through the Cephes expf polynomial, their f64 total, and the
 * draw. The wasm SIMD kernel (backends/wasm/assembly/sampling.ts) computes it 6–8× faster than
 * Math.exp in a loop (0.12 vs 0.7–1.0 ms over 50k logits); where that kernel cannot load, this file's plain-JS copy gives the
 * same bits (each f32 operation is a double operation rounded by Math.fround, which is exact for
 * + and ×), so a seed draws the same tokens either way.
 */
import { platform } from '../../platform/index.js';
import { DRAW_BLOCK, WasmSamplingKernels, type RowStats, type RowWeights } from './wasm-kernels.js';

const f = Math.fround;
const LOG2E = f(Math.LOG2E);
const LN2_HI = f(0.693359375);
const LN2_LO = f(-2.1219444e-4);
const [P0, P1, P2, P3, P4, P5] = [
  1.98756915e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1,
].map(f) as [number, number, number, number, number, number];
const EXP_MIN = f(-87.33654);
const ROUND_MAGIC = 12582912; // 1.5 · 2^23: x + it, rounded to f32, is x rounded to an integer
/**
 * 2^n for the n in [-126, 0] that x >= EXP_MIN gives: the same doubles as `2 ** n`, which cost
 * about half of this function's time (a sampled token's candidates take ~120 calls).
 */
const POW2 = Float64Array.from({ length: 127 }, (_, i) => 2 ** (i - 126));

/** e^x of an f32 x <= 0, bit-identical to exp_nonpos_f32x4 in backends/wasm/assembly/sampling.ts. */
export function expF32(x0: number): number {
  if (x0 < EXP_MIN) return 0;
  const x = x0;
  const t = f(f(x * LOG2E) + ROUND_MAGIC);
  const fx = f(t - ROUND_MAGIC);
  let r = f(x - f(fx * LN2_HI));
  r = f(r - f(fx * LN2_LO));
  let p = f(f(P0 * r) + P1);
  p = f(f(p * r) + P2);
  p = f(f(p * r) + P3);
  p = f(f(p * r) + P4);
  p = f(f(p * r) + P5);
  p = f(f(f(f(p * r) * r) + r) + 1);
  const k = fx + 126;
  // NaN, or an x > 0 outside the contract, takes `2 ** fx` as before.
  return f(p * (k >= 0 && k <= 126 ? POW2[k]! : 2 ** fx));
}

/** The smallest f32 value >= v, so that `x >= v` and `x >= f32Ceil(v)` agree for every f32 x. */
export function f32Ceil(v: number): number {
  const r = f(v);
  if (r >= v || Number.isNaN(v)) return r;
  const b = new Float32Array([r]);
  const u = new Int32Array(b.buffer);
  // r < v: one ulp towards +Infinity (from -0 or +0 that is the smallest positive subnormal).
  u[0] = r > 0 ? u[0]! + 1 : r === 0 ? 1 : u[0]! - 1;
  return b[0]!;
}

/** Index of the largest value (the lowest index among equal maxima); -1 when all are -Infinity or NaN. */
export function argmax(x: ArrayLike<number>): number {
  let best = -1;
  let bestVal = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v > bestVal) {
      bestVal = v;
      best = i;
    }
  }
  return best;
}

/** Plain-JS sampling kernels with the wasm kernels' exact results. */
export class JsSamplingKernels {
  private x = new Float32Array(0);
  private w = new Float32Array(0);
  private s = new Float64Array(0);
  private n = 0;

  setRow(x: Float32Array): void {
    this.row(x.length).set(x);
  }

  row(n: number): Float32Array {
    this.n = n;
    if (this.x.length < n) {
      this.x = new Float32Array(n);
      this.w = new Float32Array(n);
      this.s = new Float64Array(Math.ceil(n / DRAW_BLOCK));
    }
    return this.x.subarray(0, n);
  }

  argmax(): number {
    return argmax(this.x.subarray(0, this.n));
  }

  stats(): RowStats {
    let max = -Infinity;
    let finite = 0;
    for (let i = 0; i < this.n; i++) {
      const v = this.x[i]!;
      if (v > -Infinity) {
        finite++;
        if (v > max) max = v;
      }
    }
    return { max, finite };
  }

  weights(threshold: number, maxLogit: number, invT: number): RowWeights {
    const { x, w, s, n } = this;
    let total = 0;
    for (let b = 0; b < n; b += DRAW_BLOCK) {
      const lane = [0, 0, 0, 0];
      for (let i = b; i < Math.min(b + DRAW_BLOCK, n); i++) {
        const v = x[i]!;
        const e = v >= threshold && v > -Infinity ? expF32(f(f(v - maxLogit) * invT)) : 0;
        w[i] = e;
        lane[i & 3]! += e;
      }
      const sb = lane[0]! + lane[1]! + (lane[2]! + lane[3]!);
      s[b / DRAW_BLOCK] = sb;
      total += sb;
    }
    return { weights: w.subarray(0, n), total };
  }

  kth(k: number): number {
    const buf = new Float32Array(k).fill(-Infinity);
    const x = this.x;
    for (let i = 0; i < this.n; i++) {
      const v = x[i]!;
      if (!(v > buf[k - 1]!)) continue;
      let j = k - 1;
      while (j > 0 && buf[j - 1]! < v) {
        buf[j] = buf[j - 1]!;
        j--;
      }
      buf[j] = v;
    }
    return buf[k - 1]!;
  }

  gather(threshold: number): Int32Array {
    const ids: number[] = [];
    for (let i = 0; i < this.n; i++) {
      const v = this.x[i]!;
      if (v >= threshold && v > -Infinity) ids.push(i);
    }
    return Int32Array.from(ids);
  }

  draw(target: number): number {
    const { w, s, n } = this;
    let acc = 0;
    for (let b = 0; b < n; b += DRAW_BLOCK) {
      const next = acc + s[b / DRAW_BLOCK]!;
      if (target < next) {
        let a = acc;
        for (let i = b; i < Math.min(b + DRAW_BLOCK, n); i++) {
          const wi = w[i]!;
          if (wi > 0) {
            a += wi;
            if (target < a) return i;
          }
        }
      }
      acc = next;
    }
    for (let i = n - 1; i >= 0; i--) if (w[i]! > 0) return i;
    return -1;
  }
}

export type SamplingKernels = WasmSamplingKernels | JsSamplingKernels;

/**
 * The sampling kernels of this thread: wasm when it loads (the built dist/wasm/, once this thread has
 * it: see module-loader.ts), else plain JS.
 * MPT_SAMPLING_KERNELS=js forces the JS copy.
 */
export function samplingKernels(): SamplingKernels {
  if (shared) return shared;
  if (platform.env('MPT_SAMPLING_KERNELS') !== 'js') {
    try {
      shared = new WasmSamplingKernels();
      return shared;
    } catch {
      // Fall through: same results, slower.
    }
  }
  shared = new JsSamplingKernels();
  return shared;
}
// One set per thread: a draw runs start to end synchronously, so samplers can share it.
let shared: SamplingKernels | undefined;
