/**
 * `mpt generate` through the real command line, on the tiny-neox-vocab fixture; on a terminal, the
 * shipped model's story shown with its prompt.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadTokenizer } from '../src/runtime/tokenizer-files.js';
import { fixturePath } from './helpers/goldens.js';
import { MPT_BIN, runCli } from './helpers/cli.js';
import { makeChatModelFolder } from './helpers/model-folders.js';

const MODEL = fixturePath('tiny-neox-vocab');
const g = JSON.parse(readFileSync(`${MODEL}/goldens.json`, 'utf8'));
const tok = loadTokenizer(MODEL, { onNote: () => {} })!;

test('greedy generation prints the golden continuation; stats go to stderr', async () => {
  const r = await runCli([
    'generate',
    MODEL,
    g.inputs_text.seq7,
    '-n',
    '20',
    '--temperature',
    '0',
    '--backend',
    'reference',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, tok.decode(g.generate.new_tokens));
  assert.match(r.stderr, /prompt: 7 tokens/);
  assert.match(r.stderr, /generated: 20 tokens in [\d.]+ s, [\d.]+ tokens\/s; finish: length/);
  assert.match(r.stderr, /loading model/);
});

test('the prompt can come from stdin; --stop cuts the text', async () => {
  const full = tok.decode(g.generate.new_tokens);
  const r = await runCli(['generate', MODEL, '-n', '5', '-t', '0', '--backend', 'reference', '-q'], g.inputs_text.seq7);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, tok.decode(g.generate.new_tokens.slice(0, 5)));
  assert.equal(r.stderr, '');
  const stop = full.slice(6, 12);
  const s = await runCli(['generate', MODEL, g.inputs_text.seq7, '-n', '20', '-t', '0', '--stop', stop, '-q']);
  assert.equal(s.stdout, full.slice(0, full.indexOf(stop)));
});

test('a fixed-seed sampled run prints the same text twice', async () => {
  const args = (seed: string) => [
    'generate',
    MODEL,
    'Once upon a time',
    '-n',
    '24',
    '--seed',
    seed,
    '--temperature',
    '1.2',
    '--top-k',
    '0',
    '--top-p',
    '0.98',
    '-q',
  ];
  const [a, b, c] = await Promise.all([runCli(args('77')), runCli(args('77')), runCli(args('78'))]);
  assert.equal(a.code, 0, a.stderr);
  assert.ok(a.stdout.length > 0);
  assert.equal(a.stdout, b.stdout);
  assert.notEqual(a.stdout, c.stdout);
});

test('token ids in, token ids out for a model without a tokenizer; errors are one line', async () => {
  const alibi = JSON.parse(readFileSync(fixturePath('tiny-alibi/goldens.json'), 'utf8'));
  const r = await runCli([
    'generate',
    fixturePath('tiny-alibi'),
    '--ids',
    alibi.inputs.seq7.join(','),
    '-n',
    '20',
    '-t',
    '0',
    '-q',
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split(' ').map(Number), alibi.generate.new_tokens);
  const bad = await runCli(['generate', MODEL, 'x', '--temperature', 'hot']);
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr.trim().split('\n').length, 1);
  assert.match(bad.stderr, /--temperature needs a number/);
  const long = await runCli(['generate', fixturePath('tiny-alibi'), '--ids', Array(129).fill(5).join(','), '-q']);
  assert.equal(long.code, 1);
  assert.match(long.stderr, /more than the context length 128/);
  const help = await runCli(['generate', '--help']);
  assert.equal(help.code, 0);
  for (const opt of [
    '--max-tokens',
    '--temperature',
    '--top-k',
    '--top-p',
    '--min-p',
    '--repeat-penalty',
    '--presence-penalty',
    '--frequency-penalty',
    '--seed',
    '--stop',
    '--template',
    '--ctx',
    '--backend',
    '--threads',
  ]) {
    assert.ok(help.stdout.includes(opt), `help mentions ${opt}`);
  }
});

test('--logit-bias (llama.cpp syntax) moves and bans tokens; --ignore-eos runs past the end-of-text token', async () => {
  const base = ['generate', MODEL, g.inputs_text.seq7, '-t', '0', '--backend', 'reference'];
  // a large bias on end-of-text (id 0 in GPT-NeoX) ends the text at once
  const eos = await runCli([...base, '-n', '8', '--logit-bias', '0+100']);
  assert.equal(eos.code, 0, eos.stderr);
  assert.equal(eos.stdout, '');
  assert.match(eos.stderr, /finish: stop/);
  // ... unless it can never be chosen
  const ignored = await runCli([...base, '-n', '8', '--logit-bias', '0+100', '--ignore-eos']);
  assert.equal(ignored.code, 0, ignored.stderr);
  assert.match(ignored.stderr, /generated: 8 tokens .*finish: length/);
  assert.ok(ignored.stdout.length > 0);
  // banning the golden first token changes the first token; a bias adds up over repeats
  const first = g.generate.new_tokens[0] as number;
  const banned = await runCli([...base, '-n', '1', '-q', '--logit-bias', `${first}-inf`]);
  assert.equal(banned.code, 0, banned.stderr);
  assert.notEqual(banned.stdout, tok.decode([first]));
  assert.ok(banned.stdout.length > 0);
  const undone = await runCli([...base, '-n', '1', '-q', '--logit-bias', `${first}-5`, '--logit-bias', `${first}+5`]);
  assert.equal(undone.stdout, tok.decode([first]));
  const bad = await runCli([...base, '--logit-bias', '12*3']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--logit-bias takes TOKEN_ID\+BIAS or TOKEN_ID-BIAS.*"12\*3"/);
});

test('with stdout and stderr in one file (2>&1), the statistics start on a line of their own', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-gen-'));
  try {
    const path = join(dir, 'out.txt');
    const fd = openSync(path, 'w');
    const args = ['generate', MODEL, g.inputs_text.seq7, '-n', '20', '--temperature', '0', '--backend', 'reference'];
    const child = spawn(process.execPath, [MPT_BIN, ...args], { stdio: ['ignore', fd, fd] });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    closeSync(fd);
    assert.equal(code, 0);
    const text = tok.decode(g.generate.new_tokens);
    assert.ok(!text.endsWith('\n'), 'the golden continuation ends mid-line, as this test needs');
    const out = readFileSync(path, 'utf8');
    assert.ok(out.includes(`${text}\n`), `the text is followed by a line break:\n${out}`);
    assert.match(out, /^prompt: 7 tokens/m);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// A real terminal for stdout (util-linux `script`), stderr to a file: what a user sees on screen.
const script = process.platform === 'linux' && existsSync('/usr/bin/script') ? '/usr/bin/script' : null;

/** What `mpt …args` shows on a terminal's screen (stdout only; the terminal's \r\n made \n). */
function onScreen(args: string[], dir: string): string {
  const quoted = [process.execPath, MPT_BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync(script!, ['-qec', `${quoted} 2> '${join(dir, 'err.txt')}'`, '/dev/null'], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, r.stdout + readFileSync(join(dir, 'err.txt'), 'utf8'));
  return r.stdout.replace(/\r\n/g, '\n');
}

test("in a terminal, README's first command shows the story with its start; piped, the continuation alone", {
  skip: script ? false : 'no util-linux script',
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-gen-tty-'));
  const chat = makeChatModelFolder();
  try {
    // `npx mpt generate "Once upon a time"` on the shipped model (prompt format none), greedy and short.
    const args = ['generate', 'Once upon a time', '-n', '12', '--temperature', '0'];
    const piped = await runCli(args);
    assert.equal(piped.code, 0, piped.stderr);
    assert.ok(!piped.stdout.startsWith('Once upon a time'), 'a pipe gets the new text only');
    assert.equal(onScreen(args, dir), `Once upon a time${piped.stdout}\n`);
    // A chat model's reply is no continuation of the prompt: the screen shows the reply alone.
    const chatArgs = ['generate', chat.dir, 'Hello there', '-n', '6', '-t', '0', '--backend', 'reference'];
    const reply = await runCli(chatArgs);
    assert.equal(reply.code, 0, reply.stderr);
    assert.equal(onScreen(chatArgs, dir), reply.stdout.endsWith('\n') ? reply.stdout : `${reply.stdout}\n`);
  } finally {
    chat.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
