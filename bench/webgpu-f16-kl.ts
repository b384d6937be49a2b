/**
 * What the WebGPU backend's f16 math option (`f16Math`, the adapter's `shader-f16`) costs in
 * quality: KL(P_f32 || P_f16math) of the next-token distributions at every position of held-out
 * text (data/tinystories/heldout.txt, the shipped tokenizer), and top-1 agreement, the same weights
 * loaded twice. Prints JSON. The shipped model, or random weights of a benchmark shape (as `mpt bench`):
 *
 *   node dist/bench/webgpu-f16-kl.js [MODEL] [--shape 1b --type bf16] [--tokens 128]
 *
 * Where the adapter has no shader-f16, says so (`f16: false`) and measures nothing.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadWebGpuRunner, type WebGpuRunner } from '../src/backends/webgpu/index.js';
import { SHAPES, shapeConfig } from '../src/cli/commands/bench.js';
import type { DType } from '../src/formats/tensor-source.js';
import type { MptConfig } from '../src/model/config.js';
import { openCheckpoint } from '../src/model/load.js';
import { randomTensorSource } from '../src/model/random-source.js';
import { loadTokenizer } from '../src/runtime/tokenizer-files.js';
import { klRows } from '../test/helpers/kl.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1]! : dflt);
const model = argv[0] && !argv[0].startsWith('--') ? argv[0] : null;
const nTokens = Number(opt('tokens', '128'));

const tok = (await loadTokenizer(join(root, 'models/default')))!;
const ids = tok.encode(readFileSync(join(root, 'data/tinystories/heldout.txt'), 'utf8')).slice(0, nTokens);

/** Loads the model with or without f16 math (each load its own device). */
async function load(f16Math: boolean): Promise<{ runner: WebGpuRunner; label: Record<string, string> }> {
  if (model) {
    const ck = await openCheckpoint(model);
    const runner = await loadWebGpuRunner(ck.config, ck.tensors, { f16Math });
    await ck.tensors.close();
    return { runner, label: { model } };
  }
  const shape = opt('shape', '1b'),
    type = opt('type', 'bf16');
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown --shape ${shape} (7b, 1b, tiny)`);
  const config: MptConfig = shapeConfig(s.d, s.heads, s.layers, s.vocab, Math.max(2048, nTokens + 8));
  return {
    runner: await loadWebGpuRunner(config, randomTensorSource(config, type as DType), { f16Math }),
    label: { shape, type },
  };
}

/** Logits of every position of the text. */
async function logits(runner: WebGpuRunner): Promise<Float32Array> {
  const cache = runner.createCache({ capacity: ids.length });
  const [o] = await runner.forward([{ cache, tokens: ids }], { logits: 'all' });
  cache.dispose();
  return o!.logits;
}

const f32 = await load(false);
const a = await logits(f32.runner);
const V = f32.runner.config.vocabSize;
await f32.runner.dispose();
const f16 = await load(true);
const report: Record<string, unknown> = {
  ...f32.label,
  device: f16.runner.gpu.adapterName,
  f16: f16.runner.gpu.f16,
  tokens: ids.length,
};
if (f16.runner.gpu.f16) {
  const b = await logits(f16.runner);
  const kl = klRows(a, b, ids.length, V);
  const top = (x: Float32Array, r: number) => {
    let best = 0;
    for (let i = 1; i < V; i++) if (x[r * V + i]! > x[r * V + best]!) best = i;
    return best;
  };
  let agree = 0;
  for (let r = 0; r < ids.length; r++) if (top(a, r) === top(b, r)) agree++;
  report.kl_mean = kl.reduce((s, x) => s + x, 0) / kl.length;
  report.kl_max = Math.max(...kl);
  report.top1_agreement = agree / ids.length;
} else report.note = 'this adapter has no shader-f16: run on a GPU';
await f16.runner.dispose();
console.log(JSON.stringify(report));
