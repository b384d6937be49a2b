/**
 * How many worker threads the wasm backend starts, and how many of them each pass uses.
 *
 * Every operation of a pass ends at a barrier that all of the pass's threads attend. Each thread
 * more costs about the same at every barrier (it must be woken, reach the barrier and be
 * released), so a pass with little work per barrier — one decode row of a small model — runs
 * fastest on few threads, and more threads only help passes with more work. With the step time
 * t(n) ≈ W/n + n·b·β (W the pass's multiply-adds, b its barriers, β one thread's cost at one
 * barrier in multiply-adds), the best n is √(W / (b·β)).
 *
 * Measured on a 16-vCPU Xeon VM with the shipped model (d_model 256, 4 layers, bf16), decode step
 * times by threads (`npm run bench -- batched --threads N`):
 *
 * | rows | 4 | 6 | 8 | 12 | 15 | 16 |
 * |---|---|---|---|---|---|---|
 * | 1 | 1.32 ms | 1.08 | 1.10 | 1.76 | 2.57 | 5.29 |
 * | 8 | 4.65 | 3.09 | 2.64 | 2.53 | 3.99 | 6.06 |
 * | 16 | 8.27 | 5.36 | 4.52 | 3.96 | 4.85 | 6.64 |
 *
 * One row (about 19 M multiply-adds over 22 barriers) is fastest on 6-8 threads, which
 * β = 15,000 gives (√(19e6 / (22 · 15e3)) ≈ 7.6). Using every core is slower for every batch: the
 * main thread (HTTP, tokenizer, the next pass) needs a core too, and a virtual CPU may be a
 * hyper-thread whose spinning sibling slows the thread doing the work. Hence the default pool
 * leaves a quarter of the cores beyond four free.
 */

/** One thread's cost at one barrier, in multiply-adds of work (see above). */
const BARRIER_COST_MACS = 15_000;

/** Passes use at least this many threads (when the pool has them): below, a pass never got faster. */
const MIN_PASS_THREADS = 4;

/** Worker threads to start when the caller names no number: all cores up to 4, then 3 in 4. */
export function defaultThreads(cores: number): number {
  if (cores <= MIN_PASS_THREADS) return Math.max(1, cores);
  return Math.max(MIN_PASS_THREADS, Math.floor((cores * 3) / 4));
}

/** The work of one pass, as the thread choice sees it. */
export interface PassWork {
  /** Multiply-adds of the pass (weights, attention, output matrix). */
  macs: number;
  /** Barriers in the pass (one per parallel operation). */
  barriers: number;
}

/** Threads for a pass: √(W / (b·β)), at least MIN_PASS_THREADS, at most the pool's size. */
export function passThreads(work: PassWork, poolThreads: number): number {
  const best = Math.round(Math.sqrt(work.macs / (Math.max(1, work.barriers) * BARRIER_COST_MACS)));
  return Math.min(poolThreads, Math.max(MIN_PASS_THREADS, best));
}
