/** `mpt web` as a child process on a free port, as a user starts it (bin/mpt.js over dist/). */
import { spawn, type ChildProcess } from 'node:child_process';
import { MPT_BIN } from './cli.js';
import { REPO_ROOT } from './goldens.js';

export interface WebApp {
  /** The URL it printed, ending in '/'. */
  url: string;
  child: ChildProcess;
  /** What it wrote to stderr so far. */
  stderr(): string;
  /** Sends SIGINT (Ctrl-C) and waits for the exit: its code and signal. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `mpt web ...args --port 0` and resolves once it prints the URL it listens on; `bin` and
 * `cwd` name another installation's bin/mpt.js (default: the repository's).
 */
export function startWebApp(
  args: string[] = [],
  { bin = MPT_BIN, cwd = REPO_ROOT, timeoutMs = 20_000 } = {},
): Promise<WebApp> {
  const child = spawn(process.execPath, [bin, 'web', ...args, '--port', '0'], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`mpt web did not start: ${err}`));
    }, timeoutMs);
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`mpt web exited with ${code} before listening: ${err}`));
    });
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString('utf8');
      const m = /listening on (http:\/\/\S+\/)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        url: m[1]!,
        child,
        stderr: () => err,
        stop: () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
          return exited;
        },
      });
    });
  });
}
