/**
 * `mpt convert MODEL OUT.gguf --type T`: writes an MPT checkpoint as a GGUF file llama.cpp can load.
 * `mpt convert MODEL OUT_DIR/ --type f16|bf16|f32`: writes it as a Hugging Face folder (a GGUF back to
 * what MosaicML's and Hugging Face's code load).
 */
import { copyFile, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../../errors.js';
import { openCheckpoint } from '../../model/load.js';
import { byteLevelTestTokenizer, type GgufTokenizer } from '../../model/gguf-tokenizer.js';
import { GGUF_OUT_TYPES, type GgufOutType } from '../../model/gguf-type-mix.js';
import { writeGgufFromCheckpoint } from '../../model/gguf-write.js';
import {
  HF_EXPORT_DTYPES,
  hfConfigJson,
  hfTensorsToWrite,
  hfTokenizerFiles,
  type HfExportDtype,
} from '../../model/hf-export.js';
import type { Checkpoint } from '../../model/load.js';
import { markUnfinished, removeUnfinished, writeError } from '../../formats/atomic-write.js';
import { writeSafetensors } from '../../formats/safetensors.js';
import { NEOX_TOKENIZER_SIZE, noTokenizerMessage, TOKENIZER_FILES, TOKENIZER_HINTS } from '../../runtime/tokenizer.js';
import { shippedNeoxTokenizerPath } from '../../runtime/tokenizer-files.js';
import { signalStatus, watchInterrupt } from '../interrupt.js';
import { parseArgs } from '../args.js';
import { kindOf, statPath } from '../user-files.js';

export const summary = 'convert a model to GGUF for llama.cpp (f16, q8_0, q4_0, q4_k_m, ...), or a GGUF to a HF folder';
export const help = `usage: mpt convert MODEL OUT.gguf [--type TYPE] [--tokenizer PATH|bytes] [--name NAME]
       mpt convert MODEL OUT_DIR/ [--type f16|bf16|f32]

Writes MODEL (a Hugging Face MPT folder, or a GGUF file) as a GGUF file that llama.cpp loads
(architecture "mpt"). Matrices are stored as TYPE; LayerNorm weights and biases stay f32.

  --type TYPE        f32, f16 (default), bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k or
                     q6_k: every matrix in that type (as llama-quantize --pure). Or a preset,
                     q4_k_m or q5_k_m: llama-quantize's mix (output/tied embedding Q6_K, attn_qkv
                     Q5_K/Q6_K, ffn_down Q6_K in some layers, the rest Q4_K/Q5_K). The q types
                     use ggml's reference quantizers: the same bytes llama-quantize writes
                     without an imatrix. k-quants need rows of 256·n values; other matrices fall
                     back as llama-quantize does (q4_k → q5_0, q5_k → q5_1, q6_k → q8_0, else f16).
  --tokenizer PATH   tokenizer.json to embed (default: MODEL/tokenizer.json, else the shipped
                     GPT-NeoX-20B tokenizer when the vocabulary fits it). "bytes" embeds a
                     byte-level test vocabulary of exactly vocab_size ids (for random test models).
  --name NAME        general.name (default: the folder or file name)
  --threads N        threads that quantize large matrices (default: all cores); the bytes do not
                     depend on it

The vocabulary is padded to vocab_size with [PAD<id>] tokens, as llama.cpp's converter does.
The file is written to a temporary name and renamed when complete.

With an output that does not end in .gguf, writes a Hugging Face folder instead: config.json
(MosaicML's keys), model.safetensors in --type (f16 by default, bf16 or f32; quantized GGUF
matrices are dequantized as ggml does) and the tokenizer (a GGUF's embedded vocabulary as
tokenizer.json with its side files, or a folder's tokenizer files copied). OUT_DIR must not exist
or be empty; the folder appears whole when complete.`;

function bar(done: number, total: number): string {
  const pct = total > 0 ? Math.floor((100 * done) / total) : 100;
  return `${String(pct).padStart(3)}%`;
}

/**
 * Ctrl-C or SIGTERM while converting: the unfinished temporary output (possibly gigabytes) is
 * removed and the command ends with the shell's status for the signal; the output name was never
 * written, so nothing under it is half done.
 */
export async function run(argv: string[], command: 'convert' | 'quantize' = 'convert'): Promise<number> {
  const interrupt = watchInterrupt((signal) => {
    const removed = removeUnfinished();
    process.stderr.write(
      `\ninterrupted: nothing was written${removed.length > 0 ? ' (the unfinished output was removed)' : ''}\n`,
    );
    process.exit(signalStatus(signal));
  });
  try {
    return await convertOrQuantize(argv, command);
  } finally {
    interrupt.release();
  }
}

async function convertOrQuantize(argv: string[], command: 'convert' | 'quantize'): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      type: { type: 'string' },
      tokenizer: { type: 'string' },
      name: { type: 'string' },
      threads: { type: 'string' },
    },
    command,
  );
  const threadsOpt = options['threads'] as string | undefined;
  const threads = threadsOpt === undefined ? undefined : Number(threadsOpt);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 256)) {
    throw new InputError(`--threads must be an integer from 1 to 256, got "${threadsOpt}"`);
  }
  if (positionals.length !== 2)
    throw new InputError('usage: mpt convert MODEL OUT.gguf|OUT_DIR/ [--type TYPE] (see mpt convert --help)');
  const [model, out] = positionals as [string, string];
  if (!out.endsWith('.gguf'))
    return convertToHfFolder(model, out, (options['type'] as string | undefined) ?? 'f16', command);
  const type = ((options['type'] as string | undefined) ?? 'f16').toLowerCase() as GgufOutType;
  if (!GGUF_OUT_TYPES.includes(type))
    throw new InputError(`--type must be one of ${GGUF_OUT_TYPES.join(', ')}, got "${type}"`);
  // Checked before converting (minutes for a large model), not when the file is renamed into place.
  const outSt = statPath(out);
  if (outSt && !outSt.isFile()) throw new InputError(`cannot write ${out}: it is ${kindOf(outSt)}`);
  if (!statPath(dirname(out))?.isDirectory()) {
    throw new InputError(`cannot write ${out}: the folder ${dirname(out)} does not exist`);
  }

  const ck = await openCheckpoint(model);
  try {
    const c = ck.config;
    const tokOpt = options['tokenizer'] as string | undefined;
    let tokenizer: string | GgufTokenizer;
    let tokenizerNote: string;
    if (tokOpt === 'bytes') {
      tokenizer = byteLevelTestTokenizer(c.vocabSize);
      tokenizerNote = 'byte-level test vocabulary';
    } else if (tokOpt !== undefined) {
      const st = statPath(tokOpt);
      if (!st) throw new InputError(`tokenizer not found: ${tokOpt}`);
      tokenizer = st.isDirectory() ? join(tokOpt, 'tokenizer.json') : tokOpt;
      const file = st.isDirectory() ? statPath(tokenizer) : st;
      if (!file) throw new InputError(`--tokenizer: ${tokOpt} has no tokenizer.json`);
      if (!file.isFile()) throw new InputError(`--tokenizer: ${tokenizer} is ${kindOf(file)}, not a tokenizer.json`);
      tokenizerNote = tokenizer;
    } else if (ck.kind === 'gguf' && ck.ggufTokenizer !== undefined) {
      tokenizer = ck.ggufTokenizer as GgufTokenizer;
      tokenizerNote = "the input GGUF's tokenizer";
    } else if (ck.kind === 'hf' && existsSync(join(ck.dir, 'tokenizer.json'))) {
      tokenizer = join(ck.dir, 'tokenizer.json');
      tokenizerNote = tokenizer;
    } else {
      const name = c.raw['tokenizer_name'];
      if (c.vocabSize < NEOX_TOKENIZER_SIZE || (typeof name === 'string' && !/neox/i.test(name))) {
        throw new InputError(
          `${noTokenizerMessage(model, c.vocabSize, typeof name === 'string' ? name : undefined)}: ` +
            `${TOKENIZER_HINTS}, or --tokenizer bytes for a test model`,
        );
      }
      tokenizer = shippedNeoxTokenizerPath();
      tokenizerNote = 'the shipped GPT-NeoX-20B tokenizer';
    }
    const name =
      (options['name'] as string | undefined) ??
      ck.path
        .split(/[\\/]/)
        .filter(Boolean)
        .pop()!
        .replace(/\.gguf$/, '');
    const tty = process.stderr.isTTY;
    let last = 0;
    const t0 = Date.now();
    let total = 0;
    await writeGgufFromCheckpoint(c, ck.tensors, tokenizer, out, type, {
      name,
      ...(threads !== undefined ? { threads } : {}),
      onProgress: (done, all, tensor) => {
        total = all;
        const now = Date.now();
        if (tty) process.stderr.write(`\r${command}: ${bar(done, all)} ${tensor}`.padEnd(72));
        else if (now - last > 2000 || done === all) process.stderr.write(`${command}: ${bar(done, all)} ${tensor}\n`);
        last = now;
      },
    });
    if (tty) process.stderr.write('\n');
    const mb = (total / 1e6).toFixed(1);
    process.stderr.write(
      `wrote ${out}: ${type}, ${mb} MB of tensor data, tokenizer: ${tokenizerNote} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`,
    );
    return 0;
  } finally {
    await ck.tensors.close();
  }
}

async function convertToHfFolder(
  model: string,
  out: string,
  typeOpt: string,
  command: 'convert' | 'quantize',
): Promise<number> {
  const dtype = typeOpt.toLowerCase() as HfExportDtype;
  if (!HF_EXPORT_DTYPES.includes(dtype)) {
    throw new InputError(
      `a Hugging Face folder holds ${HF_EXPORT_DTYPES.join(', ')} weights, got --type ${typeOpt} (a quantized type needs an OUT.gguf)`,
    );
  }
  const dest = resolve(out);
  if (existsSync(dest) && (!statSync(dest).isDirectory() || (await readdir(dest)).length > 0)) {
    throw new InputError(
      `${out} already exists and is not an empty folder: give a new folder name (or an OUT.gguf file)`,
    );
  }
  const ck: Checkpoint = await openCheckpoint(model);
  const tmp = `${dest.replace(/[\\/]+$/, '')}.tmp-${process.pid}`;
  const unmark = markUnfinished(tmp);
  const t0 = Date.now();
  let tokenizerNote = 'none (the GGUF embeds no tokenizer)';
  try {
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    const c = ck.config;
    await writeFile(join(tmp, 'config.json'), JSON.stringify(hfConfigJson(c, dtype), null, 2) + '\n');
    const tty = process.stderr.isTTY;
    await writeSafetensors(
      join(tmp, 'model.safetensors'),
      hfTensorsToWrite(c, ck.tensors, dtype, (done, total, name) => {
        if (tty) process.stderr.write(`\r${command}: ${bar(done, total)} ${name}`.padEnd(72));
        else if (done === total) process.stderr.write(`${command}: ${bar(done, total)}\n`);
      }),
    );
    if (tty) process.stderr.write('\n');
    if (ck.kind === 'gguf' && ck.ggufTokenizer !== undefined) {
      for (const [name, text] of Object.entries(hfTokenizerFiles(ck.ggufTokenizer as GgufTokenizer, c.maxSeqLen))) {
        await writeFile(join(tmp, name), text);
      }
      tokenizerNote = "the GGUF's vocabulary as tokenizer.json";
    } else if (ck.kind === 'hf') {
      const copied = TOKENIZER_FILES.filter((f) => existsSync(join(ck.dir, f)));
      for (const f of copied) await copyFile(join(ck.dir, f), join(tmp, f));
      tokenizerNote = copied.length > 0 ? `copied ${copied.join(', ')}` : 'none (the folder has no tokenizer files)';
    }
    if (existsSync(dest)) await rm(dest, { recursive: true }); // an empty folder, checked above
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => {});
    // A full disk names the folder asked for, not the temporary one it was being written as.
    throw writeError(out, e);
  } finally {
    unmark();
    await ck.tensors.close();
  }
  process.stderr.write(
    `wrote ${out}: Hugging Face folder, ${dtype} weights, tokenizer: ${tokenizerNote} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`,
  );
  return 0;
}
