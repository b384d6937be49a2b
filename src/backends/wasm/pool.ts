/**
 * The worker threads of one wasm runner. A pass is written into shared memory and its workers are
 * woken there (pass-channel.ts); they synchronise among themselves through shared memory too
 * (team.ts) and count themselves out when it ends, which the main thread learns through
 * Atomics.waitAsync (or, where an engine lacks it, a message from the last one). Messages carry
 * only what shared memory cannot: the start, errors, and a pass that names something new.
 *
 * A light pass (a decode step of a small model, PassPool.run's `here`) may instead be run with
 * the calling thread as thread 0, where that thread may block (Node's main thread): worker 0
 * stays asleep, nobody has to wake it at the start, and nobody has to wake the caller at the end.
 */
import { MptError } from '../../errors.js';
import { platform, type PlatformWorker } from '../../platform/index.js';
import { packageFileUrl } from '../../platform/package-url.js';
import { Executor, type Pass } from './executor.js';
import { instantiateKernels } from './kernels.js';
import type { ModelLayout } from './layout.js';
import type { WorkerKernelVariant } from './module-loader.js';
import { abortTeam, CTL, createControlBuffer, profileOf, Team, TeamAborted, TeamStalled } from './team.js';
import { passTuning, type PassTuning } from './pass-tuning.js';
import { HEAD, kvCodeOf, OptionIds, PassChannel, WAKE, wakeSlot } from './pass-channel.js';
import type { InitMessage, PassMessage, WorkerReply } from './worker.js';

/** What runs a runner's passes: worker threads (this file) or the page's own thread (inline-pool.ts). */
export interface PassPool {
  /** Threads a pass may use. */
  readonly threads: number;
  /** Cores of the machine. */
  readonly cores: number;
  /** Scheduling settings of the pool's threads (pass-tuning.ts). */
  readonly tuning: PassTuning;
  /** A buffer of `bytes` bytes that the pool's threads can write a pass's results to. */
  buffer(bytes: number): SharedArrayBuffer | ArrayBuffer;
  /**
   * Runs one pass on its first `pass.threads` threads; with `here`, the calling thread is thread 0
   * where the pool can do that (a pass short enough to block the caller for: pool.ts).
   */
  run(pass: Pass, here?: boolean): Promise<void>;
  /** Wall ms of the last pass run, from its start until it was done (not the event-loop turn after it). */
  readonly lastRunMs?: number;
  close(): Promise<void>;
  /** Per thread, its operation timings (team.ts PROFILE), when the pool was started with MPT_WASM_PROFILE=1. */
  opProfile?(): Float64Array[] | null;
}

/** Atomics.waitAsync where the engine has it (Firefox lacked it; then the last worker posts 'done'). */
type WaitAsync = (
  a: Int32Array,
  index: number,
  value: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };
function waitAsyncOf(): WaitAsync | undefined {
  return (Atomics as unknown as { waitAsync?: WaitAsync }).waitAsync?.bind(Atomics);
}

/** What the main thread knows a worker holds (pass-channel.ts WorkerKnows, by the main thread's objects). */
interface Known {
  logitsOut?: SharedArrayBuffer | ArrayBuffer;
  tokensOut?: SharedArrayBuffer | ArrayBuffer;
  hiddenOut?: SharedArrayBuffer | ArrayBuffer;
  /** OptionIds epoch of `ids`. */
  epoch: number;
  ids: Set<number>;
}

type WorkerError = WorkerReply & { type: 'error' };

/** The pass being run. */
interface InFlight {
  seq: number;
  threads: number;
  /** Errors its workers posted. */
  errors: WorkerError[];
  /** Every worker of the pass has counted itself out (HEAD.done). */
  counted: boolean;
  settled: boolean;
  resolve(): void;
  reject(e: Error): void;
}

/**
 * Longest wait of the calling thread at one barrier of a pass it takes part in: a dead worker
 * cannot be noticed otherwise while that thread blocks (TeamStalled), and a live one is never
 * that late with a pass of a few ms.
 */
const HERE_STALL_MS = 5000;

/** Loads of the done count by the calling thread, after its share, before it awaits the workers asynchronously. */
const HERE_DONE_SPINS = 2000;

/**
 * Passes run on the calling thread give its event loop a turn (timers, I/O, a worker's exit) at
 * least this often: a run of such passes resolves without any task in between.
 */
const HERE_YIELD_MS = 2;

function workerError(m: WorkerError): MptError {
  const e = new MptError(`wasm worker failed: ${m.message}`);
  if (m.stack) e.stack = m.stack;
  return e;
}

export class WorkerPool implements PassPool {
  private readonly ctl: Int32Array;
  private readonly ch: Int32Array;
  private busy = false;
  private closed = false;
  /** Set when a worker thread died: the pool cannot run passes any more. */
  private broken: string | null = null;
  /** Sequence number of the last pass (what the wake words are set to). */
  private seq = 0;
  private inFlight: InFlight | null = null;
  private readonly known: Known[];
  private readonly optionIds = new OptionIds();
  private readonly unlisten: Array<() => void> = [];
  /** Passes sent through the channel's descriptor and as messages (diagnostics, tests). */
  readonly sent = { descriptor: 0, message: 0 };
  /** Passes the calling thread took part in as thread 0 (diagnostics, tests). */
  ranHere = 0;
  /** The calling thread's executor (thread 0), made at its first pass. */
  private here: Executor | null = null;
  /** When the calling thread last gave its event loop a turn between passes it ran. */
  private lastYield = 0;
  lastRunMs = 0;

  private constructor(
    private readonly workers: PlatformWorker[],
    ctlBuffer: SharedArrayBuffer,
    private readonly channel: PassChannel,
    /** How the end of a pass is awaited; without it, the last worker out posts a message. */
    private readonly waitAsync: WaitAsync | undefined,
    /** Cores of the machine (the workers spin at barriers only while each has one). */
    readonly cores: number,
    /** Scheduling settings, the same in every thread (pass-tuning.ts). */
    readonly tuning: PassTuning,
    /** What the calling thread needs to run thread 0's share itself, or null where it may not block. */
    private readonly hereParts: {
      module: WebAssembly.Module;
      memories: WebAssembly.Memory[];
      layout: ModelLayout;
    } | null,
  ) {
    this.ctl = new Int32Array(ctlBuffer);
    this.ch = channel.words;
    this.known = workers.map(() => ({ epoch: 0, ids: new Set<number>() }));
  }

  get threads(): number {
    return this.workers.length;
  }

  static async create(
    modules: Record<WorkerKernelVariant, WebAssembly.Module>,
    memories: WebAssembly.Memory[],
    layout: ModelLayout,
    threads: number,
  ): Promise<WorkerPool> {
    const ctl = createControlBuffer(platform.env('MPT_WASM_PROFILE') === '1' ? threads : 0);
    const channel = PassChannel.create({ threads, maxRows: layout.maxRows, arenas: layout.arenas.length });
    const workers: PlatformWorker[] = [];
    for (let t = 0; t < threads; t++)
      workers.push(
        platform.startWorker(
          packageFileUrl('dist/src/backends/wasm/worker.js', new URL('./worker.js', import.meta.url)),
        ),
      );
    const cores = platform.hardwareConcurrency();
    const waitAsync = waitAsyncOf();
    // MPT_WASM_MAIN_THREAD=0: every pass on the workers (to compare both ways in one build).
    const hereParts =
      waitAsync && platform.mainThreadMayBlock() && platform.env('MPT_WASM_MAIN_THREAD') !== '0'
        ? { module: modules.shared, memories, layout }
        : null;
    const tuning = passTuning();
    const pool = new WorkerPool(workers, ctl, channel, waitAsync, cores, tuning, hereParts);
    const doneByMessage = waitAsync === undefined;
    try {
      await pool.start((tid) => ({
        type: 'init',
        modules,
        memories,
        ctl,
        channel: channel.buffer,
        shape: channel.shape,
        doneByMessage,
        tid,
        nt: threads,
        cores,
        layout,
        tuning,
      }));
    } catch (e) {
      await pool.close();
      throw e;
    }
    pool.listen();
    // Node refs a worker again when a 'message' listener is added: until a pass unrefs it, an idle
    // pool would keep the process alive, and a worker that never takes part in a pass (a small
    // pool whose passes are all light, pass-threads.ts) never is.
    for (const w of workers) w.unref();
    return pool;
  }

  /** Sends each worker its init message and waits for every answer. */
  private start(make: (tid: number) => InitMessage): Promise<void> {
    const workers = this.workers;
    return new Promise((resolve, reject) => {
      let pending = workers.length;
      let firstError: WorkerError | null = null;
      const cleanups: Array<() => void> = [];
      const answer = (m: WorkerReply) => {
        if (m.type === 'error' && !firstError) firstError = m;
        if (--pending > 0) return;
        for (const c of cleanups) c();
        for (const w of workers) w.unref();
        if (firstError) reject(workerError(firstError));
        else resolve();
      };
      workers.forEach((w, tid) => {
        let answered = false;
        const once = (m: WorkerReply) => {
          if (answered) return;
          answered = true;
          answer(m);
        };
        const failed = (message: string, stack?: string) => once({ type: 'error', message, stack, aborted: false });
        cleanups.push(
          w.listen({
            message: (data) => once(data as WorkerReply),
            error: (err) => failed(err.message, err.stack),
            exit: (code) => failed(`worker thread ${tid} exited (code ${code})`),
          }),
        );
        w.ref();
        w.postMessage(make(tid));
      });
    });
  }

  /** Listens to every worker for as long as the pool lives: errors, deaths and (without waitAsync) ends of passes. */
  private listen(): void {
    this.workers.forEach((w, tid) => {
      this.unlisten.push(
        w.listen({
          message: (data) => {
            const m = data as WorkerReply;
            const f = this.inFlight;
            if (!f || m.type === 'ready' || m.seq !== f.seq) return;
            if (m.type === 'error') f.errors.push(m);
            else f.counted = true;
            this.settle(f);
          },
          error: (err) => this.fail(`worker thread ${tid} failed: ${err.message}`, err.stack),
          exit: (code) => this.fail(`worker thread ${tid} exited (code ${code})`),
        }),
      );
    });
  }

  /** A worker thread died or failed outside a pass's error handling: the pool is done for. */
  private fail(message: string, stack?: string): void {
    this.broken ??= message;
    // The others leave their barriers with TeamAborted.
    abortTeam(this.ctl);
    const f = this.inFlight;
    if (!f || f.settled) return;
    this.finish(f);
    f.reject(workerError({ type: 'error', message, stack, aborted: false }));
  }

  /** Resolves or rejects a pass once every worker counted itself out and every error arrived. */
  private settle(f: InFlight): void {
    if (f.settled || !f.counted) return;
    // Errors are posted before the worker counts itself out, so those counted are on their way.
    const failed = Atomics.load(this.ch, HEAD.failed);
    if (f.errors.length < failed) return;
    this.finish(f);
    if (failed === 0) f.resolve();
    else f.reject(workerError(f.errors.find((e) => !e.aborted) ?? f.errors[0]!));
  }

  private finish(f: InFlight): void {
    f.settled = true;
    this.inFlight = null;
    for (let t = 0; t < f.threads; t++) this.workers[t]!.unref();
  }

  /** Waits on HEAD.done until every worker of the pass counted itself out. */
  private async watch(f: InFlight, wait: WaitAsync): Promise<void> {
    const ch = this.ch;
    for (;;) {
      const done = Atomics.load(ch, HEAD.done);
      if (done >= f.threads || f.settled) break;
      const r = wait(ch, HEAD.done, done);
      if (r.async) await r.value;
    }
    if (f.settled) return;
    f.counted = true;
    this.settle(f);
  }

  opProfile(): Float64Array[] | null {
    const all = this.workers.map((_, tid) => profileOf(this.ctl.buffer, tid));
    return all.every((p) => p !== null) ? (all as Float64Array[]) : null;
  }

  buffer(bytes: number): SharedArrayBuffer {
    return new SharedArrayBuffer(bytes);
  }

  /**
   * Runs one pass on its first `pass.threads` workers, or (`here`, where this thread may block) on
   * this thread as thread 0 and workers 1 .. threads-1. Passes do not overlap (callers serialise them).
   */
  async run(pass: Pass, here = false): Promise<void> {
    if (this.closed) throw new MptError('the wasm runner has been disposed');
    if (this.broken) throw new MptError(`the wasm runner cannot continue: ${this.broken}`);
    if (this.busy) throw new MptError('wasm pool: a pass is already running (forward calls must not overlap)');
    if (!Number.isInteger(pass.threads) || pass.threads < 1 || pass.threads > this.workers.length) {
      throw new MptError(`internal: a pass for ${pass.threads} threads on a pool of ${this.workers.length}`);
    }
    this.busy = true;
    const onHere = here && this.hereParts !== null;
    const t0 = performance.now();
    try {
      await this.send(pass, onHere);
    } finally {
      this.busy = false;
    }
    const now = performance.now();
    this.lastRunMs = now - t0;
    if (onHere) {
      if (now - this.lastYield > HERE_YIELD_MS) {
        await platform.yieldToEventLoop();
        this.lastYield = performance.now();
      }
    }
  }

  /** Sampling option ids of a pass's requests (null when the pass names more options than the ids hold). */
  private optionIdsOf(pass: Pass): number[] | null {
    const sample = pass.sample;
    if (!sample) return null;
    for (let attempt = 0; attempt < 2; attempt++) {
      const epoch = this.optionIds.epoch;
      const ids = sample.map((r) => (r ? this.optionIds.idOf(r.options) : -1));
      if (this.optionIds.epoch === epoch) return ids;
    }
    return null;
  }

  /** Whether worker `tid` holds every buffer and option the pass names. */
  private knowsAll(tid: number, pass: Pass, ids: number[] | null): boolean {
    const k = this.known[tid]!;
    if (pass.logitRows.length > 0 && !pass.logitsInPlace && pass.logitsOut !== k.logitsOut) return false;
    if (pass.hiddenRows && pass.hiddenOut !== k.hiddenOut) return false;
    if (!pass.sample) return true;
    if (pass.tokensOut !== k.tokensOut || !ids || k.epoch !== this.optionIds.epoch) return false;
    return ids.every((id) => id < 0 || k.ids.has(id));
  }

  /** What worker `tid` holds once it has received `pass` as a message (worker.ts adopt). */
  private learn(tid: number, pass: Pass, ids: number[] | null): void {
    const k = this.known[tid]!;
    if (pass.logitsOut) k.logitsOut = pass.logitsOut;
    if (pass.tokensOut) k.tokensOut = pass.tokensOut;
    if (pass.hiddenOut) k.hiddenOut = pass.hiddenOut;
    if (!ids) return;
    if (k.epoch !== this.optionIds.epoch) {
      k.ids.clear();
      k.epoch = this.optionIds.epoch;
    }
    for (const id of ids) if (id >= 0) k.ids.add(id);
  }

  /** The next value of the wake words (a worker runs when its word differs from the last it saw). */
  private nextSeq(): number {
    this.seq = (this.seq + 1) | 0;
    return this.seq;
  }

  private send(pass: Pass, here: boolean): Promise<void> {
    const n = pass.threads,
      ch = this.ch,
      first = here ? 1 : 0;
    // Checked before either path: a message would carry an unknown type to the workers unchecked.
    for (const sq of pass.seqs) kvCodeOf(sq.kvType);
    if (here && n === 1) return this.runAlone(pass);
    const ids = this.optionIdsOf(pass);
    let byDescriptor = true;
    for (let t = first; t < n && byDescriptor; t++) byDescriptor = this.knowsAll(t, pass, ids);
    byDescriptor &&= this.channel.encode(pass, ids);
    const seq = this.nextSeq();
    this.sent[byDescriptor ? 'descriptor' : 'message']++;
    if (!byDescriptor) {
      for (let t = first; t < n; t++) {
        try {
          this.workers[t]!.postMessage({ type: 'pass', seq, pass, sampleIds: ids } satisfies PassMessage);
        } catch (e) {
          const why = `cannot send the pass to the worker threads: ${(e as Error).message}`;
          // Every worker gets the same message, so the first post fails and no worker has it:
          // the call fails, the pool stays usable.
          if (t > first) this.broken = why;
          return Promise.reject(new MptError(why));
        }
        this.learn(t, pass, ids);
      }
    }
    // Fresh counters and barrier for this pass (every worker is idle now).
    for (let i = 0; i < CTL.size; i++) if (i !== CTL.generation) Atomics.store(this.ctl, i, 0);
    Atomics.store(ch, HEAD.done, 0);
    Atomics.store(ch, HEAD.failed, 0);
    const promise = new Promise<void>((resolve, reject) => {
      this.inFlight = { seq, threads: n, errors: [], counted: false, settled: false, resolve, reject };
    });
    const f = this.inFlight!;
    const kind = byDescriptor ? WAKE.descriptor : WAKE.message;
    for (let t = first; t < n; t++) {
      const slot = wakeSlot(t);
      this.workers[t]!.ref();
      Atomics.store(ch, slot + 1, kind);
      Atomics.store(ch, slot, seq);
      Atomics.notify(ch, slot);
    }
    if (here) this.runHere(pass, f);
    if (this.waitAsync && !f.settled) void this.watch(f, this.waitAsync);
    return promise;
  }

  /**
   * Thread 0's share of a pass, on this thread, then its count out; the pass settles here when the
   * workers are out within a few µs, else through watch(). A worker's error reaches this thread as
   * TeamAborted (its message follows); a stall at a barrier means a worker died: the pool is done for.
   */
  private runHere(pass: Pass, f: InFlight): void {
    const ch = this.ch;
    this.ranHere++;
    try {
      this.hereExecutor().run(pass);
    } catch (e) {
      if (e instanceof TeamStalled) {
        this.fail(e.message);
        return;
      }
      abortTeam(this.ctl);
      if (!(e instanceof TeamAborted)) {
        const err = e as Error;
        f.errors.push({ type: 'error', seq: f.seq, message: err.message, stack: err.stack, aborted: false });
        Atomics.add(ch, HEAD.failed, 1);
      }
    }
    let done = Atomics.add(ch, HEAD.done, 1) + 1;
    for (let i = 0; done < f.threads && i < HERE_DONE_SPINS; i++) done = Atomics.load(ch, HEAD.done);
    if (done < f.threads) return;
    f.counted = true;
    this.settle(f);
  }

  /**
   * A pass the calling thread runs alone (a light decode step on one thread, pass-threads.ts): no
   * worker reads the descriptor, the team's counters or the done count, and none is woken, so
   * none of that is written; the pass is settled as soon as it returns. In a fresh process this
   * JS runs interpreted for hundreds of steps, where a step of the shipped model is ~0.6 ms.
   */
  private runAlone(pass: Pass): Promise<void> {
    this.ranHere++;
    try {
      this.hereExecutor().run(pass);
    } catch (e) {
      const err = e as Error;
      return Promise.reject(
        workerError({ type: 'error', seq: this.seq, message: err.message, stack: err.stack, aborted: false }),
      );
    }
    return Promise.resolve();
  }

  private hereExecutor(): Executor {
    if (this.here) return this.here;
    const { module, memories, layout } = this.hereParts!;
    const team = new Team(this.ctl, 0, this.workers.length, this.cores, HERE_STALL_MS, this.tuning);
    this.here = new Executor(
      layout,
      memories.map((m) => instantiateKernels(module, m)),
      memories,
      team,
      this.tuning,
    );
    return this.here;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const u of this.unlisten) u();
    // Out of their wait loops, so that they can be terminated in any engine.
    const seq = this.nextSeq();
    this.workers.forEach((_, t) => {
      const slot = wakeSlot(t);
      Atomics.store(this.ch, slot + 1, WAKE.quit);
      Atomics.store(this.ch, slot, seq);
      Atomics.notify(this.ch, slot);
    });
    const f = this.inFlight;
    if (f && !f.settled) {
      this.finish(f);
      f.reject(new MptError('the wasm runner has been disposed'));
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
