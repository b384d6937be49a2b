/**
 * How much a KV cache type changes the next-token distributions: KL(f32 || T) per position for
 * T = f16, q8_0 and q4_0 (q4_0 simulated by rounding each cached row through ggml's q4_0 with
 * formats/ggml-quants.ts; the engine does not offer it), with the reference backend on the
 * golden fixtures' 64-token inputs, prefilled in chunks then decoded token by token.
 *
 *   node dist/bench/kv-quality.js [fixture ...]     prints JSON
 */
import { fileURLToPath } from 'node:url';
import type { KvCache, ModelRunner } from '../src/backends/backend.js';
import { ReferenceKvCache } from '../src/backends/reference/index.js';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { loadRunner } from '../src/backends/registry.js';
import { readFileSync } from 'node:fs';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));

/** A reference cache whose rows are rounded through q4_0 (blocks of 32 along kv_heads * head_dim). */
class Q4Cache extends ReferenceKvCache {
  override write(layer: number, pos: number, k: Float64Array, kOff: number, v: Float64Array, vOff: number): void {
    super.write(layer, pos, k, kOff, v, vOff);
    const o = pos * this.kvDim;
    for (const rows of [this.keys[layer]!, this.values[layer]!]) {
      const row = rows.slice(o, o + this.kvDim);
      rows.set(dequantize('q4_0', quantize('q4_0', row), this.kvDim), o);
    }
  }
}

function kl(a: Float32Array, b: Float32Array, rows: number, V: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    const ls = (x: Float32Array) => {
      let m = -Infinity;
      for (let i = 0; i < V; i++) m = Math.max(m, x[r * V + i]!);
      let s = 0;
      for (let i = 0; i < V; i++) s += Math.exp(x[r * V + i]! - m);
      return m + Math.log(s);
    };
    const la = ls(a),
      lb = ls(b);
    let d = 0;
    for (let i = 0; i < V; i++) {
      const lp = a[r * V + i]! - la;
      d += Math.exp(lp) * (lp - (b[r * V + i]! - lb));
    }
    out.push(Math.max(0, d));
  }
  return out;
}

async function logits(runner: ModelRunner, cache: KvCache, ids: number[]): Promise<Float32Array> {
  const V = runner.config.vocabSize;
  const out = new Float32Array(ids.length * V);
  let at = 0;
  for (const n of [40, 8, 8, ...Array<number>(8).fill(1)]) {
    const [o] = await runner.forward([{ cache, tokens: ids.slice(at, at + n) }], { logits: 'all' });
    out.set(o!.logits, at * V);
    at += n;
  }
  return out;
}

const names = process.argv.slice(2).length
  ? process.argv.slice(2)
  : ['tiny-storywriter', 'tiny-alibi', 'tiny-gqa', 'tiny-bias', 'tiny-exp2'];
const results: Record<string, Record<string, { klMean: number; klMax: number; top1Agreement: number }>> = {};
for (const name of names) {
  const dir = FIXTURES + name;
  const ids = (JSON.parse(readFileSync(`${dir}/goldens.json`, 'utf8')).inputs as Record<string, number[]>)['seq64']!;
  const { runner } = await loadRunner(dir, { backend: 'reference' });
  const c = runner.config,
    V = c.vocabSize,
    kvd = c.attn.kvNHeads * c.headDim;
  const base = await logits(runner, runner.createCache({ capacity: 64 }), ids);
  const argmax = (x: Float32Array, r: number) => {
    let b = 0;
    for (let i = 1; i < V; i++) if (x[r * V + i]! > x[r * V + b]!) b = i;
    return b;
  };
  results[name] = {};
  for (const t of ['f16', 'q8_0', 'q4_0'] as const) {
    if (t === 'q4_0' && kvd % 32 !== 0) continue;
    const cache =
      t === 'q4_0' ? new Q4Cache(c.nLayers, kvd, 64, 'f32') : runner.createCache({ capacity: 64, kvType: t });
    const got = await logits(runner, cache, ids);
    const k = kl(base, got, ids.length, V);
    let agree = 0;
    for (let r = 0; r < ids.length; r++) if (argmax(base, r) === argmax(got, r)) agree++;
    results[name]![t] = {
      klMean: k.reduce((a, b) => a + b, 0) / k.length,
      klMax: Math.max(...k),
      top1Agreement: agree / ids.length,
    };
  }
}
process.stdout.write(JSON.stringify(results, null, 1) + '\n');
