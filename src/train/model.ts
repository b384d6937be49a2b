/**
 * The trainable MPT: parameters as f32 arrays under MosaicML's state-dict names, and a forward pass
 * that keeps what its backward pass needs. Covers every op of MosaicML's MPTForCausalLM forward:
 * embedding (+ learned positions when ALiBi is off), pre-norm blocks with LayerNorm (with or
 * without bias) or RMSNorm, fused Wqkv, clip_qkv, qk_ln, ALiBi + causal attention for MHA / MQA /
 * GQA, exact GELU MLP, the tied LM head with logit_scale, and next-token cross-entropy with an
 * ignore index.
 *
 * The pieces, one file each: params.ts (the parameter registry and its weight tree), init.ts,
 * lora-adapters.ts, vocab.ts (compact vocabulary), forward.ts, backward.ts, loss.ts, workspace.ts.
 * The facts they compute with (dimensions, softmax scale, slopes, norm) come from model/facts.ts.
 */
import type { MptConfig } from '../model/config.js';
import { mptFacts, type MptFacts } from '../model/facts.js';
import type { WeightTree } from '../model/weight-tree.js';
import { UnsupportedError, InputError } from '../errors.js';
import { backwardBody } from './backward.js';
import { forwardBody } from './forward.js';
import { initializeParams } from './init.js';
import type { Kernels } from './kernels.js';
import { addAdapters, mergeAdapters, type LoraConfig } from './lora-adapters.js';
import { fullLogits, lmHeadLoss, type Batch, type LossResult } from './loss.js';
import { ParamSet, type Param } from './params.js';
import type { TrainState } from './state.js';
import { fullVocab, type CompactVocab } from './vocab.js';
import { WorkspacePool, type Workspace } from './workspace.js';

export { IGNORE_INDEX, type Batch, type LossResult } from './loss.js';
export type { LoraConfig } from './lora-adapters.js';
export { parameterShapes, type Param } from './params.js';
export { compactVocab, expandEmbedding, fullVocab, type CompactVocab } from './vocab.js';

/** Refuses configurations whose training this module does not implement. */
export function checkTrainable(c: MptConfig): void {
  if (c.ffn.ffnType !== 'mptmlp')
    throw new UnsupportedError(`training ffn_type "${c.ffn.ffnType}" is not supported (mptmlp is)`);
  if (c.ffn.activation !== 'gelu')
    throw new UnsupportedError(`training with activation "${c.ffn.activation}" is not supported (exact gelu is)`);
  if (c.residPdrop > 0 || c.embPdrop > 0 || c.attn.attnPdrop > 0)
    throw new UnsupportedError('dropout is not supported in training: set resid_pdrop, emb_pdrop and attn_pdrop to 0');
  if (!c.tieWordEmbeddings) throw new UnsupportedError('untied word embeddings are not supported (MPT ties them)');
}

export class TrainModel implements TrainState {
  readonly config: MptConfig;
  /** What the config implies (model/facts.ts): dimensions, softmax scale, ALiBi slopes as MosaicML rounds them. */
  readonly facts: MptFacts;
  readonly vocab: CompactVocab;
  readonly kernels: Kernels;
  lora: LoraConfig | null = null;
  private readonly paramSet: ParamSet;
  private readonly workspaces: WorkspacePool;
  /** The last forward pass's activations (the backward pass reads them; tests peek at them). */
  private ws: Workspace | null = null;

  constructor(config: MptConfig, kernels: Kernels, vocab?: CompactVocab) {
    checkTrainable(config);
    this.config = config;
    this.facts = mptFacts(config);
    this.kernels = kernels;
    this.vocab = vocab ?? fullVocab(config.vocabSize);
    if (this.vocab.fullSize !== config.vocabSize)
      throw new InputError(`compact vocabulary is for ${this.vocab.fullSize} ids, the model has ${config.vocabSize}`);
    const embRows = this.vocab.idOf.length;
    this.paramSet = new ParamSet(config, embRows, kernels);
    const wte = this.tree.wte;
    if (this.vocab.shared > 0) {
      const lastRow = (embRows - 1) * config.dModel,
        m = this.vocab.shared;
      wte.multiplicity = (i) => (i >= lastRow ? m : 1);
    }
    this.workspaces = new WorkspacePool(this.facts, embRows, kernels);
  }

  /** Every parameter (adapters included), in state-dict order. */
  get params(): Param[] {
    return this.paramSet.list;
  }

  /** The base parameters as the forward pass reads them. */
  get tree(): WeightTree<Param> {
    return this.paramSet.tree;
  }

  param(name: string): Param {
    return this.paramSet.get(name);
  }

  /** Parameters that receive gradients and optimizer updates. */
  trainableParams(): Param[] {
    return this.params.filter((p) => p.trainable);
  }

  /** llm-foundry's default init (init.ts). */
  initialize(seed: number): void {
    initializeParams(this.paramSet, this.config.nLayers, seed);
  }

  /** Adds LoRA adapters (lora-adapters.ts) and freezes everything else. */
  addLora(cfg: LoraConfig, seed: number): void {
    if (this.lora) throw new InputError('LoRA adapters are already attached');
    this.lora = cfg;
    addAdapters(this.paramSet, cfg, this.kernels, seed);
  }

  /** Folds every adapter into its base weight (W += alpha/r · B A) and removes the adapters. */
  mergeLora(): void {
    if (!this.lora) return;
    mergeAdapters(this.paramSet, this.lora, this.kernels);
    this.lora = null;
  }

  /** Allocates (once) the gradient buffers of trainable parameters and zeroes them. */
  zeroGrad(): void {
    for (const p of this.params) {
      if (!p.trainable) {
        p.grad = null;
        continue;
      }
      if (!p.grad) p.grad = this.kernels.alloc(p.data.length);
      else p.grad.fill(0);
    }
  }

  private forward(inputs: Int32Array, B: number, T: number): Workspace {
    const ws = this.workspaces.get(B, T, this.lora?.rank ?? 0);
    this.ws = ws;
    forwardBody(this, ws, inputs, B, T);
    return ws;
  }

  /**
   * Forward, loss and (when `withGrad`) backward for one batch. Gradients of
   * `lossScale · Σ cross-entropy` accumulate into the parameters' `grad` (call zeroGrad first).
   */
  step(batch: Batch, lossScale: number, withGrad: boolean): LossResult {
    const { B, T } = batch;
    if (batch.inputs.length !== B * T || batch.targets.length !== B * T)
      throw new InputError('batch arrays must hold B·T entries');
    if (withGrad) for (const p of this.params) if (p.trainable && !p.grad) p.grad = this.kernels.alloc(p.data.length);
    const ws = this.forward(batch.inputs, B, T);
    const res = lmHeadLoss(this, ws, batch.targets, lossScale, withGrad);
    if (withGrad) backwardBody(this, ws, batch.inputs);
    return res;
  }

  /** Full-vocabulary logits [B·T, V] (for tests and evaluation tools). */
  logits(inputs: Int32Array, B: number, T: number): Float32Array {
    return fullLogits(this, this.forward(inputs, B, T));
  }
}
