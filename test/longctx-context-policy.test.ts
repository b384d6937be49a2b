/**
 * The context overflow policy (src/runtime/context-policy.ts) and the memory check before
 * loading (src/runtime/memory-check.ts). The 'shift' generation is checked against an
 * independent loop that recomputes every step from scratch (no KV cache) over the window the
 * documented rule leaves.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelRunner } from '../src/backends/backend.js';
import { InputError, MemoryPlanError } from '../src/errors.js';
import { loadRunner } from '../src/backends/registry.js';
import { openCheckpoint } from '../src/model/load.js';
import {
  dropOldestTurns,
  generateWithContextPolicy,
  parseOverflowPolicy,
  shiftWindow,
  type PolicyGenerateResult,
} from '../src/runtime/context-policy.js';
import { generate } from '../src/runtime/generate.js';
import { assertContextFits, checkContextMemory, loadedWeightBytes } from '../src/runtime/memory-check.js';
import { argmaxRows, fixturePath } from './helpers/goldens.js';

async function drain(it: AsyncGenerator<unknown, PolicyGenerateResult, undefined>): Promise<PolicyGenerateResult> {
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
  }
}

async function nextGreedy(runner: ModelRunner, window: number[]): Promise<number> {
  const cache = runner.createCache({ capacity: window.length });
  const [o] = await runner.forward([{ cache, tokens: window }], { logits: 'last' });
  return argmaxRows(o!.logits, 1, runner.config.vocabSize)[0]!;
}

describe('context overflow policy', async () => {
  const { runner } = await loadRunner(fixturePath('tiny-storywriter'), { backend: 'reference' });
  const prompt = [5, 17, 99, 250, 3, 480, 77, 12, 310, 64];

  it('shiftWindow keeps the first `keep` tokens and the newest half of the rest', () => {
    const ids = Array.from({ length: 20 }, (_, i) => i);
    assert.deepEqual(shiftWindow(ids, 20, 4), [0, 1, 2, 3, 12, 13, 14, 15, 16, 17, 18, 19]);
    assert.deepEqual(shiftWindow(ids, 20, 0), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    assert.deepEqual(shiftWindow(ids.slice(0, 7), 20, 4), ids.slice(0, 7)); // fits: unchanged
    assert.equal(shiftWindow(ids, 20, 100).slice(0, 10).join(), ids.slice(0, 10).join()); // keep capped at half
    assert.equal(parseOverflowPolicy(undefined), 'stop');
    assert.throws(() => parseOverflowPolicy('wrap'), InputError);
  });

  it('dropOldestTurns drops whole turns, oldest first, and keeps the system prompt', () => {
    const msgs = [
      { role: 'system' as const, content: 'S' },
      { role: 'user' as const, content: 'u1u1' },
      { role: 'assistant' as const, content: 'a1a1' },
      { role: 'user' as const, content: 'u2u2' },
      { role: 'assistant' as const, content: 'a2a2' },
      { role: 'user' as const, content: 'u3u3' },
    ];
    const size = (m: readonly { content: string }[]) => m.reduce((s, x) => s + x.content.length, 0);
    const r = dropOldestTurns(msgs, (m) => size(m) <= 13);
    assert.deepEqual(
      r.messages.map((m) => m.content),
      ['S', 'u2u2', 'a2a2', 'u3u3'],
    );
    assert.equal(r.dropped, 2);
    assert.throws(() => dropOldestTurns(msgs, () => false), InputError);
  });

  it("'stop' ends with finish reason length at the context, like plain generation", async () => {
    const r = await drain(
      generateWithContextPolicy(runner, prompt, { contextLength: 24, maxTokens: 40, temperature: 0 }),
    );
    const plain = await generate(runner, prompt, { contextLength: 24, maxTokens: 40, temperature: 0 });
    assert.equal(r.finishReason, 'length');
    assert.equal(r.contextFull, true);
    assert.equal(r.tokens.length, 24 - prompt.length);
    assert.deepEqual(r.tokens, plain.tokens);
    assert.equal(r.shifts, 0);
    await assert.rejects(
      drain(generateWithContextPolicy(runner, [...prompt, ...prompt, ...prompt], { contextLength: 24 })),
      InputError,
    );
  });

  it("'shift' goes on past the context: every token equals a from-scratch pass over the documented window", async () => {
    const ctx = 24,
      keep = 4,
      n = 40;
    let finished: PolicyGenerateResult | undefined;
    const r = await drain(
      generateWithContextPolicy(runner, prompt, {
        contextLength: ctx,
        maxTokens: n,
        temperature: 0,
        overflow: 'shift',
        keep,
        onFinish: (x) => {
          finished = x as PolicyGenerateResult;
        },
      }),
    );
    assert.equal(r.tokens.length, n);
    assert.ok(r.shifts >= 2, `shifts ${r.shifts}`);
    assert.equal(finished?.tokens.length, n);
    // independent: no cache reuse, the window rebuilt by the rule in the docs
    let w = [...prompt];
    const want: number[] = [];
    while (want.length < n) {
      const t = await nextGreedy(runner, w);
      want.push(t);
      w.push(t);
      if (w.length >= ctx) w = [...w.slice(0, keep), ...w.slice(w.length - Math.floor((ctx - keep) / 2))];
    }
    assert.deepEqual(r.tokens, want);
  });

  it("'shift' also fits a prompt longer than the context", async () => {
    const long = [...prompt, ...prompt, ...prompt];
    const r = await drain(
      generateWithContextPolicy(runner, long, {
        contextLength: 24,
        maxTokens: 5,
        temperature: 0,
        overflow: 'shift',
        keep: 2,
      }),
    );
    assert.equal(r.tokens.length, 5);
    const w = shiftWindow(long, 24, 2);
    assert.equal(r.tokens[0], await nextGreedy(runner, w));
  });
});

describe('memory check before loading', () => {
  it('plans weights as the backend holds them and refuses what does not fit, naming what would', async () => {
    const ck = await openCheckpoint(fixturePath('tiny-alibi-fp16'));
    const infos = ck.tensors.list();
    await ck.tensors.close();
    const params = infos.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(loadedWeightBytes(infos, 'reference'), 4 * params);
    assert.ok(loadedWeightBytes(infos, 'wasm') < 4 * params); // f16 matrices stay f16
    const plan = assertContextFits(ck.config, infos, { ctx: 128 });
    assert.equal(plan.fits, true);
    const tight = plan.totalBytes - plan.kvBytes / 2; // room for about half of the f32 cache
    assert.throws(
      () => assertContextFits(ck.config, infos, { ctx: 128, availableBytes: tight }),
      (e: unknown) =>
        e instanceof MemoryPlanError && /--kv-type (f16|q8_0)/.test(e.message) && /--ctx \d+/.test(e.message),
    );
    await assert.rejects(
      checkContextMemory(fixturePath('tiny-storywriter'), { ctx: 1 << 24, availableBytes: 2 ** 30 }),
      MemoryPlanError,
    );
    assert.equal((await checkContextMemory(fixturePath('tiny-storywriter'), {})).ctx, 128);
  });
});
