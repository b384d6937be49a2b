/**
 * Moving a TrainModel's weights in and out of checkpoints: load any MPT model folder (through
 * the shared format readers) into f32 trainable parameters, and export a Hugging Face folder
 * (MosaicML config keys, model.safetensors in f32 or bf16, tokenizer files).
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openCheckpoint } from '../model/load.js';
import { toMosaicConfigJson } from '../model/config.js';
import { tensorToFloat32, f32ToBf16Bytes } from '../formats/dtypes.js';
import { writeSafetensors, type TensorToWrite } from '../formats/safetensors.js';
import { WeightsError } from '../errors.js';
import type { Kernels } from './kernels.js';
import { publishFiles, removeStaleTemps, tempPathOf } from './durable-fs.js';
import { TrainModel, expandEmbedding, type CompactVocab } from './model.js';

/** Loads a model folder (or GGUF file) into a trainable model with a full vocabulary. */
export async function loadTrainModel(path: string, kernels: Kernels): Promise<{ model: TrainModel; dir: string }> {
  const ck = await openCheckpoint(path);
  try {
    const model = new TrainModel(ck.config, kernels);
    for (const p of model.params) {
      const info = ck.tensors.info(p.name);
      if (!info) throw new WeightsError(`${path} has no tensor ${p.name}`);
      if (info.shape.join(',') !== p.shape.join(',')) throw new WeightsError(`${p.name} has shape [${info.shape}] in ${path}, expected [${p.shape}]`);
      p.data.set(tensorToFloat32(info, await ck.tensors.read(p.name)));
    }
    return { model, dir: ck.dir };
  } finally {
    await ck.tensors.close();
  }
}

/** Full-vocabulary f32 tensors of a model (the compact embedding expanded; LoRA must be merged). */
export function exportTensors(model: TrainModel): Array<{ name: string; shape: number[]; data: Float32Array }> {
  return model.params.filter((p) => !p.name.includes('.lora_')).map((p) => {
    if (p.name === 'transformer.wte.weight') {
      return { name: p.name, shape: [model.vocab.fullSize, model.config.dModel], data: expandEmbedding(model.vocab, p.data, model.config.dModel) };
    }
    return { name: p.name, shape: p.shape, data: p.data };
  });
}

/** Tokenizer files copied beside exported weights when present in the source folder. */
export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'vocab.json', 'merges.txt'];

export interface ExportOptions {
  dtype?: 'f32' | 'bf16';
  /** Folder to copy tokenizer files from. */
  tokenizerDir?: string;
  /** Extra files to write: name → contents. */
  extraFiles?: Record<string, string>;
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
  const cfg = toMosaicConfigJson(model.config);
  cfg['torch_dtype'] = dtype === 'bf16' ? 'bfloat16' : 'float32';
  await writeFile(join(tmp, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
  const tensors: TensorToWrite[] = exportTensors(model).map((t) => ({
    name: t.name, dtype, shape: t.shape,
    data: dtype === 'bf16' ? f32ToBf16Bytes(t.data) : new Uint8Array(t.data.buffer.slice(t.data.byteOffset, t.data.byteOffset + t.data.byteLength) as ArrayBuffer),
  }));
  await writeSafetensors(join(tmp, 'model.safetensors'), tensors);
  if (opts.tokenizerDir) {
    for (const f of TOKENIZER_FILES) {
      const src = join(opts.tokenizerDir, f);
      if (existsSync(src)) await copyFile(src, join(tmp, f));
    }
  }
  for (const [name, text] of Object.entries(opts.extraFiles ?? {})) await writeFile(join(tmp, name), text);
  await mkdir(outDir, { recursive: true });
  await publishFiles(tmp, outDir, 'config.json');
}

/**
 * tokenizer_config.json, special_tokens_map.json and generation_config.json as mosaicml/mpt-7b
 * ships them (GPT-NeoX-20B tokenizer, <|endoftext|> = id 0 as BOS/EOS/UNK), for a model trained here.
 */
export function mptTokenizerSideFiles(maxSeqLen: number, eosId = 0): Record<string, string> {
  const j = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
  return {
    'tokenizer_config.json': j({
      add_prefix_space: false, bos_token: '<|endoftext|>', clean_up_tokenization_spaces: true, eos_token: '<|endoftext|>',
      model_max_length: maxSeqLen, tokenizer_class: 'GPTNeoXTokenizer', unk_token: '<|endoftext|>',
    }),
    'special_tokens_map.json': j({ bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' }),
    'generation_config.json': j({ _from_model_config: true, bos_token_id: eosId, eos_token_id: eosId, pad_token_id: eosId }),
  };
}

/** The compact-vocabulary helpers need the full embedding to be compacted on load. */
export function compactEmbedding(full: Float32Array, vocab: CompactVocab, d: number): Float32Array {
  const out = new Float32Array(vocab.idOf.length * d);
  vocab.idOf.forEach((id, r) => out.set(full.subarray(id * d, id * d + d), r * d));
  return out;
}
