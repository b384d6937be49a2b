/**
 * Paths a user gives the CLI that are not what they must be: a mistyped model path, a prompt
 * cache or tokenizer that is a folder or a named pipe (which would block a reader forever), a
 * /save target that cannot be written. Each is one line on stderr naming the path, and nothing
 * hangs or prints a stack trace.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fixturePath, REPO_ROOT } from './helpers/goldens.js';
import { MPT_BIN, runCli, type CliResult } from './helpers/cli.js';

const MODEL = fixturePath('tiny-neox-vocab');
const dir = mkdtempSync(join(tmpdir(), 'mpt-cli-paths-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const folder = join(dir, 'a-folder');
mkdirSync(folder);
const fifo = join(dir, 'a-fifo');
const haveFifo = process.platform !== 'win32' && spawnSync('mkfifo', [fifo]).status === 0;

/** A failed run: exit 1 and exactly one line on stderr, starting with `mpt COMMAND: `. */
function oneLineError(r: CliResult, command: string, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('note: ')).length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^(note: .*\\n)*mpt ${command}: `));
  assert.match(r.stderr, pattern);
}

test('a model argument that looks like a path but is no model is an error, not prompt text', async () => {
  const typo = await runCli(['generate', 'models/defualt', 'Hello', '-n', '5']);
  oneLineError(typo, 'generate', /model not found: models\/defualt/);
  assert.equal(typo.stdout, '');
  const gguf = await runCli(['generate', join(dir, 'x.gguf'), 'Hello', '-n', '1']);
  oneLineError(gguf, 'generate', /model not found: .*x\.gguf/);
  const weights = join(dir, 'model.safetensors');
  writeFileSync(weights, '');
  const file = await runCli(['generate', weights, 'Hello', '-n', '1']);
  oneLineError(file, 'generate', /model\.safetensors is not a model: give the folder/);
  oneLineError(await runCli(['chat', 'models/defualt']), 'chat', /model not found: models\/defualt/);
  // Prompt text stays prompt text: with a model named first, or as prose (a name too long for a path).
  const prose = await runCli(['generate', MODEL, 'either/or', '-n', '1', '-q']);
  assert.equal(prose.code, 0, prose.stderr);
  const long = await runCli(['generate', 'x'.repeat(300), '--ids', '1', '-n', '1', '-q']);
  assert.match(long.stderr, /give either a text prompt or --ids/);
});

test('--prompt-cache at a folder or a named pipe is refused before the model loads', async () => {
  const base = ['generate', MODEL, 'Hello', '-n', '1', '-q', '--prompt-cache'];
  const r = await runCli([...base, folder], '', 30_000);
  oneLineError(r, 'generate', new RegExp(`the prompt cache ${folder} is a directory, not a prompt cache file`));
  if (haveFifo) oneLineError(await runCli([...base, fifo], '', 30_000), 'generate', /is a named pipe \(FIFO\)/);
  const missing = await runCli([...base, join(dir, 'missing', 'x.kvc')]);
  oneLineError(missing, 'generate', /the folder .*missing does not exist/);
});

test('--tokenizer or tokenize at a named pipe or an empty folder is refused', { skip: !haveFifo }, async () => {
  const generate = ['generate', MODEL, 'hi', '-n', '1', '--tokenizer'];
  oneLineError(await runCli([...generate, fifo], '', 30_000), 'generate', /--tokenizer: .*a-fifo is a named pipe/);
  oneLineError(await runCli([...generate, folder]), 'generate', /--tokenizer: .*a-folder has no tokenizer\.json/);
  const tokenize = await runCli(['tokenize', fifo], 'x', 30_000);
  oneLineError(tokenize, 'tokenize', /a-fifo is a named pipe \(FIFO\), not a tokenizer\.json/);
  // A named pipe under a model folder's tokenizer.json is not read (it would block).
  const model = join(dir, 'pipe-model');
  mkdirSync(model);
  writeFileSync(join(model, 'config.json'), readFileSync(join(MODEL, 'config.json')));
  spawnSync('mkfifo', [join(model, 'tokenizer.json')]);
  oneLineError(await runCli(['tokenize', model], 'x', 30_000), 'tokenize', /tokenizer\.json is not a regular file/);
});

test('chat /save to a folder, a named pipe or a missing folder says why and goes on', async () => {
  const targets = [folder, ...(haveFifo ? [fifo] : []), join(dir, 'missing', 'chat.json')];
  const saved = join(dir, 'chat.json');
  const input = [...targets.map((t) => `/save ${t}`), `/save ${saved}`, '/exit', ''].join('\n');
  const r = await runCli(['chat', MODEL, '-q'], input, 30_000);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, targets.length, r.stderr);
  assert.match(lines[0]!, /^mpt chat: could not save: .*a-folder is a directory, not a file$/);
  if (haveFifo) assert.match(lines[1]!, /^mpt chat: could not save: .*a-fifo is a named pipe \(FIFO\), not a file$/);
  assert.match(lines.at(-1)!, /^mpt chat: could not save: cannot write .*chat\.json: the folder .*missing does not/);
  assert.deepEqual(JSON.parse(readFileSync(saved, 'utf8')), { messages: [] });
});

test('convert refuses an output folder, a missing folder and a --tokenizer named pipe before converting', async () => {
  const out = join(dir, 'out.gguf');
  mkdirSync(out);
  oneLineError(await runCli(['convert', MODEL, out]), 'convert', /cannot write .*out\.gguf: it is a directory/);
  const missing = await runCli(['convert', MODEL, join(dir, 'missing', 'o.gguf')]);
  oneLineError(missing, 'convert', /the folder .*missing does not exist/);
  if (haveFifo) {
    const r = await runCli(['convert', MODEL, join(dir, 'o.gguf'), '--tokenizer', fifo], '', 30_000);
    oneLineError(r, 'convert', /--tokenizer: .*a-fifo is a named pipe \(FIFO\)/);
  }
});

test('a training recipe, training data or perplexity text at a named pipe is refused, not read', {
  skip: !haveFifo,
}, async () => {
  oneLineError(await runCli(['train', fifo], '', 30_000), 'train', /training recipe .*a-fifo is not a regular file/);
  const ppl = await runCli(['perplexity', MODEL, fifo], '', 30_000);
  oneLineError(ppl, 'perplexity', /text file .*a-fifo is not a regular file/);
  const out = join(dir, 'ft-out');
  const ft = await runCli(['finetune', MODEL, fifo, '--out', out], '', 30_000);
  oneLineError(ft, 'finetune', /instruction data .*a-fifo is not a regular file/);
  // A recipe's training data at a named pipe: refused when the data is read.
  const recipe = join(dir, 'fifo-recipe.yaml');
  const saveFolder = join(dir, 'train-out');
  writeFileSync(
    recipe,
    'max_seq_len: 16\nmodel:\n  d_model: 16\n  n_heads: 2\n  n_layers: 1\n  vocab_size: 50432\n' +
      `data:\n  train: [${fifo}]\nmax_duration: 1ba\nsave_folder: ${saveFolder}\n`,
  );
  const train = await runCli(['train', recipe], '', 30_000);
  oneLineError(train, 'train', /training data .*a-fifo is not a regular file/);
});

test("llama.cpp's -m and other unknown short options are refused, not taken as the prompt", async () => {
  const r = await runCli(['generate', '-m', join(dir, 'x.gguf'), 'Hello', '-n', '1']);
  oneLineError(r, 'generate', /unknown option -m \(see mpt generate --help; "--" before a prompt/);
  assert.equal(r.stdout, '');
  // A prompt that starts with a dash still can be given after "--".
  const dashed = await runCli(['generate', MODEL, '-n', '1', '-q', '--', '-x marks the spot']);
  assert.equal(dashed.code, 0, dashed.stderr);
});

test('a missing file is named with what the system said, without its code or syscall', async () => {
  const missing = join(dir, 'no-such.txt');
  const ppl = await runCli(['perplexity', MODEL, missing]);
  oneLineError(ppl, 'perplexity', new RegExp(`cannot read text file ${missing}: no such file or directory$`, 'm'));
  const train = await runCli(['train', join(dir, 'no-such.yaml')]);
  oneLineError(train, 'train', /cannot read training recipe .*no-such\.yaml: no such file or directory$/m);
  // The command's name is said once (the prefix), not again inside the message.
  oneLineError(await runCli(['finetune']), 'finetune', /^mpt finetune: needs BASE_MODEL and DATA\.jsonl/);
});

test('a disk that fills while convert or quantize writes is one line naming the output, and leaves no file', async () => {
  // A file-size limit makes the write fail part-way as a full disk does (EFBIG there, ENOSPC on a
  // full disk: the same path through the writer), for any user and without a file system to fill.
  const out = join(dir, 'full', 'out.gguf');
  const hf = join(dir, 'full', 'hf-out');
  mkdirSync(join(dir, 'full'));
  const limited = (args: string[]) =>
    spawnSync('sh', ['-c', 'ulimit -f 64 && exec "$0" "$@"', process.execPath, MPT_BIN, ...args], {
      encoding: 'utf8',
      timeout: 60_000,
    });
  for (const [command, args, target] of [
    ['convert', [MODEL, out, '--type', 'f32'], out],
    ['quantize', [MODEL, out, '--type', 'q8_0'], out],
    ['convert', [MODEL, hf, '--type', 'f32'], hf],
  ] as const) {
    const r = limited([command, ...args]);
    oneLineError(
      { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^(convert|quantize): .*\n/gm, '') },
      command,
      new RegExp(`cannot write ${target}: file too large \\(nothing was written there\\)`),
    );
    // Neither the output nor a temporary file of it is left behind.
    assert.deepEqual(readdirSync(join(dir, 'full')), [], `${command} ${args.join(' ')}`);
  }
});

test('Ctrl-C while quantizing removes the unfinished output and exits with the signal status', async () => {
  // The shipped model to q4_k_m takes seconds of quantizing after the temporary file is opened,
  // so the signal arrives while the output is being written.
  const folderOut = join(dir, 'stopped');
  mkdirSync(folderOut);
  const out = join(folderOut, 'out.gguf');
  const child = spawn(
    process.execPath,
    [MPT_BIN, 'quantize', join(REPO_ROOT, 'models/default'), out, '--type', 'q4_k_m'],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const ended = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const deadline = Date.now() + 60_000;
  while (!readdirSync(folderOut).some((f) => f.endsWith('.tmp'))) {
    assert.ok(Date.now() < deadline, `no temporary output appeared: ${stderr}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGINT');
  assert.equal(await ended, 130, stderr);
  assert.match(stderr, /interrupted: nothing was written \(the unfinished output was removed\)/);
  assert.deepEqual(readdirSync(folderOut), []);
});
