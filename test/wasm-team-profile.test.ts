// The team's opt-in operation timings (team.ts PROFILE, MPT_WASM_PROFILE=1; bench/profile.ts reads
// them): off by default (no buffer, nothing recorded), and when on, one entry per parallel
// operation of a pass with the time spent in it, in one thread and in a pool of workers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CTL, PROFILE, Team, createControlBuffer, profileOf } from '../src/backends/wasm/team.js';
import { loadRandomModel } from '../src/backends/wasm/index.js';
import { shapeConfig } from '../src/cli/commands/bench.js';
import { SHARED_PASSES, withEnv } from './helpers/env.js';

test('a control buffer without profile room records nothing', () => {
  const ctl = createControlBuffer();
  assert.equal(ctl.byteLength, CTL.size * 4);
  assert.equal(profileOf(ctl, 0), null);
});

test('one thread: passes, operations and their work are recorded per operation index', () => {
  const ctl = createControlBuffer(1);
  const team = new Team(new Int32Array(ctl), 0, 1, 1);
  const spin = (ms: number) => {
    const t = performance.now();
    while (performance.now() - t < ms);
  };
  for (let pass = 0; pass < 2; pass++) {
    team.reset(1);
    spin(2); // the thread's own work before the first parallel operation
    team.parallelFor(4, () => spin(1));
    team.parallelFor(1, () => {});
  }
  const p = profileOf(ctl, 0)!;
  assert.equal(p[0], 2, 'passes');
  assert.equal(p[1], 2, 'operations in the last pass');
  const [before0, work0] = [p[PROFILE.head]!, p[PROFILE.head + 1]!];
  assert.ok(before0 >= 4 && before0 < 1000, `before the first operation: ${before0} ms`);
  assert.ok(work0 >= 8 && work0 < 1000, `work of the first operation: ${work0} ms`);
  assert.ok(p[PROFILE.head + 4]! < work0, 'the empty operation took less');
  assert.equal(p[PROFILE.head + 6], 0, 'no third operation');
});

/** Operations each thread of a 2-thread pool recorded in one decode step of a random model of width d. */
async function decodeStepOps(d: number, nLayers: number): Promise<number[]> {
  const runner = await withEnv({ MPT_WASM_PROFILE: '1', ...SHARED_PASSES }, () =>
    loadRandomModel(shapeConfig(d, 2, nLayers, 128, 64), { type: 'q8_0', threads: 2, maxRows: 16 }),
  );
  try {
    const cache = runner.createCache({ capacity: 4 });
    await runner.forward([{ cache, tokens: [3] }], { logits: 'last' });
    const prof = runner.opProfile()!;
    assert.equal(prof.length, 2);
    const ran = prof.filter((p) => p[0] === 1);
    assert.equal(ran.length, runner.lastPassThreads);
    return ran.map((p) => p[1]!);
  } finally {
    await runner.dispose();
  }
}

test('a worker pool started with MPT_WASM_PROFILE=1 times every operation of a decode step', async () => {
  // Layers of 4.9 M multiply-adds a row (d 640): 5 parallel operations a layer (executor.ts) and
  // the output matrix.
  assert.deepEqual(await decodeStepOps(640, 2), [11, 11]);
  // Layers of 49 K (d 64), under executor.ts SOLO_LAYER_MACS: every layer on thread 0 alone (one
  // solo region, recorded as one operation by each thread), then the output matrix.
  assert.deepEqual(await decodeStepOps(64, 2), [2, 2]);
  const plain = await loadRandomModel(shapeConfig(64, 2, 1, 128, 64), { type: 'q8_0', threads: 2, maxRows: 16 });
  assert.equal(plain.opProfile(), null);
  await plain.dispose();
});
