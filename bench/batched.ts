/**
 * Batched decoding without a server (what llama.cpp's llama-batched-bench measures): B sequences
 * decode together, one forward call per step, for B = 1, 2, 4, 8, 16. Per B: the step time and
 * the aggregate tokens/s of the forward alone (logits read as reused views, as the server does),
 * then with each row's token chosen in the worker threads as the server has it chosen
 * (ForwardOptions.sample; temperature 1, no truncation: OpenAI's defaults, as the serve
 * benchmark), the sampling cost per token as the difference of the two, and the speed-up over
 * B = 1. Also the output matrix alone (single thread, random weights of the
 * model's type): it bounds what batching can give when it dominates the model, because one row
 * streams the matrix from memory while 8 rows are bound by multiply-adds.
 *
 *   node dist/bench/run.js batched [--model PATH] [--threads N] [--batch 1,2,4,8,16] [--steps 64] [--out FILE]
 */
import { writeFileSync } from 'node:fs';
import { loadModel } from '../src/runtime/model.js';
import { Sampler, chooseToken } from '../src/runtime/sampling.js';
import { runKernelBench } from './kernels.js';
import type { WeightType } from '../src/backends/wasm/kernels.js';

function arg(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
}

const argv = process.argv.slice(2);
const threads = arg(argv, 'threads') ? Number(arg(argv, 'threads')) : undefined;
const batches = (arg(argv, 'batch') ?? '1,2,4,8,16').split(',').map(Number);
const steps = Number(arg(argv, 'steps') ?? 64);
const model = await loadModel(arg(argv, 'model'), { backend: 'wasm', ...(threads ? { threads } : {}) });
const runner = model.runner;
const c = runner.config;
const prompt = model.tokenizer.encode('The history of the city begins with a small settlement by the river, where');

/** Mean step time, forward alone or with the tokens chosen in the workers. */
async function measure(B: number, sample: boolean): Promise<number> {
  const caches = Array.from({ length: B }, () => runner.createCache({ capacity: prompt.length + steps + 8 }));
  const samplers = Array.from(
    { length: B },
    (_, i) => new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, seed: i }),
  );
  try {
    const step = async (tokens: number[][]) => {
      const requests = sample ? samplers.map((s) => s.request()) : undefined;
      const out = await runner.forward(
        caches.map((cache, i) => ({ cache, tokens: tokens[i]! })),
        { logits: 'last', reuseLogits: true, sample: requests },
      );
      return out.map((o, i) => (requests ? (o.token ?? chooseToken(o.logits, requests[i]!)) : 100 + i));
    };
    let next = await step(caches.map(() => prompt));
    const warm = 4;
    let t0 = 0;
    for (let s = 0; s < steps + warm; s++) {
      if (s === warm) t0 = performance.now();
      next = await step(next.map((t, i) => [sample ? t : 100 + ((s + i) % 1000)]));
    }
    return (performance.now() - t0) / steps;
  } finally {
    for (const cc of caches) cc.dispose();
  }
}

const rows: Array<Record<string, number>> = [];
for (const B of batches) {
  const fwd = await measure(B, false);
  const sampled = await measure(B, true);
  rows.push({
    batch: B,
    forward_step_ms: +fwd.toFixed(3),
    forward_tokens_per_s: Math.round((B * 1000) / fwd),
    sampled_step_ms: +sampled.toFixed(3),
    sampling_ms_per_token: +(Math.max(0, sampled - fwd) / B).toFixed(3),
    sampled_tokens_per_s: Math.round((B * 1000) / sampled),
  });
}
const one = rows.find((r) => r.batch === 1);
if (one)
  for (const r of rows) {
    r.forward_speedup = +(r.forward_tokens_per_s! / one.forward_tokens_per_s!).toFixed(2);
    r.sampled_speedup = +(r.sampled_tokens_per_s! / one.sampled_tokens_per_s!).toFixed(2);
  }
const lmType = (runner as { layout?: { head: { lm: { type: WeightType } } } }).layout?.head.lm.type ?? 'f32';
const head = runKernelBench({ types: [lmType], K: c.dModel, N: c.vocabSize, M: 8 }).filter(
  (r) => r.kernel !== 'attention' && r.kernel !== 'read-bandwidth',
);
const m1 = head.find((r) => r.M === 1)!,
  m8 = head.find((r) => r.M === 8)!;
const report = {
  model: arg(argv, 'model') ?? 'default',
  threads: (runner as { threads?: number }).threads,
  d_model: c.dModel,
  n_layers: c.nLayers,
  vocab: c.vocabSize,
  steps,
  results: rows,
  output_matrix_single_thread: {
    type: lmType,
    rows: c.vocabSize,
    cols: c.dModel,
    m1_ms: +m1.ms_cpu.toFixed(3),
    m1_gbps: +(m1.gbps_cpu ?? 0).toFixed(1),
    m8_ms: +m8.ms_cpu.toFixed(3),
    m8_gflops: +m8.gflops_cpu.toFixed(1),
    batching_bound_8_vs_1: +((8 * m1.ms_cpu) / m8.ms_cpu).toFixed(2),
  },
};
await model.dispose();
const text = JSON.stringify(report, null, 1);
const out = arg(argv, 'out');
if (out) writeFileSync(out, text + '\n');
process.stdout.write(text + '\n');
