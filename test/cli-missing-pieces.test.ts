/**
 * A model folder with its config and weights but no tokenizer (and a vocabulary that is not the
 * shipped GPT-NeoX tokenizer's): what needs no tokenizer works (info, generate from token ids),
 * what needs one says so in one line naming the folder and what to give. And output paths that
 * are not what they must be: a folder where the GGUF file goes, a file where a folder must be.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fixturePath } from './helpers/goldens.js';
import { runCli, type CliResult } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'mpt-missing-'));
after(() => rmSync(dir, { recursive: true, force: true }));
// The tiny ALiBi fixture: a 512-token vocabulary, so the shipped tokenizer does not fit it.
const bare = join(dir, 'no-tokenizer');
mkdirSync(bare);
for (const f of ['config.json', 'model.safetensors']) copyFileSync(fixturePath(`tiny-alibi/${f}`), join(bare, f));

/** A failed run: exit 1 and one line on stderr (after progress notes), `mpt COMMAND: ` matching `pattern`. */
function oneLineError(r: CliResult, command: string, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l !== '' && !/^(note: |loading model)/.test(l));
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, new RegExp(`^mpt ${command}: `));
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('a folder without a tokenizer: info and generate --ids work, the rest name what is missing', async () => {
  const info = await runCli(['info', bare]);
  assert.equal(info.code, 0, info.stderr);
  assert.match(info.stdout, /vocab\s+512/);
  const ids = await runCli(['generate', bare, '--ids', '1,2,3', '-n', '2', '-q', '--seed', '1']);
  assert.equal(ids.code, 0, ids.stderr);
  // Without a tokenizer the new ids are printed.
  assert.match(ids.stdout.trim(), /^\d+ \d+$/);
  const out = join(dir, 'bare.gguf');
  // Every command that needs the tokenizer says why there is none and how to give one: the file
  // in the folder always, and --tokenizer where the command takes it (its help lists it).
  const needsTokenizer: Array<[string, string[]]> = [
    ['generate', [bare, 'Hello', '-n', '1']],
    ['chat', [bare]],
    ['serve', [bare, '--port', '0']],
    ['tokenize', [bare]],
    ['detokenize', [bare]],
    ['perplexity', [bare, fixturePath('tiny-alibi/config.json')]],
    ['finetune', [bare, 'recipes/finetune-sample.jsonl', '--out', join(dir, 'ft'), '--steps', '1']],
    ['convert', [bare, out]],
    ['quantize', [bare, out, '--type', 'q8_0']],
  ];
  for (const [command, args] of needsTokenizer) {
    const r = await runCli([command, ...args], '{"ids": [1]}');
    oneLineError(
      r,
      command,
      /no-tokenizer has no tokenizer \(no tokenizer\.json, and its vocab_size 512 cannot hold .*\)(; a server needs one)?: put the tokenizer\.json it was trained with in the folder/,
    );
    const help = (await runCli([command, '--help'])).stdout;
    assert.equal(/--tokenizer PATH/.test(r.stderr), /--tokenizer PATH/.test(help), `${command}: ${r.stderr}`);
  }
  assert.match((await runCli(['generate', bare, 'Hello'])).stderr, /or give the prompt as token ids \(--ids 1,2,3\)/);
  assert.match((await runCli(['tokenize', bare], 'x')).stderr, /or give the tokenizer\.json itself as the path/);
  assert.equal(existsSync(out), false, 'nothing written');
});

test('convert and quantize output: a folder where the file goes, a file where a folder must be', async () => {
  const model = fixturePath('tiny-neox-vocab');
  const folder = join(dir, 'a-folder.gguf');
  mkdirSync(folder);
  oneLineError(await runCli(['convert', model, folder]), 'convert', /cannot write .*a-folder\.gguf: it is a directory/);
  oneLineError(
    await runCli(['quantize', model, folder, '--type', 'q8_0']),
    'quantize',
    /cannot write .*a-folder\.gguf: it is a directory/,
  );
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  // OUT/x.gguf and OUT/ under a file: the file that stands where a folder must be is named.
  const under = await runCli(['convert', model, join(file, 'x.gguf')]);
  oneLineError(under, 'convert', /cannot use .*a-file\/x\.gguf: .*a-file is a file, not a folder$/);
  const deeper = await runCli(['quantize', model, join(file, 'sub', 'x.gguf'), '--type', 'q8_0']);
  oneLineError(deeper, 'quantize', /a-file is a file, not a folder$/);
});
