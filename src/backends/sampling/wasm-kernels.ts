/**
 * The sampling kernels (backends/wasm/assembly/sampling.ts, in the shared kernel module) on the
 * calling thread, for the sampler of every backend: it needs the kernel module's loader, nothing
 * of the wasm backend itself. A row of logits is copied
 * into a private wasm memory by `setRow` (or written in place through `row`), then `stats`,
 * `weights` and `draw` work on it. The weights are a view into that memory, valid until the next
 * call.
 */
import { kernelModule, PAGE } from '../wasm/module-loader.js';

interface Kernels {
  sampling_max(X: number, n: number, count: number): number;
  sampling_weights(
    X: number,
    W: number,
    S: number,
    n: number,
    threshold: number,
    maxLogit: number,
    invT: number,
  ): number;
  sampling_draw(W: number, S: number, n: number, target: number): number;
  sampling_kth(X: number, n: number, k: number, B: number): number;
  sampling_gather(X: number, n: number, threshold: number, I: number): number;
}

/** A row's weights (a view, valid until the next call) and their f64 total. */
export interface RowWeights {
  weights: Float32Array;
  total: number;
}

/** Largest finite logit (-Infinity if none) and the number of logits > -Infinity. */
export interface RowStats {
  max: number;
  finite: number;
}

/** Weights per f64 block sum of the draw (assembly/sampling.ts DRAW_BLOCK). */
export const DRAW_BLOCK = 64;

// Memory layout: an i32 count at 0, the logits row at 16, the weights row after it (16-aligned),
// the f64 block sums, the ids of `gather`, then the buffer of `kth`.
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

  private get sOffset(): number {
    return this.wOffset + Math.ceil((this.n * 4) / 16) * 16;
  }

  /** Copies a row of logits in; the other calls work on it. */
  setRow(x: Float32Array): void {
    this.row(x.length).set(x);
  }

  private get iOffset(): number {
    return this.sOffset + Math.ceil(this.n / DRAW_BLOCK) * 8;
  }

  private get bOffset(): number {
    return this.iOffset + this.n * 4;
  }

  private ensure(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / PAGE));
  }

  /** The row of n logits the other calls work on, to be written in place (a view, valid until the next call). */
  row(n: number): Float32Array {
    this.n = n;
    this.ensure(this.bOffset);
    return new Float32Array(this.memory.buffer, ROW, n);
  }

  /** The k-th largest logit of the row (1 <= k <= the number of logits > -Infinity). */
  kth(k: number): number {
    this.ensure(this.bOffset + k * 4);
    return this.k.sampling_kth(ROW, this.n, k, this.bOffset);
  }

  /** Ids of the logits >= threshold (and > -Infinity), ascending (a view, valid until the next call). */
  gather(threshold: number): Int32Array {
    const c = this.k.sampling_gather(ROW, this.n, threshold, this.iOffset);
    return new Int32Array(this.memory.buffer, this.iOffset, c);
  }

  stats(): RowStats {
    const max = this.k.sampling_max(ROW, this.n, COUNT);
    return { max, finite: new Int32Array(this.memory.buffer, COUNT, 1)[0]! };
  }

  /** See assembly/sampling.ts `sampling_weights`; threshold, maxLogit and invT are f32 values. */
  weights(threshold: number, maxLogit: number, invT: number): RowWeights {
    const total = this.k.sampling_weights(ROW, this.wOffset, this.sOffset, this.n, threshold, maxLogit, invT);
    return { weights: new Float32Array(this.memory.buffer, this.wOffset, this.n), total };
  }

  /** See assembly/sampling.ts `sampling_draw`, over the weights of the last `weights` call. */
  draw(target: number): number {
    return this.k.sampling_draw(this.wOffset, this.sOffset, this.n, target);
  }
}
