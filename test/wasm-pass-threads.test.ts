// The wasm backend's choice of threads per pass (src/backends/wasm/pass-threads.ts) on the shapes
// it was measured on: a 16-vCPU machine, the shipped model (d_model 256, 4 layers, 50,432 tokens)
// and a 1B model. The runner's own counts are checked in wasm-backend.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { passThreads } from '../src/backends/wasm/pass-threads.js';
import { DEFAULT_TUNING } from '../src/backends/wasm/pass-tuning.js';

// Multiply-adds a row through the shipped model's layers, and of its output matrix.
const LAYERS = 4 * (256 * 768 + 256 * 256 + 2 * 256 * 1024);
const HEAD = 50432 * 256;
const decode = (rows: number) => ({ macs: rows * (LAYERS + HEAD), barriers: 4 * (rows <= 8 ? 5 : 10) + 2 });

describe('threads a pass uses', () => {
  it('decode steps of the shipped model on 16 cores: 6-8 threads for one row, 12 for 8 or 16 rows (the measured best)', () => {
    const one = passThreads(decode(1), 16, 16);
    assert.ok(one >= 6 && one <= 8, `one row: ${one}`);
    assert.equal(passThreads(decode(8), 16, 16), 12);
    assert.equal(passThreads(decode(16), 16, 16), 12);
  });

  it('a 512-token prompt of the shipped model and a 1B prompt take every core', () => {
    const pp512 = { macs: 512 * LAYERS + 4 * 512 * 512 * 2 * 256 + HEAD, barriers: 41 };
    assert.equal(passThreads(pp512, 16, 16), 16);
    const d = 2048,
      layer1b = 12 * d * d;
    assert.equal(passThreads({ macs: 256 * 24 * layer1b, barriers: 24 * 10 + 1 }, 16, 16), 16);
  });

  it('never more than the pool, never fewer than 4 (or the pool), whatever the cores', () => {
    for (const pool of [1, 2, 3, 4, 6, 16, 64]) {
      for (const cores of [1, 2, 8, 16, 64]) {
        for (const macs of [0, 1e3, 1e6, 1e8, 1e11]) {
          const n = passThreads({ macs, barriers: 22 }, pool, cores);
          assert.ok(n >= Math.min(pool, 4) && n <= pool, `pool ${pool}, cores ${cores}, ${macs}: ${n}`);
        }
      }
    }
    // 2-core machines (CI) keep every thread of a small pool
    assert.equal(passThreads(decode(1), 2, 2), 2);
  });

  it('a pool of 2-3 threads runs a decode row of the shipped model on one thread, two rows and prompts on all', () => {
    const light = DEFAULT_TUNING.lightPassMacs;
    for (const pool of [2, 3]) {
      assert.equal(passThreads(decode(1), pool, 2, light), 1, `pool ${pool}, one row`);
      // a long context adds attention (2 · past · d a layer): one row at 2,048 past still alone
      const longRow = { ...decode(1), macs: decode(1).macs + 4 * 2 * 2048 * 256 };
      assert.equal(passThreads(longRow, pool, 2, light), 1, `pool ${pool}, one row at 2,048 past`);
      assert.equal(passThreads(decode(2), pool, 2, light), pool, `pool ${pool}, two rows`);
      assert.equal(passThreads({ macs: 128 * LAYERS + HEAD, barriers: 41 }, pool, 2, light), pool, 'a prompt');
      assert.equal(passThreads(decode(1), pool, 2, 0), pool, `pool ${pool}, switched off`);
    }
    // pools of 4 and more keep the 16-vCPU calibration
    for (const pool of [4, 16]) assert.equal(passThreads(decode(1), pool, 16, light), passThreads(decode(1), pool, 16));
  });
});
