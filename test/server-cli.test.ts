/**
 * `mpt serve` as a process: it prints the address it bound, serves, and on SIGTERM lets the
 * in-flight stream finish, refuses new work, and exits 0.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TINY_NEOX } from './helpers/serve-fixture.js';

const BIN = fileURLToPath(new URL('../../bin/mpt.js', import.meta.url));

test('mpt serve --help and option errors', () => {
  const h = spawnSync(process.execPath, [BIN, 'serve', '--help'], { encoding: 'utf8' });
  assert.equal(h.status, 0);
  assert.match(h.stdout, /--parallel N/);
  const bad = spawnSync(process.execPath, [BIN, 'serve', TINY_NEOX, '--parallel', '0'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--parallel must be an integer >= 1/);
});

test('mpt serve says where the chat page and the API are, and the model id requests name', {
  timeout: 60_000,
}, async () => {
  const child = spawn(process.execPath, [BIN, 'serve', TINY_NEOX, '--port', '0', '--backend', 'reference'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const m = await new Promise<RegExpExecArray>((resolve, reject) => {
      let err = '';
      child.stderr.on('data', (d) => {
        err += d;
        const found = /chat page at (http:\S+)\/; OpenAI API at (http:\S+) with "model": ("[^"]*")/.exec(err);
        if (found) resolve(found);
      });
      child.on('exit', () => reject(new Error(`server exited early: ${err}`)));
      // Without the line the test fails (and its finally ends the server) rather than waits forever.
      setTimeout(() => reject(new Error(`no "chat page at" line in 30 s: ${err}`)), 30_000).unref();
    });
    const [, page, api, id] = m;
    assert.match((await (await fetch(`${page}/`)).text())!, /<title>mpt-ts chat<\/title>/);
    const models = await (await fetch(`${api}/models`)).json();
    assert.equal(models.data[0].id, JSON.parse(id!));
  } finally {
    child.kill('SIGKILL');
  }
});

// A real terminal for stdout and stderr (util-linux `script`), as a user starting the server sees it.
const script = process.platform === 'linux' && existsSync('/usr/bin/script') ? '/usr/bin/script' : null;

test('in a terminal, mpt serve says "listening on" once', {
  timeout: 60_000,
  skip: script ? false : 'no util-linux script',
}, async () => {
  const cmd = `exec ${process.execPath} ${BIN} serve ${TINY_NEOX} --port 0 --backend reference`;
  const child = spawn(script!, ['-qec', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let tty = '';
  try {
    const api = await new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (d) => {
        tty += d;
        const found = /OpenAI API at (http:\S+)\/v1 with/.exec(tty);
        if (found) resolve(found[1]!);
      });
      child.on('exit', () => reject(new Error(`server exited early: ${tty}`)));
      setTimeout(() => reject(new Error(`no "OpenAI API at" line in 30 s: ${tty}`)), 30_000).unref();
    });
    // The server answers: everything it wrote at start-up has reached the terminal.
    assert.equal((await fetch(`${api}/health`)).status, 200);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(tty.match(/listening on/g)?.length, 1, tty);
  } finally {
    child.kill('SIGKILL');
  }
});

test('SIGTERM: the in-flight stream completes, then the process exits 0', { timeout: 60_000 }, async () => {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', TINY_NEOX, '--port', '0', '--backend', 'reference', '--quiet', '--grace', '30'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.on('exit', () => reject(new Error(`server exited early: ${stderr}`)));
    });
    const models = await (await fetch(`${url}/v1/models`)).json();
    const model = models.data[0].id;
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'Hello', max_tokens: 200, stream: true }),
    });
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = dec.decode((await reader.read()).value, { stream: true });
    child.kill('SIGTERM');
    let after = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      after += dec.decode(value, { stream: true });
    }
    text += after;
    assert.ok((after.match(/"text":"/g) ?? []).length > 1, 'tokens kept coming after SIGTERM');
    assert.match(text, /"finish_reason":"length"/);
    assert.ok(text.endsWith('data: [DONE]\n\n'), text.slice(-200));
    assert.equal(await exited, 0, stderr);
    assert.match(stderr, /SIGTERM/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
