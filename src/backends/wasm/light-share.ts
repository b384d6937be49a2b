/**
 * Whether a small pool's light decode passes run on one thread or on every thread, chosen by
 * their measured times.
 *
 * A pool of 2-3 threads runs a pass under `lightPassMacs` multiply-adds (a decode row of the
 * shipped model) on one thread (pass-threads.ts). On the 2-core machine that was right for a
 * fresh process and wrong for a warm one: sharing the row took 0.46 ms a step against 0.55 alone
 * in a warm process (quiet), but 0.7-0.8 ms during a process's first ~800 steps (busy machine,
 * boosted; quiet, `mpt bench` gave 1,222 tok/s shared against 1,523 alone), while V8's
 * concurrent compiler optimizes the executor's JS on a background thread and takes the core the
 * second thread needs (with V8's optimizing tiers off, `--max-opt=0`, sharing won from the second
 * repetition: docs/cpu-profile.md, "Why step-ab and mpt bench disagreed"). Another process taking
 * a core has the same effect, at any time. So neither choice is right for good: this keeps the one
 * that measured faster lately, and now and then runs a few passes the other way to check.
 *
 * The incumbent starts as one thread (the fixed rule's choice). The first probe comes after
 * FIRST_GAP passes: earlier ones would fall in the JIT's warm-up, lose, and cost `mpt bench`'s
 * 64-step repetitions a few per cent. A probe runs the other way for a while and is judged by its
 * last JUDGED passes only: a second thread that has not run passes for a while is slow at first
 * (its own JIT has not optimized its share of the executor: in a fresh pool sharing took ~250
 * passes to reach its speed with the caller's code already optimized), so a probe of a few
 * passes kept losing; a probe of one thread needs no such run-in. If the median of the probe's
 * last JUDGED passes beats the median of the incumbent's last JUDGED passes by MARGIN, the other
 * way becomes the incumbent and the gap starts again at MIN_GAP; otherwise the gap doubles up to
 * MAX_GAP, and a probe of the pool runs twice as long next time, up to MAX_RUN_IN + JUDGED passes
 * (so a second thread gets its run-in over a few probes; a probe that loses by 40 % then costs
 * ~2 % of the time). Both medians come from passes run within a few ms of each other, so a
 * context that grows by a few tokens between them hardly counts. Nothing of the pass's arithmetic
 * depends on the choice: the threads compute the same rows with the same kernels (same bits).
 */

/** Passes of each way compared at a probe: the incumbent's last, the probe's last. */
const JUDGED = 8;
/** Passes a first probe of the pool runs before its judged ones; doubled after each lost probe, up to MAX_RUN_IN. */
const RUN_IN = 8;
const MAX_RUN_IN = 56;
/** Passes before the first probe (on the quiet 2-core machine sharing lost for the first ~800: see above). */
const FIRST_GAP = 256;
/** Least gap between probes after a switch, in passes run the incumbent's way. */
const MIN_GAP = 64;
/** Most gap between probes (a probe that keeps losing). */
const MAX_GAP = 1024;
/** A probe's way replaces the incumbent only when its median is this much faster (noise). */
const MARGIN = 0.05;

function median(a: readonly number[]): number {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export class LightShare {
  /** The incumbent: light passes share the pool's threads. */
  private shared = false;
  /** The incumbent's last JUDGED pass times (ms). */
  private recent: number[] = [];
  /** Times of the running probe's passes (ms). */
  private probe: number[] = [];
  /** Passes left in the running probe (0: none running). */
  private probing = 0;
  /** The incumbent's passes since the last probe. */
  private since = 0;
  private gap = FIRST_GAP;
  /** Run-in of the next probe of the pool (a probe of one thread has none). */
  private runIn = RUN_IN;
  /** Probes run and switches made (diagnostics, tests, bench). */
  readonly counts = { probes: 0, switches: 0 };

  /** Whether the next light pass shares the pool's threads. */
  next(): boolean {
    return this.probing > 0 ? !this.shared : this.shared;
  }

  /** Whether light passes share now, probes aside. */
  get sharing(): boolean {
    return this.shared;
  }

  /** The wall time of the light pass just run, which `shared` says how. */
  record(shared: boolean, ms: number): void {
    if (!(ms >= 0)) return;
    if (shared !== this.shared) {
      // A probe's pass (a pass of the other way outside a probe cannot happen: next() chose it).
      if (this.probing === 0) return;
      this.probe.push(ms);
      if (this.probe.length > JUDGED) this.probe.shift();
      if (--this.probing === 0) this.decide();
      return;
    }
    this.recent.push(ms);
    if (this.recent.length > JUDGED) this.recent.shift();
    if (++this.since >= this.gap && this.recent.length === JUDGED) {
      this.probing = JUDGED + (this.shared ? 0 : this.runIn);
      this.probe = [];
      this.counts.probes++;
    }
  }

  private decide(): void {
    this.since = 0;
    if (median(this.probe) < median(this.recent) * (1 - MARGIN)) {
      this.shared = !this.shared;
      this.recent = this.probe;
      this.gap = MIN_GAP;
      this.runIn = RUN_IN;
      this.counts.switches++;
    } else {
      this.gap = Math.min(MAX_GAP, this.gap * 2);
      if (!this.shared) this.runIn = Math.min(MAX_RUN_IN, this.runIn * 2);
    }
    this.probe = [];
  }
}

/** The chooser's constants, for tests. */
export const LIGHT_SHARE = { JUDGED, RUN_IN, MAX_RUN_IN, FIRST_GAP, MIN_GAP, MAX_GAP, MARGIN } as const;
