/**
 * The q4_K weight layouts of one model in one process: a runner on plain rows (gemm_k) and one on
 * q4_Kx4 groups (`MPT_WASM_Q4K_X4=1`, repack.ts), decode steps alternated between them (A B, then
 * B A, …), so that both meet the same load of a shared host; CPU time of the process per step
 * (p25 / median) and, from the team's profile (team.ts, MPT_WASM_PROFILE), each operation's own
 * work per step summed over the layers. Holds both copies of the weights (twice the model's RSS).
 *
 *   node dist/bench/run.js layout-ab FILE.gguf [--threads 1] [--steps 8] [--rounds 3] [--layers N]
 *
 * `--layers N` keeps the first N layers of the file (and its embedding / LM head): a 7B-shaped
 * step of a smaller size. Unlike `step-series`, which runs each layout in its own process, the
 * two layouts here share one process, so a busy host's swings hit both alike.
 */
import { loadWasmRunner } from '../src/backends/wasm/index.js';
import type { TensorSource } from '../src/formats/tensor-source.js';
import { openCheckpoint } from '../src/model/load.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? Number(argv[i + 1]) : dflt;
};
const file = argv.find((a, i) => !a.startsWith('--') && !argv[i - 1]?.startsWith('--'));
if (!file) {
  console.error('usage: layout-ab FILE.gguf [--threads 1] [--steps 8] [--rounds 3] [--layers N]');
  process.exit(2);
}
const threads = opt('threads', 1),
  steps = opt('steps', 8),
  rounds = opt('rounds', 3),
  layers = opt('layers', 0);

/** The first `n` layers of a checkpoint's tensors (all when n is 0). */
function firstLayers(t: TensorSource, n: number): TensorSource {
  if (n <= 0) return t;
  const keep = (name: string) => {
    const m = /^transformer\.blocks\.(\d+)\./.exec(name);
    return !m || Number(m[1]) < n;
  };
  return {
    list: () => t.list().filter((i) => keep(i.name)),
    info: (name) => (keep(name) ? t.info(name) : undefined),
    read: (name) => t.read(name),
    readInto: t.readInto ? (name, dest, start) => t.readInto!(name, dest, start) : undefined,
    close: () => t.close(),
  };
}

async function load(x4: boolean) {
  // both read when the layout is planned (repack.ts keptPacked, team.ts)
  process.env.MPT_WASM_Q4K_X4 = x4 ? '1' : '0';
  process.env.MPT_WASM_PROFILE = '1';
  const ck = await openCheckpoint(file!);
  const config = layers > 0 ? { ...ck.config, nLayers: Math.min(layers, ck.config.nLayers) } : ck.config;
  const runner = await loadWasmRunner(config, firstLayers(ck.tensors, layers), {
    threads,
    weightType: 'auto',
    maxRows: 1,
  });
  await ck.tensors.close();
  return runner;
}

const variants = [
  { name: 'plain', runner: await load(false), cpu: [] as number[] },
  { name: 'x4', runner: await load(true), cpu: [] as number[] },
];
const V = variants[0]!.runner.config.vocabSize;
let seed = 12345;
const ids = Array.from({ length: steps }, () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return 1 + (seed % (V - 1));
});
// round 0 warms up (untimed, profile cleared after it)
for (let r = 0; r <= rounds; r++) {
  const caches = variants.map((v) => v.runner.createCache({ capacity: steps }));
  for (let i = 0; i < steps; i++) {
    for (const j of (i + r) % 2 ? [1, 0] : [0, 1]) {
      const v = variants[j]!;
      const c0 = process.cpuUsage();
      await v.runner.forward([{ cache: caches[j]!, tokens: [ids[i]!] }], { logits: 'last', reuseLogits: true });
      const c1 = process.cpuUsage();
      if (r > 0) v.cpu.push((c1.user - c0.user + c1.system - c0.system) / 1000);
    }
  }
  for (const c of caches) c.dispose();
  if (r === 0) for (const v of variants) for (const p of v.runner.opProfile() ?? []) p.fill(0);
}

// Both layouts compute the same bits (gemm_k's arithmetic): a bench of a wrong path is worthless.
const logits: Float32Array[] = [];
for (const v of variants) {
  const cache = v.runner.createCache({ capacity: 2 });
  const [o] = await v.runner.forward([{ cache, tokens: [ids[0]!, ids[1] ?? 1] }], { logits: 'last' });
  logits.push(o!.logits.slice());
  cache.dispose();
}
const sameBits = logits[0]!.every((x, i) => Object.is(x, logits[1]![i]));
const maxDiff = logits[0]!.reduce((m, x, i) => Math.max(m, Math.abs(x - logits[1]![i]!)), 0);

const quantile = (a: number[], q: number) => {
  const s = [...a].sort((x, y) => x - y);
  return +s[Math.floor(q * (s.length - 1))]!.toFixed(2);
};
/** Own work per step (ms, wall inside the op, mean over threads) of each operation kind, summed over the layers. */
function opWork(runner: (typeof variants)[number]['runner']) {
  const used = (runner.opProfile() ?? []).filter((p) => p[0]! > 0);
  if (used.length === 0) return {};
  const ops = used[0]![1]!,
    L = runner.config.nLayers;
  const names = ['qkv', 'attention', 'out_proj', 'up_proj', 'down_proj'];
  // a decode step: embedding ops (if any), 5 per layer, the LM head (bench/profile.ts names them)
  const first = ops - 5 * L - 1;
  if (first < 0) return { note: `${ops} operations a pass: not 5 a layer (light layers run solo)` };
  const sums: Record<string, number> = { embedding: 0, ...Object.fromEntries(names.map((n) => [n, 0])), lm_head: 0 };
  for (const p of used)
    for (let i = 0; i < ops; i++) {
      const w = p[3 + 3 * i]! / p[0]! / used.length;
      const k = i < first ? 'embedding' : i === ops - 1 ? 'lm_head' : names[(i - first) % 5]!;
      sums[k] = sums[k]! + w;
    }
  return Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, +v.toFixed(2)]));
}
const out = variants.map((v) => ({
  layout: v.name,
  steps: v.cpu.length,
  cpu_p25_ms: quantile(v.cpu, 0.25),
  cpu_median_ms: quantile(v.cpu, 0.5),
  op_work_ms: opWork(v.runner),
}));
console.log(
  JSON.stringify(
    {
      file,
      threads,
      layers: layers || variants[0]!.runner.config.nLayers,
      same_bits: sameBits,
      logits_max_abs_diff: maxDiff,
      results: out,
      x4_vs_plain_cpu_p25: +(out[0]!.cpu_p25_ms / out[1]!.cpu_p25_ms).toFixed(3),
      x4_vs_plain_cpu_median: +(out[0]!.cpu_median_ms / out[1]!.cpu_median_ms).toFixed(3),
    },
    null,
    1,
  ),
);
await Promise.all(variants.map((v) => v.runner.dispose()));
