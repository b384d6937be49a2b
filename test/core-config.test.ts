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
    const gqa = parseMptConfig({ d_model: 64, n_heads: 8, attn_config: { attn_type: 'grouped_query_attention', kv_n_heads: 2 } });
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
    for (const [raw, re] of cases) assert.throws(() => parseMptConfig(raw), (e: unknown) => e instanceof UnsupportedError && re.test((e as Error).message));
  });

  it('rejects malformed values with a ConfigError naming the field', () => {
    assert.throws(() => parseMptConfig({ d_model: 'big' }), (e: unknown) => e instanceof ConfigError && /d_model/.test((e as Error).message));
    assert.throws(() => parseMptConfig({ d_model: 65, n_heads: 4 }), /divisible/);
    assert.throws(() => parseMptConfig({ d_model: 64, n_heads: 8, attn_config: { attn_type: 'grouped_query_attention', kv_n_heads: 3 } }), /kv_n_heads/);
    assert.throws(() => parseMptConfig([]), ConfigError);
    assert.throws(() => parseMptConfig({ attn_config: { clip_qkv: -1 } }), /clip_qkv/);
  });

  it('round-trips through the MosaicML key set', () => {
    const raw = JSON.parse(readFileSync(`${REPO_ROOT}test/fixtures/tiny-gqa/config.json`, 'utf8'));
    const a = parseMptConfig(raw);
    const b = parseMptConfig(toMosaicConfigJson(a));
    const strip = (c: typeof a) => ({ ...c, raw: undefined });
    assert.deepEqual(strip(b), strip(a));
  });
});
