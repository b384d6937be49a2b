/**
 * The trainer's forward pass over a batch of B rows of T tokens (each row its own sequence, from
 * position 0), keeping in the workspace what the backward pass needs. The same steps as the
 * reference backend (backends/reference/forward.ts), with MosaicML's training-time facts from
 * model/facts.ts; weights are read through the parameter tree, never by name.
 */
import { InputError } from '../errors.js';
import { alibiBias, kvHeadOf, positionIds } from '../model/facts.js';
import type { LinearOf, NormOf } from '../model/weight-tree.js';
import { NORM_OPS, geluForward } from './ops.js';
import type { Param } from './params.js';
import type { TrainState } from './state.js';
import type { LayerActs, Workspace } from './workspace.js';

/** y = x Wᵀ + b (+ LoRA), x [N, in]; saves x·Aᵀ in `loraSave` when the weight has an adapter. */
export function linearForward(
  s: TrainState,
  ws: Workspace,
  y: Float32Array,
  x: Float32Array,
  lin: LinearOf<Param>,
  N: number,
  o: number,
  i: number,
  loraSave?: Float32Array,
): void {
  s.kernels.matmul(y, x, lin.weight.data, N, o, i, { transB: true });
  const b = lin.bias?.data;
  if (b)
    for (let n = 0; n < N; n++) {
      const off = n * o;
      for (let j = 0; j < o; j++) y[off + j]! += b[j]!;
    }
  const ad = lin.weight.adapter;
  if (ad && loraSave && s.lora) {
    const r = s.lora.rank,
      scale = s.lora.alpha / r;
    s.kernels.matmul(loraSave, x, ad.A.data, N, r, i, { transB: true });
    const tmp = ws.dLora;
    for (let k = 0; k < N * r; k++) tmp[k] = loraSave[k]! * scale;
    s.kernels.matmul(y, tmp, ad.B.data, N, o, r, { transB: true, accumulate: true });
  }
}

/** The norm of rows [N, dim] of x into y (model/facts.ts: LayerNorm or RMSNorm), saving mean and 1/std. */
export function normForward(
  s: TrainState,
  y: Float32Array,
  x: Float32Array,
  p: NormOf<Param>,
  N: number,
  dim: number,
  mean: Float32Array,
  rstd: Float32Array,
): void {
  const nf = s.facts.norm;
  NORM_OPS[nf.kind].forward(y, x, p.weight?.data ?? null, p.bias?.data ?? null, N, dim, nf.eps, mean, rstd);
}

/** Runs the blocks and norm_f; leaves the normalised final hidden states in ws.lnf. */
export function forwardBody(s: TrainState, ws: Workspace, inputs: Int32Array, B: number, T: number): void {
  const f = s.facts,
    W = s.tree;
  if (T > f.maxPositions) throw new InputError(`sequence of ${T} tokens exceeds max_seq_len ${f.maxPositions}`);
  const N = B * T,
    d = f.dModel,
    kvd = f.kvDim,
    Q = f.qkvDim,
    hid = f.ffnHidden;
  const wte = W.wte.data,
    wpe = W.wpe?.data;
  // Every row is a sequence of its own, without padding: positions 0 .. T-1.
  const positions = positionIds(f, 0, 0, T).positions;
  const x0 = ws.layers[0]?.x ?? ws.xOut;
  for (let n = 0; n < N; n++) {
    const id = inputs[n]!;
    if (id < 0 || id >= s.vocab.fullSize)
      throw new InputError(`token id ${id} is outside the vocabulary (${s.vocab.fullSize})`);
    const row = s.vocab.rowOf[id]!;
    x0.set(wte.subarray(row * d, row * d + d), n * d);
    if (wpe) {
      const pos = positions[n % T]!;
      for (let j = 0; j < d; j++) x0[n * d + j]! += wpe[pos * d + j]!;
    }
  }
  const clip = f.clipQkv,
    split = f.qkvSplit;
  for (let l = 0; l < f.nLayers; l++) {
    const la = ws.layers[l]!,
      P = W.blocks[l]!;
    const next = l + 1 < f.nLayers ? ws.layers[l + 1]!.x : ws.xOut;
    normForward(s, la.ln1, la.x, P.norm1, N, d, la.ln1Mean, la.ln1Rstd);
    linearForward(s, ws, la.qkv, la.ln1, P.wqkv, N, Q, d, la.loraWqkv);
    // Split (and clip) the fused projection into q, k, v.
    const qDst = f.qkLn ? la.qPre : la.q,
      kDst = f.qkLn ? la.kPre : la.k;
    for (let n = 0; n < N; n++) {
      const o = n * Q;
      for (let j = 0; j < Q; j++) {
        let v = la.qkv[o + j]!;
        if (clip !== null) v = Math.min(Math.max(v, -clip), clip);
        if (j < split.k) qDst[n * d + j] = v;
        else if (j < split.v) kDst[n * kvd + j - split.k] = v;
        else la.v[n * kvd + j - split.v] = v;
      }
    }
    if (f.qkLn) {
      normForward(s, la.q, la.qPre, P.qLn!, N, d, la.qMean, la.qRstd);
      normForward(s, la.k, la.kPre, P.kLn!, N, kvd, la.kMean, la.kRstd);
    }
    attentionForward(s, ws, la, B, T);
    linearForward(s, ws, la.h, la.ctx, P.outProj, N, d, d, la.loraOut);
    for (let k = 0; k < N * d; k++) la.h[k]! += la.x[k]!;
    normForward(s, la.ln2, la.h, P.norm2, N, d, la.ln2Mean, la.ln2Rstd);
    linearForward(s, ws, la.up, la.ln2, P.upProj, N, hid, d, la.loraUp);
    geluForward(la.act, la.up, N * hid, la.cdf);
    linearForward(s, ws, next, la.act, P.downProj, N, d, hid, la.loraDown);
    for (let k = 0; k < N * d; k++) next[k]! += la.h[k]!;
  }
  normForward(s, ws.lnf, ws.xOut, W.normF, N, d, ws.lnfMean, ws.lnfRstd);
}

/**
 * Causal (ALiBi) attention per (row, head) with GEMMs on per-head slices: S = q kᵀ, row softmax,
 * ctx = P v. Query head h reads K/V head kvHeadOf(h). P is kept for the backward pass.
 */
function attentionForward(s: TrainState, ws: Workspace, la: LayerActs, B: number, T: number): void {
  const K = s.kernels,
    f = s.facts,
    H = f.nHeads,
    hd = f.headDim,
    d = f.dModel,
    kvd = f.kvDim,
    scale = f.softmaxScale;
  const { q, k, v, probs, ctx } = la;
  const S = ws.attA,
    vT = ws.attH1;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = kvHeadOf(f, h),
        slope = f.slopes[h]!; // 0 without ALiBi
      const qOff = b * T * d + h * hd,
        kvOff = b * T * kvd + kh * hd;
      const pBase = (b * H + h) * T * T;
      K.gemmNT(S, 0, T, q, qOff, d, k, kvOff, kvd, T, T, hd, false);
      for (let i = 0; i < T; i++) {
        const r = i * T,
          pr = pBase + i * T;
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          const sc = S[r + j]! * scale + alibiBias(slope, j, T);
          S[r + j] = sc;
          if (sc > max) max = sc;
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
