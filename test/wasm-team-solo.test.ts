// Solo regions of a team (team.ts solo / join) on real threads, 1 to 4 of them: thread 0 runs
// each region alone (its parallelFor calls run every item in place), the others go on to the
// join, and once there every thread sees everything thread 0 wrote; the work counters stay in
// step, so the parallel operations after any run of solo regions still hand out every item
// exactly once.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { createControlBuffer } from '../src/backends/wasm/team.js';

/** Rounds of (solo regions, then a parallel operation that checks them) in the one pass. */
const ROUNDS = 200;
/** Items of each round's parallel operation. */
const ITEMS = 37;
/** Values thread 0 writes in a round's solo regions. */
const SOLO_ITEMS = 5;

// Every thread runs the same pass: per round, one or two solo regions (thread 0 writes the
// round's values through parallelFor calls inside them), sometimes an explicit join, then a
// parallel operation whose items each check the values and count their claim.
const threadBody = `
const { workerData, parentPort } = require('node:worker_threads');
(async () => {
  const { Team } = await import(workerData.team);
  const { tid, nt, rounds, items, soloItems } = workerData;
  const team = new Team(new Int32Array(workerData.ctl), tid, nt, nt);
  const values = new Int32Array(workerData.values);
  const soloBy = new Int32Array(workerData.soloBy);
  const claims = new Int32Array(workerData.claims);
  let stale = 0;
  team.reset(nt);
  for (let r = 0; r < rounds; r++) {
    team.solo(() => {
      team.parallelFor(soloItems, (i) => {
        values[i] = r * 100 + i;
        Atomics.or(soloBy, r, 1 << tid);
      });
    });
    if (r % 3 === 1) team.solo(() => team.parallelFor(1, () => { values[soloItems] = r; Atomics.or(soloBy, r, 1 << tid); }));
    if (r % 2 === 0) team.join();
    team.parallelFor(items, (i) => {
      for (let j = 0; j < soloItems; j++) if (values[j] !== r * 100 + j) stale++;
      if (r % 3 === 1 && values[soloItems] !== r) stale++;
      Atomics.add(claims, r * items + i, 1);
    });
  }
  parentPort.postMessage({ stale });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

async function runTeam(nt: number): Promise<{ stale: number; soloBy: Int32Array; claims: Int32Array }> {
  const ctl = createControlBuffer();
  const values = new SharedArrayBuffer((SOLO_ITEMS + 1) * 4);
  const soloBy = new SharedArrayBuffer(ROUNDS * 4);
  const claims = new SharedArrayBuffer(ROUNDS * ITEMS * 4);
  const team = new URL('../src/backends/wasm/team.js', import.meta.url).href;
  const replies = await Promise.all(
    Array.from({ length: nt }, (_, tid) => {
      const w = new Worker(threadBody, {
        eval: true,
        workerData: { team, tid, nt, rounds: ROUNDS, items: ITEMS, soloItems: SOLO_ITEMS, ctl, values, soloBy, claims },
      });
      return new Promise<{ stale?: number; error?: string }>((resolve, reject) => {
        w.once('message', (m) => {
          resolve(m);
          void w.terminate();
        });
        w.once('error', reject);
      });
    }),
  );
  let stale = 0;
  for (const r of replies) {
    assert.equal(r.error, undefined, r.error);
    stale += r.stale!;
  }
  return { stale, soloBy: new Int32Array(soloBy), claims: new Int32Array(claims) };
}

test('solo regions run on thread 0 alone and are seen by every thread after the join, 1-4 threads', {
  timeout: 60_000,
}, async () => {
  for (let nt = 1; nt <= 4; nt++) {
    const { stale, soloBy, claims } = await runTeam(nt);
    assert.equal(stale, 0, `${nt} threads: values read before thread 0's solo region was done`);
    assert.ok(
      soloBy.every((b) => b === 1),
      `${nt} threads: a solo region ran on a thread other than 0`,
    );
    assert.ok(
      claims.every((c) => c === 1),
      `${nt} threads: an item of a parallel operation after solo regions was not run exactly once`,
    );
  }
});

// The pass's last parallel operation (parallelFor `last`) and the join, where thread 0 waits for
// nobody: the last thread comes to both only once thread 0 says it has left the last operation
// (a word it waits on, 10 s at most). With a barrier at either place thread 0 would never leave,
// the late thread would come after its 10 s and find `left` still 0.
const lateBody = `
const { workerData, parentPort } = require('node:worker_threads');
(async () => {
  const { Team } = await import(workerData.team);
  const { tid, nt, items } = workerData;
  const team = new Team(new Int32Array(workerData.ctl), tid, nt, nt);
  const values = new Int32Array(workerData.values);
  const claims = new Int32Array(workerData.claims);
  const left = new Int32Array(workerData.left);
  team.reset(nt);
  team.solo(() => team.parallelFor(items, (i) => { values[i] = 1000 + i; }));
  let leftFirst = 1;
  if (tid === nt - 1 && nt > 1) {
    Atomics.wait(left, 0, 0, 10_000);
    leftFirst = Atomics.load(left, 0);
  }
  let stale = 0;
  team.parallelFor(items, (i) => {
    if (values[i] !== 1000 + i) stale++;
    values[items + i] = 2000 + i;
    Atomics.add(claims, i, 1);
  }, true);
  // Every item is finished when a thread leaves the last operation, whoever ran it.
  for (let i = 0; i < items; i++) if (values[items + i] !== 2000 + i) stale++;
  if (tid === 0) { Atomics.store(left, 0, 1); Atomics.notify(left, 0); }
  parentPort.postMessage({ stale, leftFirst });
})().catch((e) => parentPort.postMessage({ error: String(e && e.stack || e) }));
`;

test('the last operation and the join wait for unfinished items, not for a thread still on its way, 1-4 threads', {
  timeout: 60_000,
}, async () => {
  const team = new URL('../src/backends/wasm/team.js', import.meta.url).href;
  for (let nt = 1; nt <= 4; nt++) {
    const ctl = createControlBuffer();
    const values = new SharedArrayBuffer(2 * ITEMS * 4);
    const claims = new SharedArrayBuffer(ITEMS * 4);
    const left = new SharedArrayBuffer(4);
    const replies = await Promise.all(
      Array.from({ length: nt }, (_, tid) => {
        const w = new Worker(lateBody, {
          eval: true,
          workerData: { team, tid, nt, items: ITEMS, ctl, values, claims, left },
        });
        return new Promise<{ stale?: number; leftFirst?: number; error?: string }>((resolve, reject) => {
          w.once('message', (m) => {
            resolve(m);
            void w.terminate();
          });
          w.once('error', reject);
        });
      }),
    );
    for (const r of replies) {
      assert.equal(r.error, undefined, r.error);
      assert.equal(r.stale, 0, `${nt} threads: a value read before it was written`);
      assert.equal(r.leftFirst, 1, `${nt} threads: thread 0 waited for the late thread`);
    }
    assert.ok(
      new Int32Array(claims).every((c) => c === 1),
      `${nt} threads: an item of the last operation was not run exactly once`,
    );
  }
});
