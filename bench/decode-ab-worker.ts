/**
 * The product decode-ab times, for one kernel instance and a range of weight rows, and the
 * second thread of `decode-ab --threads 2`: a worker with its own instance of the same build on
 * the same shared memory, taking row chunks from a shared counter as the executor's threads do.
 */
import { readFileSync } from 'node:fs';
import { isMainThread, workerData } from 'node:worker_threads';
import { WTYPE, instantiateKernelsAndTables, type Kernels } from '../src/backends/wasm/kernels.js';

export type QType = 'q4_0' | 'q8_0' | 'q4_k' | 'q5_k' | 'q6_k';
const TYPES: readonly QType[] = ['q4_0', 'q8_0', 'q4_k', 'q5_k', 'q6_k'];

/** One product: weights W (N × K, repacked as the build keeps them), activations A (or the q4_0 row record R), output Y. */
export interface Call {
  type: QType;
  path: 'x4' | 'prompt';
  M: number;
  N: number;
  K: number;
  A: number;
  R: number;
  W: number;
  Y: number;
  /** q4_K / q6_K weights kept plain (gemm_k) even where the build has the x4 tiles. */
  plainK: boolean;
}

/** Rows [n0, n1) of the product through the build's kernels, as the backend would call them. */
export function product(k: Kernels, c: Call, n0: number, n1: number): void {
  if (c.type === 'q6_k' && !c.plainK && typeof k.gemm_q6_kx4 === 'function') {
    k.gemm_q6_kx4(c.A, c.W, c.Y, c.N, c.M, c.N, n0, n1, c.K, 0);
    return;
  }
  if (c.type === 'q5_k' || c.type === 'q6_k') {
    k.gemm_k(WTYPE[c.type], c.A, c.W, c.Y, c.N, c.M, n0, n1, c.K, 0);
    return;
  }
  if (c.type === 'q4_k') {
    if (!c.plainK && typeof k.gemm_q4_kx4 === 'function') k.gemm_q4_kx4(c.A, c.W, c.Y, c.N, c.M, c.N, n0, n1, c.K, 0);
    else k.gemm_k(WTYPE.q4_k, c.A, c.W, c.Y, c.N, c.M, n0, n1, c.K, 0);
    return;
  }
  const q4 = c.type === 'q4_0';
  if (c.M === 1 && c.path === 'x4' && q4 && typeof k.gemv_q4_0x4 === 'function') {
    k.gemv_q4_0x4(c.R, c.W, c.Y, c.N, n0, n1, c.K, 0);
    return;
  }
  const f =
    c.path === 'prompt' ? (q4 ? k.gemm_q4_0x4_prompt : k.gemm_q8_0x4_prompt) : q4 ? k.gemm_q4_0x4 : k.gemm_q8_0x4;
  f.call(k, c.A, c.W, c.Y, c.N, c.M, c.N, n0, n1, c.K, 0);
}

/** Slots of the shared control words. */
export const CTL = { gen: 0, next: 1, done: 2, quit: 3, per: 4, args: 5, ready: 14, words: 16 } as const;

export function writeCall(ctl: Int32Array, c: Call, per: number): void {
  const a = [TYPES.indexOf(c.type), (c.path === 'x4' ? 0 : 1) | (c.plainK ? 2 : 0), c.M, c.N, c.K, c.A, c.R, c.W, c.Y];
  a.forEach((v, i) => {
    ctl[CTL.args + i] = v | 0;
  });
  ctl[CTL.per] = per;
}

function readCall(ctl: Int32Array): Call {
  const a = (i: number) => ctl[CTL.args + i]! >>> 0;
  return {
    type: TYPES[a(0)]!,
    path: a(1) & 1 ? 'prompt' : 'x4',
    M: a(2),
    N: a(3),
    K: a(4),
    A: a(5),
    R: a(6),
    W: a(7),
    Y: a(8),
    plainK: (a(1) & 2) !== 0,
  };
}

/** Takes row chunks of the call in ctl until none is left. */
export function takeChunks(k: Kernels, ctl: Int32Array, c: Call): void {
  const per = ctl[CTL.per]!;
  for (;;) {
    const n0 = Atomics.add(ctl, CTL.next, 1) * per;
    if (n0 >= c.N) return;
    product(k, c, n0, Math.min(c.N, n0 + per));
  }
}

if (!isMainThread && workerData?.decodeAb) {
  const { file, memory, ctl } = workerData as { file: string; memory: WebAssembly.Memory; ctl: Int32Array };
  const k = instantiateKernelsAndTables(new WebAssembly.Module(readFileSync(file)), memory);
  let gen = 0;
  for (;;) {
    Atomics.wait(ctl, CTL.gen, gen);
    gen = Atomics.load(ctl, CTL.gen);
    if (Atomics.load(ctl, CTL.quit)) break;
    Atomics.store(ctl, CTL.ready, gen);
    Atomics.notify(ctl, CTL.ready);
    takeChunks(k, ctl, readCall(ctl));
    Atomics.add(ctl, CTL.done, 1);
    Atomics.notify(ctl, CTL.done);
  }
}
