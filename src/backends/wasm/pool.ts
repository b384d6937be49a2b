/**
 * The worker threads of one wasm runner. Each pass is posted to every worker; the workers
 * synchronise among themselves through shared memory and each answers once when the pass ends.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { MptError } from '../../errors.js';
import type { Pass } from './executor.js';
import type { ModelLayout } from './layout.js';
import { CTL, createControlBuffer } from './team.js';
import type { WorkerReply, WorkerRequest } from './worker.js';

export class WorkerPool {
  private readonly ctl: Int32Array;
  private busy = false;
  private closed = false;
  /** Set when a worker thread died: the pool cannot run passes any more. */
  private broken: string | null = null;

  private constructor(private readonly workers: Worker[], ctlBuffer: SharedArrayBuffer,
    /** Cores of the machine (the workers spin at barriers only while each has one). */
    readonly cores: number) {
    this.ctl = new Int32Array(ctlBuffer);
  }

  get threads(): number {
    return this.workers.length;
  }

  static async create(module: WebAssembly.Module, memories: WebAssembly.Memory[], layout: ModelLayout, threads: number): Promise<WorkerPool> {
    const ctl = createControlBuffer();
    const workers: Worker[] = [];
    for (let t = 0; t < threads; t++) workers.push(new Worker(new URL('./worker.js', import.meta.url)));
    const cores = availableParallelism();
    const pool = new WorkerPool(workers, ctl, cores);
    try {
      await pool.broadcast((tid) => ({ type: 'init', module, memories, ctl, tid, nt: threads, cores, layout }));
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
      let firstError: WorkerReply & { type: 'error' } | null = null;
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
        const onMessage = (m: WorkerReply) => {
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
        w.on('message', onMessage);
        w.on('error', onError);
        w.on('exit', onExit);
        cleanups.push(() => { w.off('message', onMessage); w.off('error', onError); w.off('exit', onExit); });
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
