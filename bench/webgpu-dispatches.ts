/**
 * What one WebGPU decode step encodes (runner.stats): dispatches, submissions and reads of each
 * weight matrix, for one sequence and for several decoding together; and the same for a prompt.
 * Prints JSON. A model path, or random weights of a benchmark shape (as `mpt bench`):
 *
 *   node dist/bench/webgpu-dispatches.js [MODEL] [--shape 1b --type bf16] [--sequences 4] [--prompt 512]
 */
import { loadWebGpuRunner, type WebGpuRunner } from '../src/backends/webgpu/index.js';
import { SHAPES, shapeConfig } from '../src/cli/commands/bench.js';
import type { DType } from '../src/formats/tensor-source.js';
import { openCheckpoint } from '../src/model/load.js';
import { randomTensorSource } from '../src/model/random-source.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1]! : dflt);
const model = argv[0] && !argv[0].startsWith('--') ? argv[0] : null;
const sequences = Number(opt('sequences', '4'));
const prompt = Number(opt('prompt', '512'));

let runner: WebGpuRunner;
let label: Record<string, string>;
if (model) {
  const ck = await openCheckpoint(model);
  runner = await loadWebGpuRunner(ck.config, ck.tensors);
  await ck.tensors.close();
  label = { model };
} else {
  const shape = opt('shape', '1b'),
    type = opt('type', 'q4_0');
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown --shape ${shape} (7b, 1b, tiny)`);
  const config = shapeConfig(s.d, s.heads, s.layers, s.vocab, Math.max(4096, prompt + 8));
  runner = await loadWebGpuRunner(config, randomTensorSource(config, type as DType));
  label = { shape, type };
}

/** Stats of one forward call of `tokens` tokens for each of `n` sequences, after `before` tokens each. */
async function measure(n: number, before: number, tokens: number) {
  const caches = Array.from({ length: n }, () => runner.createCache({ capacity: before + tokens + 1 }));
  const ids = (k: number, from: number) => Array.from({ length: k }, (_, i) => from + i);
  if (before > 0)
    await runner.forward(
      caches.map((cache) => ({ cache, tokens: ids(before, 1) })),
      { logits: 'none' },
    );
  runner.resetStats();
  await runner.forward(
    caches.map((cache) => ({ cache, tokens: ids(tokens, 7) })),
    { logits: 'last' },
  );
  const s = runner.stats;
  for (const c of caches) c.dispose();
  const reads = [...s.matrixReads.values()];
  return {
    sequences: n,
    tokens_each: tokens,
    submissions: s.submissions,
    dispatches: s.dispatches,
    matrices: reads.length,
    max_reads_per_matrix: Math.max(...reads),
  };
}

try {
  const L = runner.config.nLayers;
  const one = await measure(1, 4, 1);
  console.log(
    JSON.stringify({
      ...label,
      device: runner.gpu.adapterName,
      subgroups: runner.gpu.subgroups,
      layers: L,
      max_rows: runner.maxRows,
      decode_step: one,
      bound: 8 * L + 4,
      decode_step_batched: await measure(sequences, 4, 1),
      prompt: await measure(1, 0, prompt),
    }),
  );
} finally {
  await runner.dispose();
}
