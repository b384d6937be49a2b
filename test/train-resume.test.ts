// Checkpoints resume exactly (the loss curve after a resume equals the uninterrupted one), runs are
// bit-reproducible from a seed, the compact vocabulary is exact, and an exported folder reloads in
// the reference inference backend with the training forward's logits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jsKernels } from '../src/train/kernels.js';
import { compactVocab, TrainModel } from '../src/train/model.js';
import { parseMptConfig } from '../src/model/config.js';
import { Trainer, type TrainerOptions } from '../src/train/trainer.js';
import { windowSource } from '../src/train/recipe.js';
import { optimizerConfig } from '../src/train/optim.js';
import { exportHfFolder } from '../src/train/weights-io.js';
import { loadRunner } from '../src/backends/registry.js';
import { Rng } from '../src/train/rng.js';
import { scanCheckpoints } from '../src/train/checkpoint.js';

const config = parseMptConfig({
  d_model: 32,
  n_heads: 4,
  n_layers: 2,
  expansion_ratio: 4,
  max_seq_len: 16,
  vocab_size: 300,
  no_bias: true,
  attn_config: { alibi: true },
});

function corpus(): Int32Array {
  const rng = new Rng(11);
  // A token stream with structure (repeated phrases) over ids 0..59 only, so vocab compaction applies.
  const out = new Int32Array(16 * 24);
  for (let i = 0; i < out.length; i++) out[i] = i % 7 === 0 ? 0 : 1 + ((i * 5 + rng.int(3)) % 59);
  return out;
}

function makeTrainer(folder: string | null, vocabCompact: boolean, maxSteps = 6): Trainer {
  const data = corpus();
  const model = new TrainModel(config, jsKernels(), vocabCompact ? compactVocab(300, new Set(data)) : undefined);
  model.initialize(7);
  const opts: TrainerOptions = {
    model,
    train: windowSource(data.subarray(0, 16 * 20), 16),
    eval: windowSource(data.subarray(16 * 20), 16),
    optimizer: optimizerConfig('decoupled_lionw', { lr: 3e-3, weightDecay: 1e-2 }),
    schedule: { name: 'cosine_with_warmup', warmupSteps: 2, alphaF: 0.1 },
    maxSteps,
    globalBatch: 4,
    microBatch: 2,
    gradClip: 1,
    evalInterval: 3,
    evalBatches: 0,
    seed: 5,
    saveFolder: folder,
    saveInterval: 3,
    progress: () => {},
  };
  return new Trainer(opts);
}

test('a run resumed from its step-3 checkpoint reproduces the uninterrupted loss curve exactly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-resume-'));
  try {
    const full = await makeTrainer(null, true).run();
    // Interrupted run: stop after 3 steps (the checkpoint at step 3), then a fresh process resumes.
    const first = makeTrainer(dir, true, 6);
    for (let i = 0; i < 3; i++) first.trainStep();
    await first.save();
    const saved = (await scanCheckpoints(dir)).latest;
    assert.ok(saved && existsSync(join(saved, 'state.safetensors')));
    const second = makeTrainer(dir, true, 6);
    assert.equal(await second.resume(), true);
    assert.equal(second.step, 3);
    const resumed = await second.run();
    assert.deepEqual(
      resumed.history.map((h) => h.loss),
      full.history.map((h) => h.loss),
    );
    assert.ok(full.history[5]!.loss < full.history[0]!.loss, 'the loss goes down');
    assert.ok(existsSync(join(dir, 'loss-curve.svg')));
    assert.match(readFileSync(join(dir, 'loss-curve.svg'), 'utf8'), /^<svg/);
    assert.ok(existsSync(join(dir, 'train-log.jsonl')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the compact vocabulary trains exactly like the full 300-row embedding whose unused rows start equal', async () => {
  const compact = makeTrainer(null, true, 4);
  const full = makeTrainer(null, false, 4);
  // Give the full model the same start: used rows as the compact model's, unused rows = the shared row.
  const v = compact.o.model.vocab,
    d = config.dModel;
  const cw = compact.o.model.param('transformer.wte.weight').data,
    fw = full.o.model.param('transformer.wte.weight').data;
  for (let id = 0; id < 300; id++) fw.set(cw.subarray(v.rowOf[id]! * d, v.rowOf[id]! * d + d), id * d);
  for (const p of compact.o.model.params)
    if (p.name !== 'transformer.wte.weight') full.o.model.param(p.name).data.set(p.data);
  const a = await compact.run(),
    b = await full.run();
  a.history.forEach((h, i) => {
    assert.ok(Math.abs(h.loss - b.history[i]!.loss) < 1e-4, `step ${i + 1}: ${h.loss} vs ${b.history[i]!.loss}`);
  });
  a.history.forEach((h, i) => {
    assert.ok(Math.abs(h.gradNorm - b.history[i]!.gradNorm) < 1e-4 * Math.max(1, h.gradNorm));
  });
  // Every unused row of the full model is still equal to the compact shared row.
  const shared = cw.subarray((v.idOf.length - 1) * d, v.idOf.length * d);
  let worst = 0;
  for (let id = 0; id < 300; id++) {
    if (v.rowOf[id] !== v.idOf.length - 1) continue;
    for (let j = 0; j < d; j++) worst = Math.max(worst, Math.abs(fw[id * d + j]! - shared[j]!));
  }
  assert.ok(worst < 1e-5, `unused rows drifted by ${worst}`);
});

test("export → loadRunner (reference backend) gives the training forward's logits", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-export-'));
  try {
    const t = makeTrainer(null, true, 2);
    await t.run();
    const model = t.o.model;
    // The staging folder a killed export left beside the destination is removed.
    const stale = `${dir}.tmp-${spawnSync(process.execPath, ['-e', '']).pid}`;
    mkdirSync(stale);
    writeFileSync(join(stale, 'model.safetensors'), 'partial');
    await exportHfFolder(model, dir, { dtype: 'f32' });
    assert.ok(!existsSync(stale));
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    assert.equal(cfg.model_type, 'mpt');
    assert.equal(cfg.attn_config.alibi, true);
    const { runner } = await loadRunner(dir);
    const tokens = [3, 0, 17, 250, 42, 42, 9, 1];
    const cache = runner.createCache({ capacity: 16 });
    const [out] = await runner.forward([{ cache, tokens }], { logits: 'all' });
    const mine = model.logits(Int32Array.from(tokens), 1, tokens.length);
    let worst = 0;
    for (let i = 0; i < mine.length; i++) worst = Math.max(worst, Math.abs(mine[i]! - out!.logits[i]!));
    assert.ok(worst <= 1e-4, `max |diff| ${worst}`);
    await runner.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('after a crash and a resume, train-log.jsonl has each step and eval once, as a clean run logs them', async () => {
  const crashed = mkdtempSync(join(tmpdir(), 'mpt-train-log-')),
    clean = mkdtempSync(join(tmpdir(), 'mpt-train-log-'));
  try {
    const readLog = (dir: string) =>
      readFileSync(join(dir, 'train-log.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    // Everything but the timings.
    const stable = (log: Array<Record<string, unknown>>) =>
      log.map(({ step, loss, eval_loss, lr }) => ({ step, loss, eval_loss, lr }));
    await makeTrainer(clean, true, 6).run();
    // The first run checkpoints at step 3, logs steps 4 and 5, and dies (before its step-6 checkpoint).
    const first = makeTrainer(crashed, true, 6);
    (first.o as { progress?: (l: string) => void }).progress = (line) => {
      if (line.startsWith('step 5/')) throw new Error('killed');
    };
    await assert.rejects(first.run(), /killed/);
    assert.deepEqual(
      readLog(crashed)
        .filter((e) => e.loss !== undefined)
        .map((e) => e.step),
      [1, 2, 3, 4, 5],
    );
    // The restart resumes from step 3 and replays 4 and 5: each must appear once.
    const second = makeTrainer(crashed, true, 6);
    assert.equal(await second.resume(), true);
    assert.equal(second.step, 3);
    await second.run();
    assert.deepEqual(stable(readLog(crashed)), stable(readLog(clean)));
    assert.deepEqual(
      readLog(crashed)
        .filter((e) => e.loss !== undefined)
        .map((e) => e.step),
      [1, 2, 3, 4, 5, 6],
    );
  } finally {
    rmSync(crashed, { recursive: true, force: true });
    rmSync(clean, { recursive: true, force: true });
  }
});

test('Trainer.resume refuses a save folder whose only checkpoint is incomplete instead of starting over', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-incomplete-'));
  try {
    const first = makeTrainer(dir, true, 2);
    first.trainStep();
    await first.save();
    const saved = (await scanCheckpoints(dir)).latest!;
    truncateSync(join(saved, 'state.safetensors'), 64);
    await assert.rejects(makeTrainer(dir, true, 2).resume(), /no complete checkpoint.*state\.safetensors.*--no-resume/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
