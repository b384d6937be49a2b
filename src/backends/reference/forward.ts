/**
 * The MPT forward pass, written to be read top to bottom: this file is the definition of what
 * every faster backend must compute. It follows MosaicML's `MPTForCausalLM` (llm-foundry,
 * attn_impl "torch") step for step; comments name the places where MPT differs from a textbook
 * transformer.
 *
 * One call processes the new tokens of one sequence on top of its KV cache. Attention walks the
 * keys of one query row at a time, so memory is O(context) per row, never T x T.
 */
import { InputError } from '../../errors.js';
import type { MptConfig } from '../../model/config.js';
import { alibiBias, kvHeadOf, mptFacts, positionIds, type MptFacts } from '../../model/facts.js';
import type { ReferenceKvCache } from './kv-cache.js';
import { erf, gelu, geluTanh, layerNorm, linear, rmsNorm, silu } from './math.js';
import type { NormWeights, ReferenceWeights } from './weights.js';

export interface ReferenceForwardOptions {
  /** Which rows of logits to compute. */
  logits: 'all' | 'last' | 'none';
  outputHiddenStates?: boolean;
  outputAttentions?: boolean;
}

export interface ReferenceForwardResult {
  logits: Float32Array;
  hiddenStates?: Float32Array[];
  attentions?: Float32Array[];
}

export class ReferenceModel {
  /** What the config implies (model/facts.ts): dimensions, softmax scale, ALiBi slopes, norm, activation. */
  readonly facts: MptFacts;

  constructor(
    readonly config: MptConfig,
    readonly weights: ReferenceWeights,
  ) {
    this.facts = mptFacts(config);
  }

  private norm(x: Float64Array, T: number, n: number, w: NormWeights): Float64Array {
    const { kind, eps } = this.facts.norm;
    if (kind === 'rmsnorm') return rmsNorm(x, T, n, w.weight, eps);
    return layerNorm(x, T, n, w.weight, w.bias, eps);
  }

  private activation(x: number): number {
    switch (this.facts.activation) {
      case 'gelu':
        return gelu(x);
      case 'gelu_tanh':
        return geluTanh(x);
      case 'silu':
        return silu(x);
      case 'relu':
        return Math.max(x, 0);
    }
  }

  forward(
    cache: ReferenceKvCache,
    tokens: ArrayLike<number>,
    padMask: ArrayLike<number> | undefined,
    opts: ReferenceForwardOptions,
  ): ReferenceForwardResult {
    const f = this.facts;
    const W = this.weights;
    const T = tokens.length;
    const d = f.dModel;
    const H = f.nHeads;
    const hd = f.headDim;
    const kvd = f.kvDim;
    const past = cache.length;
    const K = past + T; // keys visible to this call (the cache plus the new tokens)
    if (T === 0) return { logits: new Float32Array(0) };
    for (let t = 0; t < T; t++) {
      const id = tokens[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= f.vocabSize) {
        throw new InputError(`token id ${id} at position ${t} is outside the vocabulary [0, ${f.vocabSize})`);
      }
    }
    cache.reserve(T);
    for (let t = 0; t < T; t++) cache.padMask[past + t] = padMask ? (padMask[t] ? 1 : 0) : 1;

    // Embedding. With ALiBi there is no position embedding; with learned_pos_emb, left padding
    // shifts positions so the first real token gets position 0 (positionIds).
    let x: Float64Array = new Float64Array(T * d);
    let padsBefore = 0;
    for (let j = 0; j < past; j++) if (!cache.padMask[j]) padsBefore++;
    const positions = W.wpe
      ? positionIds(f, past, padsBefore, T, (t) => cache.padMask[past + t] === 1).positions
      : null;
    for (let t = 0; t < T; t++) {
      const row = tokens[t]! * d;
      for (let i = 0; i < d; i++) x[t * d + i] = W.wte[row + i]!;
      if (W.wpe && positions) {
        const pos = positions[t]!;
        for (let i = 0; i < d; i++) x[t * d + i]! += W.wpe[pos * d + i]!;
      }
    }

    const hidden: Float32Array[] = [];
    const attentions: Float32Array[] = [];
    const scores = new Float64Array(K);

    for (let l = 0; l < f.nLayers; l++) {
      const B = W.blocks[l]!;
      if (opts.outputHiddenStates) hidden.push(Float32Array.from(x));

      // --- attention: h = x + out_proj(attn(norm_1(x))) ---
      const a = this.norm(x, T, d, B.norm1);
      const qkvN = f.qkvDim;
      const qkv = linear(a, T, B.wqkv.weight, d, qkvN, B.wqkv.bias);
      if (f.clipQkv !== null) {
        const m = f.clipQkv;
        for (let i = 0; i < qkv.length; i++) qkv[i] = Math.min(m, Math.max(-m, qkv[i]!));
      }
      // Split the fused projection into q [T, d], k [T, kvd], v [T, kvd].
      const split = f.qkvSplit;
      let q: Float64Array = new Float64Array(T * d);
      let k: Float64Array = new Float64Array(T * kvd);
      const v = new Float64Array(T * kvd);
      for (let t = 0; t < T; t++) {
        const o = t * qkvN;
        for (let i = 0; i < d; i++) q[t * d + i] = qkv[o + split.q + i]!;
        for (let i = 0; i < kvd; i++) k[t * kvd + i] = qkv[o + split.k + i]!;
        for (let i = 0; i < kvd; i++) v[t * kvd + i] = qkv[o + split.v + i]!;
      }
      // qk_ln normalises all of q and all of k (across heads), before the split into heads.
      if (f.qkLn) {
        q = this.norm(q, T, d, B.qLn!);
        k = this.norm(k, T, kvd, B.kLn!);
      }
      for (let t = 0; t < T; t++) cache.write(l, past + t, k, t * kvd, v, t * kvd);
      const Kc = cache.keys[l]!;
      const Vc = cache.values[l]!;

      const ctx = new Float64Array(T * d);
      const probs = opts.outputAttentions ? new Float32Array(H * T * K) : undefined;
      for (let h = 0; h < H; h++) {
        const g = kvHeadOf(f, h); // the K/V head this query head reads
        const slope = f.slopes[h]!; // 0 without ALiBi
        for (let t = 0; t < T; t++) {
          const qi = past + t; // absolute position of this query
          let max = -Infinity;
          for (let j = 0; j < K; j++) {
            let s: number;
            if (j > qi || !cache.padMask[j]) {
              s = f.maskedScore; // causally hidden or padding: MosaicML uses finfo.min, not -inf
            } else {
              let dot = 0;
              for (let e = 0; e < hd; e++) dot += q[t * d + h * hd + e]! * Kc[j * kvd + g * hd + e]!;
              // ALiBi: the bias of key j is -slope * (K - 1 - j), the same for every row.
              s = dot * f.softmaxScale + alibiBias(slope, j, K);
            }
            scores[j] = s;
            if (s > max) max = s;
          }
          // A row in which every key is masked has all scores equal: its softmax is uniform over
          // all K keys, as in MosaicML's code (the output at such pad positions is meaningless).
          let sum = 0;
          for (let j = 0; j < K; j++) {
            const e = Math.exp(scores[j]! - max);
            scores[j] = e;
            sum += e;
          }
          const o = t * d + h * hd;
          for (let j = 0; j < K; j++) {
            const p = scores[j]! / sum;
            if (probs) probs[(h * T + t) * K + j] = p;
            if (p === 0) continue;
            for (let e = 0; e < hd; e++) ctx[o + e]! += p * Vc[j * kvd + g * hd + e]!;
          }
        }
      }
      if (probs) attentions.push(probs);
      const attnOut = linear(ctx, T, B.outProj.weight, d, d, B.outProj.bias);
      for (let i = 0; i < x.length; i++) x[i]! += attnOut[i]!;

      // --- MLP: x = h + down_proj(act(up_proj(norm_2(h)))) (GLU: act(gate) * up) ---
      const ff = f.ffnHidden;
      const m = this.norm(x, T, d, B.norm2);
      const up = linear(m, T, B.upProj.weight, d, ff, B.upProj.bias);
      if (B.gateProj) {
        const gate = linear(m, T, B.gateProj.weight, d, ff, B.gateProj.bias);
        for (let i = 0; i < up.length; i++) up[i] = this.activation(gate[i]!) * up[i]!;
      } else {
        for (let i = 0; i < up.length; i++) up[i] = this.activation(up[i]!);
      }
      const down = linear(up, T, B.downProj.weight, ff, d, B.downProj.bias);
      for (let i = 0; i < x.length; i++) x[i]! += down[i]!;
    }
    cache.commit(T);

    // Final norm, then the LM head (tied to wte), then logit_scale.
    x = this.norm(x, T, d, W.normF);
    if (opts.outputHiddenStates) hidden.push(Float32Array.from(x));
    let logits = new Float32Array(0);
    if (opts.logits !== 'none') {
      const first = opts.logits === 'last' ? T - 1 : 0;
      const rows = T - first;
      const V = f.vocabSize;
      logits = new Float32Array(rows * V);
      const scale = f.logitScale;
      for (let r = 0; r < rows; r++) {
        const xo = (first + r) * d;
        for (let o = 0; o < V; o++) {
          let s = 0;
          const wo = o * d;
          for (let i = 0; i < d; i++) s += x[xo + i]! * W.lmHead[wo + i]!;
          logits[r * V + o] = s * scale;
        }
      }
    }
    return {
      logits,
      hiddenStates: opts.outputHiddenStates ? hidden : undefined,
      attentions: opts.outputAttentions ? attentions : undefined,
    };
  }
}

// Re-exported for kernel tests of other backends.
export { erf };
