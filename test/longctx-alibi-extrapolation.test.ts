/**
 * ALiBi beyond max_seq_len: MosaicML's code refuses more than max_seq_len tokens, but nothing in
 * an ALiBi model depends on it (the bias is slope * (j - i), computed from positions). So
 * `tiny-alibi-msl32` (max_seq_len 32) run on 48+ tokens must equal `tiny-alibi` (the same
 * weights, max_seq_len 128) exactly, and its first 32 positions must match its own golden.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelRunner } from '../src/backends/backend.js';
import { parseMptConfig } from '../src/model/config.js';
import { getBackend, loadRunner } from '../src/backends/registry.js';
import { generate, resolveContextLength } from '../src/runtime/generate.js';
import { Goldens, fixturePath, maxAbsDiff } from './helpers/goldens.js';

const ids64 = (new Goldens(fixturePath('tiny-alibi')).json.inputs as Record<string, number[]>)['seq64']!;
const ids = [...ids64, ...ids64.slice(0, 16).reverse()]; // 80 tokens: 2.5x max_seq_len of msl32

async function logits(runner: ModelRunner, tokens: number[]): Promise<Float32Array> {
  const cache = runner.createCache({ capacity: tokens.length });
  const [o] = await runner.forward([{ cache, tokens }], { logits: 'all' });
  cache.dispose();
  return o!.logits;
}

let wasmAvailable = true;
try {
  await getBackend('wasm');
} catch {
  wasmAvailable = false;
}

describe('ALiBi beyond max_seq_len', async () => {
  const { runner: msl32 } = await loadRunner(fixturePath('tiny-alibi-msl32'), { backend: 'reference' });
  const { runner: full } = await loadRunner(fixturePath('tiny-alibi'), { backend: 'reference' });
  assert.equal(msl32.config.maxSeqLen, 32);

  it('80 tokens on max_seq_len 32 equal the max_seq_len 128 model exactly; the first 32 match the golden', async () => {
    const a = await logits(msl32, ids);
    const b = await logits(full, ids);
    assert.deepEqual(a, b);
    const gold = new Goldens(fixturePath('tiny-alibi-msl32')).tensor('logits/seq32').data;
    const V = msl32.config.vocabSize;
    assert.ok(maxAbsDiff(a.subarray(0, 32 * V), gold) <= 5e-4);
  });

  it('generation with a context of 64 (> max_seq_len 32) gives the same tokens as the 128 model', async () => {
    assert.equal(resolveContextLength(msl32.config, 64), 64);
    const prompt = ids64.slice(0, 20);
    const a = await generate(msl32, prompt, { contextLength: 64, maxTokens: 40, temperature: 0 });
    const b = await generate(full, prompt, { contextLength: 64, maxTokens: 40, temperature: 0 });
    assert.equal(a.tokens.length, 40);
    assert.deepEqual(a.tokens, b.tokens);
  });

  it('a model with learned position embeddings cannot be given a context beyond max_seq_len', () => {
    const c = parseMptConfig({
      d_model: 64,
      n_heads: 4,
      n_layers: 2,
      vocab_size: 512,
      max_seq_len: 32,
      learned_pos_emb: true,
      attn_config: { alibi: false },
    });
    assert.throws(() => resolveContextLength(c, 33), /learned position embeddings/);
  });

  it('wasm backend: 80 tokens on max_seq_len 32 match the reference', {
    skip: !wasmAvailable && 'wasm backend not built',
  }, async () => {
    const { runner: w } = await loadRunner(fixturePath('tiny-alibi-msl32'), { backend: 'wasm', threads: 2 });
    try {
      const d = maxAbsDiff(await logits(w, ids), await logits(full, ids));
      assert.ok(d <= 5e-4, `wasm vs reference ${d}`);
    } finally {
      await w.dispose();
    }
  });
});
