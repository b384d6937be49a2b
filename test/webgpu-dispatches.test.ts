// The structure of a WebGPU decode step, from the runner's counters (runner.stats): at most
// 8 dispatches per layer + 4, one submission, each weight matrix read by one product per step and one
// attention dispatch per layer whatever the number of sequences decoding together. On the shipped model and on configurations
// with qk_ln, GLU, clip_qkv, GQA / MQA and learned positions. Skipped where WebGPU has no adapter.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { loadWebGpuRunner, type WebGpuRunner } from '../src/backends/webgpu/index.js';
import type { MptConfig } from '../src/model/config.js';
import { parseMptConfig } from '../src/model/config.js';
import { openCheckpoint } from '../src/model/load.js';
import { expectedTensors } from '../src/model/weights-layout.js';
import { UNCOVERED_CONFIGS, randomSource } from './helpers/backend-conformance.js';
import { REPO_ROOT } from './helpers/goldens.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { probeWebGpu } from './helpers/webgpu-harness.js';

const skip = skipUnlessPresent((await probeWebGpu()).why);

/** The matrices a step multiplies by: every 2-D weight but the position embedding (and wte when untied). */
function products(c: MptConfig): string[] {
  return expectedTensors(c)
    .filter(
      (t) =>
        t.shape.length === 2 &&
        t.name !== 'transformer.wpe.weight' &&
        (c.tieWordEmbeddings || t.name !== 'transformer.wte.weight'),
    )
    .map((t) => t.name)
    .sort();
}

/** Prompts fed, then one decode step of every sequence together: that step's stats. */
async function decodeStep(r: WebGpuRunner, sequences: number): Promise<WebGpuRunner['stats']> {
  const caches = Array.from({ length: sequences }, () => r.createCache({ capacity: 16 }));
  await r.forward(
    caches.map((cache, i) => ({ cache, tokens: [1 + i, 2, 3 + i] })),
    { logits: 'last' },
  );
  r.resetStats();
  await r.forward(
    caches.map((cache, i) => ({ cache, tokens: [5 + i] })),
    { logits: 'last' },
  );
  const stats = { ...r.stats, matrixReads: new Map(r.stats.matrixReads) };
  for (const c of caches) c.dispose();
  return stats;
}

describe('webgpu decode step: dispatches and weight reads', { skip }, () => {
  it('the shipped model: at most 8 dispatches per layer + 4, each matrix read once (three sequences too)', async () => {
    const ck = await openCheckpoint(join(REPO_ROOT, 'models/default'));
    const r = await loadWebGpuRunner(ck.config, ck.tensors);
    await ck.tensors.close();
    try {
      const L = r.config.nLayers;
      const one = await decodeStep(r, 1);
      assert.equal(one.submissions, 1);
      assert.ok(one.dispatches <= 8 * L + 4, `${one.dispatches} dispatches for ${L} layers`);
      assert.deepEqual([...one.matrixReads.keys()].sort(), products(r.config));
      for (const [name, n] of one.matrixReads) assert.equal(n, 1, name);
      const three = await decodeStep(r, 3);
      assert.equal(three.submissions, 1);
      for (const [name, n] of three.matrixReads) assert.equal(n, 1, `${name}, three sequences`);
      // one attention dispatch a layer serves every sequence: the step's dispatches do not grow with the batch
      assert.equal(three.dispatches, one.dispatches);
    } finally {
      await r.dispose();
    }
  });

  for (const [label, raw] of UNCOVERED_CONFIGS) {
    it(`at most 8 per layer + 4: ${label}`, async () => {
      const c = parseMptConfig(raw);
      const r = await loadWebGpuRunner(c, randomSource(c, 1));
      try {
        const one = await decodeStep(r, 1);
        assert.ok(one.dispatches <= 8 * c.nLayers + 4, `${one.dispatches} dispatches for ${c.nLayers} layers`);
        const two = await decodeStep(r, 2);
        // only qk_ln's normalisation (one dispatch per sequence and layer) grows with the batch
        assert.equal(two.dispatches, one.dispatches + (c.attn.qkLn ? c.nLayers : 0));
        assert.deepEqual([...two.matrixReads.keys()].sort(), products(c));
        for (const [name, n] of two.matrixReads) assert.equal(n, 1, `${name}, two sequences`);
      } finally {
        await r.dispose();
      }
    });
  }
});
