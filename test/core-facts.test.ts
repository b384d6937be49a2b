/**
 * model/facts.ts, the one place MPT's derived facts come from: its values on configs worked out by
 * hand from llm-foundry's definitions, the trainer and the backends holding the same ones, and no
 * source file outside model/ re-deriving the softmax scale or the ALiBi slopes.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { InputError } from '../src/errors.js';
import { parseMptConfig } from '../src/model/config.js';
import { alibiBias, kvHeadOf, mptFacts, positionIds } from '../src/model/facts.js';
import { jsKernels } from '../src/train/kernels.js';
import { TrainModel } from '../src/train/model.js';
import { REPO_ROOT } from './helpers/goldens.js';

const small = { d_model: 96, n_heads: 6, n_layers: 1, vocab_size: 50, max_seq_len: 16 };

describe('mptFacts', () => {
  it('dimensions, the fused-qkv split and the head grouping of grouped-query attention', () => {
    const f = mptFacts(
      parseMptConfig({ ...small, attn_config: { attn_type: 'grouped_query_attention', kv_n_heads: 2, alibi: true } }),
    );
    assert.equal(f.headDim, 16);
    assert.equal(f.kvHeads, 2);
    assert.equal(f.kvDim, 32);
    assert.equal(f.qkvDim, 96 + 64);
    assert.deepEqual(f.qkvSplit, { q: 0, k: 96, v: 128 });
    assert.equal(f.queriesPerKvHead, 3);
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5].map((h) => kvHeadOf(f, h)),
      [0, 0, 0, 1, 1, 1],
    );
    assert.equal(f.softmaxScale, 1 / 4);
    assert.equal(f.ffnHidden, 4 * 96);
    assert.equal(f.glu, false);
    assert.equal(f.activation, 'gelu');
    assert.deepEqual(f.norm, { kind: 'layernorm', eps: 1e-5, bias: true });
    assert.equal(f.maskedScore, -(2 - 2 ** -23) * 2 ** 127, "float32's most negative value, not -Infinity");
    assert.equal(f.logitScale, 1);
    assert.equal(f.learnedPositions, false);
    assert.equal(f.tiedHead, true);
  });

  it('multi-query, softmax_scale, RMSNorm (never a bias), GLU with its hidden size, logit_scale', () => {
    const f = mptFacts(
      parseMptConfig({
        ...small,
        no_bias: false,
        norm_type: 'low_precision_rmsnorm',
        logit_scale: 'inv_sqrt_d_model',
        attn_config: { attn_type: 'multiquery_attention', softmax_scale: 0.3, clip_qkv: 4, qk_ln: true },
        ffn_config: { ffn_type: 'mptglu', ffn_act_fn: { name: 'silu' }, ffn_hidden_size: 100 },
      }),
    );
    assert.equal(f.kvDim, 16);
    assert.equal(f.queriesPerKvHead, 6);
    assert.equal(f.softmaxScale, 0.3);
    assert.deepEqual(f.norm, { kind: 'rmsnorm', eps: 1e-5, bias: false });
    assert.equal(f.glu, true);
    assert.equal(f.ffnHidden, 100);
    assert.equal(f.activation, 'silu');
    assert.equal(f.logitScale, 1 / Math.sqrt(96));
    assert.equal(f.clipQkv, 4);
    assert.equal(f.qkLn, true);
    assert.deepEqual(Array.from(f.slopes), [0, 0, 0, 0, 0, 0], 'no ALiBi: every slope is 0');
    assert.equal(f.learnedPositions, true);
  });

  it('ALiBi slopes are float32 values rounded as gen_slopes rounds them (32 heads: not the float64 powers)', () => {
    const f = mptFacts(parseMptConfig({ d_model: 64, n_heads: 32, n_layers: 1, attn_config: { alibi: true } }));
    assert.ok(f.slopes instanceof Float32Array);
    // torch: m = arange(1, 33) * (8 / 32) in float32 (exact here), slopes = 1 / pow(2, m), each op rounded to float32.
    const want = Array.from({ length: 32 }, (_, i) => Math.fround(1 / Math.fround(2 ** ((i + 1) / 4))));
    assert.deepEqual(Array.from(f.slopes), want);
    const f64 = Array.from({ length: 32 }, (_, i) => 1 / 2 ** ((i + 1) / 4));
    assert.ok(
      f64.some((v, i) => v !== want[i]),
      'float64 slopes differ from these: the check tells them apart',
    );
    // Key j of K gets −slope·(K−1−j): 0 for the newest key.
    assert.equal(alibiBias(0.25, 9, 10), 0);
    assert.equal(alibiBias(0.25, 0, 10), -2.25);
  });

  it('is computed once per config object', () => {
    const c = parseMptConfig(small);
    assert.equal(mptFacts(c), mptFacts(c));
  });
});

describe('positionIds: MosaicML shifts learned positions left past padding, clamped at 0', () => {
  const f = mptFacts(parseMptConfig({ ...small, attn_config: { alibi: false }, learned_pos_emb: true }));
  it('no padding: past .. past+n-1', () => {
    assert.deepEqual(Array.from(positionIds(f, 3, 0, 4).positions), [3, 4, 5, 6]);
  });
  it('left padding: the first real token gets 0; the pads clamp at 0; the count carries to the next call', () => {
    const mask = [0, 0, 0, 1, 1];
    const a = positionIds(f, 0, 0, 5, (t) => mask[t] === 1);
    // clamp(arange(0, 5) − cumsum(1 − mask), 0) = clamp([0,1,2,3,4] − [1,2,3,3,3], 0)
    assert.deepEqual(Array.from(a.positions), [0, 0, 0, 0, 1]);
    assert.equal(a.padsAfter, 3);
    assert.deepEqual(Array.from(positionIds(f, 5, a.padsAfter, 2).positions), [2, 3]);
  });
  it('a position past max_seq_len is an InputError', () => {
    assert.throws(() => positionIds(f, 15, 0, 2), InputError);
    assert.equal(positionIds(f, 15, 0, 1).positions[0], 15);
  });
});

describe('one source of the facts', () => {
  it("the trainer's attention reads the float32 slopes of model/facts.ts (it once computed float64 ones)", () => {
    const c = parseMptConfig({ d_model: 64, n_heads: 32, n_layers: 1, vocab_size: 20, attn_config: { alibi: true } });
    const m = new TrainModel(c, jsKernels());
    assert.equal(m.facts, mptFacts(c));
    assert.ok(m.facts.slopes instanceof Float32Array);
  });

  it('no source file outside src/model/ derives the softmax scale or the ALiBi slopes', () => {
    const root = join(REPO_ROOT, 'src');
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (/\.ts$/.test(e.name) && !relative(root, p).startsWith('model')) {
          const text = readFileSync(p, 'utf8');
          for (const re of [/softmaxScale \?\? 1/, /alibiSlopes\(/, /Math\.log2\(\w*[hH]eads/])
            if (re.test(text)) found.push(`${relative(root, p)}: ${re.source}`);
        }
      }
    };
    walk(root);
    assert.deepEqual(found, []);
  });
});
