/**
 * Quality of quantized weights on the shipped default model: KL(P_f32 || P_quant) per position of
 * held-out text, for our wasm backend and for llama.cpp (node-llama-cpp, a devDependency) on the
 * very same GGUF files written by `mpt convert` (any --type it takes, presets included). Usage
 * (after `npm run build`):
 *   node dist/bench/quant-kl.js [--tokens 256] [--types f32,f16,q8_0,q4_0,q4_k,q4_k_m]
 * Prints JSON: one row per (engine, type) with mean / max KL and top-1 agreement vs the reference
 * backend on the original bf16 weights (computed in f32), the file's tensor types, and, when f32
 * is among the types, the same measures against that engine's own f32 file (`vs_own_f32`).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Llama, Token } from 'node-llama-cpp';
import { fileURLToPath } from 'node:url';
import { GGML_TYPES } from '../src/formats/ggml-quants.js';
import { readGguf } from '../src/formats/gguf.js';
import { openHfFolderTensors } from '../src/formats/hf-folder.js';
import { parseMptConfig } from '../src/model/config.js';
import type { GgufOutType } from '../src/model/gguf-type-mix.js';
import { writeGgufFromCheckpoint } from '../src/model/gguf-write.js';
import { loadRunner } from '../src/backends/registry.js';
import { loadTokenizer } from '../src/runtime/tokenizer-files.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const nTokens = Number(opt('tokens', '256'));
const types = opt('types', 'f32,f16,q8_0,q4_0,q4_k,q4_k_m').split(',') as GgufOutType[];
const modelDir = join(root, 'models/default');

function logSoftmaxRows(x: Float32Array, rows: number, V: number): Float64Array {
  const out = new Float64Array(rows * V);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let i = 0; i < V; i++) m = Math.max(m, x[r * V + i]!);
    let s = 0;
    for (let i = 0; i < V; i++) s += Math.exp(x[r * V + i]! - m);
    const l = m + Math.log(s);
    for (let i = 0; i < V; i++) out[r * V + i] = x[r * V + i]! - l;
  }
  return out;
}

/** Log-sum-exp of row r over the ids the tokenizer knows (llama.cpp reports only those). */
function lse(x: Float64Array, r: number, V: number, n: number): number {
  let m = -Infinity;
  for (let i = 0; i < n; i++) m = Math.max(m, x[r * V + i]!);
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[r * V + i]! - m);
  return m + Math.log(s);
}

function compare(refLp: Float64Array, lp: Float64Array, rows: number, V: number) {
  let klSum = 0,
    klMax = 0,
    agree = 0;
  const n = vocabUsed;
  for (let r = 0; r < rows; r++) {
    let kl = 0,
      a = 0,
      b = 0;
    const zr = lse(refLp, r, V, n);
    const zq = lse(lp, r, V, n);
    for (let i = 0; i < n; i++) {
      const lpRef = refLp[r * V + i]! - zr;
      const p = Math.exp(lpRef);
      if (p > 0) kl += p * (lpRef - Math.max(lp[r * V + i]! - zq, -1e30));
      if (refLp[r * V + i]! > refLp[r * V + a]!) a = i;
      if (lp[r * V + i]! > lp[r * V + b]!) b = i;
    }
    klSum += kl;
    klMax = Math.max(klMax, kl);
    if (a === b) agree++;
  }
  return { kl_mean: klSum / rows, kl_max: klMax, top1_agreement: agree / rows };
}

const tok = (await loadTokenizer(modelDir))!;
const text = readFileSync(join(root, 'data/tinystories/heldout.txt'), 'utf8');
const ids = tok.encode(text).slice(0, nTokens);
const config = parseMptConfig(JSON.parse(readFileSync(join(modelDir, 'config.json'), 'utf8')));
const V = config.vocabSize;
const vocabUsed = tok.size; // rows past the tokenizer (padding) never carry probability in llama.cpp's output map

async function logitsOf(path: string, backend: 'reference' | 'wasm'): Promise<Float32Array> {
  const { runner } = await loadRunner(path, { backend });
  try {
    const [o] = await runner.forward([{ cache: runner.createCache({ capacity: ids.length }), tokens: ids }], {
      logits: 'all',
    });
    return o!.logits;
  } finally {
    await runner.dispose();
  }
}

/** "Q4_K ×5, Q6_K ×2, F32 ×9": the tensor types a GGUF file holds. */
async function tensorTypes(path: string): Promise<string> {
  const f = await readGguf(path);
  try {
    const n = new Map<string, number>();
    for (const t of f.tensors) n.set(GGML_TYPES[t.dtype].name, (n.get(GGML_TYPES[t.dtype].name) ?? 0) + 1);
    return [...n]
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ×${v}`)
      .join(', ');
  } finally {
    await f.close();
  }
}

const ref = logSoftmaxRows(await logitsOf(modelDir, 'reference'), ids.length, V);
const ownF32 = new Map<string, Float64Array>();
/** The measures vs the reference, plus vs this engine's own f32 file when that ran first. */
function row(engine: string, type: string, lp: Float64Array, tensors: string): Record<string, unknown> {
  if (type === 'f32') ownF32.set(engine, lp);
  const own = ownF32.get(engine);
  return {
    engine,
    type,
    tensors,
    ...compare(ref, lp, ids.length, V),
    ...(own && type !== 'f32' ? { vs_own_f32: compare(own, lp, ids.length, V) } : {}),
  };
}
const tmp = mkdtempSync(join(tmpdir(), 'mpt-quant-kl-'));
const results: Record<string, unknown>[] = [];
let llama: Llama | undefined;
try {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error, progressLogs: false });
} catch (e) {
  results.push({ engine: 'llama.cpp', error: `node-llama-cpp unavailable: ${(e as Error).message}` });
}
try {
  for (const type of types) {
    const path = join(tmp, `default-${type}.gguf`);
    const src = await openHfFolderTensors(modelDir);
    await writeGgufFromCheckpoint(config, src, join(modelDir, 'tokenizer.json'), path, type);
    await src.close();
    const tensors = await tensorTypes(path);
    const ours = logSoftmaxRows(await logitsOf(path, 'wasm'), ids.length, V);
    results.push(row('mpt-ts wasm', type, ours, tensors));
    if (llama) {
      const model = await llama.loadModel({ modelPath: path });
      const ctx = await model.createContext({
        contextSize: 512,
        threads: 2,
        flashAttention: false,
        experimentalKvCacheKeyType: 'F32',
        experimentalKvCacheValueType: 'F32',
      });
      const seq = ctx.getSequence();
      const res = await seq.controlledEvaluate(
        ids.map((t) => [t as Token, { generateNext: { probabilities: true, options: { temperature: 0 } } }]),
      );
      const lp = new Float64Array(ids.length * V).fill(-Infinity);
      res.forEach((r, i) => {
        for (const [t, p] of r!.next.probabilities!) lp[i * V + t] = Math.log(p);
      });
      results.push(row('llama.cpp (node-llama-cpp 3.21.1)', type, lp, tensors));
      await ctx.dispose();
      await model.dispose();
    }
  }
} finally {
  await llama?.dispose();
  rmSync(tmp, { recursive: true, force: true });
}
console.log(
  JSON.stringify(
    {
      model: 'models/default',
      tokens: ids.length,
      vocab_used: vocabUsed,
      types,
      reference: 'reference backend, bf16 weights in f32',
      results,
    },
    null,
    1,
  ),
);
