/**
 * The job protocol of the trainer's threaded products (kernels-wasm.ts posts jobs, every
 * kernels-wasm-worker.ts and the caller claim chunks of them): the control block's slots and the
 * chunk loop both sides run.
 *
 * Why not the wasm backend's Team (backends/wasm/team.ts): a Team runs a pass in lock step, every
 * thread through the same barriers, which suits a forward pass planned as a whole. The trainer
 * calls one product at a time from synchronous JS, hundreds per step; here a worker the OS is
 * slow to wake (this machine is shared) just claims fewer chunks, and the caller waits only for
 * the workers already in flight, never at a barrier for all of them.
 */
import type { Kernels } from '../backends/wasm/kernels.js';

/** The kernel module's exports the trainer calls. */
export type WasmGemm = Pick<Kernels, 'gemm_f32' | 'transpose_f32'>;

/**
 * Control block shared by the caller and every worker (Int32 slots). A job is split into chunks
 * that threads claim with compare-and-swap on COUNTER, so a thread the OS starves (this machine
 * is shared) just claims fewer chunks. The caller closes a finished job (COUNTER = CLOSED) and waits
 * for INFLIGHT to drain before it writes the next job, so no worker ever reads half-written arguments.
 */
export const WCTRL = {
  SEQ: 0,
  INFLIGHT: 1,
  COUNTER: 2,
  NCHUNK: 3,
  EXIT: 4,
  SPLIT_ROWS: 5,
  CHUNK: 6,
  ARGS: 7,
  SIZE: 20,
  CLOSED: -1,
} as const;

/** Runs chunk `c` of the job whose arguments are in `args` (shared by caller and workers). */
export function runChunk(gemm: WasmGemm['gemm_f32'], a: Uint32Array, c: number): void {
  const A = WCTRL.ARGS;
  const X = a[A]!,
    ldx = a[A + 1]!,
    W = a[A + 2]!,
    ldw = a[A + 3]!,
    Y = a[A + 4]!,
    ldy = a[A + 5]!;
  const M = a[A + 6]!,
    N = a[A + 7]!,
    K = a[A + 8]!,
    acc = a[A + 9]!;
  const size = a[WCTRL.CHUNK]!;
  if (a[WCTRL.SPLIT_ROWS]) {
    const m0 = c * size,
      m1 = Math.min(M, m0 + size);
    if (m1 > m0) gemm(X + m0 * ldx * 4, ldx, W, ldw, Y + m0 * ldy * 4, ldy, m1 - m0, 0, N, K, acc);
  } else {
    const n0 = c * size,
      n1 = Math.min(N, n0 + size);
    if (n1 > n0) gemm(X, ldx, W, ldw, Y, ldy, M, n0, n1, K, acc);
  }
}

/** Claims and runs chunks of the current job until none is left. */
export function workOnJob(gemm: WasmGemm['gemm_f32'], ctrl: Int32Array, args: Uint32Array): void {
  for (;;) {
    const v = Atomics.load(ctrl, WCTRL.COUNTER);
    if (v === WCTRL.CLOSED || v >= ctrl[WCTRL.NCHUNK]!) return;
    if (Atomics.compareExchange(ctrl, WCTRL.COUNTER, v, v + 1) !== v) continue;
    runChunk(gemm, args, v);
  }
}
