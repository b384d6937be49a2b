/**
 * The job protocol of the trainer's threaded products. kernels-wasm.ts (the caller, thread 0)
 * posts one product at a time; the caller and every kernels-wasm-worker.ts then run it as one
 * operation of the wasm backend's Team (backends/wasm/team.ts): chunks of the product claimed
 * from the Team's atomic work counter by whichever thread is free, then the Team's barrier.
 *
 * What differs from the wasm backend, and why: the backend posts a whole pass, many operations,
 * and its threads run from one barrier to the next without sleeping; the trainer calls one product
 * at a time from synchronous JS (hundreds per step, with its own JS work between them), so here a
 * pass is one product, and the workers sleep on this job block's SEQ slot between products instead
 * of waiting for a message. The caller writes a job only after the previous one's barrier, which
 * every thread has passed, so no thread ever reads half-written arguments.
 */
import type { Kernels } from '../backends/wasm/kernels.js';
import type { Team } from '../backends/wasm/team.js';

/** The kernel module's exports the trainer calls. */
export type WasmGemm = Pick<Kernels, 'gemm_f32' | 'transpose_f32'>;

/**
 * Int32 slots of the job block shared by the caller and every worker (beside the Team's control
 * buffer). SEQ counts posted jobs (workers wait on it), READY counts workers that have started,
 * EXIT asks them to stop, WATCHED is set once the watchdog (kernels-wasm-watchdog.ts) listens;
 * the rest are the current product's split and gemm_f32 arguments.
 */
export const JOB = {
  SEQ: 0,
  READY: 1,
  EXIT: 2,
  WATCHED: 3,
  SPLIT_ROWS: 4,
  CHUNK: 5,
  NCHUNK: 6,
  ARGS: 7,
  SIZE: 17,
} as const;

/** Runs chunk `c` of the product whose arguments are in `job`. */
export function runChunk(gemm: WasmGemm['gemm_f32'], job: Uint32Array, c: number): void {
  const A = JOB.ARGS;
  const X = job[A]!,
    ldx = job[A + 1]!,
    W = job[A + 2]!,
    ldw = job[A + 3]!,
    Y = job[A + 4]!,
    ldy = job[A + 5]!;
  const M = job[A + 6]!,
    N = job[A + 7]!,
    K = job[A + 8]!,
    acc = job[A + 9]!;
  const size = job[JOB.CHUNK]!;
  if (job[JOB.SPLIT_ROWS]) {
    const m0 = c * size,
      m1 = Math.min(M, m0 + size);
    if (m1 > m0) gemm(X + m0 * ldx * 4, ldx, W, ldw, Y + m0 * ldy * 4, ldy, m1 - m0, 0, N, K, acc);
  } else {
    const n0 = c * size,
      n1 = Math.min(N, n0 + size);
    if (n1 > n0) gemm(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc);
  }
}

/**
 * One thread's part in the posted product: `runJob()` claims its chunks through the Team and
 * returns when every thread has passed the closing barrier. Every thread calls it once per job.
 */
export function jobRunner(team: Team, gemm: WasmGemm['gemm_f32'], job: Uint32Array): () => void {
  const chunk = (c: number) => runChunk(gemm, job, c);
  return () => team.parallelFor(job[JOB.NCHUNK]!, chunk);
}
