/**
 * Instructions a decode step executes, counted by valgrind's callgrind (repeatable on a busy host,
 * where wall and CPU times of a step vary by tens of per cent), split into the wasm kernels (code
 * V8 generated: callgrind names no symbol for it), V8's builtins (the interpreter's bytecode
 * handlers, inline caches, JS-to-wasm wrappers: the JavaScript of a step while V8 has not compiled
 * it), the garbage collector, and the rest (runtime C++, libc).
 *
 *   node dist/bench/run.js step-instructions [--model F] [--threads 1] [--steps 32,96] ROOT[@--v8flag,…] …
 *
 * Each variant runs twice under callgrind, with the smaller and the larger step count (one process
 * each: load, then that many single-token forwards from an empty cache, 64 a cache, as `mpt bench`'s
 * tg does); the difference over the extra steps is a step's count without the load. Node flags
 * after `@` (comma-separated) go to the measured process: `@--max-opt=0` keeps all JS in the
 * interpreter, the state of a process's first steps (docs/cpu-profile.md). Callgrind runs one
 * thread at a time and ~100× slower than native: 96 steps of the shipped model take 1-2 minutes.
 * The counts include the worker threads and V8's compiler threads; with the default flags, when
 * the compiler runs relative to the steps differs from a native run. The plain kernel build is
 * used unless MPT_WASM_DOT is set (the timed probe that chooses it is unreliable under callgrind).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadBuildRunner } from './build-runner.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const valued = new Set(['--model', '--steps', '--threads', '--child']);
const positional = argv.filter((a, i) => !a.startsWith('--') && !valued.has(argv[i - 1]!));
const model = opt('model', '/tmp/mpt-default-q4_0.gguf'),
  threads = Number(opt('threads', '1'));
const [few, many] = opt('steps', '32,96').split(',').map(Number) as [number, number];

/** The measured process: `n` decode steps, 64 a cache. */
async function child(root: string, n: number): Promise<void> {
  const runner = await loadBuildRunner(root, model, threads, 1);
  const V = runner.config.vocabSize;
  let s = 12345;
  const ids = Array.from({ length: 64 }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 1 + (s % (V - 1));
  });
  for (let done = 0; done < n; ) {
    const cache = runner.createCache({ capacity: 64 });
    for (let i = 0; i < 64 && done < n; i++, done++)
      await runner.forward([{ cache, tokens: [ids[i]!] }], { logits: 'last', reuseLogits: true });
    cache.dispose();
  }
  await runner.dispose();
}

type Kind = 'wasm kernels' | 'V8 builtins' | 'gc' | 'other';

function kindOf(symbol: string): Kind {
  if (/^\?\?\?:0x[0-9a-f]+ \[\?\?\?\]/.test(symbol)) return 'wasm kernels';
  if (/Scaveng|Mark|Sweep|Evacuat|Marking|RememberedSet|SlotSet|RecordWrite|LiveObject|BodyDescriptor/.test(symbol))
    return 'gc';
  if (symbol.includes('Builtins_')) return 'V8 builtins';
  return 'other';
}

/** Instructions by kind of one callgrind run of `n` steps. */
function counted(root: string, flags: string[], n: number, dir: string): Record<Kind, number> {
  const out = join(dir, `cg-${n}.out`);
  const script = fileURLToPath(import.meta.url);
  const run = spawnSync(
    'valgrind',
    [
      '--tool=callgrind',
      '--smc-check=all-non-file',
      `--callgrind-out-file=${out}`,
      process.execPath,
      ...flags,
      script,
      '--child',
      root,
      '--model',
      model,
      '--threads',
      String(threads),
      '--steps',
      String(n),
    ],
    // The kernel build is chosen by timing a probe (module-loader.ts), which callgrind's slowness
    // can flip from run to run: the plain build unless MPT_WASM_DOT says otherwise.
    { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, MPT_WASM_DOT: process.env.MPT_WASM_DOT ?? '0' } },
  );
  if (run.status !== 0) throw new Error(`valgrind failed (${run.status}): ${run.stderr.slice(-2000)}`);
  const ann = spawnSync('callgrind_annotate', ['--threshold=100', out], { encoding: 'utf8', maxBuffer: 1 << 28 });
  const by: Record<Kind, number> = { 'wasm kernels': 0, 'V8 builtins': 0, gc: 0, other: 0 };
  for (const line of ann.stdout.split('\n')) {
    const m = /^\s*([\d,]+) \([^)]*\)\s+(.*)$/.exec(line);
    if (!m || m[2]!.includes('PROGRAM TOTALS')) continue;
    by[kindOf(m[2]!)] += Number(m[1]!.replaceAll(',', ''));
  }
  return by;
}

if (argv.includes('--child')) await child(opt('child', '.'), Number(opt('steps', '64')));
else {
  if (positional.length < 1 || !(many > few)) {
    console.error('usage: step-instructions [--model F] [--threads N] [--steps FEW,MANY] ROOT[@flags] …');
    process.exit(2);
  }
  const results = [];
  for (const v of positional) {
    const [root, flags = ''] = v.split('@') as [string, string?];
    const dir = mkdtempSync(join(tmpdir(), 'step-instructions-'));
    try {
      const a = counted(root, flags ? flags.split(',') : [], few, dir),
        b = counted(root, flags ? flags.split(',') : [], many, dir);
      const perStep = Object.fromEntries(
        (Object.keys(a) as Kind[]).map((k) => [k, Math.round((b[k] - a[k]) / (many - few))]),
      );
      const total = Object.values(perStep).reduce((x, y) => x + y, 0);
      results.push({ variant: v, instructions_per_step: total, by_kind: perStep });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log(JSON.stringify({ benchmark: 'step-instructions', model, threads, steps: [few, many], results }, null, 1));
}
