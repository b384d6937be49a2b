// The trainer's threaded wasm kernels when a thread fails: the calling thread, blocked at the
// Team's barrier while a product runs, must get an MptError that names the failed worker and says
// what happened (a worker's wasm trap; a worker ended from outside, which the watchdog reports),
// never wait for ever or learn only that "another worker failed"; and every later product refuses.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MptError } from '../src/errors.js';
import { type ThreadedKernels, wasmKernels } from '../src/train/kernels-wasm.js';
import { gemmNTJs } from '../src/train/matmul-js.js';

async function started(threads: number): Promise<ThreadedKernels> {
  const k = wasmKernels(threads);
  const t0 = Date.now();
  while (!k.ready()) {
    if (Date.now() - t0 > 30_000) throw new Error('the training workers did not start within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return k;
}

/** A product wide enough to be split over the threads by columns: Y[8, 192] = X[8, 4096] · W[192, 4096]ᵀ. */
const M = 8,
  N = 192,
  K = 4096;

function filled(k: ThreadedKernels, n: number, seed: number): Float32Array {
  const a = k.alloc(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(seed + i * 0.37);
  return a;
}

/** The product's operands in the kernels' arena, W (allocated last) with `wRows` of its N rows. */
function operands(k: ThreadedKernels, wRows = N) {
  const y = k.alloc(M * N),
    x = filled(k, M * K, 1),
    w = filled(k, wRows * K, 2);
  return { y, x, w, product: () => k.gemmNT(y, 0, N, x, 0, K, w, 0, K, M, N, K, false) };
}

describe('threaded trainer kernels when a thread fails', { timeout: 240_000 }, () => {
  it("a worker's wasm trap reaches the caller's error, naming the worker", async () => {
    // W's last 16 rows lie past the end of the memory (the arena grows the memory to the page
    // that holds W's end, once the initial memory is used up): the last column chunk traps.
    // Whichever thread claims it traps; the test repeats until a worker did (the caller claims
    // about a third of the chunks).
    let workerTrap: string | null = null;
    for (let attempt = 0; attempt < 12 && !workerTrap; attempt++) {
      const k = await started(3);
      try {
        k.alloc(1 << 20);
        const { product } = operands(k, N - 16);
        let error: unknown = null;
        try {
          product();
        } catch (e) {
          error = e;
        }
        assert.ok(error instanceof Error, 'the product failed');
        if (error instanceof MptError) {
          assert.match(error.message, /^training worker [12] failed: RuntimeError: memory access out of bounds/);
          workerTrap = error.message;
        } else {
          // The caller claimed the chunk: its own trap.
          assert.match(`${error.name}: ${error.message}`, /^RuntimeError: memory access out of bounds/);
        }
        assert.throws(
          product,
          (e: unknown) =>
            e instanceof MptError &&
            /cannot continue after an earlier failure: (training worker [12]|the calling thread) failed: RuntimeError: memory access out of bounds/.test(
              e.message,
            ),
        );
      } finally {
        k.close();
      }
    }
    assert.ok(workerTrap, 'in 12 attempts a worker claimed the trapping chunk at least once');
  });

  /** Which worker, how it died and what to do (the watchdog's record or the caller's exit event). */
  const ENDED = (tid: number) =>
    new RegExp(
      `training worker ${tid} failed: its thread ended without reporting an error( \\(exit code \\d+\\))?: ` +
        'it was terminated, ran out of memory or crashed\\. Run the training again \\(it resumes from its last checkpoint\\), with fewer --threads',
    );

  it('a worker ended between products fails the next one, naming it', async () => {
    const k = await started(3);
    try {
      const { y, x, w, product } = operands(k);
      product();
      const want = new Float32Array(M * N);
      gemmNTJs(want, 0, N, x, 0, K, w, 0, K, M, N, K, false);
      for (let i = 0; i < M * N; i++)
        assert.ok(Math.abs(y[i]! - want[i]!) <= 1e-5 * (1 + Math.abs(want[i]!)), `y[${i}] ${y[i]} vs ${want[i]}`);
      await k.workers[1]!.terminate();
      assert.throws(product, (e: unknown) => e instanceof MptError && ENDED(2).test(e.message));
    } finally {
      k.close();
    }
  });

  it('a worker ended while the caller is blocked in products: the watchdog wakes the caller, naming it', async () => {
    const k = await started(3);
    try {
      const { product } = operands(k);
      // The thread is asked to end, then this thread blocks in products (no event reaches it)
      // until one fails: the worker ends idle (the next product refuses, the watchdog having
      // recorded it) or inside a product (the caller waits at the barrier until the watchdog
      // reports). Either way the record is the watchdog's: this thread handles no Worker event.
      void k.workers[0]!.terminate();
      let error: unknown = null;
      const t0 = Date.now();
      for (let i = 0; i < 100_000 && !error && Date.now() - t0 < 60_000; i++) {
        try {
          product();
        } catch (e) {
          error = e;
        }
      }
      assert.ok(error instanceof MptError, `a product failed with an MptError (got ${error})`);
      assert.match(error.message, ENDED(1));
    } finally {
      k.close();
    }
  });
});
