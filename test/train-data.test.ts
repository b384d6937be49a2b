// Data pipeline: concat_tokens packing, EOS between documents, train/eval split, resumable
// shuffling, instruction batches with loss on response tokens only.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  instructBatch,
  lmBatch,
  packWindows,
  ShuffledIterator,
  splitDocuments,
  splitWindows,
  tokenizeDocuments,
} from '../src/train/data.js';
import { IGNORE_INDEX } from '../src/train/model.js';
import { loadTokenizer } from '../src/runtime/tokenizer-files.js';
import { REPO_ROOT } from './helpers/goldens.js';

const toyTok = { encode: (s: string) => s.split(' ').map((w) => w.length) };

test('documents are tokenized, each followed by EOS, concatenated and cut into full windows', () => {
  const docs = splitDocuments('a bb ccc\n<|endoftext|>\n dddd e \n<|endoftext|>\n');
  assert.deepEqual(docs, ['a bb ccc', 'dddd e']);
  const stream = tokenizeDocuments(docs, toyTok, 0);
  assert.deepEqual(Array.from(stream), [1, 2, 3, 0, 4, 1, 0]);
  const { windows, count } = packWindows(stream, 3);
  assert.equal(count, 2);
  assert.deepEqual(Array.from(windows), [1, 2, 3, 0, 4, 1]);
  const b = lmBatch(windows, 3, [1, 0]);
  assert.deepEqual(Array.from(b.inputs), [0, 4, 1, 1, 2, 3]);
  assert.deepEqual(Array.from(b.targets), [4, 1, IGNORE_INDEX, 2, 3, IGNORE_INDEX]);
});

test('the real tokenizer: EOS (id 0) between stories, same ids as encoding each story alone', () => {
  const tok = loadTokenizer(`${REPO_ROOT}assets/gpt-neox-20b/tokenizer.json`)!;
  const docs = splitDocuments('Once upon a time.\n<|endoftext|>\nThe end.');
  const ids = Array.from(tokenizeDocuments(docs, tok, tok.eosId ?? 0));
  assert.deepEqual(ids, [...tok.encode('Once upon a time.'), 0, ...tok.encode('The end.'), 0]);
});

test('train/eval split is disjoint and covers every window', () => {
  const w = Int32Array.from({ length: 40 }, (_, i) => i);
  const { train, eval: ev } = splitWindows(w, 20, 2, 0.25);
  assert.equal(train.length + ev.length, 40);
  assert.equal(ev.length, 10);
  const seen = new Set([...train, ...ev]);
  assert.equal(seen.size, 40);
});

test('shuffled iteration is a permutation per epoch, seeded, and resumes exactly from a position', () => {
  const a = new ShuffledIterator(10, 5);
  const first = a.next(10);
  assert.deepEqual(
    [...first].sort((x, y) => x - y),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.notDeepEqual(first, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const second = a.next(7);
  assert.notDeepEqual(second, first.slice(0, 7));
  const pos = a.position();
  const rest = a.next(9);
  const b = new ShuffledIterator(10, 5, pos);
  assert.deepEqual(b.next(9), rest);
  assert.deepEqual(new ShuffledIterator(10, 5).next(10), first);
  assert.notDeepEqual(new ShuffledIterator(10, 6).next(10), first);
});

test('instruction batches: right-padded, loss only on response tokens (and the EOS that ends them)', () => {
  const ex = [
    { prompt: [5, 6, 7], response: [8, 9, 0] },
    { prompt: [3], response: [4, 0] },
  ];
  const b = instructBatch(ex, [0, 1], 16, 1);
  assert.equal(b.T, 6);
  assert.deepEqual(Array.from(b.inputs), [5, 6, 7, 8, 9, 0, 3, 4, 0, 1, 1, 1]);
  const I = IGNORE_INDEX;
  assert.deepEqual(Array.from(b.targets), [I, I, 8, 9, 0, I, 4, 0, I, I, I, I]);
});

test('durations in llm-foundry notation convert to optimizer steps', async () => {
  const { parseDuration, durationToSteps, parseRecipe } = await import('../src/train/recipe.js');
  assert.deepEqual(parseDuration('1000ba', 'x'), { value: 1000, unit: 'ba' });
  assert.deepEqual(parseDuration('2000000tok', 'x'), { value: 2000000, unit: 'tok' });
  assert.deepEqual(parseDuration('1.5ep', 'x'), { value: 1.5, unit: 'ep' });
  assert.throws(() => parseDuration('10 steps', 'max_duration'), /max_duration/);
  // 8 windows of 256 tokens per step; 823 windows per epoch
  assert.equal(durationToSteps({ value: 2000000, unit: 'tok' }, 2048, 823, 8), 977);
  assert.equal(durationToSteps({ value: 2, unit: 'ep' }, 2048, 823, 8), 206);
  const rc = parseRecipe(
    'max_seq_len: 64\nmodel: {d_model: 32}\ndata: {train: [a.txt]}\noptimizer: {name: decoupled_lionw, lr: 0.001}\nglobal_train_batch_size: 16\ndevice_train_microbatch_size: 4\nmax_duration: 5ba\n',
  );
  assert.equal(rc.optimizer.name, 'decoupled_lionw');
  assert.deepEqual(rc.optimizer.betas, [0.9, 0.99]);
  assert.equal(rc.microBatch, 4);
  assert.throws(() => parseRecipe('optimizer: {name: sgd}\ndata: {train: [a]}'), /sgd/);
});

test('instruction data: huge fields are tokenized in part, long examples cut, full prompts skipped', async () => {
  const { readInstructJsonl, CHARS_PER_CONTEXT_TOKEN } = await import('../src/train/data.js');
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'mpt-instruct-'));
  try {
    const path = join(dir, 'd.jsonl');
    const huge = 'ab '.repeat(700_000); // 2 MB
    writeFileSync(
      path,
      [
        JSON.stringify({ prompt: 'p q', response: 'r s t' }),
        JSON.stringify({ prompt: 'tell', response: huge }),
        '',
        JSON.stringify({ prompt: huge, response: 'x' }),
        JSON.stringify({ prompt: huge, response: 'y' }),
        JSON.stringify({ instruction: 'a b c d e f g', output: 'h i' }),
      ].join('\n'),
    );
    let longest = 0;
    const tok = {
      encode: (s: string) => {
        longest = Math.max(longest, s.length);
        return s
          .split(' ')
          .filter((w) => w)
          .map((w) => w.length);
      },
    };
    const ctx = 8;
    const r = readInstructJsonl(path, tok, 0, ctx);
    assert.ok(longest <= ctx * CHARS_PER_CONTEXT_TOKEN, `the tokenizer was given ${longest} characters`);
    assert.deepEqual(r.examples, [
      { prompt: [1, 1], response: [1, 1, 1, 0] },
      { prompt: [4], response: [2, 2, 2, 2, 2, 2, 2] },
      { prompt: [1, 1, 1, 1, 1, 1, 1], response: [1] }, // cut to the context: the EOS does not fit
    ]);
    assert.deepEqual(r.truncated, { count: 2, firstLine: 2 });
    assert.deepEqual(r.skipped, { count: 2, firstLine: 4 });
    writeFileSync(path, JSON.stringify({ prompt: huge, response: 'x' }) + '\n');
    assert.throws(() => readInstructJsonl(path, tok, 0, ctx), /every example's prompt fills the 8-token .*line 1/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
