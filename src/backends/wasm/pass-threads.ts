/**
 * How many of the pool's worker threads a pass uses.
 *
 * Every operation of a pass ends at a barrier that all of the pass's threads attend. Each thread
 * more costs about the same at every barrier (it must be woken, reach the barrier and be
 * released), so a pass with little work per barrier — one decode row of a small model — runs
 * fastest on few threads. With the step time t(n) ≈ W/n + n·b·β (W the pass's multiply-adds, b
 * its barriers, β one thread's cost at one barrier in multiply-adds), the best n is √(W / (b·β)).
 * And a pass takes every core only when each operation has plenty of work: with all cores busy,
 * whatever else runs (the main thread, the HTTP server, the OS) takes a core from a worker and
 * every barrier waits for it.
 *
 * Measured on a 16-vCPU Xeon VM (`npm run bench -- batched`, `mpt bench`), before this choice
 * existed, every pass on all of the pool's threads:
 *
 * | shipped model (d 256, 4 layers, bf16), decode | 4 threads | 6 | 8 | 12 | 15 | 16 |
 * |---|---|---|---|---|---|---|
 * | 1 row a step | 1.32 ms | 1.08 | 1.10 | 1.76 | 2.57 | 5.29 |
 * | 8 rows | 4.65 | 3.09 | 2.64 | 2.53 | 3.99 | 6.06 |
 * | 16 rows | 8.27 | 5.36 | 4.52 | 3.96 | 4.85 | 6.64 |
 *
 * One row (19 M multiply-adds, 22 barriers) is fastest on 6-8 threads, which β = 15,000 gives
 * (√(19e6 / (22 · 15e3)) ≈ 7.6); 8 and 16 rows (7-14 M a barrier) on 12, not 16. Prompts are
 * the other way round: 512 prompt tokens of the same model (51 M a barrier) ran at 19,350 tok/s
 * on 16 threads against 13,800 on 12, and a 1B model's 256-token prompt at 131 against 104; a 1B
 * decode step (11 M a barrier) ran alike on both (27.2 and 27.7 tok/s).
 */

/** One thread's cost at one barrier, in multiply-adds of work (see above). */
const BARRIER_COST_MACS = 15_000;

/** Passes use at least this many threads (when the pool has them): below, a pass never got faster. */
const MIN_PASS_THREADS = 4;

/** Multiply-adds per barrier from which a pass may take every core (see above). */
const ALL_CORES_MACS_PER_BARRIER = 30e6;

/** The work of one pass, as the thread choice sees it. */
export interface PassWork {
  /** Multiply-adds of the pass (weights, attention, output matrix). */
  macs: number;
  /** Barriers in the pass (one per parallel operation). */
  barriers: number;
  /**
   * The same multiply-adds with each weight matrix's counted as q4_0 ones by its decode time
   * (runner.ts DECODE_COST), attention as is: what the light-pass test compares
   * (default: macs). A bf16 decode row of the shipped model (the folder's weights, what `mpt
   * generate` runs) is 16 M multiply-adds, as the q4_0 one, but took 1.8 ms alone against 1.1
   * shared (docs/cpu-profile.md, "What `mpt generate`'s rate includes").
   */
  q4Macs?: number;
}

/**
 * Threads for a pass on a pool of `poolThreads` on a machine of `cores` cores: √(W / (b·β)), at
 * least MIN_PASS_THREADS, at most the pool; and below ALL_CORES_MACS_PER_BARRIER, at most 3 in 4
 * of the cores beyond four. On a pool smaller than MIN_PASS_THREADS (2-3 cores, where that rule
 * gave every pass the whole pool), a pass under `lightMacs` multiply-adds (as q4_0 ones: `q4Macs`)
 * takes one thread (pass-tuning.ts lightPassMacs: a q4_0 decode row of the shipped model ran
 * faster alone on 2 cores).
 */
export function passThreads(work: PassWork, poolThreads: number, cores: number, lightMacs = 0): number {
  if (poolThreads < MIN_PASS_THREADS && (work.q4Macs ?? work.macs) < lightMacs) return 1;
  const barriers = Math.max(1, work.barriers);
  let n = Math.min(
    poolThreads,
    Math.max(MIN_PASS_THREADS, Math.round(Math.sqrt(work.macs / (barriers * BARRIER_COST_MACS)))),
  );
  if (work.macs / barriers < ALL_CORES_MACS_PER_BARRIER)
    n = Math.min(n, Math.max(MIN_PASS_THREADS, Math.floor((cores * 3) / 4)));
  return n;
}
