// The choice between one thread and the whole pool for a small pool's light decode passes, by
// their measured times (src/backends/wasm/light-share.ts): the chooser on given pass times, and a
// runner that probes the other way at the scheduled passes with the same bits as the fixed rule.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadRandomModel } from '../src/backends/wasm/index.js';
import { LIGHT_SHARE, LightShare } from '../src/backends/wasm/light-share.js';
import type { WasmRunner } from '../src/backends/wasm/runner.js';
import { shapeConfig } from '../src/cli/commands/bench.js';
import { withEnv } from './helpers/env.js';

/** Runs `n` light passes whose times the two ways give (ms, by pass index); returns which way each ran. */
function drive(c: LightShare, n: number, time: (shared: boolean, i: number) => number): boolean[] {
  const ways: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const shared = c.next();
    ways.push(shared);
    c.record(shared, time(shared, i));
  }
  return ways;
}

const count = (ways: boolean[], from = 0, to = ways.length) => ways.slice(from, to).filter(Boolean).length;

describe('light passes: one thread or the pool, by measured time', () => {
  const { JUDGED, RUN_IN, MAX_RUN_IN, FIRST_GAP, MAX_GAP, MARGIN } = LIGHT_SHARE;
  /** A first probe of the pool, and the longest. */
  const FIRST_PROBE = RUN_IN + JUDGED,
    LONGEST = MAX_RUN_IN + JUDGED;

  it('starts on one thread, probes the pool after FIRST_GAP passes, and keeps it when it is faster', () => {
    const c = new LightShare();
    // a warm process on a quiet 2-core machine: 0.46 ms shared, 0.55 alone
    const ways = drive(c, 2000, (shared) => (shared ? 0.46 : 0.55));
    assert.equal(count(ways, 0, FIRST_GAP), 0, 'one thread until the first probe');
    assert.equal(count(ways, FIRST_GAP, FIRST_GAP + FIRST_PROBE), FIRST_PROBE, 'the probe shares');
    assert.equal(c.sharing, true);
    assert.equal(c.counts.switches, 1, 'probes of one thread lose from then on');
    // after the switch, only probes (JUDGED passes each, no run-in; the last may be running) run on one thread
    const alone = ways.length - FIRST_GAP - count(ways);
    assert.ok(alone <= JUDGED * (c.counts.probes - 1) && alone > JUDGED * (c.counts.probes - 2), `${alone}`);
  });

  it('keeps one thread while the pool is slower, probing ever less often (up to MAX_GAP)', () => {
    const c = new LightShare();
    // a fresh process (V8 compiling on the second core) or a loaded machine: sharing 0.75 ms
    const ways = drive(c, 20_000, (shared) => (shared ? 0.75 : 0.55));
    assert.equal(c.sharing, false);
    assert.equal(c.counts.switches, 0);
    // probes of 16, 24, 40, 64, 64, … passes after gaps of 256, 512, 1024, 1024, …: in the last
    // 10,000 passes, at most one longest probe per MAX_GAP (~6 % of the passes)
    const late = count(ways, 10_000);
    assert.ok(late <= LONGEST * Math.ceil(10_000 / MAX_GAP), `${late} shared`);
    assert.ok(late >= LONGEST * Math.floor(10_000 / (MAX_GAP + LONGEST)), `${late} shared`);
  });

  it('follows a change: the pool once it gets faster (JIT settled), one thread again when it gets slower (load)', () => {
    const c = new LightShare();
    // sharing slow for the first 3,000 passes, fast until 8,000, slow again after
    const slowUntil = 3000,
      fastUntil = 8000;
    const ways = drive(c, 14_000, (shared, i) => (shared ? (i < slowUntil || i >= fastUntil ? 0.75 : 0.46) : 0.55));
    // within two gaps (a probe running when the times changed may still lose)
    const reach = 2 * (MAX_GAP + LONGEST);
    const firstShared = ways.findIndex(
      (w, i) => i >= slowUntil && w && count(ways, i, i + 2 * LONGEST) === 2 * LONGEST,
    );
    assert.ok(firstShared >= slowUntil && firstShared <= slowUntil + reach, `shared from ${firstShared}`);
    // from then on only probes run on one thread (gaps 64 … 512: a dozen probes)
    const alone = fastUntil - firstShared - count(ways, firstShared, fastUntil);
    assert.ok(alone <= 16 * JUDGED, `${alone} passes on one thread while sharing was faster`);
    const back = ways.findIndex((w, i) => i >= fastUntil && !w && count(ways, i, i + 2 * LONGEST) === 0);
    assert.ok(back >= fastUntil && back <= fastUntil + reach, `one thread from ${back}`);
    assert.equal(c.sharing, false);
  });

  it('does not switch on a difference within the margin', () => {
    const c = new LightShare();
    drive(c, 5000, (shared) => (shared ? 0.55 * (1 - MARGIN / 2) : 0.55));
    assert.equal(c.counts.switches, 0);
    assert.ok(c.counts.probes >= 5);
  });

  it('a lone slow pass does not decide a probe (medians)', () => {
    const c = new LightShare();
    // every 8th pass of either way takes 5 ms (a timer, a GC): sharing is still the faster way
    drive(c, 1000, (shared, i) => (i % 8 === 3 ? 5 : shared ? 0.46 : 0.55));
    assert.equal(c.sharing, true);
  });

  it('a runner on 2 threads probes the pool at the scheduled decode steps, with the same logits as the fixed rule', async () => {
    // d_model 64, 2 layers, 512 tokens: every decode row is light (pass-tuning.ts lightPassMacs)
    const config = shapeConfig(64, 2, 2, 512, 4096);
    const steps = FIRST_GAP + FIRST_PROBE + 8;
    const run = async (adaptive: boolean) => {
      const r = (await withEnv({ MPT_WASM_ADAPTIVE_LIGHT: adaptive ? '1' : '0' }, () =>
        loadRandomModel(config, { type: 'q8_0', threads: 2, seed: 3 }),
      )) as WasmRunner;
      const used: number[] = [];
      const logits: Float32Array[] = [];
      try {
        const cache = r.createCache({ capacity: steps });
        for (let i = 0; i < steps; i++) {
          const [o] = await r.forward([{ cache, tokens: [(i * 29 + 1) % 512] }], { logits: 'last' });
          used.push(r.lastPassThreads);
          logits.push(o!.logits);
        }
        return { used, logits, chooser: r.lightShare };
      } finally {
        await r.dispose();
      }
    };
    const fixed = await run(false),
      adaptive = await run(true);
    assert.equal(fixed.chooser, null);
    assert.deepEqual(fixed.used, Array(steps).fill(1));
    // one thread, then (whatever the times) the first probe's passes on both threads
    assert.deepEqual(adaptive.used.slice(0, FIRST_GAP), Array(FIRST_GAP).fill(1));
    assert.deepEqual(adaptive.used.slice(FIRST_GAP, FIRST_GAP + FIRST_PROBE), Array(FIRST_PROBE).fill(2));
    assert.equal(adaptive.chooser?.counts.probes, 1);
    const after = adaptive.used.slice(FIRST_GAP + FIRST_PROBE);
    assert.ok(
      after.every((t) => t === after[0]),
      `one way after the probe: ${after}`,
    );
    assert.deepEqual(adaptive.logits, fixed.logits);
  });
});
