/**
 * The trainer's activation and scratch buffers: what the forward pass keeps for the backward pass,
 * per layer, and the backward pass's scratch, laid out for a batch of B rows of T tokens.
 */
import type { MptFacts } from '../model/facts.js';
import type { Kernels } from './kernels.js';

/** Rows of the LM head processed at once (bounds the logits buffer to HEAD_CHUNK × vocab rows). */
export const HEAD_CHUNK = 128;

export interface LayerActs {
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

export interface Workspace {
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

/**
 * Workspaces for batches of any shape: views into buffers sized for the largest shape seen so far
 * (grown by 1.25× when exceeded), so that batches of varying shape (padded instruction data, a
 * short last eval batch) reuse memory instead of allocating more (the wasm arena never frees).
 */
export class WorkspacePool {
  private ws: Workspace | null = null;
  private cap: { N: number; T: number; P: number; rank: number; bufs: Float32Array[] } | null = null;

  constructor(
    private readonly facts: MptFacts,
    private readonly embRows: number,
    private readonly kernels: Kernels,
  ) {}

  /** The workspace of a batch of B rows of T tokens, for adapters of rank `loraRank` (0: none). */
  get(B: number, T: number, loraRank: number): Workspace {
    if (this.ws && this.ws.B === B && this.ws.T === T && this.cap?.rank === loraRank) return this.ws;
    const need = { N: B * T, T, P: B * T * T };
    const cap = this.cap;
    if (!cap || need.N > cap.N || need.T > cap.T || need.P > cap.P || loraRank !== cap.rank) {
      const grow = (n: number, old: number | undefined) =>
        old === undefined || n > old ? Math.ceil(n * (old === undefined ? 1 : 1.25)) : old;
      const sizes = { N: grow(need.N, cap?.N), T: grow(need.T, cap?.T), P: grow(need.P, cap?.P) };
      sizes.P = Math.max(sizes.P, sizes.T * sizes.T);
      const bufs: Float32Array[] = [];
      layoutWorkspace(this.facts, this.embRows, loraRank, 1, sizes.T, sizes.N, sizes.P, (n) => {
        const a = this.kernels.alloc(n);
        bufs.push(a);
        return a;
      });
      this.cap = { ...sizes, rank: loraRank, bufs };
    }
    let i = 0;
    const bufs = this.cap!.bufs;
    this.ws = layoutWorkspace(this.facts, this.embRows, loraRank, B, T, need.N, need.P, (n) =>
      bufs[i++]!.subarray(0, n),
    );
    return this.ws;
  }
}

/** The buffer layout of a workspace (N = B·T tokens, P = B·T² attention entries per head group). */
function layoutWorkspace(
  f: MptFacts,
  embRows: number,
  loraRank: number,
  B: number,
  T: number,
  N: number,
  P: number,
  A: (n: number) => Float32Array,
): Workspace {
  const d = f.dModel,
    kvd = f.kvDim,
    Q = f.qkvDim,
    hid = f.ffnHidden,
    H = f.nHeads;
  const r = loraRank;
  const layers: LayerActs[] = [];
  for (let l = 0; l < f.nLayers; l++) {
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
      qPre: A(f.qkLn ? N * d : 0),
      kPre: A(f.qkLn ? N * kvd : 0),
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
  const rows = embRows;
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
    attH1: A(f.headDim * T),
    attH2: A(f.headDim * T),
  };
}
