/**
 * Decode steps (or prompt chunks) of two or more variants in one process, blocks taken in turn
 * (A B, then B A, …), so that all meet the same load on a shared host: per block, ms a step of wall
 * time, of CPU time (all the process's threads), the threads' sleeps (voluntary context switches,
 * Linux /proc; all threads, and the calling thread's own), and the calling thread's own time on a core and waiting for one (/proc schedstat).
 * Where a build runs light passes with the calling thread as thread 0 (pool.ts), its time on a core
 * is the step's critical path less the waits a quiet machine would not have.
 *
 *   node dist/bench/run.js step-ab VARIANT VARIANT… [--model /tmp/mpt-default-q4_0.gguf] [--threads 2]
 *       [--steps 64] [--rounds 16] [--pp N]
 *
 * VARIANT is ROOT or ROOT#KEY=VALUE,KEY=VALUE: ROOT a package folder holding a build (dist/): this
 * worktree, or a copy of main's; `threads=N` sets that variant's thread count, any other KEY an
 * environment variable set while its runner starts (the pool reads its MPT_WASM_* switches then),
 * e.g. `. .#MPT_WASM_MAIN_THREAD=0` or `.#threads=1 .#threads=2`. `--pp N`: each step is one
 * N-token prompt chunk into an empty cache instead of a decode row. The first 3 rounds are
 * warm-up. Printed per variant: p10 / p50 over the blocks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { ModelRunner } from '../src/backends/backend.js';
import { loadBuildRunner } from './build-runner.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const valued = new Set(['--model', '--threads', '--steps', '--rounds', '--pp']);
const specs = argv.filter((a, i) => !a.startsWith('--') && !valued.has(argv[i - 1]!));
if (specs.length < 2)
  throw new Error('usage: step-ab VARIANT VARIANT… [--model F] [--threads T] [--steps N] [--rounds R] [--pp N]');
const model = opt('model', '/tmp/mpt-default-q4_0.gguf'),
  threads = Number(opt('threads', '2')),
  pp = Number(opt('pp', '0')),
  steps = Number(opt('steps', pp ? '1' : '64')),
  rounds = Number(opt('rounds', '16'));
const WARM_ROUNDS = 3;

/** Voluntary context switches of one thread (a task id) so far: 0 for a thread that ended. */
function sleepsOf(task: string): number {
  try {
    return Number(
      /^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/self/task/${task}/status`, 'utf8'))?.[1],
    );
  } catch {
    return 0;
  }
}

/** Voluntary context switches so far: of every thread of this process, and of the calling thread. */
function sleeps(): [number, number] {
  let n = 0;
  for (const t of readdirSync('/proc/self/task')) n += sleepsOf(t);
  return [n, sleepsOf(String(process.pid))];
}

/** The calling thread's ms on a core and ms waiting for one so far (/proc schedstat). */
function mainSched(): [number, number] {
  const [run, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ');
  return [Number(run) / 1e6, Number(wait) / 1e6];
}

/** Starts a variant's runner with its environment variables set (restored afterwards). */
async function load(spec: string): Promise<ModelRunner> {
  const [root, settings = ''] = spec.split('#') as [string, string?];
  let t = threads;
  const saved = new Map<string, string | undefined>();
  for (const kv of settings.split(',').filter(Boolean)) {
    const [k, v = ''] = kv.split('=') as [string, string?];
    if (k === 'threads') t = Number(v);
    else {
      saved.set(k, process.env[k]);
      process.env[k] = v;
    }
  }
  try {
    return await loadBuildRunner(root, model, t, Math.max(1, pp));
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

const runners: ModelRunner[] = [];
for (const s of specs) runners.push(await load(s));
const V = runners[0]!.config.vocabSize;
let seed = 12345;
const ids = Array.from({ length: Math.max(steps, pp) }, () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return 1 + (seed % (V - 1));
});
const columns = ['wall', 'cpu', 'sleeps', 'main sleeps', 'main on cpu', 'main waiting for a core'] as const;
const blocks = runners.map(() => columns.map(() => [] as number[]));
for (let round = 0; round < rounds; round++) {
  const order = runners.map((_, v) => v);
  if (round % 2) order.reverse();
  for (const v of order) {
    const r = runners[v]!;
    const cache = pp ? null : r.createCache({ capacity: steps });
    const [s0, z0] = sleeps(),
      [m0, q0] = mainSched(),
      c0 = process.cpuUsage(),
      t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      if (cache) await r.forward([{ cache, tokens: [ids[i]!] }], { logits: 'last', reuseLogits: true });
      else {
        const c = r.createCache({ capacity: pp });
        await r.forward([{ cache: c, tokens: ids.slice(0, pp) }], { logits: 'last' });
        c.dispose();
      }
    }
    const t1 = performance.now(),
      c1 = process.cpuUsage(),
      [m1, q1] = mainSched(),
      [s1, z1] = sleeps();
    cache?.dispose();
    if (round < WARM_ROUNDS) continue;
    const cpu = (c1.user - c0.user + c1.system - c0.system) / 1000;
    for (const [j, x] of [t1 - t0, cpu, s1 - s0, z1 - z0, m1 - m0, q1 - q0].entries()) blocks[v]![j]!.push(x / steps);
  }
}
const quantile = (a: number[], p: number) =>
  [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]!;
const unit = pp ? `${pp}-token prompt chunks` : 'decode steps';
console.log(
  `${model}, ${threads} thread(s), blocks of ${steps} ${unit}, ${rounds - WARM_ROUNDS} per variant; ms a step (sleeps: count), p10 / p50`,
);
specs.forEach((spec, v) => {
  const cells = columns.map((c, j) => {
    const b = blocks[v]![j]!;
    return `${c} ${quantile(b, 0.1).toFixed(3)} / ${quantile(b, 0.5).toFixed(3)}`;
  });
  const rate = ((pp || 1) * 1000) / quantile(blocks[v]![0]!, 0.5);
  console.log(`${spec}: ${cells.join(' | ')} | tok/s p50 ${rate.toFixed(0)}`);
});
for (const r of runners) await r.dispose();
