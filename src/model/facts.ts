/**
 * Every fact about an MPT model that follows from its config, derived once: the numbers and
 * choices a backend's kernels or the trainer need, so that none of them re-derives one (and
 * two of them cannot drift apart, as the trainer's float64 ALiBi slopes once did).
 *
 * What lives elsewhere: the config keys, defaults and refusals in `config.ts`; the tensor list with
 * shapes (and the tied head) in `weights-layout.ts`, arranged for the forward pass by
 * `weight-tree.ts`; MosaicML's `gen_slopes` in `alibi.ts`. The step-by-step forward pass that uses
 * these facts is `backends/reference/forward.ts`.
 */
import { InputError } from '../errors.js';
import { F32_MIN, alibiSlopes } from './alibi.js';
import { qkvDim, type Activation, type MptConfig } from './config.js';

/** The two norm functions MPT's `norm_type` values name (the low-precision variants compute the same in f32). */
export type NormKind = 'layernorm' | 'rmsnorm';

export interface NormFacts {
  kind: NormKind;
  /** MosaicML's norms always use 1e-5 (config.json's `layer_norm_epsilon` is not read by its code). */
  eps: number;
  /** Whether the norm has a bias tensor: LayerNorm with `no_bias: false`; RMSNorm never has one. */
  bias: boolean;
}

export interface MptFacts {
  readonly config: MptConfig;
  dModel: number;
  nLayers: number;
  vocabSize: number;
  nHeads: number;
  /** d_model / n_heads. */
  headDim: number;
  /** K/V heads: n_heads (multi-head), 1 (multi-query) or kv_n_heads (grouped-query). */
  kvHeads: number;
  /** Features of k (and of v) per token: kv_heads · head_dim. */
  kvDim: number;
  /** Query heads that share one K/V head: query head h reads K/V head ⌊h / queriesPerKvHead⌋ (`kvHeadOf`). */
  queriesPerKvHead: number;
  /** Features of the fused Wqkv output per token: q (d_model), then k and v (kvDim each); config.ts `qkvDim`. */
  qkvDim: number;
  /** Where q, k and v start inside a row of the fused Wqkv output. */
  qkvSplit: { q: number; k: number; v: number };
  /** `attn_config.clip_qkv`: the fused qkv is clamped to [-clip, clip] before the split; null = off. */
  clipQkv: number | null;
  /** `attn_config.qk_ln`: q (all d_model features) and k (all kvDim features) normed before the split into heads. */
  qkLn: boolean;
  /** Multiplies q·k: `attn_config.softmax_scale`, or 1/√head_dim when it is null. */
  softmaxScale: number;
  alibi: boolean;
  /**
   * Per query head, the ALiBi slope as MosaicML's `gen_slopes` rounds it (float32); all 0 without
   * ALiBi. Key j of K visible keys gets `alibiBias(slope, j, K)`.
   */
  slopes: Float32Array;
  /** The score of a causally hidden or padded key: float32's most negative value (finfo.min), not -inf. */
  maskedScore: number;
  /** A learned position embedding (`transformer.wpe`, only without ALiBi): positions follow `positionIds`. */
  learnedPositions: boolean;
  /** Positions a learned position embedding has rows for (max_seq_len). */
  maxPositions: number;
  norm: NormFacts;
  /** MLP hidden width: ffn_hidden_size, or expansion_ratio · d_model. */
  ffnHidden: number;
  /** GLU MLP (`mptglu`): down(act(gate(x)) · up(x)); otherwise down(act(up(x))). */
  glu: boolean;
  activation: Activation;
  /** Multiplies the logits: `logit_scale` (a number, or 1/√d_model for "inv_sqrt_d_model"), 1 when off. */
  logitScale: number;
  /** The LM head is the token embedding (`transformer.wte`); otherwise `lm_head.weight`. */
  tiedHead: boolean;
}

const cache = new WeakMap<MptConfig, MptFacts>();

/** The facts of a config (computed once per config object). */
export function mptFacts(c: MptConfig): MptFacts {
  let f = cache.get(c);
  if (!f) {
    f = deriveFacts(c);
    cache.set(c, f);
  }
  return f;
}

function deriveFacts(c: MptConfig): MptFacts {
  const d = c.dModel,
    hd = c.headDim,
    kvHeads = c.attn.kvNHeads,
    kvDim = kvHeads * hd;
  const kind: NormKind = c.normType.includes('rmsnorm') ? 'rmsnorm' : 'layernorm';
  return {
    config: c,
    dModel: d,
    nLayers: c.nLayers,
    vocabSize: c.vocabSize,
    nHeads: c.nHeads,
    headDim: hd,
    kvHeads,
    kvDim,
    queriesPerKvHead: c.nHeads / kvHeads,
    qkvDim: qkvDim(c),
    qkvSplit: { q: 0, k: d, v: d + kvDim },
    clipQkv: c.attn.clipQkv,
    qkLn: c.attn.qkLn,
    softmaxScale: c.attn.softmaxScale ?? 1 / Math.sqrt(hd),
    alibi: c.attn.alibi,
    slopes: c.attn.alibi ? alibiSlopes(c.nHeads, c.attn.alibiBiasMax) : new Float32Array(c.nHeads),
    maskedScore: F32_MIN,
    learnedPositions: c.learnedPosEmb,
    maxPositions: c.maxSeqLen,
    norm: { kind, eps: c.layerNormEpsilon, bias: kind === 'layernorm' && !c.noBias },
    ffnHidden: c.ffn.hiddenSize,
    glu: c.ffn.ffnType === 'mptglu',
    activation: c.ffn.activation,
    logitScale: c.logitScale ?? 1,
    tiedHead: c.tieWordEmbeddings,
  };
}

/** The K/V head query head h reads (each K/V head serves queriesPerKvHead consecutive query heads). */
export function kvHeadOf(f: MptFacts, h: number): number {
  return Math.floor(h / f.queriesPerKvHead);
}

/**
 * The ALiBi bias of key j when K keys are visible (the cache included): MosaicML builds
 * `arange(1 - max_seq_len, 1) · slope` once and uses its last K columns, so key j gets
 * −slope·(K−1−j), the same for every query row.
 */
export function alibiBias(slope: number, j: number, K: number): number {
  return slope * (j - (K - 1));
}

/**
 * Position ids of `n` new tokens of one sequence that has `past` positions before them, of which
 * `padsBefore` are padding; `isReal(t)` says whether new token t is a real token (not a pad).
 * MosaicML shifts positions left past the pads seen so far, clamped at 0 (`clamp(arange(past,
 * past+T) − cumsum(1 − attention_mask)[:, past:], min=0)`), so a left-padded row's first real token
 * gets position 0. Returns the positions and the pads counted after the last token (the next
 * call's `padsBefore`). With learned positions, a position past max_seq_len is an InputError.
 */
export function positionIds(
  f: MptFacts,
  past: number,
  padsBefore: number,
  n: number,
  isReal?: (t: number) => boolean,
): { positions: Int32Array; padsAfter: number } {
  const positions = new Int32Array(n);
  let pads = padsBefore;
  for (let t = 0; t < n; t++) {
    if (isReal && !isReal(t)) pads++;
    const pos = Math.max(0, past + t - pads);
    if (f.learnedPositions && pos >= f.maxPositions)
      throw new InputError(`position ${pos} is beyond the learned position embedding (max_seq_len ${f.maxPositions})`);
    positions[t] = pos;
  }
  return { positions, padsAfter: pads };
}
