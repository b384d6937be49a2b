// Optimizer steps against llm-foundry / torch (fixtures' `optim` goldens), schedules against
// composer's formulas, and gradient clipping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Goldens, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { jsKernels } from '../src/train/kernels.js';
import { loadTrainModel } from '../src/train/weights-io.js';
import { clipGradNorm, gradNorm, Optimizer, optimizerConfig } from '../src/train/optim.js';
import { lrMultiplier } from '../src/train/schedule.js';
import type { Param } from '../src/train/model.js';

for (const name of ['decoupled_lionw', 'adamw'] as const) {
  test(`${name}: two steps fed the golden gradients match torch (≤ 1e-6)`, async () => {
    const g = new Goldens(fixturePath('tiny-alibi'));
    const spec = g.json.optim.optimizers[name];
    const { model } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
    const opt = new Optimizer(
      optimizerConfig(name, { lr: spec.lr, betas: spec.betas, eps: spec.eps, weightDecay: spec.weight_decay }),
    );
    for (const [s, gradKey] of [
      [1, 'grads'],
      [2, 'grads_batch2'],
    ] as const) {
      for (const p of model.params) p.grad = g.tensor(`${gradKey}/${p.name}`).data;
      opt.step(model.params, spec.lr);
      for (const p of model.params) {
        const want = g.tensor(`optim/${name}/step${s}/${p.name}`).data;
        const d = maxAbsDiff(p.data, want);
        assert.ok(d <= 1e-6, `step ${s} ${p.name}: max |diff| ${d}`);
      }
    }
  });
}

test('decoupled weight decay scales with lr / initial_lr and is not multiplied by lr (Lion and DecoupledAdamW)', () => {
  for (const name of ['decoupled_lionw', 'decoupled_adamw'] as const) {
    const p: Param = {
      name: 'w',
      shape: [1],
      data: new Float32Array([2]),
      grad: new Float32Array([0]),
      trainable: true,
    };
    const opt = new Optimizer(optimizerConfig(name, { lr: 0.1, weightDecay: 0.5 }));
    opt.step([p], 0.05); // half the initial lr → decay factor 1 − 0.5·0.5
    assert.ok(Math.abs(p.data[0]! - 2 * 0.75) < 1e-6, `${name}: ${p.data[0]}`);
  }
  const p: Param = { name: 'w', shape: [1], data: new Float32Array([2]), grad: new Float32Array([0]), trainable: true };
  new Optimizer(optimizerConfig('adamw', { lr: 0.1, weightDecay: 0.5 })).step([p], 0.1); // torch: 1 − lr·wd
  assert.ok(Math.abs(p.data[0]! - 2 * 0.95) < 1e-6);
});

test('cosine_with_warmup, linear_decay_with_warmup and constant_with_warmup follow composer', () => {
  const cos = { name: 'cosine_with_warmup' as const, warmupSteps: 10, alphaF: 0.1 };
  assert.equal(lrMultiplier(cos, 0, 110), 0);
  assert.equal(lrMultiplier(cos, 5, 110), 0.5);
  assert.equal(lrMultiplier(cos, 10, 110), 1);
  // halfway through the decay: alpha_f + (1 − alpha_f)·(1 + cos(π/2))/2
  assert.ok(Math.abs(lrMultiplier(cos, 60, 110) - (0.1 + 0.9 * 0.5)) < 1e-12);
  assert.ok(Math.abs(lrMultiplier(cos, 110, 110) - 0.1) < 1e-12);
  const lin = { name: 'linear_decay_with_warmup' as const, warmupSteps: 0, alphaF: 0 };
  assert.equal(lrMultiplier(lin, 25, 100), 0.75);
  const cst = { name: 'constant_with_warmup' as const, warmupSteps: 4, alphaF: 0 };
  assert.equal(lrMultiplier(cst, 2, 100), 0.5);
  assert.equal(lrMultiplier(cst, 99, 100), 1);
});

test('clipping by global norm rescales every gradient to the threshold and counts tied rows with their multiplicity', () => {
  const a: Param = {
    name: 'a',
    shape: [2],
    data: new Float32Array(2),
    grad: new Float32Array([3, 0]),
    trainable: true,
  };
  const b: Param = { name: 'b', shape: [1], data: new Float32Array(1), grad: new Float32Array([4]), trainable: true };
  assert.ok(Math.abs(clipGradNorm([a, b], 1) - 5) < 1e-9);
  assert.ok(Math.abs(gradNorm([a, b]) - 1) < 1e-5);
  const tied: Param = {
    name: 't',
    shape: [2],
    data: new Float32Array(2),
    grad: new Float32Array([1, 1]),
    trainable: true,
    multiplicity: (i) => (i === 1 ? 8 : 1),
  };
  assert.ok(Math.abs(gradNorm([tied]) - 3) < 1e-9);
});
