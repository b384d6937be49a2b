/**
 * Training throughput for a fixed small config (`npm run bench -- train` once bench/run.ts
 * dispatches to it, or `node dist/bench/train.js [threads]`): d_model 256, 4 layers, 4 heads,
 * max_seq_len 256, batch 8 × 256 tokens, GPT-NeoX 50432-row tied embedding used compactly with
 * 5,117 live rows (as the default model's recipe trains), DecoupledLionW. Reports tokens/s of full
 * training steps (forward + backward + optimizer), wall and CPU time.
 */
import { pathToFileURL } from 'node:url';
import { bestKernels } from '../src/train/best-kernels.js';
import { jsKernels } from '../src/train/kernels.js';
import { compactVocab, TrainModel } from '../src/train/model.js';
import { parseMptConfig } from '../src/model/config.js';
import { Optimizer, optimizerConfig } from '../src/train/optim.js';

export interface TrainBenchResult {
  kernels: string;
  threads: number;
  config: string;
  tokens_per_step: number;
  steps: number;
  ms_per_step_wall: number;
  ms_per_step_cpu: number;
  tokens_per_s: number;
}

export async function runTrainBench(
  opts: { threads?: number; seconds?: number; js?: boolean } = {},
): Promise<TrainBenchResult> {
  const kernels = opts.js ? jsKernels() : await bestKernels(opts.threads);
  try {
    const cfg = parseMptConfig({
      d_model: 256,
      n_heads: 4,
      n_layers: 4,
      expansion_ratio: 4,
      max_seq_len: 256,
      vocab_size: 50432,
      no_bias: true,
      attn_config: { alibi: true },
    });
    const U = 5117,
      B = 8,
      T = 256;
    const used: number[] = [];
    for (let i = 0; i < U; i++) used.push(i);
    const model = new TrainModel(cfg, kernels, compactVocab(50432, used));
    model.initialize(1);
    const opt = new Optimizer(optimizerConfig('decoupled_lionw', { lr: 1e-4 }));
    const inputs = new Int32Array(B * T),
      targets = new Int32Array(B * T);
    for (let i = 0; i < B * T; i++) {
      inputs[i] = (i * 7919) % U;
      targets[i] = (i * 104729) % U;
    }
    const step = () => {
      model.zeroGrad();
      model.step({ inputs, targets, B, T }, 1 / (B * T), true);
      opt.step(model.params, 1e-4);
    };
    step();
    const minMs = (opts.seconds ?? 10) * 1000;
    let steps = 0;
    const c0 = process.cpuUsage(),
      t0 = performance.now();
    do {
      step();
      steps++;
    } while (performance.now() - t0 < minMs);
    const wall = (performance.now() - t0) / steps;
    const cu = process.cpuUsage(c0);
    return {
      kernels: kernels.name,
      threads: kernels.threads,
      config: 'd_model 256, 4 layers, 4 heads, seq 256, vocab 50432 (5117 live rows), batch 8',
      tokens_per_step: B * T,
      steps,
      ms_per_step_wall: Number(wall.toFixed(1)),
      ms_per_step_cpu: Number(((cu.user + cu.system) / 1000 / steps).toFixed(1)),
      tokens_per_s: Number(((B * T) / (wall / 1000)).toFixed(1)),
    };
  } finally {
    kernels.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const threads = process.argv[2] ? Number(process.argv[2]) : undefined;
  console.log(JSON.stringify(await runTrainBench({ threads }), null, 1));
  process.exit(0);
}
