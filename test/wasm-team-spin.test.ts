// How long a thread of a team spins at a barrier before it sleeps (team.ts, pass-tuning.ts
// spinByWork), on two real threads: one thread's item of a parallel operation takes 30 ms, the
// other's 45 ms. With spinByWork the first waits the 15 ms spinning (its own share took longer), so
// the second finds nobody asleep when it arrives; without, the first sleeps after the spin count.
// The pool's switches come from MPT_WASM_* variables (passTuning), defaults otherwise.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { DEFAULT_TUNING, passTuning } from '../src/backends/wasm/pass-tuning.js';
import { createControlBuffer } from '../src/backends/wasm/team.js';

const threadBody = `
const { workerData, parentPort } = require('node:worker_threads');
(async () => {
  const { Team, CTL } = await import(workerData.team);
  const { tid, spinByWork } = workerData;
  const ctl = new Int32Array(workerData.ctl);
  const seen = new Int32Array(workerData.seen);
  const team = new Team(ctl, tid, 2, 2, Number.POSITIVE_INFINITY, { barrierSpins: 2000, spinByWork });
  const busy = (ms) => { const t = performance.now(); while (performance.now() - t < ms); };
  team.reset(2);
  team.barrier();
  team.parallelFor(2, (i) => {
    busy(i === 0 ? 30 : 45);
    // The longer item ends: is the other thread asleep at the barrier?
    if (i === 1) seen[0] = Atomics.load(ctl, CTL.sleepers);
  });
  parentPort.postMessage({});
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

/** Threads asleep at the barrier when the later thread reached it, in one such operation. */
async function sleepersAtArrival(spinByWork: boolean): Promise<number> {
  const ctl = createControlBuffer();
  const seen = new SharedArrayBuffer(4);
  const team = new URL('../src/backends/wasm/team.js', import.meta.url).href;
  const replies = await Promise.all(
    [0, 1].map((tid) => {
      const w = new Worker(threadBody, { eval: true, workerData: { team, tid, spinByWork, ctl, seen } });
      return new Promise<{ error?: string }>((resolve, reject) => {
        w.once('message', (m) => {
          resolve(m);
          void w.terminate();
        });
        w.once('error', reject);
      });
    }),
  );
  for (const r of replies) assert.equal(r.error, undefined, r.error);
  return new Int32Array(seen)[0]!;
}

test('a thread whose own share took longer than its wait spins through it (spinByWork); without, it sleeps', async () => {
  // A few tries: on a loaded machine a thread may lose its core for longer than the margin.
  const tries = async (on: boolean) => {
    const seen: number[] = [];
    for (let i = 0; i < 3; i++) seen.push(await sleepersAtArrival(on));
    return seen;
  };
  const on = await tries(true),
    off = await tries(false);
  assert.ok(on.includes(0), `spinByWork: asleep at arrival in every try (${on})`);
  assert.ok(off.includes(1), `spin count only: never asleep at arrival (${off})`);
});

test('the pool reads its switches from MPT_WASM_* variables; unset or malformed ones keep the defaults', () => {
  const names = [
    'MPT_WASM_BARRIER_SPINS',
    'MPT_WASM_IDLE_SPINS',
    'MPT_WASM_LIGHT_PASS_MACS',
    'MPT_WASM_ADAPTIVE_LIGHT',
    'MPT_WASM_ONE_CHUNK',
    'MPT_WASM_SPIN_BY_WORK',
    'MPT_WASM_LONG_FIRST',
    'MPT_WASM_FINE_TAIL',
  ];
  const saved = names.map((n) => process.env[n]);
  try {
    for (const n of names) delete process.env[n];
    assert.deepEqual(passTuning(), DEFAULT_TUNING);
    Object.assign(process.env, {
      MPT_WASM_BARRIER_SPINS: '50000',
      MPT_WASM_IDLE_SPINS: '0',
      MPT_WASM_LIGHT_PASS_MACS: '0',
      MPT_WASM_ADAPTIVE_LIGHT: '0',
      MPT_WASM_ONE_CHUNK: '0',
      MPT_WASM_SPIN_BY_WORK: '1',
      MPT_WASM_LONG_FIRST: '0',
      MPT_WASM_FINE_TAIL: '0',
    });
    assert.deepEqual(passTuning(), {
      barrierSpins: 50000,
      idleSpins: 0,
      lightPassMacs: 0,
      adaptiveLight: false,
      oneChunk: false,
      spinByWork: true,
      longFirst: false,
      fineTail: false,
    });
    Object.assign(process.env, {
      MPT_WASM_BARRIER_SPINS: '-3',
      MPT_WASM_IDLE_SPINS: 'lots',
      MPT_WASM_LIGHT_PASS_MACS: '1.5',
      MPT_WASM_ADAPTIVE_LIGHT: 'off',
      MPT_WASM_ONE_CHUNK: 'yes',
      MPT_WASM_SPIN_BY_WORK: '',
      MPT_WASM_LONG_FIRST: 'true',
      MPT_WASM_FINE_TAIL: 'no',
    });
    assert.deepEqual(passTuning(), DEFAULT_TUNING);
  } finally {
    names.forEach((n, i) => {
      if (saved[i] === undefined) delete process.env[n];
      else process.env[n] = saved[i];
    });
  }
});
