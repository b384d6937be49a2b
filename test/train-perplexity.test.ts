// Sliding-window perplexity against a direct computation with the reference inference backend,
// and the exactness of grouping identical embedding rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fixturePath } from './helpers/goldens.js';
import { jsKernels } from '../src/train/kernels.js';
import { loadTrainModel } from '../src/train/weights-io.js';
import { compactIdenticalRows, slidingWindowPerplexity } from '../src/train/perplexity.js';
import { loadRunner } from '../src/backends/registry.js';

const tokens = Int32Array.from({ length: 21 }, (_, i) => (i * 37 + 11) % 512);

test('every token after the first is scored once, with window − stride tokens of context, as the reference backend computes', async () => {
  const { model } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
  const r = slidingWindowPerplexity(model, tokens, { windowLength: 8, stride: 4 });
  assert.equal(r.tokens, 20);
  // Direct: windows [0,8) scores positions 1..7, [4,12) scores 8..11, [8,16) 12..15, [12,20) 16..19, [16,21) 20.
  const { runner } = await loadRunner(fixturePath('tiny-alibi'));
  let nll = 0,
    n = 0;
  const V = 512;
  for (const [start, from] of [
    [0, 1],
    [4, 8],
    [8, 12],
    [12, 16],
    [16, 20],
  ] as const) {
    const win = Array.from(tokens.subarray(start, Math.min(start + 8, tokens.length)));
    const cache = runner.createCache({ capacity: 8 });
    const [out] = await runner.forward([{ cache, tokens: win }], { logits: 'all' });
    for (let pos = from; pos < start + win.length; pos++) {
      const row = out!.logits.subarray((pos - 1 - start) * V, (pos - start) * V);
      let max = -Infinity;
      for (const v of row) max = Math.max(max, v);
      let s = 0;
      for (const v of row) s += Math.exp(v - max);
      nll += max + Math.log(s) - row[tokens[pos]!]!;
      n++;
    }
  }
  await runner.dispose();
  assert.equal(n, 20);
  assert.ok(Math.abs(r.nll - nll / n) < 1e-5, `${r.nll} vs ${nll / n}`);
});

test('grouping identical embedding rows leaves the perplexity unchanged', async () => {
  const { model } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
  // Make ids 100..499 identical (as the unused rows of a compact-vocabulary model are).
  const w = model.param('transformer.wte.weight').data,
    d = model.config.dModel;
  for (let id = 101; id < 500; id++) w.copyWithin(id * d, 100 * d, 101 * d);
  const direct = slidingWindowPerplexity(model, tokens, { windowLength: 8, stride: 4 });
  const grouped = compactIdenticalRows(model, jsKernels());
  assert.equal(grouped.vocab.shared, 399);
  const viaGroups = slidingWindowPerplexity(grouped, tokens, { windowLength: 8, stride: 4 });
  assert.ok(Math.abs(direct.nll - viaGroups.nll) < 1e-5);
});
