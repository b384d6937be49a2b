/**
 * The tied LM head and the loss: next-token cross-entropy with an ignore index, over a compact
 * vocabulary's rows (vocab.ts: the shared row counts m times in the softmax), in chunks of
 * HEAD_CHUNK rows; with gradients, d loss / d norm_f output into ws.dx and the head's gradient.
 */
import { InputError } from '../errors.js';
import type { TrainState } from './state.js';
import { HEAD_CHUNK, type Workspace } from './workspace.js';

export const IGNORE_INDEX = -100;

/** One batch of B rows of T tokens; targets use IGNORE_INDEX for positions without a loss. */
export interface Batch {
  inputs: Int32Array;
  targets: Int32Array;
  B: number;
  T: number;
}

export interface LossResult {
  /** Σ cross-entropy over the positions with a target. */
  lossSum: number;
  /** Number of positions with a target. */
  count: number;
}

/** Full-vocabulary logits [B·T, V] of the final hidden states in ws.lnf. */
export function fullLogits(st: TrainState, ws: Workspace): Float32Array {
  const d = st.facts.dModel,
    V = st.vocab.fullSize,
    rows = st.vocab.idOf.length,
    N = ws.N;
  const small = new Float32Array(N * rows);
  st.kernels.matmul(small, ws.lnf, st.tree.lmHead.data, N, rows, d, { transB: true });
  const s = st.facts.logitScale;
  const out = new Float32Array(N * V);
  for (let n = 0; n < N; n++)
    for (let id = 0; id < V; id++) out[n * V + id] = small[n * rows + st.vocab.rowOf[id]!]! * s;
  return out;
}

/** LM head + cross-entropy in chunks of rows; fills ws.dx with d loss / d lnf when withGrad. */
export function lmHeadLoss(
  st: TrainState,
  ws: Workspace,
  targets: Int32Array,
  lossScale: number,
  withGrad: boolean,
): LossResult {
  const f = st.facts,
    d = f.dModel,
    N = ws.N;
  const rows = st.vocab.idOf.length,
    m = st.vocab.shared,
    sharedRow = m > 0 ? rows - 1 : -1;
  const W = st.tree.lmHead.data,
    dW = withGrad ? st.tree.lmHead.grad : null;
  const s = f.logitScale;
  let savedShared: Float32Array | null = null;
  if (dW && m > 0) savedShared = dW.slice(sharedRow * d, sharedRow * d + d);
  let lossSum = 0,
    count = 0;
  for (let r0 = 0; r0 < N; r0 += HEAD_CHUNK) {
    const n = Math.min(HEAD_CHUNK, N - r0);
    const hChunk = ws.lnf.subarray(r0 * d, (r0 + n) * d);
    const L = ws.logits.subarray(0, n * rows),
      dL = ws.dLogits.subarray(0, n * rows);
    st.kernels.matmul(L, hChunk, W, n, rows, d, { transB: true });
    let any = false;
    for (let r = 0; r < n; r++) {
      const t = targets[r0 + r]!;
      const o = r * rows;
      if (t === IGNORE_INDEX) {
        if (withGrad) dL.fill(0, o, o + rows);
        continue;
      }
      if (t < 0 || t >= st.vocab.fullSize) throw new InputError(`target id ${t} is outside the vocabulary`);
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
      const tr = st.vocab.rowOf[t]!;
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
      st.kernels.matmul(dh, dL, W, n, d, rows);
      if (dW) st.kernels.matmul(dW, dL, hChunk, rows, d, n, { transA: true, accumulate: true });
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
