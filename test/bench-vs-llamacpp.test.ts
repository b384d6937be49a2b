// bench/vs-llamacpp.ts without running a benchmark: argument parsing, the missing-llama-bench
// error, and a whole run against two recorded stand-ins (a fake llama-bench printing what the real
// one prints with -o json, a fake `mpt` printing what `mpt bench --json` prints), checking the
// arguments each received, the alternation of the engines and the ratio arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VsUsageError, defaultLlamaBench, parseVsArgs, runVs, summarize, withoutHome } from '../bench/vs-llamacpp.js';

test('vs-llamacpp: defaults, flags and usage errors', () => {
  const o = parseVsArgs(['a.gguf', 'b.gguf'], '/home/u');
  assert.deepEqual(o.files, ['a.gguf', 'b.gguf']);
  assert.deepEqual([o.threads, o.pp, o.tg, o.reps, o.rounds], [2, 128, 64, 3, 2]);
  assert.equal(o.llamaBench, '/home/u/.cache/llama.cpp-native/src/build/bin/llama-bench');
  assert.equal(o.llamaBench, defaultLlamaBench('/home/u'));
  const p = parseVsArgs(['x.gguf', '--threads', '4', '--pp', '0', '--rounds', '3', '--llama-bench', '/opt/lb']);
  assert.deepEqual([p.threads, p.pp, p.tg, p.rounds, p.llamaBench], [4, 0, 64, 3, '/opt/lb']);
  assert.throws(() => parseVsArgs([]), VsUsageError);
  assert.throws(() => parseVsArgs(['x', '--threads', '0']), /--threads must be an integer >= 1/);
  assert.throws(() => parseVsArgs(['x', '--tg', '1.5']), /--tg must be an integer/);
  assert.throws(() => parseVsArgs(['x', '--pp', '0', '--tg', '0']), /nothing to measure/);
  assert.throws(() => parseVsArgs(['x', '--bogus', '1']), /unknown option --bogus/);
  assert.throws(() => parseVsArgs(['x', '--reps']), /needs a value/);
});

test('vs-llamacpp: a missing llama-bench names the build script', async () => {
  const o = parseVsArgs(['x.gguf', '--llama-bench', '/nonexistent/llama-bench', '--no-bandwidth']);
  await assert.rejects(runVs(o), /build-llama-bench\.sh.*--llama-bench PATH/s);
});

test('vs-llamacpp: medians and ratios per test; a test one engine lacks is left out', () => {
  const s = summarize(
    ['m.gguf'],
    [
      [{ mpt: { pp: 60, tg: 30 }, llamacpp: { pp: 150, tg: 40 } }],
      [{ mpt: { pp: 66, tg: 27 }, llamacpp: { pp: 165 } }],
    ],
    128,
    64,
  );
  const [pp, tg] = s[0]!.tests;
  assert.equal(pp!.test, 'pp128');
  assert.equal(pp!.mpt_median, 63);
  assert.equal(pp!.llamacpp_median, 157.5);
  assert.equal(pp!.ratio, Math.round((63 / 157.5) * 1000) / 1000);
  assert.deepEqual(pp!.ratio_range, [0.4, 0.4]);
  assert.deepEqual(tg!.mpt, [30]); // round 2 has no llama.cpp tg: that pair is dropped
  assert.equal(tg!.ratio, 0.75);
});

/** What llama-bench 0.23 prints with -o json for -p 128 -n 64 (values of a recorded run, trimmed). */
const llamaRecord = (pp: number, tg: number) =>
  JSON.stringify(
    [
      [pp, 0, 170.4],
      [0, tg, 40.5],
    ].map(([np, ng, ts]) => ({
      build_commit: 'abc1234',
      build_number: 6000,
      cpu_info: 'AMD EPYC',
      gpu_info: '',
      backends: 'CPU',
      model_filename: 'x.gguf',
      model_type: 'mpt 1B Q4_0',
      n_threads: 2,
      n_prompt: np,
      n_gen: ng,
      avg_ns: 1e9,
      stddev_ns: 1e6,
      avg_ts: ts,
      stddev_ts: 0.5,
      samples_ts: [ts, ts, ts],
    })),
    null,
    2,
  );

test('vs-llamacpp: a whole run against recorded stand-ins alternates the engines and saves the ratios', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vs-llamacpp-'));
  try {
    const calls = join(dir, 'calls.log');
    const llama = join(dir, 'llama-bench');
    writeFileSync(
      llama,
      `#!${process.execPath}\nconst fs = require('node:fs');\nfs.appendFileSync(${JSON.stringify(calls)}, 'llama ' + process.argv.slice(2).join(' ') + '\\n');\nconsole.error('llama_model_loader: log lines go to stderr');\nconsole.log(${JSON.stringify(llamaRecord(32, 8))});\n`,
    );
    chmodSync(llama, 0o755);
    const mpt = join(dir, 'mpt.cjs');
    writeFileSync(
      mpt,
      `const fs = require('node:fs');\nfs.appendFileSync(${JSON.stringify(calls)}, 'mpt ' + process.argv.slice(2).join(' ') + '\\n');\nconsole.log(JSON.stringify({ results: [{ test: 'pp32', tokens_per_second: 85.2 }, { test: 'tg8', tokens_per_second: 20.25 }] }));\n`,
    );
    const model = join(dir, 'm.gguf');
    writeFileSync(model, 'GGUF');
    const out = join(dir, 'results', 'r.json');
    const o = parseVsArgs([model, '--pp', '32', '--tg', '8', '--reps', '2', '--rounds', '2', '--threads', '1']);
    Object.assign(o, { llamaBench: llama, mpt, out, bandwidth: false });
    const report = await runVs(o);
    const lines = readFileSync(calls, 'utf8').trim().split('\n');
    assert.deepEqual(lines, [
      `mpt bench ${model} --pp 32 --tg 8 --reps 2 --threads 1 --json`,
      `llama -m ${model} -p 32 -n 8 -r 2 -t 1 -o json`,
      `llama -m ${model} -p 32 -n 8 -r 2 -t 1 -o json`,
      `mpt bench ${model} --pp 32 --tg 8 --reps 2 --threads 1 --json`,
    ]);
    const saved = JSON.parse(readFileSync(out, 'utf8'));
    assert.deepEqual(saved, JSON.parse(JSON.stringify(report)));
    assert.equal(saved.llamacpp.build, 'abc1234 (6000)');
    assert.equal(saved.machine.cores > 0, true);
    const [pp, tg] = saved.results[0].tests;
    assert.deepEqual([pp.test, pp.mpt, pp.llamacpp, pp.ratio], ['pp32', [85.2, 85.2], [170.4, 170.4], 0.5]);
    assert.deepEqual([tg.test, tg.ratio], ['tg8', 0.5]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('vs-llamacpp: a saved result writes the home folder as ~', () => {
  assert.equal(withoutHome('/home/u/.cache/llama.cpp-native/x', '/home/u'), '~/.cache/llama.cpp-native/x');
  assert.equal(withoutHome('/home/user2/bin/llama-bench', '/home/u'), '/home/user2/bin/llama-bench');
  assert.equal(withoutHome('/opt/llama-bench', '/home/u'), '/opt/llama-bench');
});
