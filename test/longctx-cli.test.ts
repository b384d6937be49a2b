/**
 * `mpt generate` long-context options through the real command line: --prompt-cache writes the
 * file on the first run and reuses it on the second (both print the golden greedy
 * continuation), a foreign cache file is refused, the context-full note, and the memory check
 * refusing a context that cannot fit before anything is loaded.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadTokenizer } from '../src/runtime/tokenizer-files.js';
import { fixturePath } from './helpers/goldens.js';
import { runCli } from './helpers/cli.js';

const MODEL = fixturePath('tiny-neox-vocab');
const g = JSON.parse(readFileSync(`${MODEL}/goldens.json`, 'utf8'));
const tok = loadTokenizer(MODEL, { onNote: () => {} })!;
const dir = mkdtempSync(join(tmpdir(), 'mpt-longctx-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('--prompt-cache: written on the first run, reused on the second, same golden text', async () => {
  const file = join(dir, 'book.kvc');
  const args = [
    'generate',
    MODEL,
    g.inputs_text.seq7,
    '-n',
    '20',
    '-t',
    '0',
    '--backend',
    'reference',
    '--prompt-cache',
    file,
    '--kv-type',
    'f32',
  ];
  const a = await runCli(args);
  assert.equal(a.code, 0, a.stderr);
  assert.ok(existsSync(file));
  assert.match(a.stderr, /prompt cache: wrote 7 tokens/);
  const b = await runCli(args);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stderr, /prompt cache: reused 7 of 7 prompt tokens/);
  const want = tok.decode(g.generate.new_tokens);
  assert.equal(a.stdout, want);
  assert.equal(b.stdout, want);
  // another model's run refuses the file
  const c = await runCli([
    'generate',
    fixturePath('tiny-storywriter'),
    '--ids',
    '1,2,3',
    '-n',
    '2',
    '--backend',
    'reference',
    '--prompt-cache',
    file,
  ]);
  assert.equal(c.code, 1);
  assert.match(c.stderr, /made with another model/);
});

test('a full context stops with a note; --context-overflow shift goes on', async () => {
  const base = ['generate', MODEL, g.inputs_text.seq7, '-n', '30', '-t', '0', '--backend', 'reference', '--ctx', '16'];
  const a = await runCli(base);
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /context full \(16 tokens\)/);
  assert.match(a.stderr, /generated: 9 tokens/);
  const b = await runCli([...base, '--context-overflow', 'shift', '--keep', '2']);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stderr, /generated: 30 tokens/);
  assert.match(b.stderr, /shifted the window/);
});

test('a context that cannot fit in memory is refused before loading, with options', async () => {
  const r = await runCli(['generate', MODEL, 'hi', '--backend', 'reference', '--ctx', '400000000']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /not enough memory for context 400000000/);
  assert.match(r.stderr, /Options that fit: .*--ctx \d+/);
  assert.doesNotMatch(r.stderr, /loading model/);
});
