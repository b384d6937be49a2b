/**
 * A reader that closes stdout early (`mpt logits … | head -c 10`, `mpt generate … | head`):
 * the command ends quietly, as Unix tools do, with no stack trace. Run through a real pipe
 * whose reading end is destroyed after the first bytes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { fixturePath, REPO_ROOT } from './helpers/goldens.js';
import { MPT_BIN } from './helpers/cli.js';

const MODEL = fixturePath('tiny-neox-vocab');

/** Runs `mpt ...args`, reads `bytes` bytes of stdout, then closes the pipe's reading end. */
interface Ended {
  code: number | null;
  signal: string | null;
  stderr: string;
  read: number;
}

function readThenClose(args: string[], bytes: number): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MPT_BIN, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let read = 0;
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => {
      read += b.length;
      if (read >= bytes) child.stdout.destroy();
    });
    child.stderr.on('data', (b: Buffer) => err.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mpt ${args.join(' ')} did not end`));
    }, 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr: Buffer.concat(err).toString('utf8'), read });
    });
  });
}

test('mpt logits into a pipe closed after 10 bytes exits 0 without a stack trace', async () => {
  // 3 rows of 50,432 logits: about 1.5 MB of JSON, far more than a pipe buffers.
  const r = await readThenClose(['logits', MODEL, '--tokens', '1,2,3'], 10);
  assert.ok(r.read >= 10);
  assert.equal(r.stderr, '');
  assert.deepEqual([r.code, r.signal], [0, null]);
});

test('mpt generate into a pipe closed after the first bytes stops quietly', async () => {
  const args = ['generate', MODEL, 'Once upon a time', '-n', '1500', '--ignore-eos', '-t', '0', '-q'];
  const r = await readThenClose(args, 1);
  assert.doesNotMatch(r.stderr, /Error|\n\s+at /);
  assert.equal(r.stderr, '');
  assert.deepEqual([r.code, r.signal], [0, null]);
});
