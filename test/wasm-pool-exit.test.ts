// An idle wasm pool does not keep Node's process alive, even when some of its workers never took
// part in a pass (a 2-thread pool whose passes are all light runs them on the calling thread:
// pass-tuning.ts lightPassMacs): a script that loads a model, runs a step and never disposes the
// runner still exits.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

test('a script that never disposes a 2-thread runner exits after its light and shared passes', () => {
  const index = new URL('../src/backends/wasm/index.js', import.meta.url).href;
  const bench = new URL('../src/cli/commands/bench.js', import.meta.url).href;
  const dir = mkdtempSync(join(tmpdir(), 'mpt-pool-exit-'));
  for (const light of ['', '0']) {
    const script = `
      const { loadRandomModel } = await import(${JSON.stringify(index)});
      const { shapeConfig } = await import(${JSON.stringify(bench)});
      const r = await loadRandomModel(shapeConfig(64, 2, 2, 512, 64), { type: 'q8_0', threads: 2, maxRows: 4 });
      const cache = r.createCache({ capacity: 8 });
      await r.forward([{ cache, tokens: [3] }], { logits: 'last' });
      console.log('threads', r.lastPassThreads);`;
    const file = join(dir, 'run.mjs');
    writeFileSync(file, script);
    const out = spawnSync(process.execPath, [file], {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, MPT_WASM_LIGHT_PASS_MACS: light },
    });
    assert.equal(out.signal, null, `still running after 60 s (light passes ${light || 'default'}): ${out.stderr}`);
    assert.equal(out.status, 0, out.stderr);
    assert.match(out.stdout, light === '0' ? /threads 2/ : /threads 1/);
  }
  rmSync(dir, { recursive: true, force: true });
});
