/**
 * The sampling kernels (assembly/sampling.ts) on the calling thread: a row of logits is copied
 * into a private wasm memory by `setRow`, then `stats`, `weights` and `draw` work on it. The
 * weights are a view into that memory, valid until the next call.
 */
import { kernelModule, PAGE } from './module-loader.js';

interface Kernels {
  sampling_max(X: number, n: number, count: number): number;
  sampling_weights(X: number, W: number, n: number, threshold: number, maxLogit: number, invT: number): number;
  sampling_draw(W: number, n: number, target: number): number;
}

/** A row's weights (a view, valid until the next call) and their f64 total. */
export interface RowWeights { weights: Float32Array; total: number }

/** Largest finite logit (-Infinity if none) and the number of logits > -Infinity. */
export interface RowStats { max: number; finite: number }

// Memory layout: an i32 count at 0, the logits row at 16, the weights row after it (16-aligned).
const COUNT = 0;
const ROW = 16;

export class WasmSamplingKernels {
  private readonly memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  private readonly k: Kernels;
  private n = 0;

  constructor() {
    const inst = new WebAssembly.Instance(kernelModule('shared-base'), { env: { memory: this.memory } });
    this.k = inst.exports as unknown as Kernels;
  }

  private get wOffset(): number {
    return ROW + Math.ceil((this.n * 4) / 16) * 16;
  }

  /** Copies a row of logits in; the other calls work on it. */
  setRow(x: Float32Array): void {
    this.n = x.length;
    const need = this.wOffset + this.n * 4;
    const have = this.memory.buffer.byteLength;
    if (need > have) this.memory.grow(Math.ceil((need - have) / PAGE));
    new Float32Array(this.memory.buffer, ROW, this.n).set(x);
  }

  stats(): RowStats {
    const max = this.k.sampling_max(ROW, this.n, COUNT);
    return { max, finite: new Int32Array(this.memory.buffer, COUNT, 1)[0]! };
  }

  /** See assembly/sampling.ts `sampling_weights`; threshold, maxLogit and invT are f32 values. */
  weights(threshold: number, maxLogit: number, invT: number): RowWeights {
    const total = this.k.sampling_weights(ROW, this.wOffset, this.n, threshold, maxLogit, invT);
    return { weights: new Float32Array(this.memory.buffer, this.wOffset, this.n), total };
  }

  /** See assembly/sampling.ts `sampling_draw`, over the weights of the last `weights` call. */
  draw(target: number): number {
    return this.k.sampling_draw(this.wOffset, this.n, target);
  }
}
