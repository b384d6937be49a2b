// The bench page (served by `mpt web`): loads the app's model in this tab and measures prompt
// processing (pp) and token generation (tg) speed with `mpt bench`'s own measurement
// (src/runtime/bench-speed.ts): one untimed warm-up, then median, min and max of the repetitions.
// The result is also left on window.benchResult (as JSON-ready data) for scripts.

import { loadModel } from '/dist/src/browser.js';
import { measure, median } from '/dist/src/runtime/bench-speed.js';

const config = JSON.parse(document.getElementById('mpt-web')?.textContent ?? '{}');
const query = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

function count(name, dflt, min) {
  const v = query.get(name);
  if (v === null) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

function row(test, runs) {
  const tr = document.createElement('tr');
  for (const v of [test, median(runs), Math.min(...runs), Math.max(...runs), runs.length]) {
    const td = document.createElement('td');
    td.textContent = typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(1) : String(v);
    tr.append(td);
  }
  $('results').tBodies[0].append(tr);
  return { test, tokens_per_second: median(runs), min: Math.min(...runs), max: Math.max(...runs), reps: runs.length };
}

async function main() {
  const reps = count('reps', 3, 1);
  const threads = query.has('threads') ? count('threads', 1, 1) : undefined;
  const source = query.get('model') ?? config.model;
  const name = query.get('model') ?? config.name ?? 'default';
  const t0 = performance.now();
  const model = await loadModel(source, {
    threads,
    onProgress: (done, total) => {
      $('load-progress').value = total > 0 ? done / total : 0;
    },
  });
  const loadMs = performance.now() - t0;
  try {
    const ctx = model.contextLength;
    const pp = count('pp', Math.min(128, ctx), 0);
    const tg = count('tg', Math.min(32, ctx), 0);
    if (pp > ctx || tg > ctx) throw new Error(`pp and tg must be at most the context length ${ctx}`);
    const runner = model.runner;
    $('model').textContent = `${name} · ${runner.threads ?? 1} thread(s) · load ${(loadMs / 1000).toFixed(2)} s`;
    const onRep = (r) => {
      $('status').textContent = r < 0 ? 'Warming up…' : `Repetition ${r + 1} of ${reps}…`;
    };
    const runs = await measure(runner, { pp, tg, reps, onRep });
    const results = [];
    if (pp > 0) results.push(row(`pp${pp}`, runs.pp));
    if (tg > 0) results.push(row(`tg${tg}`, runs.tg));
    window.benchResult = {
      model: name,
      threads: runner.threads ?? 1,
      crossOriginIsolated: self.crossOriginIsolated,
      load_ms: loadMs,
      results,
    };
    $('status').textContent = 'Done.';
  } finally {
    await model.dispose();
  }
}

main().catch((e) => {
  $('status').textContent = `Failed: ${e.message}`;
  window.benchResult = { error: e.message };
});
