/**
 * `mpt chat` driven through piped stdin: replies equal the library's chat session, /save and
 * /reset work, SIGINT mid-reply stops only that reply, end of input exits 0; a model without a chat
 * template (the shipped one) gets a note that its replies continue the text.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ChatSession } from '../src/runtime/chat-session.js';
import { loadModel } from '../src/runtime/model.js';
import { REPO_ROOT } from './helpers/goldens.js';
import { MPT_BIN, runCli } from './helpers/cli.js';
import { makeChatModelFolder } from './helpers/model-folders.js';

let folder: { dir: string; cleanup: () => void };
before(() => {
  folder = makeChatModelFolder();
});
after(() => folder.cleanup());

test('piped messages get the same replies as the library; /save writes the history', async () => {
  const saveFile = join(tmpdir(), `mpt-chat-save-${process.pid}.json`);
  const lines = ['Hello there', 'What is the weather like?', `/save ${saveFile}`, '/reset', 'Hello there'];
  const r = await runCli(
    ['chat', folder.dir, '-n', '6', '-t', '0', '--system', 'Be brief.', '--backend', 'reference'],
    lines.join('\n') + '\n',
  );
  assert.equal(r.code, 0, r.stderr);

  const model = await loadModel(folder.dir, { backend: 'reference', onNote: () => {} });
  try {
    const session = new ChatSession(model, { maxTokens: 6, temperature: 0, system: 'Be brief.' });
    const a = (await session.send('Hello there').result).text;
    const b = (await session.send('What is the weather like?').result).text;
    const saved = JSON.parse(readFileSync(saveFile, 'utf8'));
    assert.deepEqual(saved, session.toJSON());
    assert.deepEqual(
      saved.messages.map((m: { role: string }) => m.role),
      ['system', 'user', 'assistant', 'user', 'assistant'],
    );
    session.reset();
    const c = (await session.send('Hello there').result).text;
    assert.equal(c, a, 'after /reset the conversation starts over');
    assert.equal(r.stdout, `${a}\n${b}\n${c}\n`);
    assert.match(r.stderr, /prompt format: jinja/);
    assert.doesNotMatch(r.stderr, /no chat template/, 'a model with a chat template needs no note');
  } finally {
    await model.dispose();
    rmSync(saveFile, { force: true });
  }
});

test('the shipped model, which has no chat template and writes stories: the chat says so before the first turn', async () => {
  const r = await runCli(['chat', '-n', '2', '-t', '0'], 'Hello\n');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /prompt format: none/);
  assert.match(
    r.stderr,
    /no chat template, so each turn goes to the model as "User: …" \/ "Assistant:" lines; the shipped model is a small story model, not tuned for chat/,
  );
  assert.match(r.stderr, /MPT-7B-Chat answers turns; --template chatml\|instruct/);
});

test('SIGINT mid-reply stops the reply but not the REPL; EOF then exits 0', async () => {
  const child = spawn(
    process.execPath,
    [MPT_BIN, 'chat', folder.dir, '-n', '2000', '-t', '0', '--backend', 'reference'],
    {
      cwd: REPO_ROOT,
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  const waiters: (() => void)[] = [];
  const poke = () => {
    for (const w of waiters.splice(0)) w();
  };
  child.stdout.on('data', (b: Buffer) => {
    stdout += b.toString('utf8');
    poke();
  });
  child.stderr.on('data', (b: Buffer) => {
    stderr += b.toString('utf8');
    poke();
  });
  const until = async (cond: () => boolean, what: string) => {
    const deadline = Date.now() + 20_000;
    while (!cond()) {
      if (Date.now() > deadline)
        throw new Error(
          `timed out waiting for ${what}; stdout=${JSON.stringify(stdout.slice(-200))} stderr=${JSON.stringify(stderr)}`,
        );
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 200);
      });
    }
  };
  const exited = new Promise<number | null>((r) => child.on('close', r));
  try {
    child.stdin.write('Tell me a long story\n');
    await until(() => stdout.length > 0, 'the first reply to start');
    child.kill('SIGINT');
    await until(() => stderr.includes('(reply stopped)'), 'the first reply to stop');
    const firstReply = stdout;
    assert.ok(firstReply.endsWith('\n'), 'a stopped reply still ends its line');

    child.stdin.write('And another one\n');
    await until(() => stdout.length > firstReply.length, 'the second reply to start');
    child.kill('SIGINT');
    await until(() => (stderr.match(/\(reply stopped\)/g) ?? []).length === 2, 'the second reply to stop');
    child.stdin.end();
    const code = await exited;
    assert.equal(code, 0, stderr);
    const replies = stdout.split('\n');
    assert.equal(replies.length, 3, JSON.stringify(stdout));
    assert.ok(replies[0]!.length > 0 && replies[1]!.length > 0);
    assert.equal(replies[2], '');
    // Each stopped reply is a prefix of what the model would have said (greedy, deterministic).
    const model = await loadModel(folder.dir, { backend: 'reference', onNote: () => {} });
    try {
      const full = await model.generate([{ role: 'user', content: 'Tell me a long story' }], {
        temperature: 0,
        maxTokens: 200,
      });
      const first = replies[0]!;
      assert.ok(
        full.text.startsWith(first) || first.startsWith(full.text),
        JSON.stringify({ first: first.slice(0, 80), full: full.text.slice(0, 80) }),
      );
      assert.ok(model.tokenizer.encode(first).length < 1500, 'the reply was cut short');
    } finally {
      await model.dispose();
    }
  } finally {
    child.kill('SIGKILL');
  }
});
