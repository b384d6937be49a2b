/**
 * Quantizes large matrices on worker threads. Rows quantize independently (every ggml block
 * lies within one row), so row ranges on different threads give the same bytes as one
 * `quantizeMatrix` call. Worth it for the k-quants, whose least-squares scale search costs
 * about 0.1 µs per weight in one thread with the wasm quantizers (0.3-0.6 µs in plain JS), so
 * MPT-7B to q4_k_m takes roughly 12 minutes of one core.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { MptError } from '../errors.js';
import { byteLengthOf, checkMatrixShape, quantizeMatrix } from './ggml-quants.js';
import type { DType } from './tensor-source.js';
import type { QuantizeJob, QuantizeReply } from './quantize-worker.js';

/** Below this many values a matrix is quantized on the calling thread. */
const MIN_PARALLEL_VALUES = 1 << 20;

export class QuantizePool {
  private readonly workers: Worker[] = [];
  private closed = false;

  /** `threads` worker threads (default: the machine's parallelism); started on first use. */
  constructor(readonly threads = availableParallelism()) {}

  private start(): void {
    if (this.workers.length) return;
    for (let i = 0; i < this.threads; i++) {
      const w = new Worker(new URL('./quantize-worker.js', import.meta.url));
      w.unref();
      this.workers.push(w);
    }
  }

  /**
   * Room for `count` values that quantize() hands to its threads without a copy (shared memory
   * when it will split the work): a 7B model's embedding is 826 MB as f32.
   */
  allocate(count: number): Float32Array {
    return this.threads > 1 && count >= MIN_PARALLEL_VALUES
      ? new Float32Array(new SharedArrayBuffer(count * 4))
      : new Float32Array(count);
  }

  /** `quantizeMatrix(dtype, x, rows, cols, tensor)`, split by rows over the pool. */
  async quantize(dtype: DType, x: Float32Array, rows: number, cols: number, tensor: string): Promise<Uint8Array> {
    if (this.closed) throw new MptError('the quantize pool is closed');
    if (this.threads <= 1 || x.length < MIN_PARALLEL_VALUES || rows < 2)
      return quantizeMatrix(dtype, x, rows, cols, tensor);
    checkMatrixShape(dtype, x.length, rows, cols, tensor);
    this.start();
    const rowBytes = byteLengthOf(dtype, cols);
    const shared = x.buffer instanceof SharedArrayBuffer;
    const src = shared ? (x.buffer as SharedArrayBuffer) : new SharedArrayBuffer(x.byteLength);
    if (!shared) new Float32Array(src).set(x);
    const srcOffset = shared ? x.byteOffset : 0;
    const dst = new SharedArrayBuffer(rows * rowBytes);
    const per = Math.max(1, Math.ceil(rows / (this.workers.length * 8)));
    let next = 0;
    await new Promise<void>((resolve, reject) => {
      let running = 0;
      let failed = false;
      const cleanups: Array<() => void> = [];
      const done = (err?: Error) => {
        if (failed) return;
        if (err) failed = true;
        if (err || (running === 0 && next >= rows)) {
          for (const c of cleanups) c();
          for (const w of this.workers) w.unref();
          if (err) reject(err);
          else resolve();
        }
      };
      const feed = (w: Worker) => {
        if (failed || next >= rows) return;
        const r0 = next,
          r1 = Math.min(rows, next + per);
        next = r1;
        running++;
        w.postMessage({ src, srcOffset, dst, dtype, cols, rowBytes, r0, r1, tensor } satisfies QuantizeJob);
      };
      for (const w of this.workers) {
        const onMessage = (m: QuantizeReply) => {
          running--;
          if (!m.ok) return done(new MptError(`quantizing ${tensor} failed: ${m.message}`));
          feed(w);
          done();
        };
        const onError = (e: Error) =>
          done(new MptError(`quantize worker failed on ${tensor}: ${e.message}`, { cause: e }));
        w.on('message', onMessage);
        w.on('error', onError);
        cleanups.push(() => {
          w.off('message', onMessage);
          w.off('error', onError);
        });
        w.ref();
        feed(w);
      }
    });
    return new Uint8Array(dst).slice();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
