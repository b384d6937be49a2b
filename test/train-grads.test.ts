// The trainer's forward against MosaicML's logits for every fixture it can train, and the gradients
// of its backward pass against torch autograd through MosaicML's MPT (fixtures' `grads` goldens)
// and against finite differences on a config with every option.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { Goldens, argmaxRows, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { bestKernels } from '../src/train/best-kernels.js';
import { jsKernels, type Kernels } from '../src/train/kernels.js';
import { loadTrainModel } from '../src/train/weights-io.js';
import { IGNORE_INDEX, TrainModel } from '../src/train/model.js';
import { parseMptConfig } from '../src/model/config.js';

/** MosaicML's labels: inputs shifted left by one within each row, last position ignored. */
function shiftedBatch(rows: number[][]) {
  const B = rows.length,
    T = rows[0]!.length;
  const inputs = new Int32Array(B * T),
    targets = new Int32Array(B * T);
  rows.forEach((r, b) => {
    r.forEach((id, t) => {
      inputs[b * T + t] = id;
      targets[b * T + t] = t + 1 < T ? r[t + 1]! : IGNORE_INDEX;
    });
  });
  return { inputs, targets, B, T };
}

/** Fixtures whose every option the trainer implements. */
const FORWARD_FIXTURES = [
  'tiny-alibi',
  'tiny-alibi-bf16',
  'tiny-bias',
  'tiny-storywriter',
  'tiny-gqa',
  'tiny-exp2',
  'tiny-learned-pos',
  'tiny-rmsnorm',
  'tiny-neox-vocab',
  'gguf-tiny-q',
];
for (const fixture of FORWARD_FIXTURES) {
  test(`${fixture}: the trainer's logits equal MosaicML's, alone and as two rows of a batch`, async () => {
    const g = new Goldens(fixturePath(fixture));
    const { model } = await loadTrainModel(fixturePath(fixture), jsKernels());
    const V = model.config.vocabSize;
    const inputs: Record<string, number[]> = g.json.inputs;
    for (const seq of Object.keys(inputs).filter((s) => g.has(`logits/${s}`))) {
      const ids = inputs[seq]!,
        want = g.tensor(`logits/${seq}`).data;
      const got = model.logits(Int32Array.from(ids), 1, ids.length);
      assert.ok(maxAbsDiff(got, want) <= 5e-4, `logits/${seq}: max |diff| ${maxAbsDiff(got, want)}`);
      assert.deepEqual(argmaxRows(got, ids.length, V), argmaxRows(want, ids.length, V));
    }
    // Rows of a batch are separate sequences: each starts again at position 0 and sees only itself.
    const s7 = inputs['seq7']!,
      s64 = inputs['seq64']!;
    const both = model.logits(Int32Array.from([...s64.slice(0, 7), ...s7]), 2, 7);
    assert.ok(maxAbsDiff(both.subarray(0, 7 * V), g.tensor('logits/seq64').data.subarray(0, 7 * V)) <= 5e-4, 'row 0');
    assert.ok(maxAbsDiff(both.subarray(7 * V), g.tensor('logits/seq7').data) <= 5e-4, 'row 1');
  });
}

const cases = [
  ['tiny-alibi', 'grads', 'js'],
  ['tiny-alibi', 'grads_batch2', 'js'],
  ['tiny-bias', 'grads', 'js'],
  ['tiny-bias', 'grads', 'best'],
  ['tiny-alibi', 'grads', 'best'],
] as const;
for (const [fixture, key, kind] of cases) {
  test(`${fixture} ${key} (${kind} kernels): loss and every parameter gradient match MosaicML's autograd`, async () => {
    const g = new Goldens(fixturePath(fixture));
    const kernels: Kernels = kind === 'js' ? jsKernels() : await bestKernels(2);
    after(() => kernels.close());
    const { model } = await loadTrainModel(fixturePath(fixture), kernels);
    const meta = g.json[key];
    const batch = shiftedBatch(meta.input_ids);
    model.zeroGrad();
    const res = model.step(batch, 1 / meta.n_tokens_in_mean, true);
    assert.equal(res.count, meta.n_tokens_in_mean);
    assert.ok(Math.abs(res.lossSum / res.count - meta.loss) <= 1e-4, `loss ${res.lossSum / res.count} vs ${meta.loss}`);
    assert.deepEqual(
      model.params.map((p) => p.name),
      meta.parameters.map((p: [string, number[]]) => p[0]),
    );
    for (const p of model.params) {
      const want = g.tensor(`${key}/${p.name}`).data;
      const diff = maxAbsDiff(p.grad!, want);
      assert.ok(diff <= 1e-4, `${p.name}: max |diff| ${diff}`);
    }
  });
}

const FD_BASE = { d_model: 16, n_heads: 4, n_layers: 2, expansion_ratio: 2, max_seq_len: 8, vocab_size: 23 };
const FD_CONFIGS: Array<[string, Record<string, unknown>]> = [
  [
    'GQA + qk_ln + biases + clip_qkv + logit_scale + learned positions',
    {
      ...FD_BASE,
      no_bias: false,
      logit_scale: 0.7,
      learned_pos_emb: true,
      norm_type: 'layernorm',
      attn_config: {
        attn_type: 'grouped_query_attention',
        kv_n_heads: 2,
        qk_ln: true,
        clip_qkv: 1.2,
        alibi: false,
        softmax_scale: 0.4,
      },
    },
  ],
  [
    'RMSNorm (qk_ln too) + multi-query + clip_qkv + ALiBi with 4 heads',
    {
      ...FD_BASE,
      no_bias: true,
      norm_type: 'low_precision_rmsnorm',
      attn_config: { attn_type: 'multiquery_attention', qk_ln: true, clip_qkv: 1.2, alibi: true },
    },
  ],
];
for (const [what, raw] of FD_CONFIGS)
  test(`finite differences: ${what}`, () => {
    const config = parseMptConfig(raw);
    const model = new TrainModel(config, jsKernels());
    model.initialize(3);
    // Non-trivial norm weights and biases, so their gradients are exercised.
    for (const p of model.params)
      if (/norm|_ln|bias/.test(p.name))
        for (let i = 0; i < p.data.length; i++) p.data[i]! += 0.1 * Math.sin(i + p.name.length);
    const batch = shiftedBatch([
      [1, 5, 7, 2, 9, 22, 3, 4],
      [6, 6, 0, 11, 13, 8, 17, 19],
    ]);
    batch.targets[3] = IGNORE_INDEX;
    model.zeroGrad();
    model.step(batch, 1, true);
    // clip_qkv must actually clip some entries (and leave most) for the test to cover its gradient.
    const qkv = (model as unknown as { ws: { layers: Array<{ qkv: Float32Array }> } }).ws.layers[0]!.qkv;
    const clipped = qkv.filter((v) => Math.abs(v) > 1.2).length / qkv.length;
    assert.ok(clipped > 0.01 && clipped < 0.5, `fraction clipped ${clipped}`);
    const loss = () => model.step(batch, 1, false).lossSum;
    let checked = 0;
    for (const p of model.params) {
      const idx = [0, Math.floor(p.data.length / 2), p.data.length - 1];
      for (const i of idx) {
        const old = p.data[i]!;
        const h = 2e-3;
        p.data[i] = old + h;
        const lp = loss();
        p.data[i] = old - h;
        const lm = loss();
        p.data[i] = old;
        const fd = (lp - lm) / (2 * h);
        const an = p.grad![i]!;
        assert.ok(Math.abs(fd - an) <= 3e-3 + 3e-2 * Math.abs(fd), `${p.name}[${i}]: analytic ${an} vs numeric ${fd}`);
        checked++;
      }
    }
    assert.ok(checked > 40);
  });

test('gradient accumulation over microbatches equals one batch (loss normalised by all target tokens)', async () => {
  const g = new Goldens(fixturePath('tiny-alibi'));
  const { model } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
  const rows: number[][] = g.json.grads.input_ids;
  model.zeroGrad();
  model.step(shiftedBatch(rows), 1 / 30, true);
  const whole = new Map(model.params.map((p) => [p.name, p.grad!.slice()]));
  model.zeroGrad();
  for (const r of rows) model.step(shiftedBatch([r]), 1 / 30, true);
  for (const p of model.params) assert.ok(maxAbsDiff(p.grad!, whole.get(p.name)!) <= 1e-6, p.name);
  // And both equal the golden gradient of the 2-row batch.
  for (const p of model.params) assert.ok(maxAbsDiff(p.grad!, g.tensor(`grads/${p.name}`).data) <= 1e-4, p.name);
});
