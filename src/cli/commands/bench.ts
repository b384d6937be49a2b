/**
 * `mpt bench`: prompt processing (pp) and token generation (tg) speed of the wasm (or WebGPU) backend, as
 * llama-bench measures them: pp = one forward of N prompt tokens into an empty cache; tg = N
 * single-token forwards starting from an empty cache. Random weights of a named shape are
 * generated in place (no checkpoint needed), or a model path is benchmarked.
 */
import { InputError } from '../../errors.js';
import { parseMptConfig, type MptConfig } from '../../model/config.js';
import { parseArgs } from '../args.js';
import type { ModelRunner } from '../../backends/backend.js';
import { measure, median } from '../../runtime/bench-speed.js';
import type { DType } from '../../formats/tensor-source.js';

export { measure, type BenchOptions } from '../../runtime/bench-speed.js';

export const summary = 'measure prompt-processing and generation speed (tokens/s) of the wasm or WebGPU backend';
export const help = `usage: mpt bench [MODEL] [--shape 7b|1b|tiny] [--d-model N --n-layers N --n-heads N --vocab-size N]
                 [--type f32|f16|bf16|q8_0|q4_0] [--pp 512] [--tg 128] [--reps 3] [--threads N]
                 [--backend wasm|webgpu] [--json]

Without MODEL, builds a random-weight MPT of the named shape (default 1b) directly in the wasm
memories, quantized to --type (default q4_0). With MODEL (HF folder or GGUF), loads it; --type
then converts its matrices (default: keep the stored types); the load time is reported too.
  --pp N      prompt tokens per pp test (0 skips it)      --tg N   generated tokens (0 skips)
  --reps N    repetitions (median, min and max are shown; one untimed warm-up first)
  --threads N worker threads (default: all cores)          --json   print JSON
  --backend   wasm (default) or webgpu (the GPU; --type only for random weights, --threads unused)
Shapes: 7b = d_model 4096, 32 heads, 32 layers; 1b = d_model 2048, 16 heads, 24 layers;
tiny = d_model 256, 4 heads, 2 layers. All: vocab 50432 (tiny 1024), expansion 4, ALiBi, no bias.`;

export interface BenchResult {
  test: string;
  backend: 'wasm' | 'webgpu';
  /** webgpu: the adapter. */
  device?: string;
  shape?: string;
  model?: string;
  type: string;
  threads: number;
  tokens_per_second: number;
  min: number;
  max: number;
  reps: number;
  peak_rss_bytes: number;
  /** With MODEL: milliseconds to open the file and load it into the wasm backend (workers started). */
  load_ms?: number;
}

/** The benchmark shapes (also bench/webgpu-*.ts). */
export const SHAPES: Record<string, { d: number; heads: number; layers: number; vocab: number }> = {
  '7b': { d: 4096, heads: 32, layers: 32, vocab: 50432 },
  '1b': { d: 2048, heads: 16, layers: 24, vocab: 50432 },
  tiny: { d: 256, heads: 4, layers: 2, vocab: 1024 },
};

/** The MPT config of a benchmark shape (MPT-7B's recipe at other sizes). */
export function shapeConfig(d: number, heads: number, layers: number, vocab = 50432, maxSeqLen = 4096): MptConfig {
  return parseMptConfig({
    d_model: d,
    n_heads: heads,
    n_layers: layers,
    vocab_size: vocab,
    max_seq_len: maxSeqLen,
    expansion_ratio: 4,
    no_bias: true,
    attn_config: { alibi: true, attn_impl: 'torch' },
    learned_pos_emb: false,
  });
}

function int(v: unknown, name: string, dflt: number, min = 0): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new InputError(`--${name} must be an integer >= ${min}`);
  return v;
}

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      shape: { type: 'string' },
      'd-model': { type: 'number' },
      'n-layers': { type: 'number' },
      'n-heads': { type: 'number' },
      'vocab-size': { type: 'number' },
      type: { type: 'string' },
      pp: { type: 'number' },
      tg: { type: 'number' },
      reps: { type: 'number' },
      threads: { type: 'number' },
      json: { type: 'boolean' },
      backend: { type: 'string' },
    },
    'bench',
  );
  const backend = (options['backend'] as string | undefined) ?? 'wasm';
  if (backend !== 'wasm' && backend !== 'webgpu')
    throw new InputError(`--backend must be wasm or webgpu, got "${backend}"`);
  const pp = int(options['pp'], 'pp', 512),
    tg = int(options['tg'], 'tg', 128),
    reps = int(options['reps'], 'reps', 3, 1);
  const threads = options['threads'] === undefined ? undefined : int(options['threads'], 'threads', 1, 1);
  const type = options['type'] as string | undefined;
  if (backend === 'webgpu' && positionals[0] && type)
    throw new InputError(
      '--type converts weights for the wasm backend only; the webgpu backend keeps the stored types',
    );
  const wasm = await import('../../backends/wasm/index.js');
  const webgpu = backend === 'webgpu' ? await import('../../backends/webgpu/index.js') : null;
  let runner: ModelRunner & { threads?: number; gpu?: { adapterName: string } };
  let label: { shape?: string; model?: string };
  let loadMs: number | undefined;
  if (positionals[0]) {
    const t0 = performance.now();
    const { openCheckpoint } = await import('../../model/load.js');
    const ck = await openCheckpoint(positionals[0]);
    try {
      runner = webgpu
        ? await webgpu.loadWebGpuRunner(ck.config, ck.tensors)
        : await wasm.loadWasmRunner(ck.config, ck.tensors, {
            threads,
            weightType: (type ?? 'auto') as never,
            maxRows: Math.max(1, pp),
          });
    } finally {
      await ck.tensors.close();
    }
    label = { model: ck.path };
    loadMs = performance.now() - t0;
  } else {
    let shapeName = (options['shape'] as string | undefined) ?? '1b';
    let s = SHAPES[shapeName];
    if (options['d-model'] !== undefined || options['n-layers'] !== undefined || options['n-heads'] !== undefined) {
      const base = s ?? SHAPES['1b']!;
      s = {
        d: int(options['d-model'], 'd-model', base.d, 1),
        layers: int(options['n-layers'], 'n-layers', base.layers, 1),
        heads: int(options['n-heads'], 'n-heads', base.heads, 1),
        vocab: int(options['vocab-size'], 'vocab-size', base.vocab, 2),
      };
      shapeName = `d${s.d}-l${s.layers}-h${s.heads}`;
    }
    if (!s) throw new InputError(`unknown --shape "${shapeName}" (7b, 1b, tiny)`);
    const config = shapeConfig(s.d, s.heads, s.layers, s.vocab, Math.max(4096, pp, tg));
    if (webgpu) {
      const { randomTensorSource } = await import('../../model/random-source.js');
      runner = await webgpu.loadWebGpuRunner(config, randomTensorSource(config, (type ?? 'q4_0') as DType));
    } else
      runner = await wasm.loadRandomModel(config, {
        type: (type ?? 'q4_0') as never,
        threads,
        maxRows: Math.max(1, pp),
      });
    label = { shape: shapeName };
  }
  try {
    const m = await measure(runner, { pp, tg, reps });
    const rss = process.resourceUsage().maxRSS * 1024;
    const typeName = type ?? (label.shape ? 'q4_0' : 'auto');
    const results: BenchResult[] = [];
    const add = (test: string, a: number[]) => {
      if (a.length)
        results.push({
          test,
          backend,
          ...(runner.gpu ? { device: runner.gpu.adapterName } : {}),
          ...label,
          type: typeName,
          threads: runner.threads ?? 0,
          tokens_per_second: median(a),
          min: Math.min(...a),
          max: Math.max(...a),
          reps: a.length,
          peak_rss_bytes: rss,
          ...(loadMs === undefined ? {} : { load_ms: Math.round(loadMs) }),
        });
    };
    add(`pp${pp}`, m.pp);
    add(`tg${tg}`, m.tg);
    if (options['json']) console.log(JSON.stringify({ results }));
    else {
      for (const r of results) {
        console.log(
          `${(r.shape ?? r.model)!.padEnd(12)} ${r.type.padEnd(5)} ${r.device ? `gpu ${r.device}` : `threads ${r.threads}`}  ${r.test.padEnd(6)} ${r.tokens_per_second.toFixed(2).padStart(8)} tok/s  (min ${r.min.toFixed(2)}, max ${r.max.toFixed(2)}, ${r.reps} reps)  peak RSS ${(r.peak_rss_bytes / 2 ** 30).toFixed(2)} GiB${r.load_ms === undefined ? '' : `  (loaded in ${(r.load_ms / 1000).toFixed(2)} s)`}`,
        );
      }
    }
  } finally {
    await runner.dispose();
  }
  return 0;
}
