/**
 * Synchronisation of the worker threads through one small SharedArrayBuffer: a reusable barrier
 * and atomic work counters. No messages on the hot path: every worker runs the same sequence of
 * operations; each operation's work items are claimed with Atomics.add and the operation ends at
 * a barrier. Written against Atomics only, so it runs the same in Node worker_threads and in
 * browser Web Workers.
 */

import { DEFAULT_TUNING, type PassTuning } from './pass-tuning.js';

/** Int32 slots of the control buffer. */
export const CTL = {
  count: 0,
  generation: 1,
  abort: 2,
  /** Threads asleep (Atomics.wait) at a barrier or a join: whoever releases them wakes them only when there are some. */
  sleepers: 3,
  /** Solo regions thread 0 has finished this pass (Team.join: the others wait for it, it waits for nobody). */
  solos: 4,
  /** Work items finished of the pass's last parallel operation (Team.parallelFor `last`). */
  finished: 5,
  /** Four work counters, used round-robin by consecutive parallel operations. */
  counters: 8,
  size: 16,
} as const;

/**
 * Opt-in timing of every parallel operation (MPT_WASM_PROFILE=1, bench/profile.ts): after the
 * control slots, per thread PROFILE.head f64 slots (passes run, operations in the last pass) then
 * per operation of a pass three f64 sums over passes, in ms: time since the previous operation
 * ended (the thread's own row-wise steps run between parallel ones), own work, waiting at the
 * closing barrier.
 */
export const PROFILE = { offset: CTL.size * 4, head: 2, ops: 1024 } as const;
const profileSlots = PROFILE.head + 3 * PROFILE.ops;

/** The control buffer; with `profileThreads`, room for that many threads' timings after it. */
export function createControlBuffer(profileThreads = 0): SharedArrayBuffer {
  return new SharedArrayBuffer(CTL.size * 4 + profileThreads * profileSlots * 8);
}

/** One thread's timings from a control buffer made with profileThreads (null when none). */
export function profileOf(ctl: ArrayBufferLike, tid: number): Float64Array | null {
  const at = PROFILE.offset + tid * profileSlots * 8;
  return ctl.byteLength >= at + profileSlots * 8 ? new Float64Array(ctl, at, profileSlots) : null;
}

/** The least share of its own work a thread spins on at a barrier (Team.credit): enough to see the others come again. */
const CREDIT_MIN = 1 / 16;

/** A team's spins when its owner names none: the spin count, no spinning by work. */
const COUNT_ONLY = { barrierSpins: DEFAULT_TUNING.barrierSpins, spinByWork: false } as const;

/** Tells every thread of the team to leave its barrier with TeamAborted (a thread failed). */
export function abortTeam(ctl: Int32Array): void {
  Atomics.store(ctl, CTL.abort, 1);
  for (const word of [CTL.generation, CTL.solos, CTL.finished]) Atomics.notify(ctl, word);
}

/** Thrown in a worker when another worker failed and the pass is abandoned. */
export class TeamAborted extends Error {}

/**
 * Thrown on a thread with a stall limit (the main thread taking part in a pass, pool.ts) when a
 * barrier's partners have not all come for that long: a worker that died cannot say so while
 * the main thread blocks (its exit event needs the main thread's event loop).
 */
export class TeamStalled extends Error {}

export class Team {
  /** Parallel operations of the pass so far (picks their work counter). */
  private op = 0;
  /** Operations recorded in this thread's profile this pass: parallel ones and solo regions. */
  private profOp = 0;
  private spin = 50;
  /** Spin on at a barrier for as long as this thread's own share took (pass-tuning.ts spinByWork). */
  private byWork = false;
  /**
   * The share of its own work a thread spins on (byWork), between CREDIT_MIN and 1: halved each
   * time the others did not come within it (on a loaded machine they lost their cores, and a
   * spinning thread only holds one they need), doubled each time they did.
   */
  private credit = 1;
  /** Thread 0 inside a solo region: parallelFor runs every item here, with no counter and no barrier. */
  private alone = false;
  /** A solo region ran since the last join: the threads meet before anyone reads its results. */
  private pending = false;
  /** Solo regions joined this pass (what CTL.solos must reach). */
  private solos = 0;
  /** Profiling: when this thread entered the pending solo region and left it. */
  private soloT0 = 0;
  private soloT1 = 0;
  /** This thread's timings (createControlBuffer with profileThreads), else null: no clock read. */
  private readonly prof: Float64Array | null;
  /** When the last operation ended (profiling only). */
  private mark = 0;
  /** Threads taking part in the current pass (tids 0 .. nt-1; see pass-threads.ts). */
  nt: number;

  constructor(
    private readonly ctl: Int32Array,
    readonly tid: number,
    nt: number,
    private readonly cores: number,
    /** Longest wait at one barrier before TeamStalled (ms); workers wait without limit. */
    private readonly stallMs = Number.POSITIVE_INFINITY,
    /**
     * Spin lengths at barriers (pass-tuning.ts barrierSpins, spinByWork); without, the spin count
     * alone (the training kernels' teams, which the pool's switches do not reach).
     */
    private readonly tuning: Pick<PassTuning, 'barrierSpins' | 'spinByWork'> = COUNT_ONLY,
  ) {
    this.nt = nt;
    this.prof = profileOf(ctl.buffer, tid);
  }

  /** Threads sharing the operations run now: 1 inside a solo region, else nt. */
  get sharing(): number {
    return this.alone ? 1 : this.nt;
  }

  /**
   * Call at the start of every pass with the number of threads taking part (the main thread
   * zeroes the counters between passes).
   */
  reset(nt: number): void {
    this.op = 0;
    this.profOp = 0;
    this.alone = false;
    this.pending = false;
    this.solos = 0;
    this.nt = nt;
    // Spinning helps only while every thread has a core; otherwise yield to the OS quickly.
    this.spin = nt <= this.cores ? this.tuning.barrierSpins : 50;
    this.byWork = nt <= this.cores && this.tuning.spinByWork;
    if (this.prof) {
      this.prof[0]!++;
      this.mark = performance.now();
    }
  }

  /** Adds one operation's times (started at t0, own work done at t1, barrier left now). */
  private record(t0: number, t1: number): void {
    const prof = this.prof!,
      t2 = performance.now();
    this.profOp++;
    const o = PROFILE.head + 3 * Math.min(this.profOp - 1, PROFILE.ops - 1);
    prof[o]! += t0 - this.mark;
    prof[o + 1]! += t1 - t0;
    prof[o + 2]! += t2 - t1;
    prof[1] = this.profOp;
    this.mark = t2;
  }

  /** Waits until every thread of the pass arrives; `workMs`: this thread's own share of the operation (spinByWork). */
  barrier(workMs = 0): void {
    const ctl = this.ctl;
    if (this.nt === 1) return;
    const gen = Atomics.load(ctl, CTL.generation);
    if (Atomics.add(ctl, CTL.count, 1) === this.nt - 1) {
      Atomics.store(ctl, CTL.count, 0);
      Atomics.add(ctl, CTL.generation, 1);
      // A sleeper counted itself before its wait, which rechecks the generation: none is missed.
      if (Atomics.load(ctl, CTL.sleepers) !== 0) Atomics.notify(ctl, CTL.generation);
      return;
    }
    this.waitWhile(CTL.generation, gen, workMs);
  }

  /**
   * Waits while ctl[word] holds `value`: spins first (while every thread has a core; `spinMs` more
   * after the spin count, the clock read every 64 loads), then sleeps until whoever changes it
   * wakes the sleepers (or 20 ms pass: the abort flag is checked then).
   */
  private waitWhile(word: number, value: number, spinMs = 0): void {
    const ctl = this.ctl;
    let spins = 0,
      since = 0,
      until = 0,
      budget = spinMs * this.credit;
    while (Atomics.load(ctl, word) === value) {
      if (++spins < this.spin) continue;
      if (budget > 0) {
        if ((spins & 63) !== 0) continue;
        const now = performance.now();
        until ||= now + budget;
        if (now < until) continue;
        budget = 0;
        this.credit = Math.max(CREDIT_MIN, this.credit / 2);
      }
      if (Atomics.load(ctl, CTL.abort)) throw new TeamAborted('another worker failed');
      if (this.stallMs !== Number.POSITIVE_INFINITY) {
        const now = performance.now();
        since ||= now;
        if (now - since > this.stallMs)
          throw new TeamStalled(
            `a worker thread stopped answering (no barrier reached in ${this.stallMs / 1000} s): the wasm runner cannot continue`,
          );
      }
      Atomics.add(ctl, CTL.sleepers, 1);
      Atomics.wait(ctl, word, value, 20);
      Atomics.sub(ctl, CTL.sleepers, 1);
      // Woken early (nudge) or timed out: spin again before sleeping, the barrier may be near.
      spins = 0;
    }
    // The others came while this thread spun on by its work: worth doing again.
    if (until !== 0 && budget > 0) this.credit = Math.min(1, this.credit * 2);
  }

  /**
   * Inside a solo region, on thread 0: wakes the threads asleep at the join, which spin there
   * again (the barrier spins). Called shortly before the region ends (the last layer), so that their
   * wake-up overlaps its rest instead of following the join.
   */
  nudge(): void {
    if (this.alone && Atomics.load(this.ctl, CTL.sleepers) !== 0) Atomics.notify(this.ctl, CTL.solos);
  }

  /**
   * A solo region: thread 0 runs fn alone (its parallelFor calls run every item there, with no
   * barrier), the other threads go straight on to the next `join` (or parallelFor), where they
   * wait for it. For a run of operations each too small to be worth a barrier: a decode step of
   * the shipped model (d_model 256) spends more at 5 barriers a layer than a second thread saves.
   * Every thread must call it at the same point of the pass; what fn writes may be read by the
   * others only after the next join.
   */
  solo(fn: () => void): void {
    if (this.nt === 1) {
      fn();
      return;
    }
    // Consecutive regions make one: thread 0 runs them in order, nobody else reads in between.
    const t0 = this.pending ? this.soloT0 : this.prof ? performance.now() : 0;
    if (this.tid === 0) {
      this.alone = true;
      try {
        fn();
      } finally {
        this.alone = false;
      }
    }
    this.pending = true;
    if (this.prof) {
      this.soloT0 = t0;
      this.soloT1 = performance.now();
    }
  }

  /**
   * Waits until the pending solo region (if any) is done; every thread must call it at the same
   * point. Thread 0, which ran it, waits for nobody: it says so and goes on (into the next
   * parallel operation, whose items the others claim as they come).
   */
  join(): void {
    if (!this.pending) return;
    this.pending = false;
    const ctl = this.ctl;
    this.solos++;
    if (this.tid === 0) {
      Atomics.add(ctl, CTL.solos, 1);
      if (Atomics.load(ctl, CTL.sleepers) !== 0) Atomics.notify(ctl, CTL.solos);
    } else
      for (let v = Atomics.load(ctl, CTL.solos); v < this.solos; v = Atomics.load(ctl, CTL.solos))
        this.waitWhile(CTL.solos, v);
    if (this.prof) this.record(this.soloT0, this.soloT1);
  }

  /**
   * Runs fn(i) for every i in [0, n), items claimed dynamically by whichever thread is free,
   * then waits at a barrier. Every thread must call it with the same n, in the same order.
   *
   * `last`: the pass's last parallel operation. Instead of the barrier, each thread waits until
   * every item is finished, not until the others arrive: a thread that has not come yet (still
   * waking up, or its core taken) holds nobody up unless it holds an item. Only the last: a
   * thread still on its way could otherwise meet a counter already reused by a later operation
   * (the next pass starts only when every thread is out of this one).
   */
  parallelFor(n: number, fn: (i: number) => void, last = false): void {
    if (this.alone) {
      for (let i = 0; i < n; i++) fn(i);
      return;
    }
    this.join();
    const ctl = this.ctl;
    const slot = CTL.counters + (this.op & 3);
    // Counter (op+1) was last used by op-3, which every thread has left (barriers since).
    if (this.tid === 0) Atomics.store(ctl, CTL.counters + ((this.op + 1) & 3), 0);
    this.op++;
    const clock = this.prof !== null || this.byWork;
    const t0 = clock ? performance.now() : 0;
    if (this.nt === 1) {
      for (let i = 0; i < n; i++) fn(i);
    } else {
      for (;;) {
        const i = Atomics.add(ctl, slot, 1);
        if (i >= n) break;
        fn(i);
        if (last && Atomics.add(ctl, CTL.finished, 1) === n - 1 && Atomics.load(ctl, CTL.sleepers) !== 0)
          Atomics.notify(ctl, CTL.finished);
      }
    }
    const t1 = clock ? performance.now() : 0;
    if (this.nt !== 1) {
      const spinMs = this.byWork ? t1 - t0 : 0;
      if (!last) this.barrier(spinMs);
      else
        for (let v = Atomics.load(ctl, CTL.finished); v < n; v = Atomics.load(ctl, CTL.finished))
          this.waitWhile(CTL.finished, v, spinMs);
    }
    if (this.prof) this.record(t0, t1);
  }
}
