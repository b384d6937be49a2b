/**
 * Trainer kernels on the project's wasm SIMD GEMM (src/backends/wasm/assembly/gemm-f32.ts),
 * zero-copy and multi-threaded: every tensor the trainer allocates lives in one shared
 * WebAssembly.Memory (a bump arena; training allocates its buffers once), that memory is given to
 * `threads − 1` workers, and each product is split over the threads by rows or columns, run as one
 * operation of the wasm backend's Team (gemm-job.ts). The caller takes part and blocks at the
 * Team's barrier until the workers finish, so the trainer's code stays synchronous.
 * Operands outside the arena (a test's plain arrays) are staged through arena scratch.
 *
 * A thread that fails fails the product it is in and every later one, with an MptError that
 * names it and says what happened (thread-failure.ts): a worker's own error (a wasm trap) from
 * the worker, a worker's death from the watchdog (kernels-wasm-watchdog.ts), since the blocked
 * caller cannot receive Worker events.
 */
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { kernelModule, PAGE } from '../backends/wasm/module-loader.js';
import { MemoryPlanError, MptError } from '../errors.js';
import { abortTeam, createControlBuffer, Team, TeamAborted } from '../backends/wasm/team.js';
import { JOB, jobRunner, runChunk, type WasmGemm } from './gemm-job.js';
import { matmulViaNT, Scratch, type Kernels } from './kernels.js';
import {
  createFailureRecord,
  describeThreadFailure,
  readFailure,
  recordFailure,
  threadEndedMessage,
  WATCHDOG_TID,
} from './thread-failure.js';

/** Below this many multiply-adds a product runs on the calling thread alone. */
const PARALLEL_MIN_MACS = 1 << 18;

/** The kernels, with their worker threads (tests end one to check what the caller then sees). */
export type ThreadedKernels = Kernels & {
  readonly workers: readonly Worker[];
  /** Whether every worker has started (until then products run on the calling thread alone). */
  ready(): boolean;
};

export function wasmKernels(threads = availableParallelism()): ThreadedKernels {
  const memory = new WebAssembly.Memory({ initial: 64, maximum: 65536, shared: true });
  const inst = new WebAssembly.Instance(kernelModule('shared'), { env: { memory } });
  const w = inst.exports as unknown as WasmGemm;
  const arenaBuffers = new WeakSet<ArrayBufferLike>([memory.buffer]);
  let top = 1024;

  const alloc = (n: number): Float32Array => {
    const bytes = Math.max(1, n) * 4;
    const ptr = (top + 63) & ~63;
    const end = ptr + bytes;
    if (end > 0xffff0000)
      throw new MemoryPlanError(`training buffers exceed the 4 GiB of a wasm memory (asked for ${end} bytes)`);
    const have = memory.buffer.byteLength;
    if (end > have) memory.grow(Math.ceil((end - have) / PAGE));
    top = end;
    const buf = memory.buffer;
    arenaBuffers.add(buf);
    return new Float32Array(buf, ptr, n);
  };
  const inArena = (a: Float32Array) => arenaBuffers.has(a.buffer);

  const control = createControlBuffer(),
    jobBuffer = new SharedArrayBuffer(JOB.SIZE * 4),
    failure = createFailureRecord();
  const job = new Int32Array(jobBuffer),
    args = new Uint32Array(jobBuffer);
  const cores = availableParallelism();
  const ctl = new Int32Array(control);
  const team = new Team(ctl, 0, threads, cores);
  team.reset(threads);
  const runJob = jobRunner(team, w.gemm_f32, args);
  /** A failure seen here (a Worker event, while the caller is not blocked): recorded, the Team aborted. */
  const fail = (tid: number, message: string) => {
    if (Atomics.load(job, JOB.EXIT)) return;
    recordFailure(failure, tid, message);
    abortTeam(ctl);
  };
  const workers: Worker[] = [];
  const watchdogPorts: MessagePort[] = [];
  for (let t = 1; t < threads; t++) {
    const { port1: lifeline, port2 } = new MessageChannel();
    watchdogPorts.push(port2);
    const worker = new Worker(new URL('./kernels-wasm-worker.js', import.meta.url), {
      workerData: { control, jobBuffer, failure, memory, lifeline, tid: t, threads, cores },
      transferList: [lifeline],
    });
    // The first of these names the cause; the watchdog's record may come first (a generic one).
    worker.on('error', (e) => fail(t, `${e.name}: ${e.message}`));
    worker.on('exit', (code) => fail(t, threadEndedMessage(code)));
    worker.unref();
    workers.push(worker);
  }
  if (threads > 1) {
    const watchdog = new Worker(new URL('./kernels-wasm-watchdog.js', import.meta.url), {
      workerData: { control, jobBuffer, failure, ports: watchdogPorts },
      transferList: watchdogPorts,
    });
    // Without it no worker counts itself ready, and the caller runs every chunk itself: fail instead.
    watchdog.on('error', (e) => fail(WATCHDOG_TID, `${e.name}: ${e.message}`));
    watchdog.unref();
  }
  /** Set once every worker has started: until then the caller runs every chunk itself. */
  let teamReady = false;
  let seq = 0;

  /** gemm on byte pointers, split into chunks that every thread claims. */
  const gemmPtr = (
    Y: number,
    ldy: number,
    X: number,
    ldx: number,
    W: number,
    ldw: number,
    M: number,
    N: number,
    K: number,
    acc: boolean,
  ) => {
    const a = acc ? 1 : 0;
    if (workers.length === 0 || M * N * K < PARALLEL_MIN_MACS) {
      w.gemm_f32(X, ldx, W, ldw, Y, ldy, M, 0, N, K, a);
      return;
    }
    const rows = M > N;
    const dim = rows ? M : N;
    const chunks = 4 * threads;
    const size = Math.max(4, Math.ceil(dim / chunks / 4) * 4);
    [X, ldx, W, ldw, Y, ldy, M, N, K, a].forEach((v, i) => {
      args[JOB.ARGS + i] = v >>> 0;
    });
    job[JOB.SPLIT_ROWS] = rows ? 1 : 0;
    job[JOB.CHUNK] = size;
    const nchunk = Math.ceil(dim / size);
    job[JOB.NCHUNK] = nchunk;
    const earlier = readFailure(failure);
    if (earlier)
      throw new MptError(
        `the training kernels cannot continue after an earlier failure: ${describeThreadFailure(earlier)}`,
      );
    teamReady ||= Atomics.load(job, JOB.READY) === workers.length;
    if (!teamReady) {
      // The same chunks, all on this thread: the result does not depend on when workers start.
      for (let c = 0; c < nchunk; c++) runChunk(w.gemm_f32, args, c);
      return;
    }
    Atomics.store(job, JOB.SEQ, ++seq);
    Atomics.notify(job, JOB.SEQ);
    try {
      runJob();
    } catch (e) {
      if (e instanceof TeamAborted) {
        const f = readFailure(failure);
        throw new MptError(f ? describeThreadFailure(f) : 'a training worker failed (no description was recorded)');
      }
      // Let the workers leave this product's barrier (TeamAborted); the Team is not reusable.
      recordFailure(failure, 0, `${(e as Error).name}: ${(e as Error).message}`);
      abortTeam(ctl);
      throw e;
    }
  };

  // Staging of operands that live outside the arena.
  const stage = [new Scratch(alloc), new Scratch(alloc), new Scratch(alloc)];
  const view = () => new Float32Array(memory.buffer);
  const ptrOf = (arr: Float32Array, which: number, copyIn: boolean): { ptr: number; staged: Float32Array | null } => {
    if (inArena(arr)) return { ptr: arr.byteOffset, staged: null };
    const s = stage[which]!.get(arr.length);
    if (copyIn) s.set(arr);
    return { ptr: s.byteOffset, staged: s };
  };

  const sA = new Scratch(alloc),
    sB = new Scratch(alloc);
  const k: ThreadedKernels = {
    workers,
    ready: () => Atomics.load(job, JOB.READY) === workers.length,
    name: `wasm-simd-threads-${threads}`,
    threads,
    matmul(out, a, b, M, N, K, opts) {
      matmulViaNT(k, sA, sB, out, a, b, M, N, K, opts);
    },
    gemmNT(y, yOff, ldy, x, xOff, ldx, wt, wOff, ldw, M, N, K, acc) {
      if (M === 0 || N === 0) return;
      const X = ptrOf(x, 0, true),
        W = ptrOf(wt, 1, true),
        Y = ptrOf(y, 2, acc);
      gemmPtr(Y.ptr + yOff * 4, ldy, X.ptr + xOff * 4, ldx, W.ptr + wOff * 4, ldw, M, N, K, acc);
      if (Y.staged) {
        // Copy back only the rows written.
        const v = view(),
          base = Y.ptr / 4;
        for (let m = 0; m < M; m++) {
          const o = yOff + m * ldy;
          y.set(v.subarray(base + o, base + o + N), o);
        }
      }
    },
    transpose(dst, dOff, ldd, src, sOff, lds, R, C) {
      const S = ptrOf(src, 0, true),
        D = ptrOf(dst, 2, true);
      w.transpose_f32(S.ptr + sOff * 4, lds, D.ptr + dOff * 4, ldd, R, C);
      if (D.staged) dst.set(view().subarray(D.ptr / 4, D.ptr / 4 + dst.length));
    },
    alloc,
    close() {
      Atomics.store(job, JOB.EXIT, 1);
      Atomics.store(job, JOB.SEQ, ++seq);
      Atomics.notify(job, JOB.SEQ);
      // Workers still waiting for the watchdog go on to see EXIT.
      Atomics.store(job, JOB.WATCHED, 1);
      Atomics.notify(job, JOB.WATCHED);
    },
  };
  return k;
}
