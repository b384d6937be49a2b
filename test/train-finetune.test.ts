// `mpt finetune` on data with megabyte-long examples: each example is cut to the context before
// it is tokenized (a 10 MB line costs what a context's worth of text costs), the run says how many
// examples were truncated or skipped and names the first line of each, and memory stays small.
// Ctrl-C during a run loses no work: it ends after the step in progress with a checkpoint of it,
// says where, exits 130, and the same command resumes from that step. (README's and the help's
// example on the sample data: readme-training.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, fixturePath } from './helpers/goldens.js';
import { checkStopped, interruptAfter } from './helpers/interrupt.js';

test('mpt finetune cuts a 10 MB example to the context, skips one whose prompt fills it, and names the lines', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-finetune-long-'));
  try {
    const data = join(dir, 'data.jsonl');
    const huge = 'once upon a time '.repeat((10 * 1024 * 1024) / 17);
    const line = (prompt: string, response: string) => JSON.stringify({ prompt, response });
    writeFileSync(
      data,
      [
        line('Say hi.', 'Hi!'),
        line('Tell a long story.', huge),
        line('Count to three.', 'One, two, three.'),
        line(huge, 'The end.'),
        line('Name a color.', 'Blue.'),
        '',
      ].join('\n'),
    );
    // A heap far below what tokenizing 10 MB takes: the run only fits if the text is cut first.
    const r = spawnSync(
      process.execPath,
      [
        '--max-old-space-size=192',
        join(REPO_ROOT, 'bin/mpt.js'),
        'finetune',
        fixturePath('tiny-neox-vocab'),
        data,
        '--out',
        join(dir, 'out'),
        '--steps',
        '1',
        '--batch-size',
        '2',
        '--max-seq-len',
        '32',
        '--eval-fraction',
        '0',
        '--threads',
        '1',
      ],
      { cwd: REPO_ROOT, encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /1 example longer than the 32-token context truncated \(first: .*data\.jsonl:2\)/);
    assert.match(r.stderr, /1 example skipped: the prompt alone fills the 32-token context.*\(first: .*\.jsonl:4\)/);
    assert.match(r.stderr, /finetune: 4 train \/ 0 eval examples/);
    assert.ok(existsSync(join(dir, 'out', 'model.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('Ctrl-C during mpt finetune saves a checkpoint of the last step, says where, and the same command resumes from it', {
  timeout: 300_000,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-finetune-int-'));
  try {
    const data = join(dir, 'data.jsonl');
    const lines = Array.from({ length: 16 }, (_, i) => JSON.stringify({ prompt: `Count to ${i}.`, response: `${i}.` }));
    writeFileSync(data, `${lines.join('\n')}\n`);
    const out = join(dir, 'out');
    const args = (steps: number) => [
      'finetune',
      fixturePath('tiny-neox-vocab'),
      data,
      '--out',
      out,
      '--steps',
      String(steps),
      '--batch-size',
      '2',
      '--max-seq-len',
      '16',
      '--eval-fraction',
      '0',
      '--threads',
      '1',
    ];
    // 100,000 steps save every 20,000: without the interrupt's checkpoint, every step would be lost.
    const first = await interruptAfter(args(100_000), 3);
    const { step } = checkStopped(first, 3, /[/\\]out[/\\]checkpoints[/\\]checkpoint-\d+$/);
    assert.ok(!existsSync(join(out, 'model.safetensors')), 'an unfinished run exports no model');
    // The same command, to one more step, continues from there and exports.
    const second = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/mpt.js'), ...args(step + 1)], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(second.status, 0, second.stderr);
    assert.match(second.stderr, new RegExp(`resumed from .*checkpoint-\\d+ at step ${step}`));
    assert.equal((JSON.parse(second.stdout) as { steps: number }).steps, step + 1);
    assert.ok(existsSync(join(out, 'model.safetensors')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
