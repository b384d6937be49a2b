/**
 * Training recipes: YAML close to llm-foundry's pretraining configs, turned into a ready Trainer.
 *
 *   seed: 17
 *   max_seq_len: 256
 *   model: {name: mpt_causal_lm, d_model: 256, n_heads: 4, n_layers: 4, expansion_ratio: 4,
 *           vocab_size: 50432, no_bias: true, attn_config: {alibi: true}, compact_vocab: true}
 *           (or `pretrained: path/to/model-folder` to continue from a model)
 *   tokenizer: {name: assets/gpt-neox-20b/tokenizer.json}   (a tokenizer.json or a model folder;
 *              default: the pretrained model's, else the shipped GPT-NeoX-20B one)
 *   data: {train: [files...], eval: [files...] | eval_fraction: 0.05}
 *   optimizer: {name: decoupled_lionw, lr: 1.0e-3, betas: [0.9, 0.95], weight_decay: 0}
 *   scheduler: {name: cosine_with_warmup, t_warmup: 50ba, alpha_f: 0.1}
 *   algorithms: {gradient_clipping: {clipping_type: norm, clipping_threshold: 1.0}}
 *   max_duration: 1000ba | 2000000tok | 3ep
 *   eval_interval: 50ba
 *   eval_subset_num_batches: 8
 *   global_train_batch_size: 8
 *   device_train_microbatch_size: 8
 *   save_folder: runs/demo
 *   save_interval: 100ba
 *   export_folder: models/default     (a Hugging Face folder written at every save)
 *   export_dtype: bf16                 (bf16 | f16 | f32)
 *   threads: 2
 *
 * Relative paths are resolved against the current directory, as llm-foundry does.
 */
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from '../errors.js';
import { parseMptConfig, type MptConfig } from '../model/config.js';
import type { MptTokenizer } from '../runtime/tokenizer.js';
import { loadTokenizer, shippedNeoxTokenizerPath } from '../runtime/tokenizer-files.js';
import type { HfExportDtype } from '../model/hf-export.js';
import type { Kernels } from './kernels.js';
import { compactVocab, TrainModel, type CompactVocab } from './model.js';
import { optimizerConfig, type OptimizerConfig } from './optim.js';
import { parseScheduleName, type ScheduleConfig } from './schedule.js';
import { lmBatch, packWindows, readTextFile, splitWindows, tokenizeFiles } from './data.js';
import { Trainer, type DataSource, type StepProgress } from './trainer.js';
import { exportHfFolder, loadTrainModel, mptTokenizerSideFiles, tokenizerFilesOf } from './weights-io.js';
import { checkpointToResume, loadCheckpointMeta } from './checkpoint.js';

type Json = Record<string, unknown>;

/** A duration in llm-foundry's notation: "1000ba" (batches), "2000000tok" (tokens), "3ep" (epochs). */
export interface Duration {
  value: number;
  unit: 'ba' | 'tok' | 'ep';
}

export function parseDuration(v: unknown, what: string): Duration {
  if (typeof v === 'number') return { value: v, unit: 'ba' };
  const m = typeof v === 'string' ? /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(ba|tok|ep)\s*$/i.exec(v) : null;
  if (!m) throw new ConfigError(`${what} must look like "1000ba", "2000000tok" or "2ep", got ${JSON.stringify(v)}`);
  return { value: Number(m[1]), unit: m[2]!.toLowerCase() as Duration['unit'] };
}

/** Converts a duration to optimizer steps. */
export function durationToSteps(
  d: Duration,
  tokensPerStep: number,
  samplesPerEpoch: number,
  samplesPerStep: number,
): number {
  if (d.unit === 'ba') return Math.max(1, Math.round(d.value));
  if (d.unit === 'tok') return Math.max(1, Math.ceil(d.value / tokensPerStep));
  return Math.max(1, Math.ceil((d.value * samplesPerEpoch) / samplesPerStep));
}

export interface Recipe {
  raw: Json;
  seed: number;
  maxSeqLen: number;
  model: Json;
  tokenizerPath: string;
  trainFiles: string[];
  evalFiles: string[];
  evalFraction: number;
  optimizer: OptimizerConfig;
  scheduler: { name: string; warmup: Duration; alphaF: number };
  gradClip: number | null;
  maxDuration: Duration;
  evalInterval: Duration;
  evalBatches: number;
  globalBatch: number;
  microBatch: number;
  saveFolder: string | null;
  saveInterval: Duration | null;
  exportFolder: string | null;
  exportDtype: HfExportDtype;
  threads: number | undefined;
}

const EXPORT_DTYPES: Record<string, HfExportDtype> = {
  f32: 'f32',
  fp32: 'f32',
  float32: 'f32',
  bf16: 'bf16',
  bfloat16: 'bf16',
  f16: 'f16',
  fp16: 'f16',
  float16: 'f16',
};

const files = (v: unknown, what: string): string[] => {
  if (v === undefined || v === null) return [];
  const arr = Array.isArray(v) ? v : [v];
  if (!arr.every((x) => typeof x === 'string')) throw new ConfigError(`${what} must be a file path or a list of them`);
  return (arr as string[]).map((p) => resolve(p));
};

export function parseRecipe(text: string, source = 'recipe'): Recipe {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${source}: invalid YAML: ${(e as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null) throw new ConfigError(`${source} must hold a YAML mapping`);
  const r = raw as Json;
  const obj = (k: string): Json => {
    const v = r[k];
    if (v === undefined || v === null) return {};
    if (typeof v !== 'object' || Array.isArray(v)) throw new ConfigError(`${source}: ${k} must be a mapping`);
    return v as Json;
  };
  const model = obj('model');
  const maxSeqLen = Number(r['max_seq_len'] ?? model['max_seq_len'] ?? 2048);
  const tok = obj('tokenizer');
  const data = obj('data');
  const opt = obj('optimizer');
  const sch = obj('scheduler');
  const clip = (obj('algorithms')['gradient_clipping'] ?? null) as Json | null;
  const num = (v: unknown, d: number, what: string) => {
    if (v === undefined || v === null) return d;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new ConfigError(`${source}: ${what} must be a number`);
    return n;
  };
  const optimizer = optimizerConfig(String(opt['name'] ?? 'decoupled_lionw'), {
    lr: opt['lr'] !== undefined ? num(opt['lr'], 0, 'optimizer.lr') : undefined,
    betas: Array.isArray(opt['betas']) ? [Number(opt['betas'][0]), Number(opt['betas'][1])] : undefined,
    eps: opt['eps'] !== undefined ? num(opt['eps'], 0, 'optimizer.eps') : undefined,
    weightDecay: opt['weight_decay'] !== undefined ? num(opt['weight_decay'], 0, 'optimizer.weight_decay') : undefined,
  });
  const globalBatch = num(r['global_train_batch_size'], 8, 'global_train_batch_size');
  const micro = r['device_train_microbatch_size'];
  const microBatch =
    micro === undefined || micro === 'auto' ? globalBatch : num(micro, globalBatch, 'device_train_microbatch_size');
  const trainFiles = files(data['train'] ?? data['train_files'], 'data.train');
  const exportDtype = EXPORT_DTYPES[String(r['export_dtype'] ?? 'bf16').toLowerCase()];
  if (!exportDtype) {
    throw new ConfigError(`${source}: export_dtype must be bf16, f16 or f32, got ${JSON.stringify(r['export_dtype'])}`);
  }
  const tokName = tok['name'] ?? tok['path'] ?? model['pretrained'];
  if (trainFiles.length === 0 && model['pretrained'] === undefined)
    throw new ConfigError(`${source}: data.train lists no files`);
  return {
    raw: r,
    seed: num(r['seed'], 17, 'seed'),
    maxSeqLen,
    model,
    tokenizerPath: tokName !== undefined ? resolve(String(tokName)) : shippedNeoxTokenizerPath(),
    trainFiles,
    evalFiles: files(data['eval'] ?? data['eval_files'], 'data.eval'),
    evalFraction: num(data['eval_fraction'], 0, 'data.eval_fraction'),
    optimizer,
    scheduler: {
      name: String(sch['name'] ?? 'cosine_with_warmup'),
      warmup: parseDuration(sch['t_warmup'] ?? '0ba', 'scheduler.t_warmup'),
      alphaF: num(sch['alpha_f'], 0, 'scheduler.alpha_f'),
    },
    gradClip:
      clip && clip['clipping_threshold'] !== undefined
        ? num(clip['clipping_threshold'], 1, 'clipping_threshold')
        : null,
    maxDuration: parseDuration(r['max_duration'] ?? '100ba', 'max_duration'),
    evalInterval: parseDuration(r['eval_interval'] ?? '0ba', 'eval_interval'),
    evalBatches: num(r['eval_subset_num_batches'], 0, 'eval_subset_num_batches'),
    globalBatch,
    microBatch,
    saveFolder: r['save_folder'] ? resolve(String(r['save_folder'])) : null,
    saveInterval: r['save_interval'] !== undefined ? parseDuration(r['save_interval'], 'save_interval') : null,
    exportFolder: r['export_folder'] ? resolve(String(r['export_folder'])) : null,
    exportDtype,
    threads: r['threads'] !== undefined ? num(r['threads'], 2, 'threads') : undefined,
  };
}

/** A recipe is a page of YAML; a bigger file is a wrong path, not a recipe. */
const MAX_RECIPE_BYTES = 1 << 20;

export function readRecipe(path: string): Recipe {
  return parseRecipe(readTextFile(path, 'training recipe', MAX_RECIPE_BYTES), path);
}

/** The model config of a from-scratch recipe (llm-foundry keys; max_seq_len from the top level). */
export function recipeModelConfig(rc: Recipe): MptConfig {
  const { name: _n, compact_vocab: _c, pretrained: _p, init_config: _i, ...cfg } = rc.model;
  void _n;
  void _c;
  void _p;
  void _i;
  return parseMptConfig({ ...cfg, max_seq_len: rc.maxSeqLen });
}

/** Windows of a token stream as a DataSource. */
export function windowSource(windows: Int32Array, seqLen: number): DataSource {
  const count = Math.floor(windows.length / seqLen);
  return { count, batch: (rows) => lmBatch(windows, seqLen, rows) };
}

export interface PreparedRun {
  trainer: Trainer;
  model: TrainModel;
  tokenizer: MptTokenizer;
  recipe: Recipe;
  trainTokens: number;
  exportNow: (dir?: string) => Promise<void>;
}

/**
 * Builds tokenizer, data, model and trainer from a recipe. With `resume` (the default) the model
 * takes the vocabulary of save_folder's checkpoint, and a save_folder holding only incomplete
 * checkpoints is refused before any data is read; the caller then calls trainer.resume().
 */
export async function prepareRun(
  rc: Recipe,
  kernels: Kernels,
  progress: (l: string) => void = (l) => process.stderr.write(l + '\n'),
  opts: { resume?: boolean; onStep?: (p: StepProgress) => void } = {},
): Promise<PreparedRun> {
  const ckDir = rc.saveFolder && opts.resume !== false ? await checkpointToResume(rc.saveFolder) : null;
  const tokenizer = loadTokenizer(rc.tokenizerPath);
  if (!tokenizer) {
    throw new ConfigError(
      `tokenizer.name ${rc.tokenizerPath} has no tokenizer.json, and its vocab_size does not fit ` +
        'the shipped GPT-NeoX-20B tokenizer',
    );
  }
  // The model first: a tokenizer with ids past its embedding cannot train it.
  const pretrained = rc.model['pretrained'];
  const loaded = typeof pretrained === 'string' ? (await loadTrainModel(resolve(pretrained), kernels)).model : null;
  const config = loaded?.config ?? recipeModelConfig(rc);
  if (tokenizer.size > config.vocabSize) {
    throw new ConfigError(
      `the tokenizer ${tokenizer.source} has ${tokenizer.size} ids but the model's vocab_size is ` +
        `${config.vocabSize}: raise model.vocab_size or use the model's own tokenizer`,
    );
  }
  const eos = tokenizer.eosId ?? 0;
  const t0 = performance.now();
  const trainStream = tokenizeFiles(rc.trainFiles, tokenizer, eos);
  const packed = packWindows(trainStream, rc.maxSeqLen);
  let trainW: Int32Array = packed.windows,
    evalW: Int32Array = new Int32Array(0);
  if (rc.evalFiles.length) evalW = packWindows(tokenizeFiles(rc.evalFiles, tokenizer, eos), rc.maxSeqLen).windows;
  else if (rc.evalFraction > 0)
    ({ train: trainW, eval: evalW } = splitWindows(packed.windows, packed.count, rc.maxSeqLen, rc.evalFraction));
  progress(
    `data: ${trainStream.length} tokens → ${trainW.length / rc.maxSeqLen} train windows of ${rc.maxSeqLen}, ${evalW.length / rc.maxSeqLen} eval windows (${((performance.now() - t0) / 1000).toFixed(1)} s to tokenize)`,
  );

  // Model: from a pretrained folder, from a checkpoint's vocabulary, or freshly initialised.
  let model: TrainModel;
  if (loaded) {
    model = loaded;
  } else {
    let vocab: CompactVocab | undefined;
    if (ckDir) {
      const meta = (await loadCheckpointMeta(ckDir)) as { vocab?: { idOf: number[]; shared: number } };
      if (meta.vocab && meta.vocab.shared > 0) vocab = compactVocab(config.vocabSize, meta.vocab.idOf.slice(0, -1));
    } else if (rc.model['compact_vocab'] !== false) {
      vocab = compactVocab(config.vocabSize, new Set(trainStream));
    }
    model = new TrainModel(config, kernels, vocab);
    model.initialize(rc.seed);
    if (vocab && vocab.shared > 0)
      progress(
        `compact vocabulary: ${vocab.idOf.length - 1} ids used by the training data + 1 shared row for the other ${vocab.shared} (exact: those rows stay equal)`,
      );
  }
  const tokensPerStep = rc.globalBatch * rc.maxSeqLen;
  const nTrain = trainW.length / rc.maxSeqLen;
  const toSteps = (d: Duration) => durationToSteps(d, tokensPerStep, nTrain, rc.globalBatch);
  const maxSteps = toSteps(rc.maxDuration);
  const schedule: ScheduleConfig = {
    name: parseScheduleName(rc.scheduler.name),
    warmupSteps: rc.scheduler.warmup.value === 0 ? 0 : toSteps(rc.scheduler.warmup),
    alphaF: rc.scheduler.alphaF,
  };
  const exportNow = async (dir = rc.exportFolder ?? undefined) => {
    if (!dir) return;
    await exportHfFolder(model, dir, {
      dtype: rc.exportDtype,
      // The files of the tokenizer the data was read with, wherever tokenizer.name pointed.
      tokenizer: tokenizerFilesOf(tokenizer, rc.tokenizerPath),
      defaultFiles: mptTokenizerSideFiles(model.config.maxSeqLen, eos, tokenizer.idToToken(eos)),
    });
  };
  const trainer = new Trainer({
    model,
    train: windowSource(trainW, rc.maxSeqLen),
    eval: evalW.length ? windowSource(evalW, rc.maxSeqLen) : null,
    optimizer: rc.optimizer,
    schedule,
    maxSteps,
    globalBatch: rc.globalBatch,
    microBatch: rc.microBatch,
    gradClip: rc.gradClip,
    evalInterval: rc.evalInterval.value === 0 ? 0 : toSteps(rc.evalInterval),
    evalBatches: rc.evalBatches,
    seed: rc.seed,
    saveFolder: rc.saveFolder,
    saveInterval: rc.saveInterval ? toSteps(rc.saveInterval) : 0,
    onSave: async () => {
      await exportNow();
    },
    checkpointMeta: { recipe: rc.raw, vocab: { idOf: Array.from(model.vocab.idOf), shared: model.vocab.shared } },
    progress,
    onStep: opts.onStep,
    title: `mpt train: d_model ${model.config.dModel}, ${model.config.nLayers} layers, seq ${rc.maxSeqLen}`,
  });
  return { trainer, model, tokenizer, recipe: rc, trainTokens: trainStream.length, exportNow };
}
