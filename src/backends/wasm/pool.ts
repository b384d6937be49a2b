/**
 * The worker threads of one wasm runner. Each pass is posted to every worker; the workers
 * synchronise among themselves through shared memory and each answers once when the pass ends.
 */
import { MptError } from '../../errors.js';
import { platform, type PlatformWorker } from '../../platform/index.js';
import { packageFileUrl } from '../../platform/package-url.js';
import type { Pass } from './executor.js';
import type { ModelLayout } from './layout.js';
import type { KernelVariant } from './module-loader.js';
import { CTL, createControlBuffer, profileOf } from './team.js';
import type { WorkerReply, WorkerRequest } from './worker.js';

/** What runs a runner's passes: worker threads (this file) or the page's own thread (inline-pool.ts). */
export interface PassPool {
  /** Threads a pass may use. */
  readonly threads: number;
  /** Cores of the machine. */
  readonly cores: number;
  /** A buffer of `bytes` bytes that the pool's threads can write a pass's results to. */
  buffer(bytes: number): SharedArrayBuffer | ArrayBuffer;
  /** Runs one pass on its first `pass.threads` threads. */
  run(pass: Pass): Promise<void>;
  close(): Promise<void>;
  /** Per thread, its operation timings (team.ts PROFILE), when the pool was started with MPT_WASM_PROFILE=1. */
  opProfile?(): Float64Array[] | null;
}

export class WorkerPool implements PassPool {
  private readonly ctl: Int32Array;
  private busy = false;
  private closed = false;
  /** Set when a worker thread died: the pool cannot run passes any more. */
  private broken: string | null = null;

  private constructor(
    private readonly workers: PlatformWorker[],
    ctlBuffer: SharedArrayBuffer,
    /** Cores of the machine (the workers spin at barriers only while each has one). */
    readonly cores: number,
  ) {
    this.ctl = new Int32Array(ctlBuffer);
  }

  get threads(): number {
    return this.workers.length;
  }

  static async create(
    modules: Record<KernelVariant, WebAssembly.Module>,
    memories: WebAssembly.Memory[],
    layout: ModelLayout,
    threads: number,
  ): Promise<WorkerPool> {
    const ctl = createControlBuffer(platform.env('MPT_WASM_PROFILE') === '1' ? threads : 0);
    const workers: PlatformWorker[] = [];
    for (let t = 0; t < threads; t++)
      workers.push(
        platform.startWorker(
          packageFileUrl('dist/src/backends/wasm/worker.js', new URL('./worker.js', import.meta.url)),
        ),
      );
    const cores = platform.hardwareConcurrency();
    const pool = new WorkerPool(workers, ctl, cores);
    try {
      await pool.broadcast((tid) => ({ type: 'init', modules, memories, ctl, tid, nt: threads, cores, layout }));
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  /** Sends a message to the first `count` workers and waits for each one's answer. */
  private broadcast(make: (tid: number) => WorkerRequest, count = this.workers.length): Promise<void> {
    const workers = this.workers.slice(0, count);
    return new Promise((resolve, reject) => {
      let pending = workers.length;
      let firstError: (WorkerReply & { type: 'error' }) | null = null;
      const cleanups: Array<() => void> = [];
      const finish = () => {
        for (const c of cleanups) c();
        for (const w of workers) w.unref();
        if (firstError) {
          const e = new MptError(`wasm worker failed: ${firstError.message}`);
          if (firstError.stack) e.stack = firstError.stack;
          reject(e);
        } else resolve();
      };
      workers.forEach((w, tid) => {
        let answered = false;
        const onMessage = (data: unknown) => {
          const m = data as WorkerReply;
          if (answered) return;
          answered = true;
          if (m.type === 'error' && (!firstError || (firstError.aborted && !m.aborted))) firstError = m;
          if (--pending === 0) finish();
        };
        const fail = (message: string, stack?: string) => {
          if (answered) return;
          answered = true;
          firstError = { type: 'error', message, stack, aborted: false };
          Atomics.store(this.ctl, CTL.abort, 1);
          Atomics.notify(this.ctl, CTL.generation);
          if (--pending === 0) finish();
        };
        const onError = (err: Error) => fail(err.message, err.stack);
        const onExit = (code: number) => {
          this.broken = `worker thread ${tid} exited (code ${code})`;
          fail(this.broken);
        };
        cleanups.push(w.listen({ message: onMessage, error: onError, exit: onExit }));
        w.ref();
        try {
          w.postMessage(make(tid));
        } catch (e) {
          // A message that cannot be cloned (every worker gets the same one, so the first post
          // fails and no worker has started): the call fails, the pool stays usable.
          fail(`cannot send the pass to the worker threads: ${(e as Error).message}`);
        }
      });
    });
  }

  opProfile(): Float64Array[] | null {
    const all = this.workers.map((_, tid) => profileOf(this.ctl.buffer, tid));
    return all.every((p) => p !== null) ? (all as Float64Array[]) : null;
  }

  buffer(bytes: number): SharedArrayBuffer {
    return new SharedArrayBuffer(bytes);
  }

  /** Runs one pass on its first `pass.threads` workers. Passes do not overlap (callers serialise them). */
  async run(pass: Pass): Promise<void> {
    if (this.closed) throw new MptError('the wasm runner has been disposed');
    if (this.broken) throw new MptError(`the wasm runner cannot continue: ${this.broken}`);
    if (this.busy) throw new MptError('wasm pool: a pass is already running (forward calls must not overlap)');
    if (!Number.isInteger(pass.threads) || pass.threads < 1 || pass.threads > this.workers.length) {
      throw new MptError(`internal: a pass for ${pass.threads} threads on a pool of ${this.workers.length}`);
    }
    this.busy = true;
    // Fresh counters and barrier for this pass (every worker is idle now).
    for (let i = 0; i < CTL.size; i++) Atomics.store(this.ctl, i, i === CTL.generation ? Atomics.load(this.ctl, i) : 0);
    try {
      await this.broadcast(() => ({ type: 'pass', pass }), pass.threads);
    } finally {
      this.busy = false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
