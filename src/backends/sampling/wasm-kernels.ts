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
  sampling_argmax(X: number, n0: number, n1: number, slot: number): void;
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

// Memory layout: an i32 count at 0, the (f32, i32) slot of `argmax` at 8, the logits row at 16, the weights row after it (16-aligned),
// the f64 block sums, the ids of `gather`, then the buffer of `kth`.
const COUNT = 0;
const SLOT = 8;
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

  /** Index of the largest logit of the row (the lowest among equal maxima); -1 when all are -Infinity or NaN. */
  argmax(): number {
    return this.argmaxOver([[0, this.n]]);
  }

  /**
   * The same over the union of id ranges [n0, n1) of the row, merged in the order given (as the
   * worker threads merge the LM head's chunks: backends/wasm/executor.ts).
   */
  argmaxOver(ranges: ReadonlyArray<readonly [number, number]>): number {
    new Float32Array(this.memory.buffer, SLOT, 1)[0] = -Infinity;
    const at = new Int32Array(this.memory.buffer, SLOT + 4, 1);
    at[0] = -1;
    for (const [n0, n1] of ranges) this.k.sampling_argmax(ROW, n0, n1, SLOT);
    return at[0]!;
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
