/**
 * Whether two builds give the same bits: one model loaded by each build (bench/build-runner.ts) in
 * one process, the same prompt and decode steps through both, every logit row compared bit for bit
 * (a change to a pass's schedule or a kernel's split must not move a logit).
 *
 *   node dist/bench/run.js logits-ab ROOT_A ROOT_B --model FILE [--threads 2] [--kv f32|f16|q8_0]
 *       [--prompt 5] [--steps 24] [--batch 1]
 *
 * --prompt N: an N-token prompt first (its last row compared), then --steps decode steps, each
 * token the previous step's greedy choice in build A. --batch B: B sequences decoded together (a
 * small pass of B rows), each with its own cache. Prints JSON; exits 1 when any bit differs.
 */
import type { KvCache, ModelRunner } from '../src/backends/backend.js';
import type { KvType } from '../src/backends/backend.js';
import { loadBuildRunner } from './build-runner.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const valued = new Set(['--model', '--threads', '--kv', '--prompt', '--steps', '--batch']);
const roots = argv.filter((a, i) => !a.startsWith('--') && !valued.has(argv[i - 1]!));
const model = opt('model', '');
if (roots.length !== 2 || !model)
  throw new Error(
    'usage: logits-ab ROOT_A ROOT_B --model FILE [--threads T] [--kv TYPE] [--prompt N] [--steps N] [--batch B]',
  );
const threads = Number(opt('threads', '2')),
  kvType = opt('kv', 'f32') as KvType,
  promptLength = Number(opt('prompt', '5')),
  steps = Number(opt('steps', '24')),
  batch = Number(opt('batch', '1'));

const runners: ModelRunner[] = [];
for (const root of roots) runners.push(await loadBuildRunner(root, model, threads, Math.max(promptLength, batch)));
const V = runners[0]!.config.vocabSize;
const caches: KvCache[][] = runners.map((r) =>
  Array.from({ length: batch }, () => r.createCache({ capacity: promptLength + steps + 1, kvType })),
);

let rows = 0,
  differing = 0,
  firstDiff: string | null = null;
/** Compares one forward call's logit rows of A and B bit for bit. */
function compare(what: string, a: Float32Array[], b: Float32Array[]): void {
  a.forEach((ra, i) => {
    const ua = new Uint32Array(ra.buffer, ra.byteOffset, ra.length),
      rb = b[i]!,
      ub = new Uint32Array(rb.buffer, rb.byteOffset, rb.length);
    rows++;
    for (let j = 0; j < ua.length; j++)
      if (ua[j] !== ub[j]) {
        differing++;
        firstDiff ??= `${what} row ${i} logit ${j}: ${ra[j]} against ${rb[j]}`;
        return;
      }
  });
}

const argmax = (x: Float32Array) => x.reduce((best, v, j) => (v > x[best]! ? j : best), 0);
let tokens = Array.from({ length: batch }, (_, s) =>
  Array.from({ length: promptLength }, (_, i) => 1 + ((s * 131 + i * 7919) % (V - 1))),
);
for (let step = -1; step < steps; step++) {
  if (step === -1 && promptLength === 0) {
    tokens = tokens.map((_, s) => [1 + s]);
    continue;
  }
  const outs: Float32Array[][] = [];
  for (const [ri, r] of runners.entries()) {
    const res = await r.forward(
      tokens.map((t, s) => ({ cache: caches[ri]![s]!, tokens: t })),
      { logits: 'last' },
    );
    outs.push(res.map((o) => o.logits.slice(o.logits.length - V)));
  }
  compare(step < 0 ? 'prompt' : `step ${step}`, outs[0]!, outs[1]!);
  tokens = outs[0]!.map((row) => [argmax(row)]);
}
for (const r of runners) await r.dispose();
console.log(
  JSON.stringify(
    { benchmark: 'logits-ab', roots, model, threads, kvType, promptLength, steps, batch, rows, differing, firstDiff },
    null,
    1,
  ),
);
if (differing) process.exitCode = 1;
