/**
 * Per-step decode times of two (or more) builds, each in fresh processes run in turn (A B A B …),
 * so that the first steps of a process — where V8 still runs the executor's JS in its interpreter
 * and baseline tiers — are measured as a user's first generation meets them, and both builds meet
 * the same load on a shared host. Each process loads the model, then runs `--reps` + 1 repetitions
 * (the first is `mpt bench`'s untimed warm-up) of `--steps` single-token forwards from an empty
 * cache, as `mpt bench`'s tg does (runtime/bench-speed.ts), and reports every step's wall time
 * and the process's CPU time (all its threads; leaves out the time it waits for a core).
 *
 *   node dist/bench/run.js step-series [--model /tmp/mpt-default-q4_0.gguf] [--steps 64] [--reps 3]
 *       [--threads 2] [--rounds 4] [--pp N] [--json FILE] ROOT_A[#KEY=VALUE,…][@--v8flag,…] ROOT_B[…] …
 *
 * ROOT is a package folder holding a build (dist/): this worktree, or a copy of main's. A variant
 * may set environment variables of its processes after `#` (e.g. `.#MPT_WASM_LIGHT_PASS_MACS=0`,
 * comma-separated) and add Node/V8 flags after `@` (comma-separated). `--pp N`: as `mpt bench
 * --pp N`, the runner is loaded for N-row passes and each repetition starts with one N-token
 * prompt into an empty cache (untimed here) before its decode steps.
 *
 * Printed per variant, wall and CPU, medians over the processes: ms a step of the warm-up
 * repetition in blocks (steps 0-3, 4-7, 8-15, 16-31, 32-63), the mean step of each later
 * repetition, the median step of the later ones; and tok/s as `mpt bench` reports it. `--json`
 * keeps every step of every process.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadBuildRunner } from './build-runner.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const valued = new Set(['--model', '--steps', '--reps', '--threads', '--rounds', '--json', '--child', '--pp']);
const positional = argv.filter((a, i) => !a.startsWith('--') && !valued.has(argv[i - 1]!));
const model = opt('model', '/tmp/mpt-default-q4_0.gguf'),
  steps = Number(opt('steps', '64')),
  reps = Number(opt('reps', '3')),
  threads = Number(opt('threads', '2')),
  rounds = Number(opt('rounds', '4')),
  pp = Number(opt('pp', '0'));

/** One process's measurement: ms per step, per repetition (repetition 0 is the warm-up). */
type Series = number[][];
/** Wall time and the process's CPU time (all threads; leaves out waiting for a core) of each step. */
interface Run {
  wall: Series;
  cpu: Series;
  /** The light-pass chooser at the end of the process (light-share.ts), where the build has one. */
  light?: { sharing: boolean; probes: number; switches: number } | null;
}

async function child(root: string): Promise<void> {
  const runner = await loadBuildRunner(root, model, threads, Math.max(1, pp));
  const V = runner.config.vocabSize;
  let s = 12345;
  const ids = Array.from({ length: Math.max(steps, pp) }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 1 + (s % (V - 1));
  });
  const out: Series = [],
    cpuOut: Series = [];
  for (let r = 0; r <= reps; r++) {
    if (pp > 0) {
      const c = runner.createCache({ capacity: pp });
      await runner.forward([{ cache: c, tokens: ids.slice(0, pp) }], { logits: 'last' });
      c.dispose();
    }
    const cache = runner.createCache({ capacity: steps });
    const times: number[] = [],
      cpu: number[] = [];
    let t = performance.now(),
      c = process.cpuUsage();
    for (let i = 0; i < steps; i++) {
      await runner.forward([{ cache, tokens: [ids[i]!] }], { logits: 'last', reuseLogits: true });
      const now = performance.now(),
        cnow = process.cpuUsage();
      times.push(now - t);
      cpu.push((cnow.user - c.user + cnow.system - c.system) / 1000);
      t = now;
      c = cnow;
    }
    cache.dispose();
    out.push(times);
    cpuOut.push(cpu);
  }
  // Where the build chooses light passes' threads by measured times (light-share.ts): the way at the end.
  const chooser = (runner as { lightShare?: { sharing: boolean; counts: object } | null }).lightShare;
  const light = chooser ? { sharing: chooser.sharing, ...chooser.counts } : null;
  await runner.dispose();
  process.stdout.write(JSON.stringify({ wall: out, cpu: cpuOut, light }));
}

function median(a: number[]): number {
  const v = [...a].sort((x, y) => x - y);
  const m = v.length >> 1;
  return v.length % 2 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);

if (argv.includes('--child')) await child(opt('child', '.'));
else {
  if (positional.length < 1) {
    console.error('usage: step-series [--model F] [--steps N] [--reps N] [--threads N] [--rounds N] ROOT[@flags] …');
    process.exit(2);
  }
  const variants = positional.map((v) => {
    const [spec, flags = ''] = v.split('@') as [string, string?];
    const [root, settings = ''] = spec.split('#') as [string, string?];
    const env: Record<string, string> = {};
    for (const kv of settings.split(',').filter(Boolean)) {
      const [k, val = ''] = kv.split('=') as [string, string?];
      env[k] = val;
    }
    return { name: v, root, env, flags: flags ? flags.split(',') : [], runs: [] as Run[] };
  });
  const script = fileURLToPath(import.meta.url);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 ? [...variants].reverse() : variants;
    for (const v of order) {
      const r = spawnSync(
        process.execPath,
        [
          ...v.flags,
          script,
          '--child',
          v.root,
          '--model',
          model,
          '--steps',
          String(steps),
          '--reps',
          String(reps),
          '--threads',
          String(threads),
          '--pp',
          String(pp),
        ],
        { encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, ...v.env } },
      );
      if (r.status !== 0) throw new Error(`${v.name}: exit ${r.status}\n${r.stderr}`);
      v.runs.push(JSON.parse(r.stdout) as Run);
    }
  }
  const blocks = [
    [0, 4],
    [4, 8],
    [8, 16],
    [16, 32],
    [32, steps],
  ].filter(([a, b]) => a! < steps && b! > a!) as Array<[number, number]>;
  /** Per block of the warm-up repetition and per later repetition, the median over processes. */
  const summarise = (runs: Series[]) => ({
    warmup: blocks.map(([a, b]) => ({
      steps: `${a}-${Math.min(b, steps) - 1}`,
      ms: +median(runs.map((s) => sum(s[0]!.slice(a, b)) / (Math.min(b, steps) - a))).toFixed(3),
    })),
    /** Mean ms a step of each later repetition. */
    later: Array.from({ length: reps }, (_, r) => +median(runs.map((s) => sum(s[r + 1]!) / steps)).toFixed(3)),
    /** Median step of the later repetitions. */
    steady: +median(runs.map((s) => median(s.slice(1).flat()))).toFixed(3),
  });
  const report = variants.map((v) => ({
    variant: v.name,
    wall: summarise(v.runs.map((r) => r.wall)),
    cpu: summarise(v.runs.map((r) => r.cpu)),
    /** tok/s as mpt bench reports it (median of the repetitions), median over processes. */
    bench_tok_s: Math.round(median(v.runs.map((r) => median(r.wall.slice(1).map((t) => (1000 * steps) / sum(t)))))),
  }));
  console.log(
    `${model}, ${threads} thread(s), ${steps} steps${pp ? ` after a ${pp}-token prompt` : ''}, ${reps} reps after the warm-up, ${rounds} processes each (medians over processes)`,
  );
  for (const [i, r] of report.entries()) {
    const light = variants[i]!.runs.map((x) => x.light).filter((x) => x);
    const chooser = light.length
      ? ` | light passes at the end: ${light.map((x) => `${x!.sharing ? 'shared' : 'one thread'} (${x!.probes} probes, ${x!.switches} switches)`).join(', ')}`
      : '';
    console.log(`${r.variant}: as mpt bench ${r.bench_tok_s} tok/s${chooser}`);
    for (const k of ['wall', 'cpu'] as const) {
      const m = r[k];
      console.log(
        `  ${k.padEnd(4)} warm-up rep ms/step ${m.warmup.map((b) => `[${b.steps}] ${b.ms}`).join(' ')} | later reps ${m.later.join(' / ')} | median step ${m.steady}`,
      );
    }
  }
  const json = opt('json', '');
  if (json)
    writeFileSync(json, JSON.stringify({ model, steps, reps, threads, rounds, pp, report, runs: variants }, null, 1));
}
