/** `mpt tokenize` / `mpt detokenize` through the real command line. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fixturePath, REPO_ROOT } from './helpers/goldens.js';
import { runCli } from './helpers/cli.js';

const golden = JSON.parse(readFileSync(`${REPO_ROOT}assets/gpt-neox-20b/golden-encodings.json`, 'utf8')) as {
  cases: { text: string; ids: number[]; decoded: string }[];
};
const TOKENIZER = 'assets/gpt-neox-20b/tokenizer.json';

test('tokenize reads all of stdin and prints {"ids": [...]}', async () => {
  const text = 'Once upon a time, there was a little girl named Lily.';
  const r = await runCli(['tokenize', TOKENIZER], text);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { ids: golden.cases.find((c) => c.text === text)!.ids });
  // A trailing newline is part of the text; the model folder falls back to the shipped tokenizer.
  const r2 = await runCli(['tokenize', fixturePath('tiny-neox-vocab')], 'a\n');
  assert.equal(r2.code, 0, r2.stderr);
  assert.deepEqual(JSON.parse(r2.stdout), { ids: [66, 187] });
  assert.match(r2.stderr, /shipped GPT-NeoX-20B tokenizer/);
});

test('tokenize --jsonl and detokenize --jsonl reproduce every golden case', async () => {
  const input = golden.cases.map((c) => JSON.stringify(c.text)).join('\n') + '\n';
  const r = await runCli(['tokenize', TOKENIZER, '--jsonl'], input);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, golden.cases.length);
  lines.forEach((line, i) => {
    assert.deepEqual(JSON.parse(line), { ids: golden.cases[i]!.ids }, golden.cases[i]!.text);
  });

  const back = await runCli(
    ['detokenize', TOKENIZER, '--jsonl'],
    golden.cases.map((c) => JSON.stringify(c.ids)).join('\n'),
  );
  assert.equal(back.code, 0, back.stderr);
  const texts = back.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    texts,
    golden.cases.map((c) => c.decoded),
  );
});

test('detokenize prints the text exactly, with no newline added', async () => {
  const c = golden.cases.find((x) => x.text === 'line one\n\nline two\n')!;
  const r = await runCli(['detokenize', TOKENIZER], JSON.stringify({ ids: c.ids }));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, c.decoded);
  const skip = await runCli(['detokenize', TOKENIZER, '--skip-special'], '[0, 12092, 1533, 0]');
  assert.equal(skip.stdout, 'Hello world');
});

test('bad input gives a one-line error and a non-zero exit', async () => {
  const r = await runCli(['detokenize', TOKENIZER], 'not json');
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /^mpt detokenize: /);
  const r2 = await runCli(['tokenize', fixturePath('tiny-alibi')], 'x');
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /no tokenizer\.json/);
  const help = await runCli(['tokenize', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: mpt tokenize/);
});

test('a Split pattern that backtracks catastrophically hangs neither tokenize nor generate', async () => {
  // The shipped tokenizer with a Split (a+)+$ before its byte-level pre-tokenizer: on "aaa…a!"
  // JavaScript's regex engine takes 2^36 steps (minutes); the pattern never matches there, so the
  // ids are the plain tokenizer's.
  const dir = mkdtempSync(join(tmpdir(), 'mpt-hostile-tok-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const tj = JSON.parse(readFileSync(`${REPO_ROOT}${TOKENIZER}`, 'utf8'));
  tj.pre_tokenizer = {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: '(a+)+$' }, behavior: 'Isolated', invert: false },
      tj.pre_tokenizer,
    ],
  };
  const hostile = join(dir, 'tokenizer.json');
  writeFileSync(hostile, JSON.stringify(tj));
  const text = 'a'.repeat(35) + '!';
  const [plain, r] = await Promise.all([
    runCli(['tokenize', TOKENIZER], text),
    runCli(['tokenize', hostile], text, 60_000),
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), JSON.parse(plain.stdout));
  const generate = ['generate', fixturePath('tiny-neox-vocab'), text, '--tokenizer', hostile, '-n', '2', '-q'];
  const g = await runCli(generate, '', 60_000);
  assert.equal(g.code, 0, g.stderr);
  assert.equal(g.stderr, '');
});
