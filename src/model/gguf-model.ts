/**
 * MPT ⇄ GGUF: what llama.cpp's `mpt` architecture stores, mapped to this engine's config,
 * canonical (MosaicML state-dict) tensor names and tokenizer data, and back.
 *
 * Reading builds a MosaicML-style config.json object from the `mpt.*` keys and runs it through
 * parseMptConfig, so a GGUF model is configured exactly like a folder. Tensors keep their stored
 * GGUF type (quantized blocks are dequantized by whoever runs them); shapes become PyTorch's
 * ([rows, cols] for GGUF dims {cols, rows}).
 *
 * Writing follows what llama.cpp's loader (src/models/mpt.cpp, llama-vocab.cpp) requires and what
 * its converter (convert_hf_to_gguf.py, class MPTModel) writes: the hyperparameter keys, the
 * tensor names, F32 1-D tensors, and a gpt2-style tokenizer with `tokenizer.ggml.pre` "mpt" whose
 * token list is padded to the model's vocab_size with `[PAD{id}]` tokens of type UNUSED.
 */
import { ConfigError, FormatError, InputError, UnsupportedError, WeightsError } from '../errors.js';
import type { ByteSource } from '../formats/byte-source.js';
import { dequantize, GGML_TYPES } from '../formats/ggml-quants.js';
import type { QuantizePool } from '../formats/parallel-quantize.js';
import {
  gguf,
  metaBool,
  metaNumber,
  metaString,
  metaStringArray,
  metaIntArray,
  readGguf,
  readGgufSource,
  writeGguf,
  type GgufFile,
  type GgufTensorToWrite,
  type GgufValue,
} from '../formats/gguf.js';
import type { DType, TensorInfo, TensorSource } from '../formats/tensor-source.js';
import { MAX_DIMENSION, parseMptConfig, qkvDim, type MptConfig } from './config.js';

/** llama.cpp token types (`enum llama_token_type`). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * The tokenizer a GGUF file embeds (`tokenizer.ggml.*`). Structurally what
 * `MptTokenizer.fromGguf` (src/runtime/tokenizer.ts) takes.
 */
export interface GgufTokenizer {
  /** `tokenizer.ggml.model`: "gpt2" for byte-level BPE (the only kind MPT uses). */
  model: string;
  /** `tokenizer.ggml.pre`: the pre-tokenizer ("mpt" for GPT-NeoX-20B). */
  pre?: string;
  tokens: string[];
  /** BPE merges as "left right" strings, in rank order. */
  merges: string[];
  /** One llama.cpp token type per token (see TokenType). */
  tokenTypes: number[];
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  addBos?: boolean;
  addEos?: boolean;
  chatTemplate?: string;
}

export interface GgufCheckpoint {
  config: MptConfig;
  /** Canonical names, PyTorch shapes, dtype = the stored GGUF type. */
  tensors: TensorSource;
  /** Undefined when the file embeds no tokenizer. */
  tokenizer?: GgufTokenizer;
  metadata: Map<string, GgufValue>;
  gguf: GgufFile;
}

// ---------------------------------------------------------------------------------------------
// Tensor names
// ---------------------------------------------------------------------------------------------

const GLOBAL_NAMES: Record<string, string> = {
  token_embd: 'transformer.wte',
  position_embd: 'transformer.wpe',
  output_norm: 'transformer.norm_f',
  output: 'lm_head',
};
const BLOCK_NAMES: Record<string, string> = {
  attn_norm: 'norm_1',
  attn_qkv: 'attn.Wqkv',
  attn_q_norm: 'attn.q_ln',
  attn_k_norm: 'attn.k_ln',
  attn_output: 'attn.out_proj',
  ffn_norm: 'norm_2',
  ffn_up: 'ffn.up_proj',
  ffn_down: 'ffn.down_proj',
};
const CANONICAL_GLOBAL = Object.fromEntries(Object.entries(GLOBAL_NAMES).map(([k, v]) => [v, k]));
const CANONICAL_BLOCK = Object.fromEntries(Object.entries(BLOCK_NAMES).map(([k, v]) => [v, k]));

/** llama.cpp tensor name → MosaicML name, or undefined for names MPT does not have. */
export function canonicalTensorName(ggufName: string): string | undefined {
  const m = /^(?:blk\.(\d+)\.)?([a-z_]+)\.(weight|bias)$/.exec(ggufName);
  if (!m) return undefined;
  const [, layer, base, kind] = m;
  if (layer === undefined) {
    const g = GLOBAL_NAMES[base!];
    return g === undefined ? undefined : `${g}.${kind}`;
  }
  const b = BLOCK_NAMES[base!];
  return b === undefined ? undefined : `transformer.blocks.${Number(layer)}.${b}.${kind}`;
}

/** MosaicML name → llama.cpp tensor name, or undefined when llama.cpp's MPT has no such tensor. */
export function ggufTensorName(canonical: string): string | undefined {
  const m = /^(?:transformer\.blocks\.(\d+)\.)?(.+)\.(weight|bias)$/.exec(canonical);
  if (!m) return undefined;
  const [, layer, base, kind] = m;
  if (layer === undefined) {
    const g = CANONICAL_GLOBAL[base!];
    return g === undefined ? undefined : `${g}.${kind}`;
  }
  const b = CANONICAL_BLOCK[base!];
  return b === undefined ? undefined : `blk.${Number(layer)}.${b}.${kind}`;
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

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
      `${where}: GGUF architecture "${arch}" is not supported (this engine runs llama.cpp architecture "mpt")`,
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

/** Reads the embedded tokenizer, or undefined when the file has none. */
export function tokenizerFromGguf(file: GgufFile): GgufTokenizer | undefined {
  const meta = file.metadata;
  const where = file.path;
  const model = metaString(meta, 'tokenizer.ggml.model', where, true);
  if (model === undefined) return undefined;
  const tokens = metaStringArray(meta, 'tokenizer.ggml.tokens', where);
  const merges = metaStringArray(meta, 'tokenizer.ggml.merges', where, true) ?? [];
  const types = metaIntArray(meta, 'tokenizer.ggml.token_type', where) ?? tokens.map(() => TokenType.NORMAL);
  if (types.length !== tokens.length) {
    throw new FormatError(
      `${where}: tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`,
    );
  }
  const id = (key: string): number | undefined => {
    const v = metaNumber(meta, key, where, true);
    if (v === undefined || v === -1 || v === 0xffffffff) return undefined;
    if (!Number.isInteger(v) || v < 0 || v >= tokens.length)
      throw new FormatError(`${where}: ${key} = ${v} is not a token id (${tokens.length} tokens)`);
    return v;
  };
  const tok: GgufTokenizer = { model, tokens, merges, tokenTypes: types };
  const pre = metaString(meta, 'tokenizer.ggml.pre', where, true);
  if (pre !== undefined) tok.pre = pre;
  const bos = id('tokenizer.ggml.bos_token_id');
  const eos = id('tokenizer.ggml.eos_token_id');
  const unk = id('tokenizer.ggml.unknown_token_id');
  const pad = id('tokenizer.ggml.padding_token_id');
  if (bos !== undefined) tok.bosId = bos;
  if (eos !== undefined) tok.eosId = eos;
  if (unk !== undefined) tok.unkId = unk;
  if (pad !== undefined) tok.padId = pad;
  const addBos = metaBool(meta, 'tokenizer.ggml.add_bos_token', where);
  const addEos = metaBool(meta, 'tokenizer.ggml.add_eos_token', where);
  if (addBos !== undefined) tok.addBos = addBos;
  if (addEos !== undefined) tok.addEos = addEos;
  const tmpl = metaString(meta, 'tokenizer.chat_template', where, true);
  if (tmpl !== undefined) tok.chatTemplate = tmpl;
  return tok;
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

// ---------------------------------------------------------------------------------------------
// Tokenizer data from a Hugging Face tokenizer.json
// ---------------------------------------------------------------------------------------------

/**
 * gpt2-style GGUF tokenizer data from a Hugging Face tokenizer.json (byte-level BPE), as
 * llama.cpp's converter makes it: ids 0..vocabSize-1, added tokens CONTROL when special (or
 * looking like `<|…|>`) else USER_DEFINED, ids the tokenizer lacks `[PAD{id}]` / UNUSED; merges
 * as "a b"; `<|endoftext|>` as bos/eos/unk when present, `<|padding|>` as padding.
 */
export function tokenizerFromHfJson(json: unknown, vocabSize: number, source = 'tokenizer.json'): GgufTokenizer {
  if (typeof json !== 'object' || json === null) throw new FormatError(`${source} is not a JSON object`);
  const tj = json as Record<string, unknown>;
  const model = tj['model'] as Record<string, unknown> | undefined;
  if (model?.['type'] !== 'BPE' || typeof model['vocab'] !== 'object') {
    throw new UnsupportedError(
      `${source}: only byte-level BPE tokenizers (model.type "BPE") can be embedded as gpt2 GGUF vocabularies`,
    );
  }
  const pre = tj['pre_tokenizer'] as Record<string, unknown> | null | undefined;
  if (pre?.['type'] !== 'ByteLevel') {
    throw new UnsupportedError(
      `${source}: the pre-tokenizer is ${pre ? String(pre['type']) : 'missing'}; only GPT-NeoX's ByteLevel pre-tokenizer maps to llama.cpp's "mpt"`,
    );
  }
  const tokens: (string | undefined)[] = new Array(vocabSize).fill(undefined);
  const types = new Array<number>(vocabSize).fill(TokenType.UNUSED);
  const place = (content: string, id: number, type: number) => {
    if (!Number.isInteger(id) || id < 0)
      throw new FormatError(`${source}: token ${JSON.stringify(content)} has invalid id ${id}`);
    if (id >= vocabSize)
      throw new ConfigError(`${source}: token id ${id} does not fit the model's vocab_size ${vocabSize}`);
    tokens[id] = content;
    types[id] = type;
  };
  for (const [content, id] of Object.entries(model['vocab'] as Record<string, number>))
    place(content, id, TokenType.NORMAL);
  const added = Array.isArray(tj['added_tokens']) ? (tj['added_tokens'] as Record<string, unknown>[]) : [];
  for (const a of added) {
    const content = String(a['content']);
    const special = a['special'] === true || (content.startsWith('<|') && content.endsWith('|>'));
    place(content, Number(a['id']), special ? TokenType.CONTROL : TokenType.USER_DEFINED);
  }
  const full = tokens.map((t, i) => t ?? `[PAD${i}]`);
  const rawMerges = Array.isArray(model['merges']) ? (model['merges'] as unknown[]) : [];
  const merges = rawMerges.map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));
  if (merges.length === 0) throw new FormatError(`${source} has no BPE merges (llama.cpp requires them)`);
  const out: GgufTokenizer = {
    model: 'gpt2',
    pre: 'mpt',
    tokens: full,
    merges,
    tokenTypes: types,
    addBos: false,
    addEos: false,
  };
  const eot = full.indexOf('<|endoftext|>');
  if (eot >= 0) {
    out.bosId = eot;
    out.eosId = eot;
    out.unkId = eot;
  }
  const pad = full.indexOf('<|padding|>');
  if (pad >= 0) out.padId = pad;
  return out;
}

/** GPT-2's bytes_to_unicode: the printable character standing for each byte in byte-level BPE. */
function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++)
    out[b] = keep.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return out;
}

/**
 * A minimal byte-level vocabulary of exactly `vocabSize` ids for test models whose vocab is not
 * a real tokenizer's (the gguf-tiny-q fixture's recipe): id 0 `<|endoftext|>` (CONTROL; bos, eos
 * and unk), ids 1–256 the byte tokens, id 257 `Ġt` from the single merge "Ġ t" (llama.cpp needs
 * a non-empty merge list), then `[PAD{id}]` UNUSED. Every id is a valid token, so any id sequence
 * can be fed; text does not tokenize usefully.
 */
export function byteLevelTestTokenizer(vocabSize: number): GgufTokenizer {
  if (vocabSize < 258)
    throw new InputError(`a byte-level test vocabulary needs at least 258 ids, the model has ${vocabSize}`);
  const tokens = ['<|endoftext|>', ...byteToUnicode(), 'Ġt'];
  const types = [TokenType.CONTROL, ...new Array<number>(257).fill(TokenType.NORMAL)];
  for (let i = tokens.length; i < vocabSize; i++) {
    tokens.push(`[PAD${i}]`);
    types.push(TokenType.UNUSED);
  }
  return {
    model: 'gpt2',
    pre: 'mpt',
    tokens,
    merges: ['Ġ t'],
    tokenTypes: types,
    bosId: 0,
    eosId: 0,
    unkId: 0,
    addBos: false,
    addEos: false,
  };
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/**
 * What `mpt convert` writes (1-D tensors always stay F32):
 * - a plain type (f32 … q6_k): every matrix in that type, as `llama-quantize --pure` does;
 * - a preset (q4_k_m, q5_k_m): llama-quantize's per-tensor mix for that file type, without
 *   `--pure` (see ggufTensorType).
 */
export type GgufOutType =
  | 'f32'
  | 'f16'
  | 'bf16'
  | 'q8_0'
  | 'q4_0'
  | 'q4_1'
  | 'q5_0'
  | 'q5_1'
  | 'q4_k'
  | 'q5_k'
  | 'q6_k'
  | 'q4_k_m'
  | 'q5_k_m';
export const GGUF_OUT_TYPES: readonly GgufOutType[] = [
  'f32',
  'f16',
  'bf16',
  'q8_0',
  'q4_0',
  'q4_1',
  'q5_0',
  'q5_1',
  'q4_k',
  'q5_k',
  'q6_k',
  'q4_k_m',
  'q5_k_m',
];

/**
 * llama.cpp's `general.file_type` (`enum llama_ftype`) for each output type. q4_k and q5_k get
 * what llama-quantize writes when asked for "Q4_K" / "Q5_K" (aliases of the _M presets), even
 * with --pure; readers must take each tensor's own type (llama.cpp does).
 */
const FILE_TYPE: Record<GgufOutType, number> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  bf16: 32,
  q4_k: 15,
  q5_k: 17,
  q6_k: 18,
  q4_k_m: 15,
  q5_k_m: 17,
};

const K_TYPES: ReadonlySet<DType> = new Set(['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k']);

/**
 * llama-quantize's fallback for a matrix whose rows do not split into the chosen type's blocks
 * (llama-quant.cpp): Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, then F16 when even 32-value blocks
 * do not fit. The 32-block types fall back to F16 directly (this converter's rule for them).
 */
function fallbackType(type: DType, cols: number): DType {
  if (cols % GGML_TYPES[type].blockSize === 0) return type;
  const next: DType = type === 'q4_k' ? 'q5_0' : type === 'q5_k' ? 'q5_1' : type === 'q6_k' ? 'q8_0' : 'f16';
  return cols % GGML_TYPES[next].blockSize === 0 ? next : 'f16';
}

/** llama-quantize's `use_more_bits`: the first and last eighth of the layers, and every third between. */
function useMoreBits(layer: number, nLayers: number): boolean {
  const e = Math.floor(nLayers / 8);
  return layer < e || layer >= Math.floor((7 * nLayers) / 8) || (layer - e) % 3 === 2;
}

/**
 * The storage type of one tensor (llama.cpp name, GGUF dims {cols, rows, …}) in a file of
 * `out`. 1-D tensors: F32. Plain types: that type for every matrix, with llama-quantize's
 * fallback for rows that are not a whole number of blocks. Presets follow llama-quantize's
 * `llama_tensor_get_type` for the mpt architecture as of the llama.cpp build that made the
 * test fixtures (b4747): the output matrix — `token_embd` when the embedding is tied — Q6_K
 * (Q8_0 if its rows are not 256-multiples); `attn_qkv` Q5_K in q4_k_m, Q6_K in q5_k_m;
 * `ffn_down` Q6_K in the layers `use_more_bits` picks; everything else the preset's base type
 * (Q4_K / Q5_K); `position_embd` is never quantized by llama-quantize and stays F32.
 * (Later llama.cpp treats `attn_qkv` like `attn_v`: Q6_K in the `use_more_bits` layers, else
 * the base type. Both mixes load everywhere; this one matches the fixture files byte for byte.)
 */
export function ggufTensorType(
  out: GgufOutType,
  name: string,
  dims: readonly number[],
  c: MptConfig,
  hasOutputTensor: boolean,
): DType {
  if (dims.length < 2) return 'f32';
  const cols = dims[0]!;
  const preset = out === 'q4_k_m' || out === 'q5_k_m';
  if (name === 'position_embd.weight' && (preset || K_TYPES.has(out))) return 'f32';
  if (!preset) return fallbackType(out, cols);
  const base: DType = out === 'q4_k_m' ? 'q4_k' : 'q5_k';
  let t: DType = base;
  if (name === 'output.weight' || (!hasOutputTensor && name === 'token_embd.weight')) {
    t = cols % 256 !== 0 ? 'q8_0' : 'q6_k';
  } else if (name.endsWith('.attn_qkv.weight')) {
    t = out === 'q4_k_m' ? 'q5_k' : 'q6_k';
  } else if (name.endsWith('.ffn_down.weight')) {
    const layer = Number(/^blk\.(\d+)\./.exec(name)?.[1] ?? -1);
    if (layer >= 0 && useMoreBits(layer, c.nLayers)) t = 'q6_k';
  }
  return fallbackType(t, cols);
}

export interface WriteGgufCheckpointOptions {
  /** `general.name` (default "mpt"). */
  name?: string;
  /** Progress of tensor data written (bytes). */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /** Threads that quantize large matrices (default: the machine's parallelism; 1 = this thread). */
  threads?: number;
}

/** Refuses configs whose arithmetic llama.cpp's MPT graph does not implement. */
function checkLlamaCppCanRun(c: MptConfig): void {
  const no = (what: string) => {
    throw new UnsupportedError(
      `llama.cpp's MPT architecture has no ${what}; the GGUF file would compute a different model`,
    );
  };
  if (c.attn.softmaxScale !== null && Math.abs(c.attn.softmaxScale - 1 / Math.sqrt(c.headDim)) > 1e-12)
    no('softmax_scale (it always uses 1/sqrt(head_dim))');
  if (c.logitScale !== null && c.logitScale !== 1) no('logit_scale');
  if (c.ffn.ffnType !== 'mptmlp') no(`ffn_type ${c.ffn.ffnType}`);
  if (c.ffn.activation !== 'gelu' && c.ffn.activation !== 'gelu_tanh')
    no(`${c.ffn.activation} activation (it uses GELU)`);
  if (c.normType.includes('rmsnorm')) no('RMSNorm (it uses LayerNorm)');
  if (c.attn.qkLn && c.attn.kvNHeads !== c.nHeads)
    no('qk_ln with grouped/multi-query attention (its k norm is d_model wide)');
  if (c.learnedPosEmb && c.attn.alibi) no('learned position embedding together with ALiBi');
  if (!c.learnedPosEmb && !c.attn.alibi) no('model without ALiBi or position embeddings');
}

/** The llama.cpp metadata for an MPT config (general.* and mpt.* keys), in converter order. */
export function ggufMetadataForConfig(c: MptConfig, type: GgufOutType, name = 'mpt'): Map<string, GgufValue> {
  const m = new Map<string, GgufValue>();
  m.set('general.architecture', gguf.str('mpt'));
  m.set('general.name', gguf.str(name));
  m.set('general.file_type', gguf.u32(FILE_TYPE[type]));
  m.set('general.quantization_version', gguf.u32(2));
  m.set('mpt.context_length', gguf.u32(c.maxSeqLen));
  m.set('mpt.embedding_length', gguf.u32(c.dModel));
  m.set('mpt.block_count', gguf.u32(c.nLayers));
  m.set('mpt.feed_forward_length', gguf.u32(c.ffn.hiddenSize));
  m.set('mpt.attention.head_count', gguf.u32(c.nHeads));
  if (c.attn.kvNHeads !== c.nHeads) m.set('mpt.attention.head_count_kv', gguf.u32(c.attn.kvNHeads));
  m.set('mpt.attention.layer_norm_epsilon', gguf.f32(c.layerNormEpsilon));
  if (c.attn.clipQkv !== null) m.set('mpt.attention.clamp_kqv', gguf.f32(c.attn.clipQkv));
  m.set('mpt.attention.max_alibi_bias', gguf.f32(c.attn.alibi ? c.attn.alibiBiasMax : 0));
  return m;
}

/** The `tokenizer.ggml.*` metadata llama.cpp's gpt2 vocabulary loader reads. */
export function ggufTokenizerMetadata(t: GgufTokenizer, vocabSize: number): Map<string, GgufValue> {
  if (t.tokens.length !== vocabSize) {
    throw new ConfigError(
      `the tokenizer has ${t.tokens.length} tokens but the model's vocab_size is ${vocabSize}; llama.cpp needs one token per embedding row`,
    );
  }
  if (t.merges.length === 0)
    throw new ConfigError('llama.cpp needs a non-empty tokenizer.ggml.merges list for gpt2 vocabularies');
  const m = new Map<string, GgufValue>();
  m.set('tokenizer.ggml.model', gguf.str(t.model));
  m.set('tokenizer.ggml.pre', gguf.str(t.pre ?? 'mpt'));
  m.set('tokenizer.ggml.tokens', gguf.strings(t.tokens));
  m.set('tokenizer.ggml.token_type', gguf.i32s(t.tokenTypes));
  m.set('tokenizer.ggml.merges', gguf.strings(t.merges));
  if (t.bosId !== undefined) m.set('tokenizer.ggml.bos_token_id', gguf.u32(t.bosId));
  if (t.eosId !== undefined) m.set('tokenizer.ggml.eos_token_id', gguf.u32(t.eosId));
  if (t.unkId !== undefined) m.set('tokenizer.ggml.unknown_token_id', gguf.u32(t.unkId));
  if (t.padId !== undefined) m.set('tokenizer.ggml.padding_token_id', gguf.u32(t.padId));
  m.set('tokenizer.ggml.add_bos_token', gguf.bool(t.addBos ?? false));
  m.set('tokenizer.ggml.add_eos_token', gguf.bool(t.addEos ?? false));
  if (t.chatTemplate !== undefined) m.set('tokenizer.chat_template', gguf.str(t.chatTemplate));
  return m;
}

/** Float32 values of a stored tensor of any dtype, in room the quantize pool can share without a copy. */
async function readAsF32(tensors: TensorSource, info: TensorInfo, pool: QuantizePool): Promise<Float32Array> {
  const bytes = await tensors.read(info.name);
  const count = info.shape.reduce((a, b) => a * b, 1);
  return dequantize(info.dtype, bytes, count, pool.allocate(count));
}

/**
 * Writes an MPT checkpoint as a GGUF file llama.cpp loads: every tensor under its llama.cpp
 * name, matrices (and the embedding) in `type` or the preset's mix (see ggufTensorType) —
 * f32/f16/bf16 rounded to nearest even, q8_0 / q4_0 / q4_1 / q5_0 / q5_1 / q4_K / q5_K / q6_K
 * by ggml's reference quantizers, bit for bit what llama-quantize makes without an imatrix —
 * and 1-D tensors in F32. A matrix whose rows are not a whole number of blocks falls back as
 * llama-quantize does (k-quants to Q5_0 / Q5_1 / Q8_0, else F16). The tokenizer is a
 * tokenizer.json path, its parsed object, or ready GGUF tokenizer data.
 * Tensors are read, converted and written one at a time; the file appears atomically.
 */
export async function writeGgufFromCheckpoint(
  config: MptConfig,
  tensors: TensorSource,
  tokenizer: string | GgufTokenizer | Record<string, unknown>,
  outPath: string,
  type: GgufOutType,
  options: WriteGgufCheckpointOptions = {},
): Promise<void> {
  if (!GGUF_OUT_TYPES.includes(type))
    throw new InputError(`unknown GGUF output type "${type}" (${GGUF_OUT_TYPES.join(', ')})`);
  checkLlamaCppCanRun(config);
  let tok: GgufTokenizer;
  if (typeof tokenizer === 'string') {
    // Node-only modules are loaded here, when a file is written, so that reading GGUF runs anywhere.
    const { JSON_FILE_LIMITS, readJsonFile } = await import('../formats/json-file.js');
    const parsed = await readJsonFile(tokenizer, 'tokenizer', JSON_FILE_LIMITS.tokenizer);
    tok = tokenizerFromHfJson(parsed, config.vocabSize, tokenizer);
  } else if (Array.isArray((tokenizer as GgufTokenizer).tokens)) {
    tok = tokenizer as GgufTokenizer;
  } else {
    tok = tokenizerFromHfJson(tokenizer, config.vocabSize);
  }

  const meta = ggufMetadataForConfig(config, type, options.name ?? 'mpt');
  for (const [k, v] of ggufTokenizerMetadata(tok, config.vocabSize)) meta.set(k, v);

  const out: GgufTensorToWrite[] = [];
  const { QuantizePool } = await import('../formats/parallel-quantize.js');
  const pool = new QuantizePool(options.threads);
  const list = orderForLlamaCpp(tensors.list(), config);
  const hasOutputTensor = !config.tieWordEmbeddings && list.some((t) => t.name === 'lm_head.weight');
  for (const info of list) {
    // HF may save the tied head as a copy of wte; llama.cpp reuses token_embd when output is absent.
    if (info.name === 'lm_head.weight' && config.tieWordEmbeddings) continue;
    const name = ggufTensorName(info.name);
    if (name === undefined)
      throw new UnsupportedError(`tensor ${info.name} has no counterpart in llama.cpp's MPT architecture`);
    const dims = [...info.shape].reverse();
    const dtype = ggufTensorType(type, name, dims, config, hasOutputTensor);
    const cols = dims[0] ?? 1;
    const rows = dims.slice(1).reduce((a, b) => a * b, 1);
    out.push({
      name,
      dims,
      dtype,
      data: async () => {
        if (info.dtype === dtype) return tensors.read(info.name);
        return pool.quantize(dtype, await readAsF32(tensors, info, pool), rows, cols, name);
      },
    });
  }
  try {
    await writeGguf(outPath, meta, out, options.onProgress ? { onProgress: options.onProgress } : {});
  } finally {
    await pool.close();
  }
}

/** Within a block, the order the forward pass uses them (weight before bias). */
const BLOCK_ORDER = [
  'norm_1',
  'attn.Wqkv',
  'attn.q_ln',
  'attn.k_ln',
  'attn.out_proj',
  'norm_2',
  'ffn.up_proj',
  'ffn.down_proj',
];

/** Converter order: embeddings, then each block's tensors in forward order, then the final norm and head. */
function orderForLlamaCpp(list: TensorInfo[], c: MptConfig): TensorInfo[] {
  const rank = (n: string): number => {
    const bias = n.endsWith('.bias') ? 0.5 : 0;
    if (n.startsWith('transformer.wte.')) return bias;
    if (n.startsWith('transformer.wpe.')) return 1 + bias;
    const m = /^transformer\.blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(n);
    if (m) {
      const within = BLOCK_ORDER.indexOf(m[2]!);
      return 2 + Number(m[1]) * 100 + (within < 0 ? 99 : within) + bias;
    }
    if (n.startsWith('transformer.norm_f.')) return 2 + c.nLayers * 100 + bias;
    return 3 + c.nLayers * 100 + bias;
  };
  return list
    .map((t, i) => ({ t, i }))
    .sort((a, b) => rank(a.t.name) - rank(b.t.name) || a.i - b.i)
    .map((e) => e.t);
}
