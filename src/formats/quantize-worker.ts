/**
 * Worker thread of parallel-quantize.ts: quantizes row ranges of a matrix held in shared memory
 * and writes the blocks into a shared output buffer.
 */
import { parentPort } from 'node:worker_threads';
import type { DType } from './tensor-source.js';
import { quantizeMatrix } from './ggml-quants.js';

/** One row range of one matrix. */
export interface QuantizeJob {
  src: SharedArrayBuffer;
  /** Byte offset of the matrix in src. */
  srcOffset: number;
  dst: SharedArrayBuffer;
  dtype: DType;
  cols: number;
  rowBytes: number;
  r0: number;
  r1: number;
  tensor: string;
}

export type QuantizeReply = { ok: true } | { ok: false; message: string };

parentPort?.on('message', (job: QuantizeJob) => {
  try {
    const n = job.r1 - job.r0;
    const x = new Float32Array(job.src, job.srcOffset + job.r0 * job.cols * 4, n * job.cols);
    const blocks = quantizeMatrix(job.dtype, x, n, job.cols, job.tensor);
    new Uint8Array(job.dst, job.r0 * job.rowBytes, blocks.length).set(blocks);
    parentPort!.postMessage({ ok: true } satisfies QuantizeReply);
  } catch (e) {
    parentPort!.postMessage({ ok: false, message: (e as Error).message } satisfies QuantizeReply);
  }
});
