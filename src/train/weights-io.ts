/**
 * Moving a TrainModel's weights in and out of checkpoints: load any MPT model folder (through
 * the shared format readers) into f32 trainable parameters, and export a Hugging Face folder
 * (MosaicML config keys, model.safetensors in f32, f16 or bf16, the tokenizer's files).
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { openCheckpoint, type Checkpoint } from '../model/load.js';
import { hfConfigJson, hfTokenizerFiles, type HfExportDtype } from '../model/hf-export.js';
import { tensorToFloat32, f32ToBf16Bytes, f32ToF16Bytes, FLOAT_DTYPE_BYTES } from '../formats/dtypes.js';
import { writeSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { InputError, WeightsError } from '../errors.js';
import { checkpointTokenizer } from '../runtime/tokenizer-files.js';
import {
  noTokenizerMessage,
  SLOW_TOKENIZER_FILES,
  TOKENIZER_FILE_HINT,
  TOKENIZER_SIDE_FILES,
  tokenizerHintsOf,
  type MptTokenizer,
} from '../runtime/tokenizer.js';
import type { Kernels } from './kernels.js';
import { publishFiles, removeStaleTemps, tempPathOf } from './durable-fs.js';
import { TrainModel, expandEmbedding, type CompactVocab } from './model.js';

export interface LoadedTrainModel {
  model: TrainModel;
  /** The model folder (for a GGUF file, the folder holding it). */
  dir: string;
  /** The opened checkpoint (config, kind, a GGUF's tokenizer); its tensors are closed. */
  checkpoint: Checkpoint;
  /**
   * The float type the weights are stored in, which an export keeps unless told otherwise: the
   * type of most of the parameters; for quantized weights, config.json's torch_dtype, else f16.
   */
  dtype: HfExportDtype;
}

const TORCH_DTYPES: Record<string, HfExportDtype> = { float32: 'f32', float16: 'f16', bfloat16: 'bf16' };

/** Loads a model folder (or GGUF file) into a trainable model with a full vocabulary. */
export async function loadTrainModel(path: string, kernels: Kernels): Promise<LoadedTrainModel> {
  const ck = await openCheckpoint(path);
  try {
    const model = new TrainModel(ck.config, kernels);
    const elements = new Map<string, number>();
    for (const p of model.params) {
      const info = ck.tensors.info(p.name);
      if (!info) throw new WeightsError(`${path} has no tensor ${p.name}`);
      if (info.shape.join(',') !== p.shape.join(','))
        throw new WeightsError(`${p.name} has shape [${info.shape}] in ${path}, expected [${p.shape}]`);
      p.data.set(tensorToFloat32(info, await ck.tensors.read(p.name)));
      elements.set(info.dtype, (elements.get(info.dtype) ?? 0) + p.data.length);
    }
    const stored = [...elements].sort((a, b) => b[1] - a[1])[0]?.[0];
    const dtype =
      stored !== undefined && FLOAT_DTYPE_BYTES[stored as HfExportDtype] !== undefined
        ? (stored as HfExportDtype)
        : (TORCH_DTYPES[String(ck.config.raw['torch_dtype'])] ?? 'f16');
    return { model, dir: ck.dir, checkpoint: ck, dtype };
  } finally {
    await ck.tensors.close();
  }
}

/**
 * The tokenizer of a model loaded for training (checkpointTokenizer: its own, or the shipped
 * GPT-NeoX-20B one with a note), or an InputError that says why it has none.
 */
export function trainModelTokenizer(loaded: LoadedTrainModel, onNote?: (message: string) => void): MptTokenizer {
  const ck = loaded.checkpoint;
  const tok = checkpointTokenizer(ck, { onNote });
  if (tok) return tok;
  const why = noTokenizerMessage(ck.path, ck.config.vocabSize, tokenizerHintsOf(ck.config.raw).tokenizerName);
  throw new InputError(`${why}: ${TOKENIZER_FILE_HINT}`);
}

/** Full-vocabulary f32 tensors of a model (the compact embedding expanded; LoRA must be merged). */
export function exportTensors(model: TrainModel): Array<{ name: string; shape: number[]; data: Float32Array }> {
  return model.params
    .filter((p) => !p.name.includes('.lora_'))
    .map((p) => {
      if (p.name === 'transformer.wte.weight') {
        return {
          name: p.name,
          shape: [model.vocab.fullSize, model.config.dModel],
          data: expandEmbedding(model.vocab, p.data, model.config.dModel),
        };
      }
      return { name: p.name, shape: p.shape, data: p.data };
    });
}

/**
 * Where an exported folder's tokenizer files come from: the tokenizer.json the tokenizer was built
 * from and the folder of its side files, or ready texts (a GGUF's tokenizer as Hugging Face files).
 */
export interface TokenizerFiles {
  json?: string;
  sideDir?: string;
  texts?: Record<string, string>;
}

/**
 * The files of `tok`, loaded from `named` as loadTokenizer does: a tokenizer.json file (side files
 * beside it only when it is named tokenizer.json), or a model folder (side files from the folder;
 * the tokenizer.json is its own or the shipped one it fell back to).
 */
export function tokenizerFilesOf(tok: MptTokenizer, named: string): TokenizerFiles {
  const isDir = existsSync(named) && statSync(named).isDirectory();
  return {
    json: tok.source,
    sideDir: isDir ? named : basename(named) === 'tokenizer.json' ? dirname(named) : undefined,
  };
}

/** The tokenizer files of a model loaded for training whose tokenizer is `tok`. */
export function modelTokenizerFiles(loaded: LoadedTrainModel, tok: MptTokenizer): TokenizerFiles {
  const ck = loaded.checkpoint;
  if (ck.kind === 'gguf' && ck.ggufTokenizer && tok.source === ck.path) {
    return { texts: hfTokenizerFiles(ck.ggufTokenizer, ck.config.maxSeqLen) };
  }
  return tokenizerFilesOf(tok, ck.dir);
}

export interface ExportOptions {
  /** Type of model.safetensors (default f32). */
  dtype?: HfExportDtype;
  /** The tokenizer's files, written beside the weights. */
  tokenizer?: TokenizerFiles;
  /** Files written unless the tokenizer brings one of that name: name → contents. */
  defaultFiles?: Record<string, string>;
}

const toDtype = (data: Float32Array, dtype: HfExportDtype): Uint8Array => {
  if (dtype === 'bf16') return f32ToBf16Bytes(data);
  if (dtype === 'f16') return f32ToF16Bytes(data);
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) as ArrayBuffer);
};

/** Writes the tokenizer's files into `dir`; returns their names. */
async function writeTokenizerFiles(t: TokenizerFiles, dir: string): Promise<Set<string>> {
  const written = new Set<string>();
  const copy = async (src: string, name: string) => {
    if (!existsSync(src)) return;
    await copyFile(src, join(dir, name));
    written.add(name);
  };
  if (t.json) {
    await copy(t.json, 'tokenizer.json');
    for (const f of SLOW_TOKENIZER_FILES)
      if (basename(t.json) === 'tokenizer.json') await copy(join(dirname(t.json), f), f);
  }
  if (t.sideDir) for (const f of Object.values(TOKENIZER_SIDE_FILES)) await copy(join(t.sideDir, f), f);
  for (const [name, text] of Object.entries(t.texts ?? {})) {
    await writeFile(join(dir, name), text);
    written.add(name);
  }
  return written;
}

/**
 * Writes a Hugging Face folder that MosaicML's code, HF transformers and this project load:
 * config.json (MosaicML's key set), model.safetensors, tokenizer files. Built in a temporary
 * sibling folder, then published file by file with config.json last (publishFiles), so a crash
 * never leaves a folder that looks like a model but mixes two; other files in outDir stay.
 */
export async function exportHfFolder(model: TrainModel, outDir: string, opts: ExportOptions = {}): Promise<void> {
  if (model.lora) throw new WeightsError('merge the LoRA adapters (mergeLora) before exporting a full model');
  await removeStaleTemps(outDir);
  const tmp = tempPathOf(outDir);
  await mkdir(tmp, { recursive: true });
  const dtype = opts.dtype ?? 'f32';
  await writeFile(join(tmp, 'config.json'), JSON.stringify(hfConfigJson(model.config, dtype), null, 2) + '\n');
  const tensors: TensorToWrite[] = exportTensors(model).map((t) => ({
    name: t.name,
    dtype,
    shape: t.shape,
    data: toDtype(t.data, dtype),
  }));
  await writeSafetensors(join(tmp, 'model.safetensors'), tensors);
  const fromTokenizer = opts.tokenizer ? await writeTokenizerFiles(opts.tokenizer, tmp) : new Set<string>();
  for (const [name, text] of Object.entries(opts.defaultFiles ?? {})) {
    if (!fromTokenizer.has(name)) await writeFile(join(tmp, name), text);
  }
  await mkdir(outDir, { recursive: true });
  await publishFiles(tmp, outDir, 'config.json');
}

/**
 * tokenizer_config.json, special_tokens_map.json and generation_config.json as mosaicml/mpt-7b
 * ships them (GPT-NeoX-20B tokenizer, <|endoftext|> = id 0 as BOS/EOS/UNK), for a model trained
 * here whose tokenizer brings none (`eosToken`: the EOS the data was tokenized with).
 */
export function mptTokenizerSideFiles(
  maxSeqLen: number,
  eosId = 0,
  eosToken = '<|endoftext|>',
): Record<string, string> {
  const j = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
  return {
    'tokenizer_config.json': j({
      add_prefix_space: false,
      bos_token: eosToken,
      clean_up_tokenization_spaces: true,
      eos_token: eosToken,
      model_max_length: maxSeqLen,
      tokenizer_class: 'GPTNeoXTokenizer',
      unk_token: eosToken,
    }),
    'special_tokens_map.json': j({ bos_token: eosToken, eos_token: eosToken, unk_token: eosToken }),
    'generation_config.json': j({
      _from_model_config: true,
      bos_token_id: eosId,
      eos_token_id: eosId,
      pad_token_id: eosId,
    }),
  };
}

/** The compact-vocabulary helpers need the full embedding to be compacted on load. */
export function compactEmbedding(full: Float32Array, vocab: CompactVocab, d: number): Float32Array {
  const out = new Float32Array(vocab.idOf.length * d);
  vocab.idOf.forEach((id, r) => {
    out.set(full.subarray(id * d, id * d + d), r * d);
  });
  return out;
}
