/**
 * What `mpt --help` and each command's `--help` promise, checked against the commands themselves:
 * every command listed has a help that starts with its usage, and an option the commands share is
 * spelled the same in each (the parser accepts it, the help lists it).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { runCli } from './helpers/cli.js';
import { REPO_ROOT } from './helpers/goldens.js';

test('mpt --help lists the commands, and each one has a help starting with its usage', async () => {
  const top = await runCli(['--help']);
  assert.equal(top.code, 0);
  const names = [...top.stdout.matchAll(/^ {2}([a-z]+) {2,}\S/gm)].map((m) => m[1]!);
  assert.ok(names.length >= 14, names.join(' '));
  for (const name of names) {
    const mod = (await import(`../src/cli/commands/${name}.js`)) as { help: string };
    assert.match(mod.help, new RegExp(`^usage: mpt ${name}\\b`), name);
  }
});

test('mpt --help starts with a command that runs as printed, the one the README set-up ends with', async () => {
  const top = await runCli(['--help']);
  const first = /^usage: .*\n\n.*\n {2}(mpt [^\n]*?) {2,}\S/.exec(top.stdout);
  assert.ok(first, top.stdout);
  const command = first[1]!;
  assert.match(command, /^mpt generate "[^"]+"$/);
  // The way README says to run it in the project folder, right after npm ci.
  const readme = readFileSync(`${REPO_ROOT}README.md`, 'utf8');
  assert.ok(readme.includes(`npm ci && npx ${command}`), `README's set-up runs ${command}`);
  const prompt = JSON.parse(command.slice('mpt generate '.length)) as string;
  const r = await runCli(['generate', prompt]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(r.stdout.trim().split(/\s+/).length >= 5, `a story: ${r.stdout}`);
  // Where to go next: the other commands that run the shipped model as they are.
  for (const next of ['mpt chat', 'mpt serve', 'mpt web'])
    assert.match(top.stdout, new RegExp(`^ {2}${next} {2,}\\S`, 'm'));
});

test('-q is --quiet in every command that has --quiet (serve refused it)', async () => {
  for (const command of ['generate', 'chat', 'perplexity', 'serve']) {
    const mod = (await import(`../src/cli/commands/${command}.js`)) as { help: string };
    assert.match(mod.help, /-q, --quiet/, `${command}'s help`);
    // -q is parsed (no "unknown option"), then the bad --threads value stops it before any model loads.
    const r = await runCli([command, '-q', '--threads', 'x']);
    assert.equal(r.code, 1, command);
    assert.match(r.stderr, /--threads needs a number/, `${command}: ${r.stderr}`);
  }
});

test('--batch-size says what it counts: prompt tokens in generate (llama.cpp -b), examples in finetune', async () => {
  const gen = await runCli(['generate', '--help']);
  assert.match(gen.stdout, /-b, --batch-size N +prompt tokens per forward pass/);
  assert.match(gen.stdout, /mpt finetune's --batch-size counts examples/);
  const ft = await runCli(['finetune', '--help']);
  assert.match(ft.stdout, /--batch-size N +examples \(JSONL lines\) per optimizer step/);
  assert.match(ft.stdout, /mpt generate's\s+--batch-size counts prompt tokens/);
});
