/** Config parsing: MosaicML defaults, hub configs of every MPT variant, and refusals by name. */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ConfigError, UnsupportedError } from '../src/errors.js';
import { parseMptConfig, qkvDim, toMosaicConfigJson } from '../src/model/config.js';
import { REPO_ROOT } from './helpers/goldens.js';

const CONFIGS = `${REPO_ROOT}test/fixtures/configs/`;

describe('parseMptConfig', () => {
  it('fills MosaicML defaults for an empty config', () => {
    const c = parseMptConfig({});
    assert.equal(c.dModel, 2048);
    assert.equal(c.nHeads, 16);
    assert.equal(c.nLayers, 24);
    assert.equal(c.vocabSize, 50368);
    assert.equal(c.noBias, false);
    assert.equal(c.learnedPosEmb, true);
    assert.equal(c.attn.alibi, false);
    assert.equal(c.attn.alibiBiasMax, 8);
    assert.equal(c.attn.attnType, 'multihead_attention');
    assert.equal(c.attn.kvNHeads, 16);
    assert.equal(c.ffn.hiddenSize, 4 * 2048);
    assert.equal(c.normType, 'low_precision_layernorm');
    assert.equal(c.tieWordEmbeddings, true);
  });

  it('reads every hub config of the MPT family', () => {
    for (const f of readdirSync(CONFIGS).filter((f) => f.endsWith('.json'))) {
      const raw = JSON.parse(readFileSync(CONFIGS + f, 'utf8'));
      const c = parseMptConfig(raw);
      assert.equal(c.dModel, raw.d_model, f);
      assert.equal(c.attn.alibi, true, f);
      assert.equal(c.learnedPosEmb, false, `${f}: alibi forces learned_pos_emb off`);
      if (f.startsWith('mpt-7b-storywriter')) {
        assert.equal(c.maxSeqLen, 65536);
        assert.equal(c.attn.alibiBiasMax, 16);
        assert.equal(c.attn.clipQkv, 6);
      }
      if (f.startsWith('mpt-7b.json')) assert.equal(c.vocabSize, 50432);
    }
  });

  it('derives MQA and GQA K/V head counts', () => {
    const mqa = parseMptConfig({ d_model: 64, n_heads: 8, attn_config: { attn_type: 'multiquery_attention' } });
    assert.equal(mqa.attn.kvNHeads, 1);
    assert.equal(qkvDim(mqa), 64 + 2 * 8);
    const gqa = parseMptConfig({
      d_model: 64,
      n_heads: 8,
      attn_config: { attn_type: 'grouped_query_attention', kv_n_heads: 2 },
    });
    assert.equal(gqa.attn.kvNHeads, 2);
    assert.equal(qkvDim(gqa), 96);
  });

  it('resolves logit_scale "inv_sqrt_d_model"', () => {
    assert.equal(parseMptConfig({ d_model: 64, n_heads: 4, logit_scale: 'inv_sqrt_d_model' }).logitScale, 1 / 8);
  });

  it('refuses options it does not implement, by name', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ attn_config: { rope: true } }, /rope is not supported/],
      [{ attn_config: { prefix_lm: true } }, /prefix_lm is not supported/],
      [{ attn_config: { attn_type: 'cross_attention' } }, /attn_type "cross_attention" is not supported/],
      [{ attn_config: { qk_gn: true } }, /qk_gn/],
      [{ attn_config: { fused_qkv: false } }, /fused_qkv/],
      [{ ffn_config: { ffn_type: 'te_ln_mlp' } }, /ffn_type "te_ln_mlp" is not supported/],
      [{ norm_type: 'groupnorm' }, /norm_type "groupnorm" is not supported/],
      [{ model_type: 'llama' }, /model_type "llama" is not supported/],
      [{ fc_type: 'te' }, /fc_type "te" is not supported/],
    ];
    for (const [raw, re] of cases)
      assert.throws(
        () => parseMptConfig(raw),
        (e: unknown) => e instanceof UnsupportedError && re.test((e as Error).message),
      );
  });

  it('rejects malformed values with a ConfigError naming the field', () => {
    assert.throws(
      () => parseMptConfig({ d_model: 'big' }),
      (e: unknown) => e instanceof ConfigError && /d_model/.test((e as Error).message),
    );
    assert.throws(() => parseMptConfig({ d_model: 65, n_heads: 4 }), /divisible/);
    assert.throws(
      () =>
        parseMptConfig({
          d_model: 64,
          n_heads: 8,
          attn_config: { attn_type: 'grouped_query_attention', kv_n_heads: 3 },
        }),
      /kv_n_heads/,
    );
    assert.throws(() => parseMptConfig([]), ConfigError);
    assert.throws(() => parseMptConfig({ attn_config: { clip_qkv: -1 } }), /clip_qkv/);
  });

  it('refuses values that make no sense, naming the field and the value', () => {
    const small = { d_model: 64, n_heads: 4 };
    const cases: [Record<string, unknown>, RegExp][] = [
      [
        { ...small, attn_config: { softmax_scale: 0 } },
        /config\.attn_config\.softmax_scale must be a positive number, got 0/,
      ],
      [{ ...small, attn_config: { softmax_scale: -0.125 } }, /softmax_scale must be a positive number, got -0\.125/],
      [{ ...small, attn_config: { softmax_scale: Infinity } }, /softmax_scale must be a number, got Infinity/],
      [{ ...small, logit_scale: 0 }, /config\.logit_scale must be a positive number, got 0/],
      [{ ...small, logit_scale: -2 }, /logit_scale must be a positive number/],
      [{ ...small, logit_scale: NaN }, /logit_scale must be a number, got NaN/],
      [
        { ...small, attn_config: { alibi: true, alibi_bias_max: -8 } },
        /config\.attn_config\.alibi_bias_max must be a non-negative number, got -8/,
      ],
      [
        { ...small, attn_config: { alibi: true, alibi_bias_max: -Infinity } },
        /alibi_bias_max must be a number, got -Infinity/,
      ],
      [{ ...small, attn_config: { clip_qkv: 0 } }, /config\.attn_config\.clip_qkv must be a positive number, got 0/],
      [{ ...small, layer_norm_epsilon: 0 }, /config\.layer_norm_epsilon must be a positive number, got 0/],
      [{ ...small, layer_norm_epsilon: -1e-5 }, /layer_norm_epsilon must be a positive number/],
      [{ ...small, d_model: 64.5 }, /config\.d_model must be an integer from 1 to 2147483647, got 64\.5/],
      [{ ...small, n_heads: 0 }, /config\.n_heads must be an integer from 1 to 2147483647, got 0/],
      [{ ...small, n_layers: -1 }, /config\.n_layers must be an integer from 1 to 9007199254740991, got -1/],
      [
        { ...small, n_layers: 2 ** 60 },
        /config\.n_layers must be an integer from 1 to 9007199254740991, got 1152921504606847000/,
      ],
      [{ ...small, vocab_size: 2 ** 31 }, /config\.vocab_size must be an integer from 1 to 2147483647, got 2147483648/],
      [
        { ...small, max_seq_len: 1e12 },
        /config\.max_seq_len must be an integer from 1 to 2147483647, got 1000000000000/,
      ],
      [{ ...small, expansion_ratio: 0 }, /config\.expansion_ratio must be a positive number, got 0/],
      [{ ...small, expansion_ratio: 0.001 }, /expansion_ratio 0\.001 × d_model 64 gives an MLP of 0 units/],
      [
        { ...small, expansion_ratio: 2 ** 30 },
        /expansion_ratio 1073741824 × d_model 64 gives an MLP of 68719476736 units/,
      ],
      [
        { ...small, ffn_config: { ffn_hidden_size: 0 } },
        /config\.ffn_config\.ffn_hidden_size must be an integer from 1 to 2147483647/,
      ],
      [
        { ...small, attn_config: { attn_type: 'grouped_query_attention', kv_n_heads: 8 } },
        /kv_n_heads \(8\) must divide n_heads \(4\)/,
      ],
      [
        { ...small, attn_config: { attn_type: 'grouped_query_attention', kv_n_heads: 0 } },
        /kv_n_heads must be an integer from 1/,
      ],
    ];
    for (const [raw, re] of cases) {
      assert.throws(
        () => parseMptConfig(raw),
        (e: unknown) => e instanceof ConfigError && re.test((e as Error).message),
        re.source,
      );
    }
    // What MosaicML allows stays allowed.
    assert.equal(parseMptConfig({ ...small, attn_config: { alibi: true, alibi_bias_max: 0 } }).attn.alibiBiasMax, 0);
    assert.equal(parseMptConfig({ ...small, logit_scale: 'inv_sqrt_d_model' }).logitScale, 1 / 8);
    assert.equal(parseMptConfig({ ...small, attn_config: { softmax_scale: 0.5 } }).attn.softmaxScale, 0.5);
    // n_layers is checked against the tensors when a checkpoint is opened, not here.
    assert.equal(parseMptConfig({ ...small, n_layers: 2 ** 31 }).nLayers, 2 ** 31);
  });

  it('round-trips through the MosaicML key set', () => {
    const raw = JSON.parse(readFileSync(`${REPO_ROOT}test/fixtures/tiny-gqa/config.json`, 'utf8'));
    const a = parseMptConfig(raw);
    const b = parseMptConfig(toMosaicConfigJson(a));
    const strip = (c: typeof a) => ({ ...c, raw: undefined });
    assert.deepEqual(strip(b), strip(a));
  });
});
