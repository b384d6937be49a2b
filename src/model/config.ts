/**
 * MPT configuration: reads config.json as MosaicML (llm-foundry `MPTConfig`) and Hugging Face
 * write it, fills every field with MosaicML's default, and refuses by name any option this
 * engine does not implement.
 */
import { ConfigError, quoteValue, UnsupportedError } from '../errors.js';

export type AttnType = 'multihead_attention' | 'multiquery_attention' | 'grouped_query_attention';
export type NormType = 'layernorm' | 'low_precision_layernorm' | 'rmsnorm' | 'low_precision_rmsnorm';
export type FfnType = 'mptmlp' | 'mptglu';
export type Activation = 'gelu' | 'gelu_tanh' | 'silu' | 'relu';

export interface AttnConfig {
  attnType: AttnType;
  /** Number of K/V heads: n_heads (MHA), 1 (MQA) or kv_n_heads (GQA). */
  kvNHeads: number;
  alibi: boolean;
  alibiBiasMax: number;
  clipQkv: number | null;
  qkLn: boolean;
  /** null means 1/sqrt(head_dim). */
  softmaxScale: number | null;
  prefixLm: boolean;
  attnUsesSequenceId: boolean;
  attnImpl: string;
  attnPdrop: number;
}

export interface FfnConfig {
  ffnType: FfnType;
  activation: Activation;
  /** Hidden width of the MLP: ffn_hidden_size, or expansion_ratio * d_model. */
  hiddenSize: number;
}

export interface MptConfig {
  dModel: number;
  nHeads: number;
  nLayers: number;
  expansionRatio: number;
  maxSeqLen: number;
  vocabSize: number;
  noBias: boolean;
  normType: NormType;
  /** MosaicML's norms always use 1e-5; HF's `layer_norm_epsilon` is recorded but not used for HF checkpoints. */
  layerNormEpsilon: number;
  /** Multiplies the logits when not null ("inv_sqrt_d_model" resolves to 1/sqrt(d_model)). */
  logitScale: number | null;
  embeddingFraction: number;
  /** A learned position embedding (`transformer.wpe`); MosaicML forces it off when alibi is on. */
  learnedPosEmb: boolean;
  tieWordEmbeddings: boolean;
  residPdrop: number;
  embPdrop: number;
  attn: AttnConfig;
  ffn: FfnConfig;
  /** Derived: d_model / n_heads. */
  headDim: number;
  /** The config.json object as read (for export and `mpt info`). */
  raw: Record<string, unknown>;
}

/** MosaicML's defaults (llm-foundry `configuration_mpt.py`). */
const DEFAULTS = {
  d_model: 2048,
  n_heads: 16,
  n_layers: 24,
  expansion_ratio: 4,
  max_seq_len: 2048,
  vocab_size: 50368,
  resid_pdrop: 0,
  emb_pdrop: 0,
  learned_pos_emb: true,
  logit_scale: null,
  no_bias: false,
  embedding_fraction: 1.0,
  norm_type: 'low_precision_layernorm',
  tie_word_embeddings: true,
} as const;

const ATTN_DEFAULTS = {
  attn_type: 'multihead_attention',
  attn_pdrop: 0,
  attn_impl: 'triton',
  qk_ln: false,
  clip_qkv: null,
  softmax_scale: null,
  prefix_lm: false,
  attn_uses_sequence_id: false,
  alibi: false,
  alibi_bias_max: 8,
  rope: false,
  kv_n_heads: 1,
} as const;

type Json = Record<string, unknown>;

/**
 * Largest size accepted for a dimension (d_model, heads, vocabulary, MLP width, context): what an
 * int32 can index. Sizes are further checked against the tensors when a checkpoint is opened.
 */
export const MAX_DIMENSION = 2 ** 31 - 1;

/** A value as an error message shows it (JSON.stringify would print Infinity and NaN as null). */
function shown(v: unknown): string {
  return typeof v === 'number' ? String(v) : quoteValue(v);
}

function num(obj: Json, key: string, fallback: number | null, where = ''): number | null {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ConfigError(`config${where}.${key} must be a number, got ${shown(v)}`);
  }
  return v;
}

/** A number > 0 (or >= 0 with `orZero`), or the fallback when absent. */
function positive(obj: Json, key: string, fallback: number | null, where = '', orZero = false): number | null {
  const v = num(obj, key, fallback, where);
  if (v !== null && (orZero ? v < 0 : v <= 0)) {
    throw new ConfigError(`config${where}.${key} must be a ${orZero ? 'non-negative' : 'positive'} number, got ${v}`);
  }
  return v;
}

function int(obj: Json, key: string, fallback: number, where = '', max = MAX_DIMENSION): number {
  const v = num(obj, key, fallback, where)!;
  if (!Number.isInteger(v) || v < 1 || v > max) {
    throw new ConfigError(`config${where}.${key} must be an integer from 1 to ${max}, got ${v}`);
  }
  return v;
}

function bool(obj: Json, key: string, fallback: boolean, where = ''): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'boolean')
    throw new ConfigError(`config${where}.${key} must be true or false, got ${quoteValue(v)}`);
  return v;
}

function str(obj: Json, key: string, fallback: string, where = ''): string {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'string') throw new ConfigError(`config${where}.${key} must be a string, got ${quoteValue(v)}`);
  return v;
}

function activationOf(ffn: Json): Activation {
  const act = ffn['ffn_act_fn'];
  if (act === undefined || act === null) return 'gelu';
  if (typeof act !== 'object')
    throw new ConfigError('config.ffn_config.ffn_act_fn must be an object like {"name": "gelu"}');
  const a = act as Json;
  const name = str(a, 'name', 'gelu', '.ffn_config.ffn_act_fn');
  if (name === 'gelu') {
    const approx = str(a, 'approximate', 'none', '.ffn_config.ffn_act_fn');
    if (approx === 'none') return 'gelu';
    if (approx === 'tanh') return 'gelu_tanh';
    throw new UnsupportedError(
      `ffn_config.ffn_act_fn.approximate ${quoteValue(approx)} is not supported (use "none" or "tanh")`,
    );
  }
  if (name === 'silu' || name === 'relu') return name;
  throw new UnsupportedError(`ffn_config.ffn_act_fn ${quoteValue(name)} is not supported (gelu, silu, relu are)`);
}

/**
 * Parses a config.json object into an MptConfig. Throws ConfigError for malformed values and
 * UnsupportedError (naming the option) for options the engine does not implement.
 */
export function parseMptConfig(rawInput: unknown): MptConfig {
  if (typeof rawInput !== 'object' || rawInput === null || Array.isArray(rawInput)) {
    throw new ConfigError('config.json must hold a JSON object');
  }
  const raw = rawInput as Json;
  const modelType = raw['model_type'];
  if (modelType !== undefined && modelType !== 'mpt') {
    throw new UnsupportedError(
      `model_type ${quoteValue(modelType)} is not supported: this engine runs MPT models (model_type "mpt")`,
    );
  }
  const dModel = int(raw, 'd_model', DEFAULTS.d_model);
  const nHeads = int(raw, 'n_heads', DEFAULTS.n_heads);
  // Any count the tensors can back: openCheckpoint names the first missing layer's tensor.
  const nLayers = int(raw, 'n_layers', DEFAULTS.n_layers, '', Number.MAX_SAFE_INTEGER);
  const expansionRatio = positive(raw, 'expansion_ratio', DEFAULTS.expansion_ratio)!;
  const maxSeqLen = int(raw, 'max_seq_len', DEFAULTS.max_seq_len);
  const vocabSize = int(raw, 'vocab_size', DEFAULTS.vocab_size);
  if (dModel % nHeads !== 0)
    throw new ConfigError(`config.d_model (${dModel}) must be divisible by n_heads (${nHeads})`);
  const headDim = dModel / nHeads;
  // HF's layer_norm_epsilon is not used (MosaicML's norms use 1e-5), but a nonsensical one is still refused.
  positive(raw, 'layer_norm_epsilon', null);

  const normType = str(raw, 'norm_type', DEFAULTS.norm_type);
  if (!['layernorm', 'low_precision_layernorm', 'rmsnorm', 'low_precision_rmsnorm'].includes(normType)) {
    throw new UnsupportedError(
      `norm_type ${quoteValue(normType)} is not supported (layernorm, low_precision_layernorm, rmsnorm, low_precision_rmsnorm are)`,
    );
  }

  let logitScale: number | null = null;
  const ls = raw['logit_scale'];
  if (ls === 'inv_sqrt_d_model') logitScale = 1 / Math.sqrt(dModel);
  else if (typeof ls === 'string')
    throw new ConfigError(
      `config.logit_scale ${quoteValue(ls)} is not understood (a number, null or "inv_sqrt_d_model")`,
    );
  else logitScale = positive(raw, 'logit_scale', null);

  const attnRaw = (raw['attn_config'] ?? {}) as Json;
  if (typeof attnRaw !== 'object' || Array.isArray(attnRaw))
    throw new ConfigError('config.attn_config must be an object');
  const W = '.attn_config';
  const attnType = str(attnRaw, 'attn_type', ATTN_DEFAULTS.attn_type, W) as AttnType;
  let kvNHeads: number;
  if (attnType === 'multihead_attention') kvNHeads = nHeads;
  else if (attnType === 'multiquery_attention') kvNHeads = 1;
  else if (attnType === 'grouped_query_attention') {
    kvNHeads = int(attnRaw, 'kv_n_heads', ATTN_DEFAULTS.kv_n_heads, W);
    if (nHeads % kvNHeads !== 0) {
      throw new ConfigError(`config.attn_config.kv_n_heads (${kvNHeads}) must divide n_heads (${nHeads})`);
    }
  } else
    throw new UnsupportedError(
      `attn_config.attn_type ${quoteValue(attnType)} is not supported (multihead_attention, multiquery_attention, grouped_query_attention are)`,
    );

  if (bool(attnRaw, 'rope', false, W))
    throw new UnsupportedError('attn_config.rope is not supported (MPT checkpoints use ALiBi)');
  const prefixLm = bool(attnRaw, 'prefix_lm', ATTN_DEFAULTS.prefix_lm, W);
  if (prefixLm)
    throw new UnsupportedError('attn_config.prefix_lm is not supported (it needs a prefix mask at every call)');
  if (
    attnRaw['sliding_window_size'] !== undefined &&
    attnRaw['sliding_window_size'] !== -1 &&
    attnRaw['sliding_window_size'] !== null
  ) {
    throw new UnsupportedError('attn_config.sliding_window_size is not supported');
  }
  if (bool(attnRaw, 'qk_gn', false, W))
    throw new UnsupportedError('attn_config.qk_gn (per-head group norm of q and k) is not supported');
  if (!bool(attnRaw, 'fused_qkv', true, W))
    throw new UnsupportedError('attn_config.fused_qkv false (separate Wq/Wk/Wv) is not supported');
  if (attnRaw['attn_logit_softcapping'] != null)
    throw new UnsupportedError('attn_config.attn_logit_softcapping is not supported');
  if (attnRaw['kv_dim'] != null)
    throw new UnsupportedError('attn_config.kv_dim (cross-attention dims) is not supported');
  const clipQkv = positive(attnRaw, 'clip_qkv', null, W);
  const alibi = bool(attnRaw, 'alibi', ATTN_DEFAULTS.alibi, W);
  const attn: AttnConfig = {
    attnType,
    kvNHeads,
    alibi,
    alibiBiasMax: positive(attnRaw, 'alibi_bias_max', ATTN_DEFAULTS.alibi_bias_max, W, true)!,
    clipQkv,
    qkLn: bool(attnRaw, 'qk_ln', ATTN_DEFAULTS.qk_ln, W),
    softmaxScale: positive(attnRaw, 'softmax_scale', null, W),
    prefixLm,
    attnUsesSequenceId: bool(attnRaw, 'attn_uses_sequence_id', ATTN_DEFAULTS.attn_uses_sequence_id, W),
    attnImpl: str(attnRaw, 'attn_impl', ATTN_DEFAULTS.attn_impl, W),
    attnPdrop: num(attnRaw, 'attn_pdrop', 0, W)!,
  };

  const ffnRaw = (raw['ffn_config'] ?? {}) as Json;
  if (typeof ffnRaw !== 'object' || Array.isArray(ffnRaw)) throw new ConfigError('config.ffn_config must be an object');
  const ffnType = str(ffnRaw, 'ffn_type', 'mptmlp', '.ffn_config');
  if (ffnType !== 'mptmlp' && ffnType !== 'mptglu') {
    throw new UnsupportedError(`ffn_config.ffn_type ${quoteValue(ffnType)} is not supported (mptmlp and mptglu are)`);
  }
  const fcType = raw['fc_type'] ?? ffnRaw['fc_type'];
  if (fcType !== undefined && fcType !== 'torch')
    throw new UnsupportedError(`fc_type ${quoteValue(fcType)} is not supported (only "torch")`);
  const hiddenSize =
    ffnRaw['ffn_hidden_size'] != null
      ? int(ffnRaw, 'ffn_hidden_size', 1, '.ffn_config')
      : Math.trunc(expansionRatio * dModel);
  if (hiddenSize < 1 || hiddenSize > MAX_DIMENSION) {
    const what = `config.expansion_ratio ${expansionRatio} × d_model ${dModel}`;
    throw new ConfigError(`${what} gives an MLP of ${hiddenSize} units, not 1 to ${MAX_DIMENSION}`);
  }
  const ffn: FfnConfig = { ffnType, activation: activationOf(ffnRaw), hiddenSize };

  const tie = bool(raw, 'tie_word_embeddings', DEFAULTS.tie_word_embeddings);
  if (raw['block_overrides'] != null)
    throw new UnsupportedError('block_overrides (per-layer architecture changes) is not supported');
  if (raw['final_logit_softcapping'] != null) throw new UnsupportedError('final_logit_softcapping is not supported');
  if (raw['moe_world_size'] !== undefined && raw['moe_world_size'] !== 1)
    throw new UnsupportedError('moe_world_size (mixture of experts) is not supported');

  return {
    dModel,
    nHeads,
    nLayers,
    expansionRatio,
    maxSeqLen,
    vocabSize,
    noBias: bool(raw, 'no_bias', DEFAULTS.no_bias),
    normType: normType as NormType,
    layerNormEpsilon: 1e-5,
    logitScale,
    embeddingFraction: num(raw, 'embedding_fraction', DEFAULTS.embedding_fraction)!,
    // MosaicML's _validate_config forces learned_pos_emb off when alibi is on.
    learnedPosEmb: alibi ? false : bool(raw, 'learned_pos_emb', DEFAULTS.learned_pos_emb),
    tieWordEmbeddings: tie,
    residPdrop: num(raw, 'resid_pdrop', 0)!,
    embPdrop: num(raw, 'emb_pdrop', 0)!,
    attn,
    ffn,
    headDim,
    raw,
  };
}

/** Number of features in the fused Wqkv output: d + 2 * kv * head_dim. */
export function qkvDim(c: MptConfig): number {
  return c.dModel + 2 * c.attn.kvNHeads * c.headDim;
}

/** Writes a config back as a MosaicML-style config.json object (hub key set). */
export function toMosaicConfigJson(c: MptConfig): Record<string, unknown> {
  const attn: Record<string, unknown> = {
    alibi: c.attn.alibi,
    alibi_bias_max: c.attn.alibiBiasMax,
    attn_impl: 'torch',
    attn_pdrop: c.attn.attnPdrop,
    attn_type: c.attn.attnType,
    attn_uses_sequence_id: c.attn.attnUsesSequenceId,
    clip_qkv: c.attn.clipQkv,
    prefix_lm: c.attn.prefixLm,
    qk_ln: c.attn.qkLn,
    softmax_scale: c.attn.softmaxScale,
  };
  if (c.attn.attnType === 'grouped_query_attention') attn['kv_n_heads'] = c.attn.kvNHeads;
  const ffn: Record<string, unknown> = { ffn_type: c.ffn.ffnType };
  if (c.ffn.hiddenSize !== Math.trunc(c.expansionRatio * c.dModel)) ffn['ffn_hidden_size'] = c.ffn.hiddenSize;
  if (c.ffn.activation !== 'gelu') {
    ffn['ffn_act_fn'] =
      c.ffn.activation === 'gelu_tanh' ? { name: 'gelu', approximate: 'tanh' } : { name: c.ffn.activation };
  }
  return {
    architectures: ['MPTForCausalLM'],
    attn_config: attn,
    d_model: c.dModel,
    emb_pdrop: c.embPdrop,
    embedding_fraction: c.embeddingFraction,
    expansion_ratio: c.expansionRatio,
    ffn_config: ffn,
    init_device: 'cpu',
    learned_pos_emb: c.learnedPosEmb,
    logit_scale: c.logitScale,
    max_seq_len: c.maxSeqLen,
    model_type: 'mpt',
    n_heads: c.nHeads,
    n_layers: c.nLayers,
    no_bias: c.noBias,
    norm_type: c.normType,
    resid_pdrop: c.residPdrop,
    tie_word_embeddings: c.tieWordEmbeddings,
    torch_dtype: 'float32',
    use_cache: false,
    vocab_size: c.vocabSize,
  };
}
