/**
 * KV cache storage types with the reference backend: the f16 and q8_0 caches store exactly what
 * dtypes.ts and ggml-quants.ts (independent implementations of those formats) give for each row,
 * the f32 cache reproduces the fixtures' goldens, and the logits of f16 / q8_0 caches stay close
 * to f32 ones (KL divergence of the next-token distributions, reported as diagnostics).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KvType, ModelRunner } from '../src/backends/backend.js';
import type { ReferenceKvCache } from '../src/backends/reference/index.js';
import { f16ToF32, f32ToF16 } from '../src/formats/dtypes.js';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { loadRunner } from '../src/backends/registry.js';
import { Goldens, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { klRows } from './helpers/kl.js';

async function logitsWith(
  runner: ModelRunner,
  ids: number[],
  kvType: KvType,
  chunks?: number[],
): Promise<Float32Array> {
  const cache = runner.createCache({ capacity: ids.length, kvType });
  const V = runner.config.vocabSize;
  const out = new Float32Array(ids.length * V);
  let at = 0;
  for (const n of chunks ?? [ids.length]) {
    const [o] = await runner.forward([{ cache, tokens: ids.slice(at, at + n) }], { logits: 'all' });
    out.set(o!.logits, at * V);
    at += n;
  }
  return out;
}

describe('KV cache types (reference backend)', () => {
  it('f16 and q8_0 caches store each row exactly as dtypes.ts / ggml-quants.ts round it', async () => {
    const { runner } = await loadRunner(fixturePath('tiny-storywriter'), { backend: 'reference' });
    const ids = (new Goldens(fixturePath('tiny-storywriter')).json.inputs as Record<string, number[]>)['seq7']!;
    const caches = {} as Record<KvType, ReferenceKvCache>;
    for (const t of ['f32', 'f16', 'q8_0'] as KvType[]) {
      caches[t] = runner.createCache({ capacity: 16, kvType: t }) as ReferenceKvCache;
      await runner.forward([{ cache: caches[t], tokens: ids }], { logits: 'none' });
    }
    // Layer 0's keys and values depend only on the embeddings, so the three caches saw the same
    // f32 rows there: compare the stored rows with the independent rounding of the f32 ones.
    const kvd = caches.f32.kvDim;
    for (const which of ['keys', 'values'] as const) {
      const ref = caches.f32[which][0]!.subarray(0, ids.length * kvd);
      const f16 = caches.f16[which][0]!.subarray(0, ids.length * kvd);
      const q8 = caches.q8_0[which][0]!.subarray(0, ids.length * kvd);
      // (+0 and -0 are the same value: `|| 0` folds them, deepEqual would not)
      const num = (a: ArrayLike<number>) => Array.from(a, (x) => x || 0);
      assert.deepEqual(num(f16), num(Array.from(ref, (x) => f16ToF32(f32ToF16(x)))), `${which}: f16`);
      assert.deepEqual(
        num(q8),
        num(dequantize('q8_0', quantize('q8_0', Float32Array.from(ref)), ref.length)),
        `${which}: q8_0`,
      );
      assert.ok(maxAbsDiff(q8, ref) > 0, 'q8_0 rounding changed nothing: the cache type is not applied');
    }
  });

  for (const name of ['tiny-storywriter', 'tiny-alibi', 'tiny-gqa']) {
    it(`${name}: f32 cache matches the goldens; f16 and q8_0 logits stay close (KL reported)`, async (t) => {
      const g = new Goldens(fixturePath(name));
      const { runner } = await loadRunner(fixturePath(name), { backend: 'reference' });
      const V = runner.config.vocabSize;
      const ids = (g.json.inputs as Record<string, number[]>)['seq64']!;
      const gold = g.tensor('logits/seq64').data;
      // Prefill in chunks then single steps, so both multi-token and decode attention read the cache.
      const chunks = [40, 8, 8, 1, 1, 1, 1, 1, 1, 1, 1];
      const f32 = await logitsWith(runner, ids, 'f32', chunks);
      assert.ok(maxAbsDiff(f32, gold) <= 5e-4, `f32 vs golden ${maxAbsDiff(f32, gold)}`);
      const means: number[] = [];
      for (const kvType of ['f16', 'q8_0'] as KvType[]) {
        const q = await logitsWith(runner, ids, kvType, chunks);
        const kl = klRows(f32, q, ids.length, V);
        const mean = kl.reduce((a, b) => a + b, 0) / kl.length;
        const max = Math.max(...kl);
        t.diagnostic(
          `${name} ${kvType} vs f32: KL mean ${mean.toExponential(2)} max ${max.toExponential(2)}, max |dlogit| ${maxAbsDiff(f32, q).toExponential(2)}`,
        );
        assert.ok(mean > 0, `${kvType}: logits identical to f32 (the cache type is not applied)`);
        // These random-weight fixtures are very sensitive (measured max KL: f16 4.5e-4, q8_0
        // 6.7e-2 on tiny-storywriter); the bounds sit about 10x above the worst fixture.
        const bound = kvType === 'f16' ? 5e-3 : 0.5;
        assert.ok(max < bound, `${kvType}: max KL ${max} >= ${bound}`);
        means.push(mean);
      }
      assert.ok(means[0]! < means[1]!, `f16 (KL ${means[0]}) should be closer to f32 than q8_0 (KL ${means[1]})`);
    });
  }
});
