/**
 * Where a pass's time goes, per operation: one decode step and one prompt chunk of a random-weight
 * model of a bench shape (default the 1B shape in q4_0, 2 threads), timed inside the workers by the
 * team's opt-in profile (team.ts PROFILE, switched on here with MPT_WASM_PROFILE=1).
 *
 *   node dist/bench/run.js profile [--shape 1b | --model PATH] [--type q4_0] [--threads 2] [--steps 32] [--chunk 128] [--reps 3]
 *
 * --model loads a checkpoint (HF folder or GGUF; --type converts its matrices as `mpt bench` does).
 *
 * Per operation kind, summed over the layers, in ms per pass and averaged over the threads:
 * `work` (the thread's share of the parallel operation), `wait` (at its closing barrier: load
 * imbalance and the barrier itself), `before` (the thread's own steps between the previous
 * parallel operation and this one: in decode passes each thread norms and quantizes the rows
 * itself, executor.ts). `outside_passes` is the main thread's time per forward call that no worker
 * spends in a pass (the runner's JS, waking the workers and learning that they finished).
 *
 * The names follow executor.ts's order of parallel operations for an MPT without GLU, qk_ln or
 * learned positions (the bench shapes); the op count of the pass is checked against it. A
 * decode step whose layers run on thread 0 alone (executor.ts SOLO_LAYER_MACS) has two rows:
 * the layers (thread 0's work, the others' wait) and the output matrix.
 */
import { shapeConfig } from '../src/cli/commands/bench.js';
import type { WeightType } from '../src/backends/wasm/kernels.js';
import { PRIVATE_ROWS } from '../src/backends/wasm/layout.js';

const SHAPES: Record<string, [number, number, number]> = {
  '7b': [4096, 32, 32],
  '1b': [2048, 16, 24],
  tiny: [256, 4, 2],
};

/** (name of the parallel operation, name of the thread's own steps before it) per layer. */
const SMALL_LAYER: Array<[string, string]> = [
  ['qkv matmul', 'norm_1 + quantize (own rows)'],
  ['attention', 'qkv copy + store K/V (own rows; none where the qkv items store them)'],
  ['out_proj matmul', 'quantize ctx (own rows)'],
  ['up_proj matmul + GELU', 'norm_2 + quantize (own rows)'],
  ['down_proj matmul', 'quantize hidden (own rows; none where the up_proj items quantize)'],
];
const WIDE_LAYER: Array<[string, string]> = [
  ['norm_1 + quantize', 'between ops'],
  ['qkv matmul', 'between ops'],
  ['qkv post + store K/V', 'between ops'],
  ['attention', 'between ops'],
  ['quantize ctx', 'between ops'],
  ['out_proj matmul', 'between ops'],
  ['norm_2 + quantize', 'between ops'],
  ['up_proj matmul + GELU', 'between ops'],
  ['quantize hidden', 'between ops'],
  ['down_proj matmul', 'between ops'],
];
/** The same where the up_proj items quantize the hidden values they made (executor.ts, itemsOn). */
const WIDE_LAYER_FUSED = WIDE_LAYER.filter(([op]) => op !== 'quantize hidden').map(([op, before]): [string, string] => [
  op === 'up_proj matmul + GELU' ? 'up_proj matmul + GELU + quantize' : op,
  before,
]);
const HEAD: [string, string] = ['lm_head matmul', 'norm_f + quantize (own rows)'];
/** Every layer of a decode step on thread 0 alone: its work, and the others' wait for it. */
const SOLO_LAYERS: [string, string] = ['layers (thread 0 alone)', 'before the layers'];

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const model = opt('model', ''),
  shape = opt('shape', '1b'),
  type = opt('type', 'q4_0') as WeightType,
  threads = Number(opt('threads', '2')),
  steps = Number(opt('steps', '32')),
  chunk = Number(opt('chunk', '128')),
  reps = Number(opt('reps', '3'));
const s = SHAPES[shape];
if (!s) throw new Error(`unknown --shape ${shape} (7b, 1b, tiny)`);

process.env['MPT_WASM_PROFILE'] = '1';
const { loadRandomModel } = await import('../src/backends/wasm/index.js');
const { loadWasmRunner } = await import('../src/backends/wasm/index.js');
const { openCheckpoint } = await import('../src/model/load.js');
let runner: Awaited<ReturnType<typeof loadRandomModel>>;
if (model) {
  const ck = await openCheckpoint(model);
  const weightType = (argv.includes('--type') ? type : 'auto') as never;
  runner = await loadWasmRunner(ck.config, ck.tensors, { threads, weightType, maxRows: Math.max(chunk, 1) });
  await ck.tensors.close();
} else {
  const config = shapeConfig(s[0], s[1], s[2], shape === 'tiny' ? 1024 : 50432, 4096);
  runner = await loadRandomModel(config, { type: type as never, threads, maxRows: Math.max(chunk, 1) });
}
const config = runner.config;
if (config.ffn.ffnType !== 'mptmlp' || config.attn.qkLn || config.learnedPosEmb)
  throw new Error('the table names the operations of an MPT without GLU, qk_ln or learned positions');
const prof = runner.opProfile();
if (!prof) throw new Error('internal: the pool was started without its profile buffer');

interface Row {
  op: string;
  work_ms: number;
  wait_ms: number;
  before_ms: number;
  share: number;
}

/** Runs `go` `n` times after one untimed warm-up, profiled; returns the table per pass. */
async function phase(
  n: number,
  go: () => Promise<void>,
  layer: Array<[string, string]>,
  first: Array<[string, string]>,
) {
  await go();
  for (const p of prof!) p.fill(0);
  let wall = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await go();
    wall += performance.now() - t0;
  }
  const used = prof!.filter((p) => p[0]! > 0);
  const ops = used[0]![1]!;
  // A decode step whose layers are light runs them on thread 0 alone (executor.ts
  // SOLO_LAYER_MACS): one solo region, then the output matrix.
  const layers = (l: Array<[string, string]>) => [
    ...first,
    ...Array.from({ length: config.nLayers }, () => l).flat(),
    HEAD,
  ];
  const names =
    layer === SMALL_LAYER && used.length > 1 && ops === 2
      ? [SOLO_LAYERS, HEAD]
      : layer === WIDE_LAYER && ops === layers(WIDE_LAYER_FUSED).length
        ? layers(WIDE_LAYER_FUSED)
        : layers(layer);
  if (ops !== names.length) throw new Error(`a pass had ${ops} parallel operations, this table names ${names.length}`);
  const acc = new Map<string, { work: number; wait: number; before: number }>();
  const add = (name: string, key: 'work' | 'wait' | 'before', v: number) => {
    const e = acc.get(name) ?? { work: 0, wait: 0, before: 0 };
    e[key] += v;
    acc.set(name, e);
  };
  let span = 0;
  for (const p of used) {
    const passes = p[0]!;
    let mine = 0;
    names.forEach(([op, before], i) => {
      const [b, w, x] = [p[2 + 3 * i]!, p[3 + 3 * i]!, p[4 + 3 * i]!].map((v) => v / passes / used.length) as [
        number,
        number,
        number,
      ];
      add(op, 'work', w);
      add(op, 'wait', x);
      add(before, 'before', b);
      mine += (b + w + x) * used.length;
    });
    span = Math.max(span, mine);
  }
  const perPass = wall / n;
  const rows: Row[] = [...acc].map(([op, e]) => ({
    op,
    work_ms: +e.work.toFixed(3),
    wait_ms: +e.wait.toFixed(3),
    before_ms: +e.before.toFixed(3),
    share: +((e.work + e.wait + e.before) / perPass).toFixed(3),
  }));
  rows.sort((a, b) => b.share - a.share);
  return {
    wall_ms_per_pass: +perPass.toFixed(3),
    pass_span_ms: +span.toFixed(3),
    outside_passes_ms: +(perPass - span).toFixed(3),
    threads_in_pass: used.length,
    rows,
  };
}

const V = config.vocabSize;
let tok = 1;
{
  // As in `mpt bench` (its warm-up repetition): the cache's memory written once before the timed
  // steps. A region's first writes fault its pages in (a 1B step stores 96 new 4 KiB pages of K/V,
  // ~20 µs each on the project's VM: 1.5-2 ms a step, inside "qkv copy + store K/V").
  const warm = runner.createCache({ capacity: steps + 2 });
  for (let i = 0; i < steps + 2; i++) await runner.forward([{ cache: warm, tokens: [1 + i] }], { logits: 'last' });
  warm.dispose();
}
const decodeCache = runner.createCache({ capacity: steps + 2 });
const decode = await phase(
  steps,
  async () => {
    // As generation and `mpt bench` call it: the logits row reused, not a new array a step.
    const [out] = await runner.forward([{ cache: decodeCache, tokens: [tok] }], { logits: 'last', reuseLogits: true });
    tok = 1 + (out!.logits.indexOf(Math.max(...out!.logits.subarray(0, 256))) % (V - 1));
  },
  SMALL_LAYER,
  [],
);
decodeCache.dispose();
const ids = Array.from({ length: chunk }, (_, i) => 1 + ((i * 7919) % (V - 1)));
const prompt =
  chunk > PRIVATE_ROWS
    ? await phase(
        reps,
        async () => {
          const c = runner.createCache({ capacity: chunk });
          await runner.forward([{ cache: c, tokens: ids }], { logits: 'last' });
          c.dispose();
        },
        WIDE_LAYER,
        [['embedding', 'between ops']],
      )
    : null;
await runner.dispose();
console.log(
  JSON.stringify(
    {
      benchmark: 'profile',
      ...(model ? { model } : { shape }),
      type: model && !argv.includes('--type') ? 'as stored' : type,
      threads,
      note: 'ms per pass, averaged over the threads; timings on a shared host vary ±30 %',
      decode_step: { steps, past: `0..${steps}`, ...decode },
      ...(prompt ? { prompt_chunk: { tokens: chunk, reps, ...prompt } } : {}),
    },
    null,
    1,
  ),
);
