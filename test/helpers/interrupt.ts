/** Ctrl-C in a real `mpt` process, for the tests of commands that must lose no work to it. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './goldens.js';

/** Runs `mpt ARGS` and sends SIGINT once stderr shows step `after`; resolves with how it ended. */
export function interruptAfter(args: string[], after: number): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin/mpt.js'), ...args], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mpt ${args[0]} did not end: ${stderr}`));
    }, 180_000);
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString('utf8');
      if (!sent && new RegExp(`step ${after}/`).test(stderr)) {
        sent = true;
        child.kill('SIGINT');
      }
    });
    child.stdout.resume();
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/**
 * Checks how an interrupted run ended (exit 130, the two notes, a complete checkpoint of the step
 * it names, in a folder matching `folder`) and returns that step and folder.
 */
export function checkStopped(
  run: { code: number | null; stderr: string },
  atLeast: number,
  folder: RegExp,
): { step: number; checkpoint: string } {
  assert.equal(run.code, 130, run.stderr);
  assert.match(run.stderr, /interrupted: saving a checkpoint after step \d+/);
  const m = /stopped after step (\d+): checkpoint saved in (.*); the same command resumes from it/.exec(run.stderr);
  assert.ok(m, run.stderr);
  const step = Number(m[1]);
  assert.ok(step >= atLeast, run.stderr);
  assert.match(m[2]!, folder);
  const complete = JSON.parse(readFileSync(join(m[2]!, 'complete.json'), 'utf8')) as { step: number };
  assert.equal(complete.step, step);
  return { step, checkpoint: m[2]! };
}
