/** Ctrl-C in a real `mpt` process, for the tests of commands that must lose no work to it. */
import { spawn } from 'node:child_process';
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
