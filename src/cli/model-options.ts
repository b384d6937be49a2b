/**
 * What `mpt generate` and `mpt chat` share: the model/prompt positional rule, the sampling and
 * loading options, and loading a model or tokenizer with a progress bar and user-facing errors.
 */
import { statSync, type Stats } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { defaultModelPath } from '../model/default-model.js';
import type { KvType } from '../backends/backend.js';
import type { BackendName } from '../backends/registry.js';
import { DEFAULT_SAMPLING } from '../backends/sampling/sampler.js';
import type { GenerateOptions } from '../runtime/generate.js';
import { DEFAULT_MAX_TOKENS } from '../runtime/generation-sequence.js';
import { loadModel, type MptModel } from '../runtime/model.js';
import {
  ggufTokenizerOf,
  type MptTokenizer,
  noTokenizerMessage,
  TOKENIZER_FILE_HINT,
  TOKENIZER_HINTS,
  tokenizerHintsOf,
} from '../runtime/tokenizer.js';
import { folderTokenizerHints, loadTokenizer } from '../runtime/tokenizer-files.js';
import type { OptionSpec, ParsedArgs } from './args.js';
import { createProgress } from './progress.js';
import { kindOf, statPath } from './user-files.js';

/** Options of every command that loads a model. */
export const MODEL_OPTIONS: Record<string, OptionSpec> = {
  backend: { type: 'string' },
  threads: { type: 'number' },
  ctx: { type: 'number', short: 'c' },
  template: { type: 'string' },
  tokenizer: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
};

/** Sampling and stopping options. */
export const SAMPLING_OPTIONS: Record<string, OptionSpec> = {
  'max-tokens': { type: 'number', short: 'n' },
  temperature: { type: 'number', short: 't' },
  'top-k': { type: 'number' },
  'top-p': { type: 'number' },
  'min-p': { type: 'number' },
  'repeat-penalty': { type: 'number' },
  'repeat-last-n': { type: 'number' },
  'presence-penalty': { type: 'number' },
  'frequency-penalty': { type: 'number' },
  seed: { type: 'number', short: 's' },
  stop: { type: 'string', multiple: true },
  'logit-bias': { type: 'string', multiple: true },
};

/** Help text for the options above. */
export const MODEL_AND_SAMPLING_HELP = `sampling (defaults: temperature ${DEFAULT_SAMPLING.temperature}, top-k ${DEFAULT_SAMPLING.topK}, top-p ${DEFAULT_SAMPLING.topP}, min-p ${DEFAULT_SAMPLING.minP}):
  -n, --max-tokens N        most new tokens (default ${DEFAULT_MAX_TOKENS})
  -t, --temperature T       0 = greedy
      --top-k K             keep the K most likely tokens (0 = off)
      --top-p P             nucleus sampling mass (1 = off)
      --min-p P             drop tokens below P x the top probability (0 = off)
      --repeat-penalty R    repetition penalty as in transformers (1 = off)
      --repeat-last-n N     penalties look at the last N tokens only (0 = all)
      --presence-penalty X  OpenAI presence penalty (0 = off)
      --frequency-penalty X OpenAI frequency penalty (0 = off)
  -s, --seed S              makes sampling reproducible
      --stop TEXT           stop at TEXT (repeatable; never printed)
      --logit-bias ID+X     add X to token ID's logit, ID-X subtracts, ID-inf bans it
                            (repeatable; llama.cpp's syntax)
model:
      --template T          prompt format: auto (default), chatml, instruct, none, jinja
  -c, --ctx N               context length (default: the model's max_seq_len; larger
                            only for ALiBi models, which extrapolate)
      --backend B           auto (default: wasm), wasm, webgpu (the GPU; weights stay in their
                            stored type) or reference
      --threads N           worker threads of the wasm backend (default: all cores;
                            passes with little work use fewer)
      --tokenizer PATH      tokenizer.json (or folder) to use instead of the model's
  -q, --quiet               no progress bar or statistics on stderr`;

/** True when `p` names a model: an existing folder or .gguf file. */
export function isModelPath(p: string): boolean {
  let st: Stats | undefined;
  try {
    st = statSync(p, { throwIfNoEntry: false });
  } catch {
    return false; // prompt text is no path: a long one is ENAMETOOLONG, not a model
  }
  return st !== undefined && (st.isDirectory() || (st.isFile() && p.toLowerCase().endsWith('.gguf')));
}

/**
 * Whether an argument in the MODEL position was meant as a path rather than prompt text: one
 * word with a path separator (`models/defualt`) or a model file's extension (`x.gguf`).
 */
export function looksLikePath(arg: string): boolean {
  return !/\s/.test(arg) && (/[\\/]/.test(arg) || /\.(gguf|safetensors|bin)$/i.test(arg));
}

/** Why a path-like MODEL argument is not a model, as a one-line message. */
function notAModel(p: string): string {
  const st = statPath(p);
  if (!st) return `model not found: ${p} (a prompt that starts with a path needs the model named before it)`;
  if (st.isFile()) return `${p} is not a model: give the folder that holds it (config.json, weights) or a .gguf file`;
  return `${p} is ${kindOf(st)}, not a model folder or .gguf file`;
}

/**
 * Splits positionals into MODEL and the rest: the first positional is the model when it is an
 * existing folder or .gguf file, and an error when it looks like a path but is neither (a
 * mistyped model is not prompt text); otherwise the shipped default model is used.
 */
export function splitModelArg(positionals: string[]): { model: string | undefined; rest: string[] } {
  const first = positionals[0];
  if (first !== undefined && isModelPath(first)) return { model: first, rest: positionals.slice(1) };
  if (first !== undefined && looksLikePath(first)) throw new InputError(notAModel(first));
  return { model: undefined, rest: positionals };
}

/** `--tokenizer PATH` must be a tokenizer.json (or similar) file or a folder that holds tokenizer.json. */
export function checkTokenizerOption(p: string): void {
  const st = statPath(p);
  if (!st) throw new InputError(`--tokenizer: not found: ${p}`);
  if (st.isDirectory()) {
    if (!statPath(join(p, 'tokenizer.json'))?.isFile()) throw new InputError(`--tokenizer: ${p} has no tokenizer.json`);
  } else if (!st.isFile()) throw new InputError(`--tokenizer: ${p} is ${kindOf(st)}, not a tokenizer.json or folder`);
}

/** Reads the sampling options into GenerateOptions (only those given). */
export function samplingFromArgs(o: ParsedArgs['options']): GenerateOptions {
  const g: GenerateOptions = {};
  const num = (k: string) => o[k] as number | undefined;
  if (num('max-tokens') !== undefined) g.maxTokens = num('max-tokens');
  if (num('temperature') !== undefined) g.temperature = num('temperature');
  if (num('top-k') !== undefined) g.topK = num('top-k');
  if (num('top-p') !== undefined) g.topP = num('top-p');
  if (num('min-p') !== undefined) g.minP = num('min-p');
  if (num('repeat-penalty') !== undefined) g.repetitionPenalty = num('repeat-penalty');
  if (num('repeat-last-n') !== undefined) g.penaltyLastN = num('repeat-last-n');
  if (num('presence-penalty') !== undefined) g.presencePenalty = num('presence-penalty');
  if (num('frequency-penalty') !== undefined) g.frequencyPenalty = num('frequency-penalty');
  if (num('seed') !== undefined) g.seed = num('seed');
  if (Array.isArray(o['stop'])) g.stopStrings = (o['stop'] as string[]).map(unescapeStop);
  if (Array.isArray(o['logit-bias'])) g.logitBias = parseLogitBias(o['logit-bias'] as string[]);
  return g;
}

/** `--logit-bias 15043+1`, `15043-0.5`, `2-inf` (llama.cpp's syntax) into id → bias. */
export function parseLogitBias(specs: string[]): Map<number, number> {
  const bias = new Map<number, number>();
  for (const spec of specs) {
    const m = /^\s*(\d+)\s*([+-])\s*(inf|\d+(?:\.\d*)?(?:e[+-]?\d+)?)\s*$/i.exec(spec);
    if (!m)
      throw new InputError(`--logit-bias takes TOKEN_ID+BIAS or TOKEN_ID-BIAS (e.g. 15043+1, 2-inf), got "${spec}"`);
    const value = m[3]!.toLowerCase() === 'inf' ? Infinity : Number(m[3]);
    bias.set(Number(m[1]), (bias.get(Number(m[1])) ?? 0) + (m[2] === '-' ? -value : value));
  }
  return bias;
}

/** `--stop '\n'` means a newline: the usual escapes are understood. */
function unescapeStop(s: string): string {
  return s.replace(/\\([nrt\\])/g, (_m, c: string) => ({ n: '\n', r: '\r', t: '\t', '\\': '\\' })[c]!);
}

function backendArg(v: unknown): BackendName | 'auto' | undefined {
  if (v === undefined) return undefined;
  if (v === 'auto' || v === 'wasm' || v === 'reference' || v === 'webgpu') return v;
  throw new InputError(`--backend must be auto, wasm, webgpu or reference, got "${String(v)}"`);
}

/**
 * The error of a command that needs text but whose model has no tokenizer: why, and how to give
 * one (`also`: what else the command takes instead).
 */
export function missingTokenizerError(model: MptModel, also = ''): InputError {
  const why = noTokenizerMessage(model.path, model.config.vocabSize, tokenizerHintsOf(model.config.raw).tokenizerName);
  return new InputError(`${why}: ${TOKENIZER_HINTS}${also}`);
}

/** Loads the model named on the command line (or the default one) with a progress bar. */
export async function loadModelForCli(model: string | undefined, o: ParsedArgs['options']): Promise<MptModel> {
  const path = model ?? defaultModelPath();
  const quiet = o['quiet'] === true;
  if (o['tokenizer'] !== undefined) checkTokenizerOption(o['tokenizer'] as string);
  const progress = createProgress('loading model', { quiet });
  const loaded = await loadModel(path, {
    backend: backendArg(o['backend']),
    threads: o['threads'] as number | undefined,
    contextLength: o['ctx'] as number | undefined,
    ...(['f32', 'f16', 'q8_0'].includes(o['kv-type'] as string) ? { kvType: o['kv-type'] as KvType } : {}),
    template: o['template'] as string | undefined,
    tokenizer: o['tokenizer'] as string | undefined,
    onProgress: (d, t) => progress.update(d, t),
    onNote: (m) => {
      if (!quiet) process.stderr.write(`note: ${m}\n`);
    },
  });
  progress.finish();
  return loaded;
}

/**
 * Loads a tokenizer from a tokenizer.json file, a model folder or a GGUF file (default: the
 * default model's folder).
 */
export async function loadTokenizerForCli(path: string | undefined): Promise<MptTokenizer> {
  const p = path ?? defaultModelPath();
  const st = statPath(p);
  if (!st) throw new InputError(`not found: ${p}`);
  if (!st.isFile() && !st.isDirectory()) {
    throw new InputError(`${p} is ${kindOf(st)}, not a tokenizer.json, model folder or .gguf file`);
  }
  if (st.isFile() && p.toLowerCase().endsWith('.gguf')) {
    const { openCheckpoint } = await import('../model/load.js');
    const ck = await openCheckpoint(p);
    await ck.tensors.close();
    if (!ck.ggufTokenizer) throw new InputError(`${p} has no embedded tokenizer`);
    return ggufTokenizerOf(ck.ggufTokenizer, ck.ggufMetadata, p);
  }
  const tok = loadTokenizer(p);
  if (!tok) {
    const { vocabSize, tokenizerName } = folderTokenizerHints(p);
    throw new InputError(
      `${noTokenizerMessage(p, vocabSize, tokenizerName)}: ${TOKENIZER_FILE_HINT}, or give the tokenizer.json itself as the path`,
    );
  }
  return tok;
}

/** Writes to stdout, ignoring a closed pipe (`mpt generate … | head`). */
export function writeOut(text: string): void {
  if (text.length === 0) return;
  try {
    process.stdout.write(text);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
}

/** Most bytes read from stdin: more text than a prompt or a tokenize call needs, less than a string holds. */
export const MAX_STDIN_BYTES = 128 * 2 ** 20;

/** Reads all of stdin as UTF-8; more than `maxBytes` is an error rather than exhausted memory. */
export async function readStdin(maxBytes = MAX_STDIN_BYTES): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const c of process.stdin) {
    const b = typeof c === 'string' ? Buffer.from(c) : (c as Buffer);
    total += b.length;
    if (total > maxBytes) {
      process.stdin.destroy();
      throw new InputError(`stdin holds more than ${maxBytes / 2 ** 20} MiB: give the text in smaller parts`);
    }
    chunks.push(b);
  }
  return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(Buffer.concat(chunks));
}
