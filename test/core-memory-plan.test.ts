/** The memory planner's arithmetic on the real MPT-7B-StoryWriter config. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { MemoryPlanError } from '../src/errors.js';
import { parseMptConfig } from '../src/model/config.js';
import { assertFits, kvCacheBytes, planMemory } from '../src/model/memory-plan.js';
import { REPO_ROOT } from './helpers/goldens.js';

const sw = parseMptConfig(
  JSON.parse(readFileSync(`${REPO_ROOT}test/fixtures/configs/mpt-7b-storywriter.json`, 'utf8')),
);
const GiB = 2 ** 30;
const params7b = 6_649_286_656; // MPT-7B: 50432*4096 + 32 * (12*4096^2 + 2*4096) + 4096
const q4_0 = (params7b * 4.5) / 8;

describe('memory planner', () => {
  it('f16 KV for 65k tokens of MPT-7B-StoryWriter is 32 GiB', () => {
    assert.equal(kvCacheBytes(sw, 65536, 'f16'), 32 * GiB);
    assert.equal(kvCacheBytes(sw, 65536, 'f32'), 64 * GiB);
    assert.equal(kvCacheBytes(sw, 65536, 'q8_0'), 17 * GiB);
  });
  it('refuses f16 KV at 65k on 24 GB with options that fit', () => {
    const input = { config: sw, weightBytes: q4_0, ctx: 65536, kvType: 'f16' as const, availableBytes: 24 * GiB };
    const plan = planMemory(input);
    assert.equal(plan.fits, false);
    assert.throws(
      () => assertFits(plan, input),
      (e: unknown) =>
        e instanceof MemoryPlanError &&
        /--kv-type q8_0/.test((e as Error).message) &&
        /--ctx \d+/.test((e as Error).message),
    );
  });
  it('fits q8_0 KV + q4_0 weights at 65k in 24 GB (about 21 GB)', () => {
    const plan = planMemory({ config: sw, weightBytes: q4_0, ctx: 65536, kvType: 'q8_0', availableBytes: 24 * GiB });
    assert.equal(plan.fits, true);
    assert.ok(plan.totalBytes > 20 * GiB && plan.totalBytes < 22.5 * GiB, `${plan.totalBytes / GiB} GiB`);
  });
});
