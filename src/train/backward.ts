/**
 * The trainer's backward pass: from d loss / d norm_f output (ws.dx, loss.ts) back through the
 * blocks to the embeddings, accumulating every trainable parameter's gradient. Reverses
 * forward.ts step by step.
 */
import { kvHeadOf } from '../model/facts.js';
import type { LinearOf, NormOf } from '../model/weight-tree.js';
import { NORM_OPS, geluBackward } from './ops.js';
import type { Param } from './params.js';
import type { TrainState } from './state.js';
import type { LayerActs, Workspace } from './workspace.js';

/** Backward of linearForward: dx (+)= dy W (+ LoRA path); parameter gradients accumulate. */
function linearBackward(
  s: TrainState,
  ws: Workspace,
  dx: Float32Array,
  dy: Float32Array,
  x: Float32Array,
  lin: LinearOf<Param>,
  N: number,
  o: number,
  i: number,
  accumulateDx: boolean,
  loraSaved?: Float32Array,
): void {
  const K = s.kernels;
  const dW = lin.weight.grad,
    db = lin.bias?.grad;
  if (dW) K.matmul(dW, dy, x, o, i, N, { transA: true, accumulate: true });
  if (db)
    for (let n = 0; n < N; n++) {
      const off = n * o;
      for (let j = 0; j < o; j++) db[j]! += dy[off + j]!;
    }
  K.matmul(dx, dy, lin.weight.data, N, i, o, { accumulate: accumulateDx });
  const ad = lin.weight.adapter;
  if (ad && loraSaved && s.lora) {
    const r = s.lora.rank,
      scale = s.lora.alpha / r;
    const dA = ad.A.grad,
      dB = ad.B.grad;
    const tmp = ws.dLora;
    // y += s · (x Aᵀ) Bᵀ  ⇒  dB += s · dyᵀ (x Aᵀ);  d(x Aᵀ) = s · dy B;  dA += d(x Aᵀ)ᵀ x;  dx += d(x Aᵀ) A
    if (dB) {
      for (let k = 0; k < N * r; k++) tmp[k] = loraSaved[k]! * scale;
      K.matmul(dB, dy, tmp, o, r, N, { transA: true, accumulate: true });
    }
    K.matmul(tmp, dy, ad.B.data, N, r, o);
    for (let k = 0; k < N * r; k++) tmp[k]! *= scale;
    if (dA) K.matmul(dA, tmp, x, r, i, N, { transA: true, accumulate: true });
    K.matmul(dx, tmp, ad.A.data, N, i, r, { accumulate: true });
  }
}

/** Backward of normForward: dx (+)= d/dx, weight and bias gradients accumulate. */
function normBackward(
  s: TrainState,
  dx: Float32Array,
  dy: Float32Array,
  x: Float32Array,
  p: NormOf<Param>,
  N: number,
  dim: number,
  mean: Float32Array,
  rstd: Float32Array,
  accumulate: boolean,
): void {
  NORM_OPS[s.facts.norm.kind].backward(
    dx,
    dy,
    x,
    p.weight?.data ?? null,
    p.weight?.grad ?? null,
    p.bias?.grad ?? null,
    N,
    dim,
    mean,
    rstd,
    accumulate,
  );
}

/** Backward of attention: dq, dk, dv from dctx. */
function attentionBackward(
  s: TrainState,
  ws: Workspace,
  la: LayerActs,
  dctx: Float32Array,
  dq: Float32Array,
  dk: Float32Array,
  dv: Float32Array,
  B: number,
  T: number,
): void {
  const K = s.kernels,
    f = s.facts,
    H = f.nHeads,
    hd = f.headDim,
    d = f.dModel,
    kvd = f.kvDim,
    scale = f.softmaxScale;
  const { q, k, v, probs } = la;
  dk.fill(0);
  dv.fill(0);
  const dP = ws.attA,
    tT = ws.attB,
    h1 = ws.attH1,
    h2 = ws.attH2;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const kh = kvHeadOf(f, h);
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

/** From ws.dx (d loss / d lnf) to every parameter gradient. */
export function backwardBody(s: TrainState, ws: Workspace, inputs: Int32Array): void {
  const f = s.facts,
    W = s.tree,
    N = ws.N,
    B = ws.B,
    T = ws.T;
  const d = f.dModel,
    kvd = f.kvDim,
    Q = f.qkvDim,
    hid = f.ffnHidden,
    split = f.qkvSplit;
  const clip = f.clipQkv;
  // ws.dx holds d/d lnf; go through norm_f into the residual stream gradient (ws.dh).
  normBackward(s, ws.dh, ws.dx, ws.xOut, W.normF, N, d, ws.lnfMean, ws.lnfRstd, false);
  const dRes = ws.dh;
  for (let l = f.nLayers - 1; l >= 0; l--) {
    const la = ws.layers[l]!,
      P = W.blocks[l]!;
    // MLP: x' = h + down(gelu(up(norm_2(h)))). dRes = d x'.
    linearBackward(s, ws, ws.dHid, dRes, la.act, P.downProj, N, d, hid, false, la.loraDown);
    geluBackward(ws.dHid2, ws.dHid, la.up, la.cdf, N * hid);
    const dLn2 = ws.dTmp.subarray(0, N * d);
    linearBackward(s, ws, dLn2, ws.dHid2, la.ln2, P.upProj, N, hid, d, false, la.loraUp);
    // d h = dRes + norm_2 backward
    normBackward(s, dRes, dLn2, la.h, P.norm2, N, d, la.ln2Mean, la.ln2Rstd, true);
    // Attention: h = x + out(attn(norm_1(x))).
    linearBackward(s, ws, ws.dCtx, dRes, la.ctx, P.outProj, N, d, d, false, la.loraOut);
    attentionBackward(s, ws, la, ws.dCtx, ws.dq, ws.dk, ws.dv, B, T);
    let dqPre = ws.dq,
      dkPre = ws.dk;
    if (f.qkLn) {
      dqPre = ws.dCtx; // free now
      normBackward(s, dqPre, ws.dq, la.qPre, P.qLn!, N, d, la.qMean, la.qRstd, false);
      dkPre = ws.dTmp.subarray(0, N * kvd);
      normBackward(s, dkPre, ws.dk, la.kPre, P.kLn!, N, kvd, la.kMean, la.kRstd, false);
    }
    for (let n = 0; n < N; n++) {
      const o = n * Q;
      for (let j = 0; j < Q; j++) {
        let g =
          j < split.k ? dqPre[n * d + j]! : j < split.v ? dkPre[n * kvd + j - split.k]! : ws.dv[n * kvd + j - split.v]!;
        if (clip !== null) {
          const raw = la.qkv[o + j]!;
          if (raw < -clip || raw > clip) g = 0;
        }
        ws.dQkv[o + j] = g;
      }
    }
    const dLn1 = ws.dTmp.subarray(0, N * d);
    linearBackward(s, ws, dLn1, ws.dQkv, la.ln1, P.wqkv, N, Q, d, false, la.loraWqkv);
    normBackward(s, dRes, dLn1, la.x, P.norm1, N, d, la.ln1Mean, la.ln1Rstd, true);
  }
  const dWte = W.wte.grad;
  if (dWte) {
    for (let n = 0; n < N; n++) {
      const row = s.vocab.rowOf[inputs[n]!]!;
      for (let j = 0; j < d; j++) dWte[row * d + j]! += dRes[n * d + j]!;
    }
  }
  const dWpe = W.wpe?.grad;
  if (dWpe)
    for (let n = 0; n < N; n++) {
      const t = n % T;
      for (let j = 0; j < d; j++) dWpe[t * d + j]! += dRes[n * d + j]!;
    }
}
