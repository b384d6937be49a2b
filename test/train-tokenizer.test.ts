// The tokenizer a model is trained with travels with it: `mpt train` with tokenizer.name naming a
// model folder exports that folder's tokenizer files (not its parent's); a tokenizer with more ids
// than the model's vocabulary is refused; the training commands take a GGUF's own tokenizer, and
// say why a model without tokenizer.json has none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fixturePath, REPO_ROOT } from './helpers/goldens.js';
import { runCli } from './helpers/cli.js';
import { openSafetensors } from '../src/formats/safetensors.js';
import { parseRecipe } from '../src/train/recipe.js';
import { ConfigError } from '../src/errors.js';

const NEOX = join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json');
const TEXT = 'The little fox ran into the forest. <|endoftext|>The owl watched the moon over the hill. '.repeat(8);

function recipe(dir: string, tokenizer: string, extra = ''): string {
  const path = join(dir, 'recipe.yaml');
  writeFileSync(
    path,
    `seed: 3
max_seq_len: 16
model: {d_model: 16, n_heads: 2, n_layers: 1, expansion_ratio: 2, vocab_size: 50432, no_bias: true, attn_config: {alibi: true}}
tokenizer: {name: ${tokenizer}}
data: {train: [${join(dir, 'train.txt')}]}
optimizer: {name: decoupled_adamw, lr: 1.0e-3}
max_duration: 1ba
global_train_batch_size: 2
device_train_microbatch_size: 2
save_folder: ${join(dir, 'run')}
export_folder: ${join(dir, 'export')}
threads: 1
${extra}`,
  );
  return path;
}

test("mpt train with tokenizer.name naming a model folder exports that folder's tokenizer files", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-tok-'));
  try {
    writeFileSync(join(dir, 'train.txt'), TEXT);
    // A model folder whose tokenizer is GPT-NeoX plus one token, beside a decoy (plain GPT-NeoX) in its parent.
    const models = join(dir, 'models'),
      own = join(models, 'own-tokenizer');
    mkdirSync(own, { recursive: true });
    const tj = JSON.parse(readFileSync(NEOX, 'utf8'));
    tj.added_tokens.push({
      id: 50277,
      content: '<|custom|>',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    const ownJson = JSON.stringify(tj);
    writeFileSync(join(own, 'tokenizer.json'), ownJson);
    writeFileSync(
      join(own, 'tokenizer_config.json'),
      JSON.stringify({ eos_token: '<|endoftext|>', chat_template: 'custom {{ messages }}' }),
    );
    writeFileSync(join(models, 'tokenizer.json'), readFileSync(NEOX));
    const r = await runCli(['train', recipe(dir, own, 'export_dtype: f16')]);
    assert.equal(r.code, 0, r.stderr);
    const exp = join(dir, 'export');
    assert.equal(
      readFileSync(join(exp, 'tokenizer.json'), 'utf8'),
      ownJson,
      "the folder's tokenizer.json, not its parent's",
    );
    assert.equal(
      JSON.parse(readFileSync(join(exp, 'tokenizer_config.json'), 'utf8')).chat_template,
      'custom {{ messages }}',
    );
    // Side files the folder lacks are MPT's defaults.
    assert.equal(JSON.parse(readFileSync(join(exp, 'generation_config.json'), 'utf8')).eos_token_id, 0);
    // export_dtype f16 is honoured (it used to become bf16).
    assert.equal(JSON.parse(readFileSync(join(exp, 'config.json'), 'utf8')).torch_dtype, 'float16');
    const st = await openSafetensors(join(exp, 'model.safetensors'));
    try {
      assert.ok(st.list().every((t) => t.dtype === 'f16'));
    } finally {
      await st.close();
    }
    // The exported model tokenizes with its own tokenizer, with no fallback note.
    const tok = await runCli(['tokenize', exp], 'a <|custom|>');
    assert.equal(tok.code, 0, tok.stderr);
    assert.deepEqual(JSON.parse(tok.stdout).ids.slice(-1), [50277]);
    assert.doesNotMatch(tok.stderr, /shipped GPT-NeoX/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("mpt train refuses a tokenizer with more ids than the model's vocab_size", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-tok-'));
  try {
    writeFileSync(join(dir, 'train.txt'), TEXT);
    const path = recipe(dir, NEOX);
    writeFileSync(path, readFileSync(path, 'utf8').replace('vocab_size: 50432', 'vocab_size: 50000'));
    const r = await runCli(['train', path]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /has 50277 ids but the model's vocab_size is 50000/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a recipe continuing a pretrained model uses its tokenizer by default; export_dtype is checked', () => {
  const rc = parseRecipe('model: {pretrained: some/model}\n');
  assert.equal(rc.tokenizerPath, resolve('some/model'));
  assert.equal(parseRecipe('data: {train: [a.txt]}\nexport_dtype: float16\n').exportDtype, 'f16');
  assert.throws(
    () => parseRecipe('data: {train: [a.txt]}\nexport_dtype: int8\n'),
    (e) => e instanceof ConfigError && /export_dtype/.test(e.message),
  );
});

test("mpt perplexity takes a GGUF's own tokenizer, and says why a small-vocabulary folder has none", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-ppl-tok-'));
  try {
    const file = join(dir, 'text.txt');
    writeFileSync(file, TEXT);
    // tiny-q-f32.gguf holds its 1024-token tokenizer; its folder has no tokenizer.json.
    const g = await runCli([
      'perplexity',
      join(fixturePath('gguf-tiny-q'), 'tiny-q-f32.gguf'),
      file,
      '--window',
      '64',
      '--threads',
      '1',
      '-q',
    ]);
    assert.equal(g.code, 0, g.stderr);
    assert.ok(JSON.parse(g.stdout).tokens > 100);
    const s = await runCli(['perplexity', fixturePath('tiny-alibi'), file, '--threads', '1']);
    assert.notEqual(s.code, 0);
    assert.match(
      s.stderr,
      /tiny-alibi has no tokenizer \(no tokenizer\.json, and its vocab_size 512 cannot hold the 50277 ids of the shipped GPT-NeoX-20B tokenizer\): put the tokenizer\.json/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
