// Progress on stderr (src/cli/progress.ts): a status line redrawn in place in a terminal (carriage
// return + clear-line, cut to the width), rate-limited plain lines elsewhere, permanent lines kept,
// ETA arithmetic; and `mpt perplexity` / `mpt train` through the CLI: progress on stderr, only the
// JSON result on stdout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath, REPO_ROOT } from './helpers/goldens.js';
import { runCli } from './helpers/cli.js';
import {
  createProgress,
  etaSeconds,
  formatDuration,
  progressBar,
  RateMeter,
  StatusLine,
  trainProgress,
  type ProgressStream,
} from '../src/cli/progress.js';
import type { StepProgress } from '../src/train/trainer.js';

/** A stream that records what is written, as a terminal (isTTY, columns) or not. */
function fakeStream(isTTY: boolean, columns?: number): ProgressStream & { out: string } {
  return {
    isTTY,
    columns,
    out: '',
    write(s: string) {
      this.out += s;
      return true;
    },
  };
}

/** A clock the test advances. */
function fakeClock() {
  let t = 1000;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

const CLEAR = '\r\x1b[2K';

test('in a terminal the status is redrawn in place (\\r + clear-line), cut to the width, at most every redrawEveryMs', () => {
  const s = fakeStream(true, 30);
  const clock = fakeClock();
  const st = new StatusLine({ stream: s, now: clock.now, redrawEveryMs: 100 });
  assert.equal(st.live, true);
  st.update('first status', 0.5);
  assert.equal(s.out, `${CLEAR}${progressBar(0.5)} first `, 'bar first, then cut to 29 columns');
  assert.equal(s.out.length - CLEAR.length, 29);
  assert.ok(!s.out.includes('\n'), 'a redrawn status never ends a line');
  clock.advance(50);
  st.update('too soon');
  assert.ok(!s.out.includes('too soon'), 'redraws are rate-limited');
  clock.advance(60);
  st.update('later');
  assert.ok(s.out.endsWith(`${CLEAR}later`));
  // A permanent line clears the status, stays, and the status is drawn again below it.
  st.log('eval line');
  assert.ok(s.out.endsWith(`${CLEAR}eval line\n${CLEAR}later`), JSON.stringify(s.out));
  // finish() keeps the final status as a line of its own.
  st.finish();
  assert.ok(s.out.endsWith(`${CLEAR}later\n`), JSON.stringify(s.out));
  const before = s.out;
  st.finish();
  assert.equal(s.out, before, 'a second finish writes nothing');
});

test('outside a terminal there is no \\r nor escape code: plain lines at most every lineEveryMs, the final state always', () => {
  const s = fakeStream(false);
  const clock = fakeClock();
  const st = new StatusLine({ stream: s, now: clock.now, lineEveryMs: 10_000 });
  assert.equal(st.live, false);
  st.update('a', 0.1);
  clock.advance(9_999);
  st.update('b', 0.2);
  assert.equal(s.out, '', 'nothing before a full interval');
  clock.advance(1);
  st.update('c', 0.3);
  assert.equal(s.out, 'c\n', 'no bar outside a terminal');
  for (let i = 0; i < 50; i++) {
    clock.advance(100);
    st.update(`d${i}`);
  }
  assert.equal(s.out, 'c\n', '50 updates within 5 s print nothing');
  clock.advance(5_000);
  st.update('e');
  st.log('permanent');
  st.update('f');
  st.finish();
  const written: string = s.out;
  assert.ok(!written.includes('\r') && !written.includes('\x1b'), 'no redrawing');
  assert.equal(s.out, 'c\ne\npermanent\nf\n', 'the held-back final state is printed by finish');

  const every = fakeStream(false);
  const st2 = new StatusLine({ stream: every, now: clock.now, lineEveryMs: 0 });
  st2.update('step 1');
  st2.update('step 2');
  st2.finish();
  assert.equal(every.out, 'step 1\nstep 2\n', 'lineEveryMs 0: a line per update, none repeated at the end');

  const quiet = fakeStream(true, 80);
  const st3 = new StatusLine({ stream: quiet, quiet: true });
  st3.update('x', 1);
  st3.log('y');
  st3.finish('z');
  assert.equal(quiet.out, '');
});

test('ETA arithmetic and durations', () => {
  assert.equal(etaSeconds(250, 1000, 50), 15);
  assert.equal(etaSeconds(1000, 1000, 50), 0);
  assert.ok(Number.isNaN(etaSeconds(0, 1000, 0)), 'no rate yet: unknown');
  assert.equal(formatDuration(15), '15s');
  assert.equal(formatDuration(185), '3m05s');
  assert.equal(formatDuration(2 * 3600 + 7 * 60 + 30), '2h07m');
  assert.equal(formatDuration(NaN), '-');
  // Recent throughput: exponential averages of tokens and seconds per step (weight 0.2 on the newest).
  const m = new RateMeter(0.2);
  assert.equal(m.rate, 0);
  m.add(1000, 2);
  assert.equal(m.rate, 500);
  m.add(1000, 1);
  assert.equal(m.secondsPerEvent, 0.8 * 2 + 0.2 * 1);
  assert.ok(Math.abs(m.rate - 1000 / 1.8) < 1e-9);
});

test('a counter shows done/total, rate and ETA from the elapsed time, and ends with the total, time and rate', () => {
  const s = fakeStream(true, 200);
  const clock = fakeClock();
  const p = createProgress('perplexity', { stream: s, now: clock.now, unit: 'tokens' });
  clock.advance(2000);
  p.update(500, 2000);
  // 500 tokens in 2 s: 250 tokens/s, 1500 left: 6 s.
  assert.ok(
    s.out.endsWith(`${progressBar(0.25)} perplexity  25% 500/2000 tokens | 250 tokens/s | ETA 6s`),
    JSON.stringify(s.out),
  );
  clock.advance(6000);
  p.update(2000, 2000);
  p.finish();
  assert.ok(s.out.endsWith(`${CLEAR}perplexity: 2000 tokens in 8.0 s (250 tokens/s)\n`), JSON.stringify(s.out));
  // Loading bytes (as before): outside a terminal only the final line.
  const plain = fakeStream(false);
  const q = createProgress('loading model', { stream: plain, now: clock.now });
  q.update(1 << 20, 2 << 20);
  clock.advance(500);
  q.update(2 << 20, 2 << 20);
  q.finish();
  assert.equal(plain.out, 'loading model: 2.0 MiB in 0.5 s\n');
});

test('training steps: redrawn with step/total, loss, tokens/s and ETA; steps that evaluated stay as lines', () => {
  const s = fakeStream(true, 300);
  const clock = fakeClock();
  const st = new StatusLine({ stream: s, now: clock.now, redrawEveryMs: 0 });
  const report = trainProgress(st);
  const step = (n: number, newEval: boolean): StepProgress => ({
    record: { step: n, loss: 2.5, lr: 1e-3, gradNorm: 1, tokens: n * 1000, tokPerSec: 500, elapsed: 2 * n },
    maxSteps: 10,
    evalLoss: 2.75,
    newEval,
    stepTokens: 1000,
    stepSeconds: 2,
    summary: `step ${n}/10 | loss 2.5000 | eval 2.7500${newEval ? ' (new)' : ''} | lr 1.00e-3`,
  });
  report(step(1, false));
  // 1000 tokens in 2 s: 500 tok/s; 9 steps of 2 s left: 18 s.
  assert.equal(
    s.out,
    `${CLEAR}${progressBar(0.1)} step 1/10 | loss 2.5000 | eval 2.7500 | lr 1.00e-3 | 500 tok/s | 2s elapsed | ETA 18s`,
  );
  report(step(2, true));
  assert.ok(
    s.out.endsWith(
      `${CLEAR}step 2/10 | loss 2.5000 | eval 2.7500 (new) | lr 1.00e-3 | 500 tok/s | 4s elapsed | ETA 16s\n`,
    ),
    JSON.stringify(s.out),
  );
  report(step(3, false));
  assert.ok(
    s.out.includes(
      `(new) | lr 1.00e-3 | 500 tok/s | 4s elapsed | ETA 16s\n${CLEAR}${progressBar(0.3)} step 3/10 | loss`,
    ),
  );
  const plain = fakeStream(false);
  const every = new StatusLine({ stream: plain, now: clock.now, lineEveryMs: 0 });
  const reportPlain = trainProgress(every);
  for (const [n, e] of [
    [1, false],
    [2, true],
    [3, false],
  ] as const)
    reportPlain(step(n, e));
  every.finish();
  assert.deepEqual(
    plain.out.split('\n').map((l) => l.split(' | ')[0]),
    ['step 1/10', 'step 2/10', 'step 3/10', ''],
    'a line per step',
  );
});

const TEXT = 'Once upon a time there was a little fox who liked to run in the forest. '.repeat(12);

test('mpt perplexity: progress on stderr, only the JSON result on stdout', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-ppl-progress-'));
  try {
    const file = join(dir, 'text.txt');
    writeFileSync(file, TEXT);
    const r = await runCli(['perplexity', fixturePath('tiny-neox-vocab'), file, '--window', '32', '--threads', '1']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `stdout is the JSON line alone: ${r.stdout}`);
    const res = JSON.parse(lines[0]!);
    assert.ok(res.tokens > 100);
    assert.match(r.stderr, new RegExp(`perplexity: ${res.tokens} tokens in [0-9.]+ s \\([0-9]+ tokens/s\\)\\n`));
    const q = await runCli([
      'perplexity',
      fixturePath('tiny-neox-vocab'),
      file,
      '--window',
      '32',
      '--threads',
      '1',
      '--quiet',
    ]);
    assert.doesNotMatch(q.stderr, /tokens in/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A real terminal for stderr (util-linux `script`), stdout to a file: the bar is redrawn there.
const script = process.platform === 'linux' && existsSync('/usr/bin/script') ? '/usr/bin/script' : null;

test('mpt perplexity in a terminal redraws a bar and keeps stdout for the JSON', {
  skip: script ? false : 'no util-linux script',
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-ppl-tty-'));
  try {
    const file = join(dir, 'text.txt'),
      out = join(dir, 'out.json');
    writeFileSync(file, TEXT);
    const cmd = `'${process.execPath}' '${join(REPO_ROOT, 'bin/mpt.js')}' perplexity '${fixturePath('tiny-neox-vocab')}' '${file}' --window 32 --threads 1 > '${out}'`;
    const r = spawnSync(script!, ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const res = JSON.parse(readFileSync(out, 'utf8'));
    assert.match(
      r.stdout,
      new RegExp(
        `\\r\\x1b\\[2K\\[[#.]+\\] perplexity +[0-9]+% [0-9]+/${res.tokens} tokens \\| [0-9]+ tokens/s \\| ETA`,
      ),
    );
    assert.match(r.stdout, new RegExp(`\\r\\x1b\\[2Kperplexity: ${res.tokens} tokens in`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mpt train in a terminal redraws one status line per step and keeps evaluations as lines', {
  skip: script ? false : 'no util-linux script',
}, () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-train-tty-'));
  try {
    writeFileSync(join(dir, 'train.txt'), TEXT.repeat(4));
    const recipe = join(dir, 'r.yaml'),
      out = join(dir, 'out.json');
    writeFileSync(
      recipe,
      `max_seq_len: 16
model: {d_model: 16, n_heads: 2, n_layers: 1, expansion_ratio: 2, vocab_size: 50432, no_bias: true, attn_config: {alibi: true}}
tokenizer: {name: ${join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json')}}
data: {train: [${join(dir, 'train.txt')}], eval_fraction: 0.2}
max_duration: 4ba
eval_interval: 2ba
global_train_batch_size: 2
threads: 1
`,
    );
    const cmd = `'${process.execPath}' '${join(REPO_ROOT, 'bin/mpt.js')}' train '${recipe}' > '${out}'`;
    const r = spawnSync(script!, ['-qec', cmd, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stdout);
    assert.equal(JSON.parse(readFileSync(out, 'utf8')).steps, 4);
    const tty = r.stdout.replace(/\r\n/g, '\n'); // the terminal's own newline translation
    // Steps without an evaluation are redrawn in place: a bar, never followed by a newline.
    for (const n of [1, 3])
      assert.match(
        tty,
        new RegExp(
          `\\r\\x1b\\[2K\\[[#.]+\\] step ${n}/4 \\| loss [0-9.]+ \\| eval [0-9.]+ \\| lr .* tok/s .*ETA [^\\n]*\\r`,
        ),
      );
    // Steps that evaluated stay as lines of their own.
    for (const n of [2, 4])
      assert.match(
        tty,
        new RegExp(`\\r\\x1b\\[2Kstep ${n}/4 \\| loss [0-9.]+ \\| eval [0-9.]+ \\(new\\) [^\\r\\n]*ETA [^\\r\\n]*\\n`),
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
