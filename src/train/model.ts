/**
 * The trainable MPT: parameters as f32 arrays under MosaicML's state-dict names, and a forward pass
 * that keeps what its backward pass needs. Covers every op of MosaicML's MPTForCausalLM forward:
 * embedding (+ learned positions when ALiBi is off), pre-LN blocks with LayerNorm with or without
 * bias, fused Wqkv, clip_qkv, qk_ln, ALiBi + causal attention for MHA / MQA / GQA, exact GELU MLP,
 * the tied LM head with logit_scale, and next-token cross-entropy with an ignore index.
 *
 * Compact vocabulary: a model trained from scratch on a corpus that uses U of the V token ids can
 * keep every unused row of the tied embedding equal to one shared row u. Those rows get identical
 * gradients (they are never inputs and their logits are all h·u), so identical updates, and stay
 * equal: training the model with V rows is then *exactly* training U + 1 rows where the softmax
 * counts the last row m = V − U times. That makes the 50432-row LM head of the GPT-NeoX vocabulary
 * cost U + 1 rows. `CompactVocab` holds the mapping; `expandEmbedding` writes the V rows back.
 */
import type { MptConfig } from '../model/config.js';
import { qkvDim } from '../model/config.js';
import { UnsupportedError, InputError } from '../errors.js';
import type { Kernels } from './kernels.js';
import { mptFacts, type MptFacts } from '../model/facts.js';
import { geluBackward, geluForward, layerNormBackward, layerNormForward } from './ops.js';
import { Rng } from './rng.js';

export const IGNORE_INDEX = -100;

export interface Param {
  name: string;
  shape: number[];
  data: Float32Array;
  /** Gradient accumulator (allocated for trainable parameters). */
  grad: Float32Array | null;
  trainable: boolean;
  /**
   * How many copies of each element the full-size model holds (the shared row of a compact
   * vocabulary counts m times in the global gradient norm). Per element; null = 1 everywhere.
   */
  multiplicity?: (index: number) => number;
}

/** Token-id → embedding-row map of a compact vocabulary (see the file comment). */
export interface CompactVocab {
  /** Full vocabulary size V. */
  fullSize: number;
  /** Row of each full id (length V). */
  rowOf: Int32Array;
  /** Full id of each row, the shared row last (its id is the first unused id). */
  idOf: Int32Array;
  /** Number of full ids the last row stands for (0: no shared row, every row is one id). */
  shared: number;
}

/** The identity vocabulary (no compaction). */
export function fullVocab(size: number): CompactVocab {
  const rowOf = new Int32Array(size),
    idOf = new Int32Array(size);
  for (let i = 0; i < size; i++) {
    rowOf[i] = i;
    idOf[i] = i;
  }
  return { fullSize: size, rowOf, idOf, shared: 0 };
}

/** A compact vocabulary keeping `used` ids (plus `always`) and one shared row for all others. */
export function compactVocab(size: number, used: Iterable<number>): CompactVocab {
  const keep = new Uint8Array(size);
  for (const t of used) {
    if (t < 0 || t >= size) throw new InputError(`token id ${t} is outside the vocabulary (${size})`);
    keep[t] = 1;
  }
  const ids: number[] = [];
  let firstUnused = -1;
  for (let i = 0; i < size; i++) {
    if (keep[i]) ids.push(i);
    else if (firstUnused < 0) firstUnused = i;
  }
  if (firstUnused < 0) return fullVocab(size);
  const shared = size - ids.length;
  const idOf = Int32Array.from([...ids, firstUnused]);
  const rowOf = new Int32Array(size).fill(ids.length);
  ids.forEach((id, r) => {
    rowOf[id] = r;
  });
  return { fullSize: size, rowOf, idOf, shared };
}

/** Writes the full [V, d] embedding of a compact one. */
export function expandEmbedding(vocab: CompactVocab, compact: Float32Array, d: number): Float32Array {
  if (vocab.shared === 0 && vocab.idOf.every((id, r) => id === r)) return compact;
  const full = new Float32Array(vocab.fullSize * d);
  for (let id = 0; id < vocab.fullSize; id++)
    full.set(compact.subarray(vocab.rowOf[id]! * d, vocab.rowOf[id]! * d + d), id * d);
  return full;
}

/** LoRA adapter settings: y = W x + (alpha / rank) · B A x on the chosen Linear layers. */
export interface LoraConfig {
  rank: number;
  alpha: number;
  /** Which Linear layers get adapters, by short name. */
  targets: Array<'Wqkv' | 'out_proj' | 'up_proj' | 'down_proj'>;
}

/** Expected parameter names and shapes, in MosaicML's `named_parameters()` order. */
export function parameterShapes(c: MptConfig, embRows = c.vocabSize): Array<[string, number[]]> {
  const d = c.dModel,
    kvd = c.attn.kvNHeads * c.headDim,
    hid = c.ffn.hiddenSize;
  const bias = !c.noBias;
  const out: Array<[string, number[]]> = [['transformer.wte.weight', [embRows, d]]];
  if (c.learnedPosEmb) out.push(['transformer.wpe.weight', [c.maxSeqLen, d]]);
  const ln = (p: string, n: number) => {
    out.push([`${p}.weight`, [n]]);
    if (bias) out.push([`${p}.bias`, [n]]);
  };
  const lin = (p: string, o: number, i: number) => {
    out.push([`${p}.weight`, [o, i]]);
    if (bias) out.push([`${p}.bias`, [o]]);
  };
  for (let l = 0; l < c.nLayers; l++) {
    const p = `transformer.blocks.${l}`;
    ln(`${p}.norm_1`, d);
    lin(`${p}.attn.Wqkv`, qkvDim(c), d);
    if (c.attn.qkLn) {
      ln(`${p}.attn.q_ln`, d);
      ln(`${p}.attn.k_ln`, kvd);
    }
    lin(`${p}.attn.out_proj`, d, d);
    ln(`${p}.norm_2`, d);
    lin(`${p}.ffn.up_proj`, hid, d);
    lin(`${p}.ffn.down_proj`, d, hid);
  }
  ln('transformer.norm_f', d);
  return out;
}

/** Refuses configurations whose training this module does not implement. */
export function checkTrainable(c: MptConfig): void {
  if (c.ffn.ffnType !== 'mptmlp')
    throw new UnsupportedError(`training ffn_type "${c.ffn.ffnType}" is not supported (mptmlp is)`);
  if (c.ffn.activation !== 'gelu')
    throw new UnsupportedError(`training with activation "${c.ffn.activation}" is not supported (exact gelu is)`);
  if (c.normType !== 'layernorm' && c.normType !== 'low_precision_layernorm')
    throw new UnsupportedError(`training norm_type "${c.normType}" is not supported (layernorm is)`);
  if (c.residPdrop > 0 || c.embPdrop > 0 || c.attn.attnPdrop > 0)
    throw new UnsupportedError('dropout is not supported in training: set resid_pdrop, emb_pdrop and attn_pdrop to 0');
  if (!c.tieWordEmbeddings) throw new UnsupportedError('untied word embeddings are not supported (MPT ties them)');
}

/** One batch of B rows of T tokens; targets use IGNORE_INDEX for positions without a loss. */
export interface Batch {
  inputs: Int32Array;
  targets: Int32Array;
  B: number;
  T: number;
}

interface LayerActs {
  x: Float32Array;
  ln1: Float32Array;
  ln1Mean: Float32Array;
  ln1Rstd: Float32Array;
  qkv: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  qMean: Float32Array;
  qRstd: Float32Array;
  kMean: Float32Array;
  kRstd: Float32Array;
  qPre: Float32Array;
  kPre: Float32Array;
  probs: Float32Array;
  ctx: Float32Array;
  h: Float32Array;
  ln2: Float32Array;
  ln2Mean: Float32Array;
  ln2Rstd: Float32Array;
  up: Float32Array;
  act: Float32Array;
  cdf: Float32Array;
  loraWqkv?: Float32Array;
  loraOut?: Float32Array;
  loraUp?: Float32Array;
  loraDown?: Float32Array;
}

interface Workspace {
  B: number;
  T: number;
  N: number;
  layers: LayerActs[];
  xOut: Float32Array;
  lnf: Float32Array;
  lnfMean: Float32Array;
  lnfRstd: Float32Array;
  // backward scratch
  dx: Float32Array;
  dh: Float32Array;
  dTmp: Float32Array;
  dQkv: Float32Array;
  dq: Float32Array;
  dk: Float32Array;
  dv: Float32Array;
  dCtx: Float32Array;
  dHid: Float32Array;
  dHid2: Float32Array;
  dLora: Float32Array;
  logits: Float32Array;
  dLogits: Float32Array;
  attA: Float32Array;
  attB: Float32Array;
  attH1: Float32Array;
  attH2: Float32Array;
}

/** Rows of the LM head processed at once (bounds the logits buffer to HEAD_CHUNK × vocab rows). */
const HEAD_CHUNK = 128;

export interface LossResult {
  /** Σ cross-entropy over the positions with a target. */
  lossSum: number;
  /** Number of positions with a target. */
  count: number;
}

export class TrainModel {
  readonly config: MptConfig;
  readonly params: Param[];
  readonly byName = new Map<string, Param>();
  readonly vocab: CompactVocab;
  readonly kernels: Kernels;
  lora: LoraConfig | null = null;
  /** What the config implies (model/facts.ts): dimensions, softmax scale, ALiBi slopes as MosaicML rounds them. */
  readonly facts: MptFacts;
  private ws: Workspace | null = null;

  constructor(config: MptConfig, kernels: Kernels, vocab?: CompactVocab) {
    checkTrainable(config);
    this.config = config;
    this.kernels = kernels;
    this.vocab = vocab ?? fullVocab(config.vocabSize);
    if (this.vocab.fullSize !== config.vocabSize)
      throw new InputError(`compact vocabulary is for ${this.vocab.fullSize} ids, the model has ${config.vocabSize}`);
    this.params = parameterShapes(config, this.vocab.idOf.length).map(([name, shape]) => {
      const p: Param = {
        name,
        shape,
        data: kernels.alloc(shape.reduce((a, b) => a * b, 1)),
        grad: null,
        trainable: true,
      };
      this.byName.set(name, p);
      return p;
    });
    const wte = this.byName.get('transformer.wte.weight')!;
    if (this.vocab.shared > 0) {
      const lastRow = (this.vocab.idOf.length - 1) * config.dModel,
        m = this.vocab.shared;
      wte.multiplicity = (i) => (i >= lastRow ? m : 1);
    }
    this.facts = mptFacts(config);
  }

  param(name: string): Param {
    const p = this.byName.get(name);
    if (!p) throw new InputError(`no parameter ${name}`);
    return p;
  }

  /** Parameters that receive gradients and optimizer updates. */
  trainableParams(): Param[] {
    return this.params.filter((p) => p.trainable);
  }

  /**
   * llm-foundry's default init (`kaiming_normal_`, fan_in, relu gain: std √(2/fan_in)) for the
   * embedding and every Linear, residual projections (out_proj, down_proj) divided by √(2·n_layers),
   * LayerNorm weights 1, biases 0.
   */
  initialize(seed: number): void {
    const rng = new Rng(seed);
    const div = Math.sqrt(2 * this.config.nLayers);
    for (const p of this.params) {
      if (p.name.includes('lora_')) continue;
      const isNorm = /norm_|_ln\.|norm_f/.test(p.name);
      if (p.name.endsWith('.bias')) p.data.fill(0);
      else if (isNorm) p.data.fill(1);
      else {
        const fanIn = p.shape[1]!;
        let std = Math.sqrt(2 / fanIn);
        if (p.name.endsWith('out_proj.weight') || p.name.endsWith('down_proj.weight')) std /= div;
        for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal() * std;
      }
    }
  }

  /** Adds LoRA adapters (A ~ kaiming-uniform-like normal, B = 0) and freezes everything else. */
  addLora(cfg: LoraConfig, seed: number): void {
    if (this.lora) throw new InputError('LoRA adapters are already attached');
    this.lora = cfg;
    const rng = new Rng(seed);
    for (const p of this.params) {
      p.trainable = false;
      p.grad = null;
    }
    const shapes = new Map(parameterShapes(this.config, this.vocab.idOf.length));
    for (let l = 0; l < this.config.nLayers; l++) {
      for (const t of cfg.targets) {
        const base = `transformer.blocks.${l}.${t === 'Wqkv' || t === 'out_proj' ? 'attn' : 'ffn'}.${t}`;
        const [o, i] = shapes.get(`${base}.weight`)!;
        const A: Param = {
          name: `${base}.lora_A`,
          shape: [cfg.rank, i!],
          data: this.kernels.alloc(cfg.rank * i!),
          grad: null,
          trainable: true,
        };
        const B: Param = {
          name: `${base}.lora_B`,
          shape: [o!, cfg.rank],
          data: this.kernels.alloc(o! * cfg.rank),
          grad: null,
          trainable: true,
        };
        const std = 1 / Math.sqrt(i!);
        for (let k = 0; k < A.data.length; k++) A.data[k] = rng.normal() * std;
        for (const p of [A, B]) {
          this.params.push(p);
          this.byName.set(p.name, p);
        }
      }
    }
    this.ws = null;
    this.wsCap = null;
  }

  /** Folds every adapter into its base weight (W += alpha/r · B A) and removes the adapters. */
  mergeLora(): void {
    if (!this.lora) return;
    const s = this.lora.alpha / this.lora.rank;
    for (const p of [...this.params]) {
      if (!p.name.endsWith('.lora_A')) continue;
      const base = p.name.slice(0, -'.lora_A'.length);
      const A = p,
        B = this.param(`${base}.lora_B`),
        W = this.param(`${base}.weight`);
      const [o, i] = W.shape as [number, number];
      const r = this.lora.rank;
      const delta = new Float32Array(o * i);
      this.kernels.matmul(delta, B.data, A.data, o, i, r);
      for (let k = 0; k < delta.length; k++) W.data[k]! += s * delta[k]!;
    }
    for (let k = this.params.length - 1; k >= 0; k--) {
      if (this.params[k]!.name.includes('.lora_')) {
        this.byName.delete(this.params[k]!.name);
        this.params.splice(k, 1);
      }
    }
    for (const p of this.params) p.trainable = true;
    this.lora = null;
    this.ws = null;
    this.wsCap = null;
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

  /**
   * Activation and scratch buffers for a batch of B rows of T tokens: views into buffers sized for
   * the largest shape seen so far (grown by 1.25× when exceeded), so that batches of varying shape
   * (padded instruction data, a short last eval batch) reuse memory instead of allocating more
   * (the wasm arena never frees).
   */
  private workspace(B: number, T: number): Workspace {
    if (this.ws && this.ws.B === B && this.ws.T === T) return this.ws;
    const need = { N: B * T, T, P: B * T * T };
    const cap = this.wsCap;
    if (!cap || need.N > cap.N || need.T > cap.T || need.P > cap.P || (this.lora?.rank ?? 0) !== cap.rank) {
      const grow = (n: number, old: number | undefined) =>
        old === undefined || n > old ? Math.ceil(n * (old === undefined ? 1 : 1.25)) : old;
      const sizes = { N: grow(need.N, cap?.N), T: grow(need.T, cap?.T), P: grow(need.P, cap?.P) };
      sizes.P = Math.max(sizes.P, sizes.T * sizes.T);
      const bufs: Float32Array[] = [];
      this.layoutWorkspace(1, sizes.T, sizes.N, sizes.P, (n) => {
        const a = this.kernels.alloc(n);
        bufs.push(a);
        return a;
      });
      this.wsCap = { ...sizes, rank: this.lora?.rank ?? 0, bufs };
    }
    let i = 0;
    const bufs = this.wsCap!.bufs;
    this.ws = this.layoutWorkspace(B, T, need.N, need.P, (n) => bufs[i++]!.subarray(0, n));
    return this.ws;
  }

  private wsCap: { N: number; T: number; P: number; rank: number; bufs: Float32Array[] } | null = null;

  /** The buffer layout of a workspace (N = B·T tokens, P = B·T² attention entries per head group). */
  private layoutWorkspace(B: number, T: number, N: number, P: number, A: (n: number) => Float32Array): Workspace {
    const c = this.config,
      d = c.dModel,
      kvd = c.attn.kvNHeads * c.headDim;
    const Q = qkvDim(c),
      hid = c.ffn.hiddenSize,
      H = c.nHeads;
    const r = this.lora?.rank ?? 0;
    const layers: LayerActs[] = [];
    for (let l = 0; l < c.nLayers; l++) {
      const la: LayerActs = {
        x: A(N * d),
        ln1: A(N * d),
        ln1Mean: A(N),
        ln1Rstd: A(N),
        qkv: A(N * Q),
        q: A(N * d),
        k: A(N * kvd),
        v: A(N * kvd),
        qMean: A(N),
        qRstd: A(N),
        kMean: A(N),
        kRstd: A(N),
        qPre: A(c.attn.qkLn ? N * d : 0),
        kPre: A(c.attn.qkLn ? N * kvd : 0),
        probs: A(H * P),
        ctx: A(N * d),
        h: A(N * d),
        ln2: A(N * d),
        ln2Mean: A(N),
        ln2Rstd: A(N),
        up: A(N * hid),
        act: A(N * hid),
        cdf: A(N * hid),
      };
      if (r > 0) {
        la.loraWqkv = A(N * r);
        la.loraOut = A(N * r);
        la.loraUp = A(N * r);
        la.loraDown = A(N * r);
      }
      layers.push(la);
    }
    const rows = this.vocab.idOf.length;
    return {
      B,
      T,
      N,
      layers,
      xOut: A(N * d),
      lnf: A(N * d),
      lnfMean: A(N),
      lnfRstd: A(N),
      dx: A(N * d),
      dh: A(N * d),
      dTmp: A(N * Math.max(d, hid)),
      dQkv: A(N * Q),
      dq: A(N * d),
      dk: A(N * kvd),
      dv: A(N * kvd),
      dCtx: A(N * d),
      dHid: A(N * hid),
      dHid2: A(N * hid),
      dLora: A(N * Math.max(r, 1)),
      logits: A(HEAD_CHUNK * rows),
      dLogits: A(HEAD_CHUNK * rows),
      attA: A(T * T),
      attB: A(T * T),
      attH1: A(c.headDim * T),
      attH2: A(c.headDim * T),
    };
  }

  private getData(name: string): Float32Array | null {
    return this.byName.get(name)?.data ?? null;
  }
  private getGrad(name: string): Float32Array | null {
    return this.byName.get(name)?.grad ?? null;
  }

  /** y = x Wᵀ + b (+ LoRA), x [N, in]; saves x·Aᵀ in `loraSave` when an adapter exists. */
  private linear(
    y: Float32Array,
    x: Float32Array,
    base: string,
    N: number,
    o: number,
    i: number,
    loraSave?: Float32Array,
  ): void {
    this.kernels.matmul(y, x, this.getData(`${base}.weight`)!, N, o, i, { transB: true });
    const b = this.getData(`${base}.bias`);
    if (b)
      for (let n = 0; n < N; n++) {
        const off = n * o;
        for (let j = 0; j < o; j++) y[off + j]! += b[j]!;
      }
    const A = this.getData(`${base}.lora_A`);
    if (A && loraSave && this.lora) {
      const r = this.lora.rank,
        s = this.lora.alpha / r;
      this.kernels.matmul(loraSave, x, A, N, r, i, { transB: true });
      const tmp = this.ws!.dLora;
      for (let k = 0; k < N * r; k++) tmp[k] = loraSave[k]! * s;
      this.kernels.matmul(y, tmp, this.getData(`${base}.lora_B`)!, N, o, r, { transB: true, accumulate: true });
    }
  }

  /** Backward of `linear`: dx (+)= dy W (+ LoRA path); parameter gradients accumulate. */
  private linearBackward(
    dx: Float32Array,
    dy: Float32Array,
    x: Float32Array,
    base: string,
    N: number,
    o: number,
    i: number,
    accumulateDx: boolean,
    loraSaved?: Float32Array,
  ): void {
    const W = this.getData(`${base}.weight`)!;
    const dW = this.getGrad(`${base}.weight`),
      db = this.getGrad(`${base}.bias`);
    if (dW) this.kernels.matmul(dW, dy, x, o, i, N, { transA: true, accumulate: true });
    if (db)
      for (let n = 0; n < N; n++) {
        const off = n * o;
        for (let j = 0; j < o; j++) db[j]! += dy[off + j]!;
      }
    this.kernels.matmul(dx, dy, W, N, i, o, { accumulate: accumulateDx });
    const A = this.getData(`${base}.lora_A`);
    if (A && loraSaved && this.lora) {
      const r = this.lora.rank,
        s = this.lora.alpha / r;
      const Bm = this.getData(`${base}.lora_B`)!;
      const dA = this.getGrad(`${base}.lora_A`),
        dB = this.getGrad(`${base}.lora_B`);
      const tmp = this.ws!.dLora;
      // y += s · (x Aᵀ) Bᵀ  ⇒  dB += s · dyᵀ (x Aᵀ);  d(x Aᵀ) = s · dy B;  dA += d(x Aᵀ)ᵀ x;  dx += d(x Aᵀ) A
      if (dB) {
        for (let k = 0; k < N * r; k++) tmp[k] = loraSaved[k]! * s;
        this.kernels.matmul(dB, dy, tmp, o, r, N, { transA: true, accumulate: true });
      }
      this.kernels.matmul(tmp, dy, Bm, N, r, o);
      for (let k = 0; k < N * r; k++) tmp[k]! *= s;
      if (dA) this.kernels.matmul(dA, tmp, x, r, i, N, { transA: true, accumulate: true });
      this.kernels.matmul(dx, tmp, A, N, i, r, { accumulate: true });
    }
  }

  /** Runs the blocks and norm_f; leaves the normalised final hidden states in ws.lnf. */
  private forwardBody(inputs: Int32Array, B: number, T: number): Workspace {
    const c = this.config;
    if (T > c.maxSeqLen) throw new InputError(`sequence of ${T} tokens exceeds max_seq_len ${c.maxSeqLen}`);
    const ws = this.workspace(B, T);
    const N = B * T,
      d = c.dModel,
      H = c.nHeads,
      KV = c.attn.kvNHeads,
      hd = c.headDim;
    const kvd = KV * hd,
      Q = qkvDim(c),
      hid = c.ffn.hiddenSize,
      eps = c.layerNormEpsilon;
    const wte = this.getData('transformer.wte.weight')!,
      wpe = this.getData('transformer.wpe.weight');
    const x0 = ws.layers[0]?.x ?? ws.xOut;
    for (let n = 0; n < N; n++) {
      const id = inputs[n]!;
      if (id < 0 || id >= this.vocab.fullSize)
        throw new InputError(`token id ${id} is outside the vocabulary (${this.vocab.fullSize})`);
      const row = this.vocab.rowOf[id]!;
      x0.set(wte.subarray(row * d, row * d + d), n * d);
      if (wpe) {
        const t = n % T;
        for (let j = 0; j < d; j++) x0[n * d + j]! += wpe[t * d + j]!;
      }
    }
    const scale = this.facts.softmaxScale;
    const clip = c.attn.clipQkv;
    for (let l = 0; l < c.nLayers; l++) {
      const la = ws.layers[l]!,
        p = `transformer.blocks.${l}`;
      const next = l + 1 < c.nLayers ? ws.layers[l + 1]!.x : ws.xOut;
      layerNormForward(
        la.ln1,
        la.x,
        this.getData(`${p}.norm_1.weight`),
        this.getData(`${p}.norm_1.bias`),
        N,
        d,
        eps,
        la.ln1Mean,
        la.ln1Rstd,
      );
      this.linear(la.qkv, la.ln1, `${p}.attn.Wqkv`, N, Q, d, la.loraWqkv);
      // Split (and clip) the fused projection into q, k, v.
      const qDst = c.attn.qkLn ? la.qPre : la.q,
        kDst = c.attn.qkLn ? la.kPre : la.k;
      for (let n = 0; n < N; n++) {
        const o = n * Q;
        for (let j = 0; j < Q; j++) {
          let v = la.qkv[o + j]!;
          if (clip !== null) v = Math.min(Math.max(v, -clip), clip);
          if (j < d) qDst[n * d + j] = v;
          else if (j < d + kvd) kDst[n * kvd + j - d] = v;
          else la.v[n * kvd + j - d - kvd] = v;
        }
      }
      if (c.attn.qkLn) {
        layerNormForward(
          la.q,
          la.qPre,
          this.getData(`${p}.attn.q_ln.weight`),
          this.getData(`${p}.attn.q_ln.bias`),
          N,
          d,
          eps,
          la.qMean,
          la.qRstd,
        );
        layerNormForward(
          la.k,
          la.kPre,
          this.getData(`${p}.attn.k_ln.weight`),
          this.getData(`${p}.attn.k_ln.bias`),
          N,
          kvd,
          eps,
          la.kMean,
          la.kRstd,
        );
      }
      this.attentionForward(ws, la, B, T, H, KV, hd, scale);
      this.linear(la.h, la.ctx, `${p}.attn.out_proj`, N, d, d, la.loraOut);
      for (let k = 0; k < N * d; k++) la.h[k]! += la.x[k]!;
      layerNormForward(
        la.ln2,
        la.h,
        this.getData(`${p}.norm_2.weight`),
        this.getData(`${p}.norm_2.bias`),
        N,
        d,
        eps,
        la.ln2Mean,
        la.ln2Rstd,
      );
      this.linear(la.up, la.ln2, `${p}.ffn.up_proj`, N, hid, d, la.loraUp);
      geluForward(la.act, la.up, N * hid, la.cdf);
      this.linear(next, la.act, `${p}.ffn.down_proj`, N, d, hid, la.loraDown);
      for (let k = 0; k < N * d; k++) next[k]! += la.h[k]!;
    }
    layerNormForward(
      ws.lnf,
      ws.xOut,
      this.getData('transformer.norm_f.weight'),
      this.getData('transformer.norm_f.bias'),
      N,
      d,
      eps,
      ws.lnfMean,
      ws.lnfRstd,
    );
    return ws;
  }

  /**
   * Causal (ALiBi) attention per (row, head) with GEMMs on per-head slices: S = q kᵀ, row softmax,
   * ctx = P v. Query head h reads K/V head ⌊h / (H/KV)⌋. P is kept for the backward pass.
   */
  private attentionForward(
    ws: Workspace,
    la: LayerActs,
    B: number,
    T: number,
    H: number,
    KV: number,
    hd: number,
    scale: number,
  ): void {
    const K = this.kernels,
      d = H * hd,
      kvd = KV * hd,
      group = H / KV;
    const { q, k, v, probs, ctx } = la;
    const S = ws.attA,
      vT = ws.attH1;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / group),
          slope = this.facts.slopes[h]!; // 0 without ALiBi
        const qOff = b * T * d + h * hd,
          kvOff = b * T * kvd + kh * hd;
        const pBase = (b * H + h) * T * T;
        K.gemmNT(S, 0, T, q, qOff, d, k, kvOff, kvd, T, T, hd, false);
        for (let i = 0; i < T; i++) {
          const r = i * T,
            pr = pBase + i * T;
          let max = -Infinity;
          for (let j = 0; j <= i; j++) {
            // MosaicML's bias for key j of T keys: −slope·(T−1−j).
            const s = S[r + j]! * scale - slope * (T - 1 - j);
            S[r + j] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let j = 0; j <= i; j++) {
            const e = Math.exp(S[r + j]! - max);
            S[r + j] = e;
            sum += e;
          }
          const inv = 1 / sum;
          for (let j = 0; j <= i; j++) probs[pr + j] = S[r + j]! * inv;
          for (let j = i + 1; j < T; j++) probs[pr + j] = 0;
        }
        K.transpose(vT, 0, T, v, kvOff, kvd, T, hd);
        K.gemmNT(ctx, qOff, d, probs, pBase, T, vT, 0, T, T, hd, T, false);
      }
    }
  }

  /** Backward of attentionForward: dq, dk, dv from dctx. */
  private attentionBackward(
    ws: Workspace,
    la: LayerActs,
    dctx: Float32Array,
    dq: Float32Array,
    dk: Float32Array,
    dv: Float32Array,
    B: number,
    T: number,
    H: number,
    KV: number,
    hd: number,
    scale: number,
  ): void {
    const K = this.kernels,
      d = H * hd,
      kvd = KV * hd,
      group = H / KV;
    const { q, k, v, probs } = la;
    dk.fill(0);
    dv.fill(0);
    const dP = ws.attA,
      tT = ws.attB,
      h1 = ws.attH1,
      h2 = ws.attH2;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const kh = Math.floor(h / group);
        const qOff = b * T * d + h * hd,
          kvOff = b * T * kvd + kh * hd;
        const pBase = (b * H + h) * T * T;
        // dP = dctx vᵀ;  dv += Pᵀ dctx
        K.gemmNT(dP, 0, T, dctx, qOff, d, v, kvOff, kvd, T, T, hd, false);
        K.transpose(tT, 0, T, probs, pBase, T, T, T);
        K.transpose(h1, 0, T, dctx, qOff, d, T, hd);
        K.gemmNT(dv, kvOff, kvd, tT, 0, T, h1, 0, T, T, hd, T, true);
        // dS = P ⊙ (dP − Σ_j P dP) · scale  (zero above the diagonal, where P is 0)
        for (let i = 0; i < T; i++) {
          const r = i * T,
            pr = pBase + i * T;
          let dot = 0;
          for (let j = 0; j <= i; j++) dot += probs[pr + j]! * dP[r + j]!;
          for (let j = 0; j <= i; j++) dP[r + j] = probs[pr + j]! * (dP[r + j]! - dot) * scale;
          for (let j = i + 1; j < T; j++) dP[r + j] = 0;
        }
        // dq = dS k;  dk += dSᵀ q
        K.transpose(h1, 0, T, k, kvOff, kvd, T, hd);
        K.gemmNT(dq, qOff, d, dP, 0, T, h1, 0, T, T, hd, T, false);
        K.transpose(tT, 0, T, dP, 0, T, T, T);
        K.transpose(h2, 0, T, q, qOff, d, T, hd);
        K.gemmNT(dk, kvOff, kvd, tT, 0, T, h2, 0, T, T, hd, T, true);
      }
    }
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
    const ws = this.forwardBody(batch.inputs, B, T);
    const res = this.head(ws, batch.targets, lossScale, withGrad);
    if (withGrad) this.backwardBody(ws, batch.inputs);
    return res;
  }

  /** Full-vocabulary logits [B·T, V] (for tests and evaluation tools). */
  logits(inputs: Int32Array, B: number, T: number): Float32Array {
    const c = this.config,
      d = c.dModel,
      V = this.vocab.fullSize,
      rows = this.vocab.idOf.length;
    const ws = this.forwardBody(inputs, B, T);
    const N = B * T;
    const small = new Float32Array(N * rows);
    this.kernels.matmul(small, ws.lnf, this.getData('transformer.wte.weight')!, N, rows, d, { transB: true });
    const s = c.logitScale ?? 1;
    const out = new Float32Array(N * V);
    for (let n = 0; n < N; n++)
      for (let id = 0; id < V; id++) out[n * V + id] = small[n * rows + this.vocab.rowOf[id]!]! * s;
    return out;
  }

  /** LM head + cross-entropy in chunks of rows; fills ws.dx with d loss / d lnf when withGrad. */
  private head(ws: Workspace, targets: Int32Array, lossScale: number, withGrad: boolean): LossResult {
    const c = this.config,
      d = c.dModel,
      N = ws.N;
    const rows = this.vocab.idOf.length,
      m = this.vocab.shared,
      sharedRow = m > 0 ? rows - 1 : -1;
    const W = this.getData('transformer.wte.weight')!,
      dW = withGrad ? this.getGrad('transformer.wte.weight') : null;
    const s = c.logitScale ?? 1;
    let savedShared: Float32Array | null = null;
    if (dW && m > 0) savedShared = dW.slice(sharedRow * d, sharedRow * d + d);
    let lossSum = 0,
      count = 0;
    for (let r0 = 0; r0 < N; r0 += HEAD_CHUNK) {
      const n = Math.min(HEAD_CHUNK, N - r0);
      const hChunk = ws.lnf.subarray(r0 * d, (r0 + n) * d);
      const L = ws.logits.subarray(0, n * rows),
        dL = ws.dLogits.subarray(0, n * rows);
      this.kernels.matmul(L, hChunk, W, n, rows, d, { transB: true });
      let any = false;
      for (let r = 0; r < n; r++) {
        const t = targets[r0 + r]!;
        const o = r * rows;
        if (t === IGNORE_INDEX) {
          if (withGrad) dL.fill(0, o, o + rows);
          continue;
        }
        if (t < 0 || t >= this.vocab.fullSize) throw new InputError(`target id ${t} is outside the vocabulary`);
        any = true;
        let max = -Infinity;
        for (let j = 0; j < rows; j++) {
          const v = L[o + j]! * s;
          if (v > max) max = v;
        }
        // exp(s·l − max), kept in dL for the gradient; the shared row counts m times.
        const E = dL;
        let sum = 0;
        for (let j = 0; j < rows; j++) {
          const e = Math.exp(L[o + j]! * s - max);
          E[o + j] = e;
          sum += e;
        }
        if (sharedRow >= 0) {
          E[o + sharedRow]! *= m;
          sum += E[o + sharedRow]! - E[o + sharedRow]! / m;
        }
        const tr = this.vocab.rowOf[t]!;
        const lt = L[o + tr]! * s;
        const logZ = max + Math.log(sum);
        lossSum += logZ - lt;
        count++;
        if (withGrad) {
          // d/d raw logit = s · (p − onehot), p of the shared row summed over its m ids.
          const g = (lossScale * s) / sum;
          for (let j = 0; j < rows; j++) dL[o + j]! *= g;
          dL[o + tr]! -= lossScale * s;
        }
      }
      if (withGrad) {
        const dh = ws.dx.subarray(r0 * d, (r0 + n) * d);
        if (!any) {
          dh.fill(0);
          continue;
        }
        this.kernels.matmul(dh, dL, W, n, d, rows);
        if (dW) this.kernels.matmul(dW, dL, hChunk, rows, d, n, { transA: true, accumulate: true });
      }
    }
    if (dW && savedShared) {
      // Each of the m tied rows receives 1/m of the gradient that flowed into the shared row.
      for (let j = 0; j < d; j++) {
        const i = sharedRow * d + j;
        dW[i] = savedShared[j]! + (dW[i]! - savedShared[j]!) / m;
      }
    }
    return { lossSum, count };
  }

  private backwardBody(ws: Workspace, inputs: Int32Array): void {
    const c = this.config,
      N = ws.N,
      B = ws.B,
      T = ws.T;
    const d = c.dModel,
      H = c.nHeads,
      KV = c.attn.kvNHeads,
      hd = c.headDim;
    const kvd = KV * hd,
      Q = qkvDim(c),
      hid = c.ffn.hiddenSize;
    const scale = this.facts.softmaxScale;
    const clip = c.attn.clipQkv;
    // ws.dx holds d/d lnf; go through norm_f into the residual stream gradient (ws.dh).
    layerNormBackward(
      ws.dh,
      ws.dx,
      ws.xOut,
      this.getData('transformer.norm_f.weight'),
      this.getGrad('transformer.norm_f.weight'),
      this.getGrad('transformer.norm_f.bias'),
      N,
      d,
      ws.lnfMean,
      ws.lnfRstd,
      false,
    );
    const dRes = ws.dh;
    for (let l = c.nLayers - 1; l >= 0; l--) {
      const la = ws.layers[l]!,
        p = `transformer.blocks.${l}`;
      // MLP: x' = h + down(gelu(up(ln2(h)))). dRes = d x'.
      this.linearBackward(ws.dHid, dRes, la.act, `${p}.ffn.down_proj`, N, d, hid, false, la.loraDown);
      geluBackward(ws.dHid2, ws.dHid, la.up, la.cdf, N * hid);
      const dLn2 = ws.dTmp.subarray(0, N * d);
      this.linearBackward(dLn2, ws.dHid2, la.ln2, `${p}.ffn.up_proj`, N, hid, d, false, la.loraUp);
      // d h = dRes + LN2 backward
      layerNormBackward(
        dRes,
        dLn2,
        la.h,
        this.getData(`${p}.norm_2.weight`),
        this.getGrad(`${p}.norm_2.weight`),
        this.getGrad(`${p}.norm_2.bias`),
        N,
        d,
        la.ln2Mean,
        la.ln2Rstd,
        true,
      );
      // Attention: h = x + out(attn(ln1(x))).
      this.linearBackward(ws.dCtx, dRes, la.ctx, `${p}.attn.out_proj`, N, d, d, false, la.loraOut);
      this.attentionBackward(ws, la, ws.dCtx, ws.dq, ws.dk, ws.dv, B, T, H, KV, hd, scale);
      let dqPre = ws.dq,
        dkPre = ws.dk;
      if (c.attn.qkLn) {
        dqPre = ws.dCtx; // free now
        layerNormBackward(
          dqPre,
          ws.dq,
          la.qPre,
          this.getData(`${p}.attn.q_ln.weight`),
          this.getGrad(`${p}.attn.q_ln.weight`),
          this.getGrad(`${p}.attn.q_ln.bias`),
          N,
          d,
          la.qMean,
          la.qRstd,
          false,
        );
        dkPre = ws.dTmp.subarray(0, N * kvd);
        layerNormBackward(
          dkPre,
          ws.dk,
          la.kPre,
          this.getData(`${p}.attn.k_ln.weight`),
          this.getGrad(`${p}.attn.k_ln.weight`),
          this.getGrad(`${p}.attn.k_ln.bias`),
          N,
          kvd,
          la.kMean,
          la.kRstd,
          false,
        );
      }
      for (let n = 0; n < N; n++) {
        const o = n * Q;
        for (let j = 0; j < Q; j++) {
          let g = j < d ? dqPre[n * d + j]! : j < d + kvd ? dkPre[n * kvd + j - d]! : ws.dv[n * kvd + j - d - kvd]!;
          if (clip !== null) {
            const raw = la.qkv[o + j]!;
            if (raw < -clip || raw > clip) g = 0;
          }
          ws.dQkv[o + j] = g;
        }
      }
      const dLn1 = ws.dTmp.subarray(0, N * d);
      this.linearBackward(dLn1, ws.dQkv, la.ln1, `${p}.attn.Wqkv`, N, Q, d, false, la.loraWqkv);
      layerNormBackward(
        dRes,
        dLn1,
        la.x,
        this.getData(`${p}.norm_1.weight`),
        this.getGrad(`${p}.norm_1.weight`),
        this.getGrad(`${p}.norm_1.bias`),
        N,
        d,
        la.ln1Mean,
        la.ln1Rstd,
        true,
      );
    }
    const dWte = this.getGrad('transformer.wte.weight');
    if (dWte) {
      for (let n = 0; n < N; n++) {
        const row = this.vocab.rowOf[inputs[n]!]!;
        for (let j = 0; j < d; j++) dWte[row * d + j]! += dRes[n * d + j]!;
      }
    }
    const dWpe = this.getGrad('transformer.wpe.weight');
    if (dWpe)
      for (let n = 0; n < N; n++) {
        const t = n % T;
        for (let j = 0; j < d; j++) dWpe[t * d + j]! += dRes[n * d + j]!;
      }
  }
}
