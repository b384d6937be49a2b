// `mpt train` from a YAML recipe end to end (tokenize, pack, train, eval, checkpoint, export),
// resuming when run again with a longer duration, then `mpt perplexity` on the export; and Ctrl-C
// during a run, which loses no work: the run ends after the step in progress with a checkpoint of
// it, says where that is, exits with the shell's status for SIGINT (130), and the same command
// resumes from that step.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/goldens.js';
import { checkStopped, interruptAfter } from './helpers/interrupt.js';

const mpt = (args: string[]) =>
  spawnSync(process.execPath, [join(REPO_ROOT, 'bin/mpt.js'), ...args], { cwd: REPO_ROOT, encoding: 'utf8' });

const recipeBody = (dir: string) =>
  `seed: 3
max_seq_len: 32
model: {d_model: 32, n_heads: 2, n_layers: 1, expansion_ratio: 2, vocab_size: 50432, no_bias: true, attn_config: {alibi: true}}
tokenizer: {name: ${join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json')}}
data: {train: [${join(REPO_ROOT, 'data/tinystories/heldout.txt')}], eval_fraction: 0.05}
optimizer: {name: decoupled_lionw, lr: 2.0e-3, betas: [0.9, 0.99], weight_decay: 0}
scheduler: {name: cosine_with_warmup, t_warmup: 1ba, alpha_f: 0.1}
algorithms: {gradient_clipping: {clipping_type: norm, clipping_threshold: 1.0}}
max_duration: 3ba
eval_interval: 2ba
eval_subset_num_batches: 2
global_train_batch_size: 4
device_train_microbatch_size: 2
save_folder: ${join(dir, 'run')}
save_interval: 2ba
export_folder: ${join(dir, 'export')}
export_dtype: bf16
threads: 1
`;

/**
 * A small recipe in `dir` (r.yaml): three steps of a 1-layer model on TinyStories text; `changes`
 * replaces top-level keys' values (null removes the key).
 */
function writeRecipe(dir: string, changes: Record<string, string | null> = {}): string {
  const path = join(dir, 'r.yaml');
  const lines = recipeBody(dir)
    .split('\n')
    .flatMap((line) => {
      const key = line.slice(0, line.indexOf(':'));
      if (!(key in changes)) return [line];
      const value = changes[key];
      return value === null || value === undefined ? [] : [`${key}: ${value}`];
    });
  writeFileSync(path, lines.join('\n'));
  return path;
}

test('mpt train runs a recipe, resumes from its checkpoint, exports a model that mpt perplexity reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-cli-'));
  try {
    const recipe = writeRecipe(dir);
    // --stop-at ends the run early (with a checkpoint) while keeping the 3-step schedule.
    const first = mpt(['train', recipe, '--stop-at', '2']);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stderr, /step 2\/3 \| loss [0-9.]+ \| eval [0-9.]+ .*\| lr [0-9.e+-]+ \| [0-9]+ tok\/s .*ETA/);
    assert.equal(JSON.parse(first.stdout).steps, 2);
    // A longer duration continues from the checkpoint instead of starting over.
    const second = mpt(['train', recipe, '--duration', '5ba']);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stderr, /resumed from .* at step 2/);
    assert.equal(JSON.parse(second.stdout).steps, 5);
    const log = readFileSync(join(dir, 'run', 'train-log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      log.filter((e) => e.loss !== undefined).map((e) => e.step),
      [1, 2, 3, 4, 5],
    );
    assert.ok(existsSync(join(dir, 'run', 'loss-curve.svg')));
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json'])
      assert.ok(existsSync(join(dir, 'export', f)), f);
    const ppl = mpt([
      'perplexity',
      join(dir, 'export'),
      join(REPO_ROOT, 'test/fixtures/README.md'),
      '--window',
      '32',
      '--threads',
      '1',
    ]);
    assert.equal(ppl.status, 0, ppl.stderr);
    const r = JSON.parse(ppl.stdout);
    assert.ok(r.perplexity > 1 && r.tokens > 100, ppl.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C during mpt train saves a checkpoint of the last step, says where, and the run resumes from it', {
  timeout: 300_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-cli-'));
  try {
    // save_interval 0: without the interrupt's checkpoint, every step would be lost.
    const r = writeRecipe(dir, {
      max_duration: '100000ba',
      eval_interval: '0ba',
      global_train_batch_size: '2',
      save_interval: '0',
      export_folder: null,
    });
    const first = await interruptAfter(['train', r], 3);
    const { step } = checkStopped(first, 3, /[/\\]run[/\\]checkpoint-\d+$/);
    // The same command (to one more step) continues from there.
    const second = mpt(['train', r, '--stop-at', String(step + 1)]);
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`resumed from .*checkpoint-\\d+ at step ${step}`));
    const log = readFileSync(join(dir, 'run', 'train-log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { step: number; loss?: number });
    assert.deepEqual(
      log.filter((e) => e.loss !== undefined).map((e) => e.step),
      Array.from({ length: step + 1 }, (_, i) => i + 1),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
