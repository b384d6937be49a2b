/**
 * Long-context benchmark: a random-weight model shaped like MPT-7B-StoryWriter scaled down
 * (d_model 256, 4 layers, 4 heads, alibi_bias_max 16, clip_qkv 6, vocab 50432, max_seq_len
 * 65536) on the wasm backend reads a prompt of N tokens in chunks of --batch tokens, then
 * decodes --decode tokens greedily. Each length runs in its own process, so the peak RSS it
 * reports belongs to that length alone; lengths past 65536 run by ALiBi extrapolation.
 *
 *   node dist/bench/long-context.js [--lengths 4096,16384,32768,65536,100000] [--decode 100]
 *        [--batch 512] [--threads N] [--kv-type f32] [--out FILE]
 *
 * Prints JSON: per length the prefill and decode times (wall and process CPU), the peak RSS,
 * the RSS before the KV cache existed, a least-squares line of peak RSS against context
 * length (bytes per token; linear means attention never held T x T), and the memory planner's
 * numbers for the real MPT-7B-StoryWriter at 65k with f16 and q8_0 KV.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { KvType } from '../src/backends/backend.js';
import { parseMptConfig, type MptConfig } from '../src/model/config.js';
import { formatBytes, kvCacheBytes, planMemory } from '../src/model/memory-plan.js';

const CONFIG_JSON = fileURLToPath(new URL('../../test/fixtures/configs/mpt-7b-storywriter.json', import.meta.url));

function storyWriterConfig(shape: { dModel: number; nLayers: number; nHeads: number } | null): MptConfig {
  const raw = JSON.parse(readFileSync(CONFIG_JSON, 'utf8')) as Record<string, unknown>;
  if (shape) Object.assign(raw, { d_model: shape.dModel, n_layers: shape.nLayers, n_heads: shape.nHeads });
  return parseMptConfig(raw);
}

interface Args {
  lengths: number[];
  decode: number;
  batch: number;
  threads: number;
  kvType: KvType;
  out?: string;
  child?: number;
}

function parse(argv: string[]): Args {
  const a: Args = {
    lengths: [4096, 16384, 32768, 65536, 100000],
    decode: 100,
    batch: 512,
    threads: Math.min(availableParallelism(), 16),
    kvType: 'f32',
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!,
      v = argv[i + 1];
    const num = () => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${k} needs a non-negative integer`);
      i++;
      return n;
    };
    if (k === '--lengths') {
      a.lengths = v!.split(',').map(Number);
      i++;
    } else if (k === '--decode') a.decode = num();
    else if (k === '--batch') a.batch = num();
    else if (k === '--threads') a.threads = num();
    else if (k === '--kv-type') {
      a.kvType = v as KvType;
      i++;
    } else if (k === '--out') {
      a.out = v;
      i++;
    } else if (k === '--child') a.child = num();
    else throw new Error(`unknown option ${k}`);
  }
  return a;
}

interface LengthResult {
  ctx: number;
  promptTokens: number;
  decodeTokens: number;
  threads: number;
  prefillSeconds: number;
  prefillCpuSeconds: number;
  prefillTokensPerSecond: number;
  decodeSeconds: number;
  decodeTokensPerSecond: number;
  /** Peak resident set size of the whole process. */
  peakRssBytes: number;
  /** RSS after loading the weights, before the KV cache was allocated. */
  rssBeforeCacheBytes: number;
  /** The memory planner's KV bytes for this context and type. */
  kvCacheBytes: number;
  /** What the wasm memories grew by when the cache was created (the KV cache as stored). */
  kvAllocatedBytes: number;
}

async function runOne(L: number, a: Args): Promise<LengthResult> {
  const { loadRandomModel } = await import('../src/backends/wasm/index.js');
  const config = storyWriterConfig({ dModel: 256, nLayers: 4, nHeads: 4 });
  const runner = await loadRandomModel(config, { type: 'f32', threads: a.threads, maxRows: a.batch });
  const V = config.vocabSize;
  let s = 12345;
  const prompt = Array.from({ length: L }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % V;
  });
  const rssBeforeCache = process.memoryUsage().rss;
  const reservedBefore = runner.arenas.reservedBytes();
  const cache = runner.createCache({ capacity: L + a.decode, kvType: a.kvType });
  const kvAllocated = runner.arenas.reservedBytes() - reservedBefore;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let logits: Float32Array = new Float32Array(0);
  for (let i = 0; i < L; i += a.batch) {
    const chunk = prompt.slice(i, Math.min(L, i + a.batch));
    const last = i + a.batch >= L;
    const [o] = await runner.forward([{ cache, tokens: chunk }], { logits: last ? 'last' : 'none' });
    if (last) logits = o!.logits;
  }
  const t1 = performance.now();
  const cpu1 = process.cpuUsage(cpu0);
  const argmax = (x: Float32Array) => {
    let b = 0;
    for (let i = 1; i < x.length; i++) if (x[i]! > x[b]!) b = i;
    return b;
  };
  for (let n = 0; n < a.decode; n++) {
    const [o] = await runner.forward([{ cache, tokens: [argmax(logits)] }], { logits: 'last' });
    logits = o!.logits;
  }
  const t2 = performance.now();
  if (cache.length !== L + a.decode) throw new Error(`cache holds ${cache.length} positions, expected ${L + a.decode}`);
  const peak = process.resourceUsage().maxRSS * 1024;
  cache.dispose();
  await runner.dispose();
  return {
    ctx: L + a.decode,
    promptTokens: L,
    decodeTokens: a.decode,
    threads: a.threads,
    prefillSeconds: (t1 - t0) / 1000,
    prefillCpuSeconds: (cpu1.user + cpu1.system) / 1e6,
    prefillTokensPerSecond: L / ((t1 - t0) / 1000),
    decodeSeconds: (t2 - t1) / 1000,
    decodeTokensPerSecond: a.decode / ((t2 - t1) / 1000),
    peakRssBytes: peak,
    rssBeforeCacheBytes: rssBeforeCache,
    kvCacheBytes: kvCacheBytes(config, L + a.decode, a.kvType),
    kvAllocatedBytes: kvAllocated,
  };
}

function child(L: number, argv: string[]): Promise<LengthResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [fileURLToPath(import.meta.url), ...argv, '--child', String(L)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (b: Buffer) => {
      out += b.toString();
    });
    p.on('error', reject);
    p.on('close', (code) => {
      if (code !== 0) return reject(new Error(`length ${L}: child exited with ${code}`));
      resolve(JSON.parse(out.trim().split('\n').pop()!) as LengthResult);
    });
  });
}

/** Least-squares line y = a + b·x. */
function fit(xs: number[], ys: number[]): { slope: number; intercept: number; r2: number } {
  const n = xs.length,
    mx = xs.reduce((s, x) => s + x, 0) / n,
    my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0,
    sxx = 0,
    syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i]! - mx) * (ys[i]! - my);
    sxx += (xs[i]! - mx) ** 2;
    syy += (ys[i]! - my) ** 2;
  }
  const slope = sxx ? sxy / sxx : 0;
  return { slope, intercept: my - slope * mx, r2: syy ? (sxy * sxy) / (sxx * syy) : 1 };
}

/** The planner for the real MPT-7B-StoryWriter (bf16 checkpoint; also as q8_0 / q4_0 weights). */
function realModelPlans(): Record<string, unknown> {
  const c = storyWriterConfig(null);
  const d = c.dModel,
    params = c.vocabSize * d + c.nLayers * (12 * d * d + 2 * d) + d;
  const out: Record<string, unknown> = { parameters: params };
  for (const [wt, bytesPer] of [
    ['bf16', 2],
    ['q8_0', 34 / 32],
    ['q4_0', 18 / 32],
  ] as const) {
    for (const kv of ['f16', 'q8_0'] as KvType[]) {
      const p = planMemory({
        config: c,
        weightBytes: Math.round(params * bytesPer),
        ctx: 65536,
        kvType: kv,
        availableBytes: 24 * 2 ** 30,
      });
      out[`weights ${wt}, KV ${kv}, ctx 65536`] = {
        weights: formatBytes(p.weightBytes),
        kv: formatBytes(p.kvBytes),
        activations: formatBytes(p.activationBytes),
        total: formatBytes(p.totalBytes),
        fitsIn24GiB: p.fits,
        maxCtxIn24GiB: p.maxCtxThatFits,
      };
    }
  }
  return out;
}

const a = parse(process.argv.slice(2));
if (a.child !== undefined) {
  process.stdout.write(JSON.stringify(await runOne(a.child, a)) + '\n');
} else {
  const pass = [
    '--decode',
    String(a.decode),
    '--batch',
    String(a.batch),
    '--threads',
    String(a.threads),
    '--kv-type',
    a.kvType,
  ];
  const rows: LengthResult[] = [];
  for (const L of a.lengths) {
    const r = await child(L, pass);
    rows.push(r);
    if (a.out) writeFileSync(`${a.out}.partial`, JSON.stringify(rows, null, 1) + '\n');
    process.stderr.write(
      `ctx ${r.ctx}: prefill ${r.prefillSeconds.toFixed(1)} s (${r.prefillTokensPerSecond.toFixed(0)} tok/s), decode ${r.decodeTokensPerSecond.toFixed(1)} tok/s, KV ${formatBytes(r.kvAllocatedBytes)} (planner ${formatBytes(r.kvCacheBytes)}), peak RSS ${formatBytes(r.peakRssBytes)}\n`,
    );
  }
  const line =
    rows.length >= 2
      ? fit(
          rows.map((r) => r.ctx),
          rows.map((r) => r.peakRssBytes),
        )
      : undefined;
  const result = {
    model: {
      d_model: 256,
      n_layers: 4,
      n_heads: 4,
      alibi_bias_max: 16,
      clip_qkv: 6,
      vocab_size: 50432,
      max_seq_len: 65536,
      weights: 'f32 random',
      backend: 'wasm',
      kvType: a.kvType,
    },
    batch: a.batch,
    rows,
    peakRssVsContext: line && {
      bytesPerToken: line.slope,
      interceptBytes: line.intercept,
      r2: line.r2,
      kvBytesPerToken: kvCacheBytes(storyWriterConfig({ dModel: 256, nLayers: 4, nHeads: 4 }), 1, a.kvType),
    },
    plannerMpt7bStoryWriter: realModelPlans(),
  };
  const text = JSON.stringify(result, null, 1);
  if (a.out) writeFileSync(a.out, text + '\n');
  process.stdout.write(text + '\n');
}
