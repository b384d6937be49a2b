/**
 * The wasm backend keeps each layer's KV cache in the same 4 GiB memory as its weights, so the
 * layout must leave room for the caches the caller will create: MPT-7B-StoryWriter with q4_0
 * weights and a 65k-token q8_0 cache (the combination the memory planner accepts on 24 GB) is
 * spread over memories that each hold their layers' weights and caches; a cache that cannot fit
 * next to even one layer is refused at load with a message naming the way out.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { kvRegionBytes, planLayout } from '../src/backends/wasm/layout.js';
import { MemoryPlanError } from '../src/errors.js';
import { parseMptConfig } from '../src/model/config.js';
import { kvCacheBytes } from '../src/model/memory-plan.js';
import { REPO_ROOT } from './helpers/goldens.js';

const storywriter = parseMptConfig(
  JSON.parse(readFileSync(`${REPO_ROOT}test/fixtures/configs/mpt-7b-storywriter.json`, 'utf8')),
);
const GiB = 1024 ** 3;

test('7B StoryWriter, q4_0 weights, 65k q8_0 cache: every memory fits its weights and caches', () => {
  const ctx = 65536;
  const perLayer = kvCacheBytes(storywriter, ctx, 'q8_0') / storywriter.nLayers;
  const plain = planLayout(storywriter, () => 'q4_0', { threads: 2 });
  const planned = planLayout(storywriter, () => 'q4_0', { threads: 2, kvBytesPerLayer: perLayer });
  assert.ok(planned.arenas.length > plain.arenas.length, `${planned.arenas.length} vs ${plain.arenas.length} memories`);
  for (const a of planned.arenas) {
    const kv = kvRegionBytes(storywriter, a.layers.length, ctx, 'q8_0');
    assert.ok(
      a.initialBytes + kv <= 4 * GiB,
      `memory with ${a.layers.length} layers: ${(a.initialBytes + kv) / GiB} GiB`,
    );
  }
  // Without the reservation the same cache would not fit beside the packed layers.
  const worst = Math.max(
    ...plain.arenas.map((a) => a.initialBytes + kvRegionBytes(storywriter, a.layers.length, ctx, 'q8_0')),
  );
  assert.ok(worst > 4 * GiB);
});

test('a cache too large for one memory beside one layer is refused at load, naming the options', () => {
  const perLayer = kvCacheBytes(storywriter, 1 << 20, 'f32') / storywriter.nLayers; // 1M tokens of f32: 32 GiB a layer
  assert.throws(
    () => planLayout(storywriter, () => 'q4_0', { threads: 2, kvBytesPerLayer: perLayer }),
    (e: unknown) =>
      e instanceof MemoryPlanError &&
      /KV cache/.test(e.message) &&
      /--kv-type q8_0/.test(e.message) &&
      /--ctx/.test(e.message),
  );
});
