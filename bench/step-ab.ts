/**
 * Decode steps of two builds in one process, blocks of steps taken in turn (A B, then B A, …), so
 * that both meet the same load on a shared host: per block, ms a step of wall time, of CPU time
 * (all the process's threads), the threads' sleeps (voluntary context switches, Linux /proc), and
 * the calling thread's own time on a core and waiting for one (/proc schedstat). Where a build runs
 * light passes with the calling thread as thread 0 (pool.ts), its time on a core is the step's
 * critical path less the waits a quiet machine would not have.
 *
 *   node dist/bench/run.js step-ab ROOT_A ROOT_B [--model /tmp/mpt-default-q4_0.gguf] [--threads 2]
 *       [--steps 64] [--rounds 16]
 *
 * ROOT is a package folder holding a build (dist/): this worktree, or a copy of main's. The first
 * 3 rounds are warm-up. Printed per build: p10 / p50 over the blocks.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { loadBuildRunner } from './build-runner.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const valued = new Set(['--model', '--threads', '--steps', '--rounds']);
const roots = argv.filter((a, i) => !a.startsWith('--') && !valued.has(argv[i - 1]!));
if (roots.length !== 2)
  throw new Error('usage: step-ab ROOT_A ROOT_B [--model F] [--threads T] [--steps N] [--rounds R]');
const model = opt('model', '/tmp/mpt-default-q4_0.gguf'),
  threads = Number(opt('threads', '2')),
  steps = Number(opt('steps', '64')),
  rounds = Number(opt('rounds', '16'));
const WARM_ROUNDS = 3;

/** Voluntary context switches of every thread of this process so far. */
function sleeps(): number {
  let n = 0;
  for (const t of readdirSync('/proc/self/task')) {
    try {
      n += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/self/task/${t}/status`, 'utf8'))?.[1]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return n;
}

/** The calling thread's ms on a core and ms waiting for one so far (/proc schedstat). */
function mainSched(): [number, number] {
  const [run, wait] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ');
  return [Number(run) / 1e6, Number(wait) / 1e6];
}

const runners = [await loadBuildRunner(roots[0]!, model, threads), await loadBuildRunner(roots[1]!, model, threads)];
const V = runners[0]!.config.vocabSize;
let seed = 12345;
const ids = Array.from({ length: steps }, () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return 1 + (seed % (V - 1));
});
const columns = ['wall', 'cpu', 'sleeps', 'main on cpu', 'main waiting for a core'] as const;
const blocks = runners.map(() => columns.map(() => [] as number[]));
for (let round = 0; round < rounds; round++) {
  for (const v of round % 2 ? [1, 0] : [0, 1]) {
    const r = runners[v]!;
    const cache = r.createCache({ capacity: steps });
    const s0 = sleeps(),
      [m0, q0] = mainSched(),
      c0 = process.cpuUsage(),
      t0 = performance.now();
    for (let i = 0; i < steps; i++)
      await r.forward([{ cache, tokens: [ids[i]!] }], { logits: 'last', reuseLogits: true });
    const t1 = performance.now(),
      c1 = process.cpuUsage(),
      [m1, q1] = mainSched(),
      s1 = sleeps();
    cache.dispose();
    if (round < WARM_ROUNDS) continue;
    const cpu = (c1.user - c0.user + c1.system - c0.system) / 1000;
    for (const [j, x] of [t1 - t0, cpu, s1 - s0, m1 - m0, q1 - q0].entries()) blocks[v]![j]!.push(x / steps);
  }
}
const quantile = (a: number[], p: number) =>
  [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(p * a.length))]!;
console.log(
  `${model}, ${threads} thread(s), blocks of ${steps} steps, ${rounds - WARM_ROUNDS} per build; ms a step (sleeps: count), p10 / p50`,
);
roots.forEach((root, v) => {
  const cells = columns.map((c, j) => {
    const b = blocks[v]![j]!;
    return `${c} ${quantile(b, 0.1).toFixed(3)} / ${quantile(b, 0.5).toFixed(3)}`;
  });
  console.log(`${root}: ${cells.join(' | ')} | tok/s p50 ${(1000 / quantile(blocks[v]![0]!, 0.5)).toFixed(0)}`);
});
for (const r of runners) await r.dispose();
