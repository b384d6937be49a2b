// LoRA: only adapters train, their gradients are right (finite differences), merging gives the
// adapter forward's logits, and adapters saved alone (PEFT's layout) reload, as do those saved with
// this project's earlier tensor names; a loaded model knows the dtype its weights are stored in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { jsKernels } from '../src/train/kernels.js';
import { loadTrainModel } from '../src/train/weights-io.js';
import { IGNORE_INDEX, type Batch } from '../src/train/model.js';
import { Optimizer, optimizerConfig } from '../src/train/optim.js';
import { loadLoraAdapters, saveLoraAdapters } from '../src/train/lora.js';
import { openSafetensors, writeSafetensors } from '../src/formats/safetensors.js';
import { FormatError, UnsupportedError } from '../src/errors.js';
import { Rng } from '../src/train/rng.js';

const LORA = {
  rank: 4,
  alpha: 8,
  targets: ['Wqkv', 'out_proj', 'up_proj', 'down_proj'] as Array<'Wqkv' | 'out_proj' | 'up_proj' | 'down_proj'>,
};

function batch(): Batch {
  const ids = [5, 99, 3, 400, 17, 17, 250, 8, 60, 61, 62, 7];
  const T = ids.length;
  const targets = Int32Array.from(ids.map((_, t) => (t + 1 < T ? ids[t + 1]! : IGNORE_INDEX)));
  return { inputs: Int32Array.from(ids), targets, B: 1, T };
}

async function loraModel() {
  const { model } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
  model.addLora(LORA, 3);
  // B starts at 0 (the adapter is a no-op); make it non-zero so the test exercises it.
  const rng = new Rng(9);
  for (const p of model.params)
    if (p.name.endsWith('lora_B')) for (let i = 0; i < p.data.length; i++) p.data[i] = 0.05 * rng.normal();
  return model;
}

test('merging the adapters into the weights gives the same logits as the adapter forward', async () => {
  const model = await loraModel();
  const b = batch();
  const withAdapters = model.logits(b.inputs, 1, b.T);
  const { model: base } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
  assert.ok(maxAbsDiff(withAdapters, base.logits(b.inputs, 1, b.T)) > 1e-3, 'the adapters change the output');
  model.mergeLora();
  assert.ok(model.params.every((p) => !p.name.includes('lora')));
  assert.ok(maxAbsDiff(model.logits(b.inputs, 1, b.T), withAdapters) <= 1e-4);
});

test('LoRA gradients match finite differences and training changes only the adapters', async () => {
  const model = await loraModel();
  const b = batch();
  model.zeroGrad();
  model.step(b, 1, true);
  const trainable = model.trainableParams();
  assert.equal(trainable.length, 2 * 4 * 2);
  assert.ok(trainable.every((p) => p.name.includes('.lora_')));
  for (const p of trainable.slice(0, 4)) {
    for (const i of [0, p.data.length - 1]) {
      const old = p.data[i]!,
        h = 1e-2;
      p.data[i] = old + h;
      const lp = model.step(b, 1, false).lossSum;
      p.data[i] = old - h;
      const lm = model.step(b, 1, false).lossSum;
      p.data[i] = old;
      const fd = (lp - lm) / (2 * h);
      assert.ok(Math.abs(fd - p.grad![i]!) <= 2e-3 + 2e-2 * Math.abs(fd), `${p.name}[${i}]: ${p.grad![i]} vs ${fd}`);
    }
  }
  const before = new Map(model.params.map((p) => [p.name, p.data.slice()]));
  const opt = new Optimizer(optimizerConfig('adamw', { lr: 1e-2 }));
  for (let s = 0; s < 3; s++) {
    model.zeroGrad();
    model.step(b, 1 / 11, true);
    opt.step(model.params, 1e-2);
  }
  for (const p of model.params) {
    const changed = maxAbsDiff(p.data, before.get(p.name)!) > 0;
    assert.equal(changed, p.name.includes('.lora_'), `${p.name} changed: ${changed}`);
  }
});

test('adapters saved alone reload onto the base model with identical logits', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-lora-'));
  try {
    const model = await loraModel();
    const b = batch();
    const want = model.logits(b.inputs, 1, b.T);
    await saveLoraAdapters(model, dir, 'tiny-alibi');
    const { model: again } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
    await loadLoraAdapters(again, dir);
    assert.equal(maxAbsDiff(again.logits(b.inputs, 1, b.T), want), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("adapters are saved under PEFT's names and reload from those or from the earlier names", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-lora-'));
  try {
    const model = await loraModel();
    const b = batch();
    const want = model.logits(b.inputs, 1, b.T);
    await saveLoraAdapters(model, join(dir, 'peft'), 'tiny-alibi');
    const st = await openSafetensors(join(dir, 'peft', 'adapter_model.safetensors'));
    const names = st.list().map((t) => t.name);
    await st.close();
    assert.ok(names.includes('base_model.model.transformer.blocks.0.attn.Wqkv.lora_A.weight'), names.join(' '));
    assert.ok(
      names.every((n) => /^base_model\.model\.transformer\.blocks\.\d+\.(attn|ffn)\.\w+\.lora_[AB]\.weight$/.test(n)),
      names.join(' '),
    );
    // The layout this project wrote before: bare parameter names and a minimal config.
    const old = join(dir, 'old');
    mkdirSync(old);
    await writeSafetensors(
      join(old, 'adapter_model.safetensors'),
      model.params
        .filter((p) => p.name.includes('.lora_'))
        .map((p) => ({
          name: p.name,
          dtype: 'f32' as const,
          shape: p.shape,
          data: new Uint8Array(p.data.buffer, p.data.byteOffset, p.data.byteLength).slice(),
        })),
    );
    writeFileSync(
      join(old, 'adapter_config.json'),
      JSON.stringify({
        peft_type: 'LORA',
        r: LORA.rank,
        lora_alpha: LORA.alpha,
        target_modules: LORA.targets,
        base_model_name_or_path: 'tiny-alibi',
      }),
    );
    for (const sub of ['peft', 'old']) {
      const { model: again } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
      await loadLoraAdapters(again, join(dir, sub));
      assert.equal(maxAbsDiff(again.logits(b.inputs, 1, b.T), want), 0, sub);
    }
    // PEFT options this trainer does not implement are refused, not ignored.
    writeFileSync(
      join(old, 'adapter_config.json'),
      JSON.stringify({
        peft_type: 'LORA',
        r: LORA.rank,
        lora_alpha: LORA.alpha,
        target_modules: LORA.targets,
        use_rslora: true,
      }),
    );
    const { model: m2 } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
    await assert.rejects(
      loadLoraAdapters(m2, old),
      (e) => e instanceof UnsupportedError && /use_rslora/.test(e.message),
    );
    writeFileSync(
      join(old, 'adapter_config.json'),
      JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: LORA.alpha, target_modules: LORA.targets }),
    );
    const { model: m3 } = await loadTrainModel(fixturePath('tiny-alibi'), jsKernels());
    await assert.rejects(loadLoraAdapters(m3, old), (e) => e instanceof FormatError && /shape \[4,/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a model loaded for training knows the float type its weights are stored in', async () => {
  for (const [fixture, dtype] of [
    ['tiny-alibi', 'f32'],
    ['tiny-alibi-bf16', 'bf16'],
    ['tiny-alibi-fp16', 'f16'],
  ] as const) {
    assert.equal((await loadTrainModel(fixturePath(fixture), jsKernels())).dtype, dtype, fixture);
  }
});
