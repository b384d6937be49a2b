// README's "Training" commands, taken from README.md as printed and run in a project folder (the
// package's recipes/, data/, assets/ and models/ beside a fresh runs/), so that the README cannot
// drift from what works: `mpt train recipes/default-model.yaml --max-steps 20 --save-folder
// runs/try` (with one step instead of 20: the command is the README's, the step count the test's)
// checkpoints into the save folder and exports where README says; `mpt finetune models/default
// recipes/finetune-sample.jsonl --out runs/my-model …` (the same command `mpt finetune --help`
// prints) changes the shipped model's weights, and README's `mpt generate runs/my-model "…"`
// writes with the result.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadModel } from '../src/runtime/model.js';
import { REPO_ROOT } from './helpers/goldens.js';

/** README's "## Training" section with its line breaks made spaces (commands wrap across lines). */
function trainingSection(): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Training\n');
  assert.ok(start >= 0, 'README.md has a "## Training" section');
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end).replace(/\s+/g, ' ');
}

/** The arguments of the first `` `mpt <command> …` `` README prints whose arguments match `first`. */
function readmeCommand(command: string, first: RegExp): string[] {
  for (const m of trainingSection().matchAll(new RegExp(`\`mpt ${command} ([^\`]+)\``, 'g'))) {
    const args = [...m[1]!.matchAll(/"([^"]*)"|(\S+)/g)].map((a) => a[1] ?? a[2]!);
    if (first.test(args[0]!)) return [command, ...args];
  }
  assert.fail(`README's Training section prints no \`mpt ${command} …\` whose first argument matches ${first}`);
}

/** The value after `flag` in `args` (which must hold it). */
function flagValue(args: readonly string[], flag: string): string {
  const i = args.indexOf(flag);
  assert.ok(i >= 0 && i + 1 < args.length, `${args.join(' ')} has ${flag}`);
  return args[i + 1]!;
}

describe("README's training commands, run as printed in a project folder", { timeout: 600_000 }, () => {
  let project = '';
  const mpt = (args: readonly string[]) => {
    const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/mpt.js'), ...args], {
      cwd: project,
      encoding: 'utf8',
      timeout: 300_000,
    });
    assert.equal(r.status, 0, `mpt ${args.join(' ')}: ${r.stderr}`);
    return r;
  };

  before(() => {
    project = mkdtempSync(join(tmpdir(), 'mpt-readme-training-'));
    for (const d of ['recipes', 'data', 'assets', 'models']) symlinkSync(join(REPO_ROOT, d), join(project, d), 'dir');
  });
  after(() => rmSync(project, { recursive: true, force: true }));

  it('mpt train: the recipe trains, checkpoints into --save-folder and exports to the folder README names', () => {
    const args = readmeCommand('train', /^recipes\//);
    // README's step count (20 steps, some minutes) made one; the rest as printed.
    const steps = args.indexOf('--max-steps');
    assert.ok(steps > 0, `README's command has --max-steps: ${args.join(' ')}`);
    args[steps + 1] = '1';
    const r = mpt(args);
    const summary = JSON.parse(r.stdout) as { steps: number; final_loss: number; export_folder: string };
    assert.equal(summary.steps, 1, r.stdout);
    assert.ok(Number.isFinite(summary.final_loss));
    const saveFolder = join(project, flagValue(args, '--save-folder'));
    assert.ok(existsSync(join(saveFolder, 'checkpoint-1', 'complete.json')), 'a complete checkpoint');
    assert.ok(existsSync(join(saveFolder, 'train-log.jsonl')));
    // "… and exports to the recipe's `runs/default-model/hf`, which `--save-folder` leaves as it is".
    const said = /exports to the recipe's `([^`]+)`/.exec(trainingSection());
    assert.ok(said, "README says where the recipe's export goes");
    assert.equal(summary.export_folder, join(project, said[1]!));
    for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) {
      assert.ok(existsSync(join(project, said[1]!, f)), `the export has ${f}`);
    }
    // "runs/ is git-ignored".
    assert.match(readFileSync(join(REPO_ROOT, '.gitignore'), 'utf8'), /^\/?runs\/$/m);
  });

  it('mpt finetune on the sample data changes the shipped model, and mpt generate writes with the result', async () => {
    const args = readmeCommand('finetune', /^models\/default$/);
    // The help prints the same example (its --out aside).
    const help = spawnSync(process.execPath, [join(REPO_ROOT, 'bin/mpt.js'), 'finetune', '--help'], {
      encoding: 'utf8',
    });
    const example = /^ {2}mpt (finetune models\/default .*)$/m.exec(help.stdout);
    assert.ok(example, help.stdout);
    const helpArgs = example[1]!.split(' ');
    const out = flagValue(args, '--out');
    helpArgs[helpArgs.indexOf('--out') + 1] = out;
    assert.deepEqual(helpArgs, args, "the help's example is README's");

    const r = mpt(args);
    assert.match(r.stderr, /finetune: 8 train \/ 0 eval examples, 2 steps of 4/);
    assert.equal(JSON.parse(r.stdout).steps, 2, r.stdout);
    const tuned = await loadModel(join(project, out), { backend: 'reference' });
    const base = await loadModel(join(REPO_ROOT, 'models/default'), { backend: 'reference' });
    try {
      const ids = tuned.tokenizer.encode('Once upon a time');
      const [a, b] = [await tuned.logits(ids), await base.logits(ids)];
      assert.ok(a.every(Number.isFinite));
      assert.notDeepEqual(a, b, 'two steps changed the weights');
    } finally {
      await tuned.dispose();
      await base.dispose();
    }

    // "… and `mpt generate runs/my-model "Once upon a time"` writes with the result".
    const generate = readmeCommand('generate', /^runs\//);
    assert.equal(generate[1], out, 'it generates with the model the finetune wrote');
    const g = mpt([...generate, '--max-tokens', '8']);
    assert.ok(g.stdout.trim().length > 'Once upon a time'.length, `a continuation: ${g.stdout}`);
  });
});
