/**
 * The reference backend against every golden fixture made by MosaicML's (and HF's) MPT code:
 * full logits at each length, KV-cache step by step and chunked, left-padded batches, hidden
 * states, attention probabilities, ALiBi slopes and greedy tokens.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import type { ModelRunner } from '../src/backends/backend.js';
import { ReferenceKvCache, type ReferenceRunner } from '../src/backends/reference/index.js';
import { alibiSlopes } from '../src/model/alibi.js';
import { loadRunner } from '../src/backends/registry.js';
import { Goldens, argmaxRows, fixturePath, maxAbsDiff } from './helpers/goldens.js';

const TOL = 5e-4;
const FULL = [
  'tiny-alibi',
  'tiny-alibi-bin',
  'tiny-alibi-bf16',
  'tiny-alibi-fp16',
  'tiny-bias',
  'tiny-storywriter',
  'tiny-gqa',
  'tiny-exp2',
  'tiny-rmsnorm',
  'tiny-learned-pos',
  'gguf-tiny-q',
];
const LOGITS_ONLY = ['tiny-alibi-sharded', 'tiny-alibi-bin-sharded-bf16', 'tiny-alibi-msl32', 'tiny-neox-vocab'];

async function run(runner: ModelRunner, ids: number[], logits: 'all' | 'last' = 'all') {
  const cache = runner.createCache({ capacity: Math.max(ids.length, 1) + 64 });
  const [out] = await runner.forward([{ cache, tokens: ids }], { logits });
  return { out: out!, cache };
}

async function greedy(runner: ModelRunner, prompt: number[], n: number, padMask?: number[]): Promise<number[]> {
  const V = runner.config.vocabSize;
  const cache = runner.createCache({ capacity: prompt.length + n });
  let [out] = await runner.forward([{ cache, tokens: prompt, padMask }], { logits: 'last' });
  const toks: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = argmaxRows(out!.logits, 1, V)[0]!;
    toks.push(next);
    if (i + 1 < n) [out] = await runner.forward([{ cache, tokens: [next] }], { logits: 'last' });
  }
  return toks;
}

for (const name of [...FULL, ...LOGITS_ONLY]) {
  const dir = fixturePath(name);
  if (!existsSync(dir)) continue;
  describe(`fixture ${name}`, async () => {
    const g = new Goldens(dir);
    const { runner } = await loadRunner(dir, { backend: 'reference' });
    const V = runner.config.vocabSize;
    const inputs = g.json.inputs as Record<string, number[]>;

    for (const seq of Object.keys(inputs)) {
      if (!g.has(`logits/${seq}`)) continue;
      it(`logits/${seq} match within ${TOL}`, async () => {
        const { out } = await run(runner, inputs[seq]!);
        const gold = g.tensor(`logits/${seq}`).data;
        const d = maxAbsDiff(out.logits, gold);
        assert.ok(d <= TOL, `max abs diff ${d}`);
        assert.deepEqual(argmaxRows(out.logits, inputs[seq]!.length, V), argmaxRows(gold, inputs[seq]!.length, V));
      });
    }
    if (g.json.logits_seq4b_argmax) {
      it('seq4b argmax', async () => {
        const { out } = await run(runner, inputs['seq4b']!);
        assert.deepEqual(argmaxRows(out.logits, inputs['seq4b']!.length, V), g.json.logits_seq4b_argmax);
      });
    }

    if (g.json.kv_incremental) {
      it('KV cache: one token at a time equals the full forward', async () => {
        for (const seq of ['seq7', 'seq64']) {
          const ids = inputs[seq]!;
          const cache = runner.createCache({ capacity: ids.length });
          const rows: Float32Array[] = [];
          for (const id of ids) {
            const [o] = await runner.forward([{ cache, tokens: [id] }], { logits: 'last' });
            rows.push(o!.logits);
          }
          assert.deepEqual(
            rows.map((r) => argmaxRows(r, 1, V)[0]),
            g.json.kv_incremental[seq].argmax_per_step,
          );
          if (g.has(`kv_incremental/${seq}/step_logits`)) {
            const gold = g.tensor(`kv_incremental/${seq}/step_logits`).data;
            const flat = new Float32Array(rows.length * V);
            rows.forEach((r, i) => {
              flat.set(r, i * V);
            });
            assert.ok(maxAbsDiff(flat, gold) <= TOL);
          }
          for (const key of [`kv_incremental/${seq}/last_logits`]) {
            if (g.has(key)) assert.ok(maxAbsDiff(rows[rows.length - 1]!, g.tensor(key).data) <= TOL, key);
          }
        }
      });
      const chunks = g.json.kv_incremental.seq64_chunked?.chunks as [number, number][] | undefined;
      if (chunks && g.has('logits/seq64')) {
        it('KV cache: chunked prefill equals the full forward', async () => {
          const ids = inputs['seq64']!;
          const cache = runner.createCache({ capacity: ids.length });
          const flat = new Float32Array(ids.length * V);
          for (const [a, b] of chunks) {
            const [o] = await runner.forward([{ cache, tokens: ids.slice(a, b) }], { logits: 'all' });
            flat.set(o!.logits, a * V);
          }
          assert.ok(maxAbsDiff(flat, g.tensor('logits/seq64').data) <= TOL);
        });
      }
    }

    if (g.json.batch_left_pad) {
      it('left-padded batch (pad positions included) and its greedy continuation', async () => {
        const b = g.json.batch_left_pad;
        const caches = b.input_ids.map((r: number[]) => runner.createCache({ capacity: r.length + 16 }));
        const outs = await runner.forward(
          b.input_ids.map((r: number[], i: number) => ({ cache: caches[i], tokens: r, padMask: b.attention_mask[i] })),
          { logits: 'all' },
        );
        const T = b.input_ids[0].length;
        if (g.has('batch_left_pad/logits')) {
          const gold = g.tensor('batch_left_pad/logits').data;
          for (let i = 0; i < outs.length; i++) {
            assert.ok(maxAbsDiff(outs[i]!.logits, gold.subarray(i * T * V, (i + 1) * T * V)) <= TOL, `row ${i}`);
          }
        }
        if (g.has('batch_left_pad/last_logits')) {
          const gold = g.tensor('batch_left_pad/last_logits').data;
          for (let i = 0; i < outs.length; i++) {
            assert.ok(
              maxAbsDiff(outs[i]!.logits.subarray((T - 1) * V), gold.subarray(i * V, (i + 1) * V)) <= TOL,
              `row ${i}`,
            );
          }
        }
        if (b.argmax) {
          for (let i = 0; i < outs.length; i++) assert.deepEqual(argmaxRows(outs[i]!.logits, T, V), b.argmax[i]);
        }
        if (b.generate_10_greedy) {
          for (let i = 0; i < b.input_ids.length; i++) {
            const toks = await greedy(runner, b.input_ids[i], 10, b.attention_mask[i]);
            assert.deepEqual(toks, b.generate_10_greedy[i].slice(T), `row ${i}`);
          }
        }
      });
    }

    if (g.has('hidden_states/seq7')) {
      it('hidden states and attention probabilities', async () => {
        const cache = runner.createCache({ capacity: 7 });
        const [o] = await runner.forward([{ cache, tokens: inputs['seq7']! }], {
          logits: 'none',
          outputHiddenStates: true,
          outputAttentions: true,
        });
        const hs = g.tensor('hidden_states/seq7');
        const per = hs.shape[1]! * hs.shape[2]!;
        assert.equal(o!.hiddenStates!.length, hs.shape[0]);
        o!.hiddenStates!.forEach((h, i) => {
          assert.ok(maxAbsDiff(h, hs.data.subarray(i * per, (i + 1) * per)) <= TOL, `hidden ${i}`);
        });
        if (g.has('attentions/seq7')) {
          const at = g.tensor('attentions/seq7');
          const perL = at.data.length / at.shape[0]!;
          o!.attentions!.forEach((a, l) => {
            assert.ok(maxAbsDiff(a, at.data.subarray(l * perL, (l + 1) * perL)) <= 1e-5, `attn layer ${l}`);
          });
        }
      });
    }

    if (g.json.alibi?.slopes && g.json.produced_by?.semantics === 'mosaicml') {
      it('ALiBi slopes', () => {
        assert.deepEqual(
          Array.from(alibiSlopes(runner.config.nHeads, runner.config.attn.alibiBiasMax)),
          g.json.alibi.slopes,
        );
      });
    }

    if (g.json.generate?.new_tokens) {
      it('greedy generation equals the golden tokens', async () => {
        const gen = g.json.generate;
        const toks = await greedy(runner, gen.prompt_ids, gen.new_tokens.length);
        assert.deepEqual(toks, gen.new_tokens);
      });
    } else if (g.json.generate?.top5_ids_per_step) {
      it('greedy generation follows the golden top-1 ids', async () => {
        const gen = g.json.generate;
        const toks = await greedy(runner, gen.prompt_ids, gen.top5_ids_per_step.length);
        assert.deepEqual(
          toks,
          gen.top5_ids_per_step.map((r: number[]) => r[0]),
        );
      });
    }
  });
}

describe('ALiBi slopes for head counts that are not powers of two', () => {
  it('follow gen_slopes: interleave the next power of two', () => {
    // n_heads 6 -> padded 8: slopes of 8 heads are 2^-(8*i/8) = 2^-i, i = 1..8;
    // gen_slopes keeps [odd-index entries, then even-index entries][:6] = 2^-2, 2^-4, 2^-6, 2^-8, 2^-1, 2^-3.
    assert.deepEqual(Array.from(alibiSlopes(6, 8)), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]);
    assert.deepEqual(Array.from(alibiSlopes(4, 16)), [1 / 16, 1 / 256, 1 / 4096, 1 / 65536]);
  });
});

void ReferenceKvCache;
export type { ReferenceRunner };
