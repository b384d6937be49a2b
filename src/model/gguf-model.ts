/**
 * MPT ⇄ GGUF: what llama.cpp's `mpt` architecture stores, mapped to this engine's config,
 * canonical (MosaicML state-dict) tensor names and tokenizer data, and back.
 *
 * Reading builds a MosaicML-style config.json object from the `mpt.*` keys and runs it through
 * parseMptConfig, so a GGUF model is configured exactly like a folder. Tensors keep their stored
 * GGUF type (quantized blocks are dequantized by whoever runs them); shapes become PyTorch's
 * ([rows, cols] for GGUF dims {cols, rows}).
 *
 * The rest of the job lives beside it: tensor names (gguf-names.ts), the tokenizer
 * (gguf-tokenizer.ts), the type mix of a conversion (gguf-type-mix.ts), writing (gguf-write.ts).
 */
import { FormatError, quoteValue, UnsupportedError, WeightsError } from '../errors.js';
import type { ByteSource } from '../formats/byte-source.js';
import {
  metaNumber,
  metaString,
  metaIntArray,
  readGguf,
  readGgufSource,
  type GgufFile,
  type GgufValue,
} from '../formats/gguf.js';
import type { TensorInfo, TensorSource } from '../formats/tensor-source.js';
import { MAX_DIMENSION, parseMptConfig, qkvDim, type MptConfig } from './config.js';

import { canonicalTensorName, ggufTensorName } from './gguf-names.js';
import { tokenizerFromGguf, type GgufTokenizer } from './gguf-tokenizer.js';

export interface GgufCheckpoint {
  config: MptConfig;
  /** Canonical names, PyTorch shapes, dtype = the stored GGUF type. */
  tensors: TensorSource;
  /** Undefined when the file embeds no tokenizer. */
  tokenizer?: GgufTokenizer;
  metadata: Map<string, GgufValue>;
  gguf: GgufFile;
}

/** A value that llama.cpp accepts either per model or as a per-layer array (all equal here). */
function perLayer(meta: Map<string, GgufValue>, key: string, where: string, optional: boolean): number | undefined {
  const v = meta.get(key);
  if (v === undefined) {
    if (optional) return undefined;
    throw new FormatError(`${where}: required metadata key ${key} is missing`);
  }
  if (v.type === 'array') {
    const arr = metaIntArray(meta, key, where)!;
    if (arr.length === 0) throw new FormatError(`${where}: ${key} is an empty array`);
    if (arr.some((x) => x !== arr[0]))
      throw new UnsupportedError(
        `${where}: ${key} differs between layers (${arr.join(', ')}); MPT layers are all alike`,
      );
    return arr[0];
  }
  return metaNumber(meta, key, where);
}

/** A positive integer of at most `max` (block_count is bounded by the tensors instead, in checkShapes). */
function positiveInt(v: number | undefined, key: string, where: string, max = MAX_DIMENSION): number {
  if (v === undefined || !Number.isInteger(v) || v < 1 || v > max) {
    const bound = max === MAX_DIMENSION ? ` up to ${max}` : '';
    throw new FormatError(`${where}: ${key} must be a positive integer${bound}, got ${v}`);
  }
  return v;
}

/**
 * Builds the MosaicML config.json object a GGUF file's `mpt.*` keys and tensors describe.
 * Exported for `mpt info` and tests; openGgufCheckpoint parses it with parseMptConfig.
 */
export function mosaicConfigFromGguf(file: GgufFile): Record<string, unknown> {
  const meta = file.metadata;
  const where = file.path;
  const arch = metaString(meta, 'general.architecture', where);
  if (arch !== 'mpt') {
    throw new UnsupportedError(
      `${where}: GGUF architecture ${quoteValue(arch)} is not supported (this engine runs llama.cpp architecture "mpt")`,
    );
  }
  const k = (s: string) => `mpt.${s}`;
  const dModel = positiveInt(metaNumber(meta, k('embedding_length'), where), k('embedding_length'), where);
  const blocks = metaNumber(meta, k('block_count'), where);
  const nLayers = positiveInt(blocks, k('block_count'), where, Number.MAX_SAFE_INTEGER);
  const nHeads = positiveInt(perLayer(meta, k('attention.head_count'), where, false), k('attention.head_count'), where);
  const ctx = positiveInt(metaNumber(meta, k('context_length'), where), k('context_length'), where);
  const ff = positiveInt(perLayer(meta, k('feed_forward_length'), where, false), k('feed_forward_length'), where);
  const kv = positiveInt(
    perLayer(meta, k('attention.head_count_kv'), where, true) ?? nHeads,
    k('attention.head_count_kv'),
    where,
  );
  const eps = metaNumber(meta, k('attention.layer_norm_epsilon'), where);
  if (!(eps > 0) || !Number.isFinite(eps)) {
    throw new FormatError(`${where}: ${k('attention.layer_norm_epsilon')} must be a positive number, got ${eps}`);
  }
  // MosaicML's LayerNorm always uses 1e-5 (stored as float32 in GGUF).
  if (Math.abs(eps - 1e-5) > 1e-9) {
    throw new UnsupportedError(
      `${where}: ${k('attention.layer_norm_epsilon')} is ${eps}; MPT's LayerNorm uses 1e-5 and this engine implements only that`,
    );
  }
  // llama.cpp turns ALiBi on for a bias above 0 and clamping for a clamp above 0; NaN or ±inf would
  // silently turn them off (or on), so they are refused.
  const alibiMax = metaNumber(meta, k('attention.max_alibi_bias'), where, true) ?? 0;
  if (!(alibiMax >= 0) || !Number.isFinite(alibiMax)) {
    throw new FormatError(`${where}: ${k('attention.max_alibi_bias')} must be a finite number >= 0, got ${alibiMax}`);
  }
  const clamp = metaNumber(meta, k('attention.clamp_kqv'), where, true);
  if (clamp !== undefined && !Number.isFinite(clamp)) {
    throw new FormatError(`${where}: ${k('attention.clamp_kqv')} must be a finite number, got ${clamp}`);
  }
  if (dModel % nHeads !== 0)
    throw new FormatError(`${where}: embedding_length ${dModel} is not divisible by head_count ${nHeads}`);
  if (nHeads % kv !== 0)
    throw new FormatError(`${where}: head_count ${nHeads} is not a multiple of head_count_kv ${kv}`);

  const embd = file.tensor('token_embd.weight');
  if (!embd) throw new WeightsError(`${where}: tensor token_embd.weight is missing`);
  if (embd.dims.length !== 2 || embd.dims[0] !== dModel) {
    throw new WeightsError(
      `${where}: token_embd.weight has dims {${embd.dims.join(', ')}}, expected {${dModel}, n_vocab}`,
    );
  }
  const vocab = embd.dims[1]!;
  const has = (n: string) => file.tensor(n) !== undefined;
  if (has('blk.0.ffn.act.scales'))
    throw new UnsupportedError(`${where}: AWQ activation scales (ffn.act.scales) are not supported`);

  const attnType =
    kv === nHeads ? 'multihead_attention' : kv === 1 ? 'multiquery_attention' : 'grouped_query_attention';
  const attn: Record<string, unknown> = {
    alibi: alibiMax > 0,
    alibi_bias_max: alibiMax > 0 ? alibiMax : 8,
    attn_impl: 'torch',
    attn_pdrop: 0,
    attn_type: attnType,
    attn_uses_sequence_id: false,
    clip_qkv: clamp !== undefined && clamp > 0 ? clamp : null,
    prefix_lm: false,
    qk_ln: has('blk.0.attn_q_norm.weight'),
    softmax_scale: null,
  };
  if (attnType === 'grouped_query_attention') attn['kv_n_heads'] = kv;
  const ffn: Record<string, unknown> = { ffn_type: 'mptmlp' };
  if (ff % dModel !== 0) ffn['ffn_hidden_size'] = ff;
  return {
    architectures: ['MPTForCausalLM'],
    attn_config: attn,
    d_model: dModel,
    emb_pdrop: 0,
    embedding_fraction: 1.0,
    expansion_ratio: ff / dModel,
    ffn_config: ffn,
    init_device: 'cpu',
    learned_pos_emb: alibiMax > 0 ? false : has('position_embd.weight'),
    logit_scale: null,
    max_seq_len: ctx,
    model_type: 'mpt',
    n_heads: nHeads,
    n_layers: nLayers,
    no_bias: !(has('blk.0.attn_qkv.bias') || has('output_norm.bias') || has('blk.0.attn_norm.bias')),
    norm_type: 'low_precision_layernorm',
    resid_pdrop: 0,
    tie_word_embeddings: !has('output.weight'),
    torch_dtype: 'float32',
    use_cache: false,
    vocab_size: vocab,
  };
}

/**
 * Opens a GGUF file of llama.cpp's `mpt` architecture, given as a local path (Node) or a
 * ByteSource: config, a lazy TensorSource with canonical names (stored GGUF types, PyTorch
 * shapes) and the embedded tokenizer.
 */
export async function openGgufCheckpoint(from: string | ByteSource): Promise<GgufCheckpoint> {
  const file = typeof from === 'string' ? await readGguf(from) : await readGgufSource(from);
  const path = file.path;
  try {
    const config = parseMptConfig(mosaicConfigFromGguf(file));
    const infos = new Map<string, { info: TensorInfo; ggufName: string }>();
    for (const t of file.tensors) {
      const name = canonicalTensorName(t.name);
      if (name === undefined)
        throw new WeightsError(`${path}: tensor ${t.name} is not part of llama.cpp's MPT architecture`);
      infos.set(name, {
        ggufName: t.name,
        info: { name, dtype: t.dtype, shape: [...t.dims].reverse(), byteLength: t.byteLength },
      });
    }
    checkShapes(config, infos, path);
    const tensors: TensorSource = {
      list: () => [...infos.values()].map((e) => ({ ...e.info, shape: [...e.info.shape] })),
      info: (name) => {
        const e = infos.get(name);
        return e ? { ...e.info, shape: [...e.info.shape] } : undefined;
      },
      read: async (name) => {
        const e = infos.get(name);
        if (!e) throw new WeightsError(`${path}: no tensor ${name}`);
        return file.readTensor(e.ggufName);
      },
      // Positioned reads straight into the caller's memory (the wasm backend loads weights this way).
      readInto: async (name, dest, start) => {
        const e = infos.get(name);
        if (!e) throw new FormatError(`${path}: no tensor ${name}`);
        await file.readTensorInto(e.ggufName, dest, start);
      },
      close: () => file.close(),
    };
    const out: GgufCheckpoint = { config, tensors, metadata: file.metadata, gguf: file };
    const tok = tokenizerFromGguf(file);
    if (tok) out.tokenizer = tok;
    return out;
  } catch (e) {
    await file.close().catch(() => {});
    throw e;
  }
}

/**
 * Checks that every tensor llama.cpp would create has the shape the config implies, layer by
 * layer, so that a block_count beyond the tensors stops at the first missing one.
 */
function checkShapes(c: MptConfig, infos: Map<string, { info: TensorInfo; ggufName: string }>, path: string): void {
  const d = c.dModel;
  const want = (name: string, shape: number[]) => {
    const e = infos.get(name);
    if (!e) throw new WeightsError(`${path}: tensor ${ggufTensorName(name)} (${name}) is missing`);
    if (e.info.shape.join(',') !== shape.join(',')) {
      throw new WeightsError(
        `${path}: tensor ${e.ggufName} has shape [${e.info.shape.join(', ')}], the metadata implies [${shape.join(', ')}]`,
      );
    }
  };
  want('transformer.wte.weight', [c.vocabSize, d]);
  want('transformer.norm_f.weight', [d]);
  for (let l = 0; l < c.nLayers; l++) {
    const p = `transformer.blocks.${l}.`;
    want(`${p}norm_1.weight`, [d]);
    want(`${p}attn.Wqkv.weight`, [qkvDim(c), d]);
    want(`${p}attn.out_proj.weight`, [d, d]);
    want(`${p}norm_2.weight`, [d]);
    want(`${p}ffn.up_proj.weight`, [c.ffn.hiddenSize, d]);
    want(`${p}ffn.down_proj.weight`, [d, c.ffn.hiddenSize]);
  }
  for (const [name, e] of infos) {
    const layer = /^transformer\.blocks\.(\d+)\./.exec(name);
    if (layer && Number(layer[1]) >= c.nLayers)
      throw new WeightsError(`${path}: tensor ${e.ggufName} belongs to a layer past block_count ${c.nLayers}`);
  }
}
