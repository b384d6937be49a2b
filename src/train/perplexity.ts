/**
 * Perplexity of a model on a text file, by sliding windows.
 *
 * Method (exactly): the file is tokenized as training data is (documents split on
 * `<|endoftext|>`, EOS appended to each; a file without separators is one document followed by
 * EOS), giving n tokens. Windows of L = max_seq_len tokens start at 0, S, 2S, ... (stride S,
 * default L/2) until one reaches the end. Every token from position 1 to n−1 is predicted exactly
 * once, in the first window that contains it past the part an earlier window already scored, so
 * each prediction sees at least L − S tokens of context (fewer only in the first window).
 * Perplexity = exp(mean negative log-likelihood over those n − 1 predictions), computed with the
 * full-vocabulary softmax in f64 from f32 logits.
 *
 * Rows of the tied embedding that are bitwise identical (the unused rows of a model trained with
 * a compact vocabulary) are grouped, which changes no number and skips most of the LM head.
 */
import { InputError } from '../errors.js';
import type { Kernels } from './kernels.js';
import { IGNORE_INDEX, TrainModel, compactVocab } from './model.js';

/** Groups the largest set of identical embedding rows (≥ 2) into one shared row; returns a new model. */
export function compactIdenticalRows(model: TrainModel, kernels: Kernels): TrainModel {
  const d = model.config.dModel,
    V = model.vocab.fullSize;
  const w = model.param('transformer.wte.weight').data;
  if (model.vocab.shared > 0 || w.length !== V * d) return model;
  const groups = new Map<string, number[]>();
  const bytes = new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  for (let id = 0; id < V; id++) {
    const key = Buffer.from(bytes.subarray(id * d * 4, (id + 1) * d * 4)).toString('base64');
    let g = groups.get(key);
    if (!g) {
      g = [];
      groups.set(key, g);
    }
    g.push(id);
  }
  let best: number[] = [];
  for (const g of groups.values()) if (g.length > best.length) best = g;
  if (best.length < 2) return model;
  const shared = new Set(best.slice(1)); // keep the first id of the group as an ordinary row
  const used: number[] = [];
  for (let id = 0; id < V; id++) if (!shared.has(id)) used.push(id);
  // compactVocab's shared row stands for every id not in `used`; those are the duplicates.
  const vocab = compactVocab(V, used);
  const out = new TrainModel(model.config, kernels, vocab);
  for (const p of out.params) {
    if (p.name === 'transformer.wte.weight') {
      vocab.idOf.forEach((id, r) => {
        p.data.set(w.subarray(id * d, id * d + d), r * d);
      });
    } else p.data.set(model.param(p.name).data);
  }
  return out;
}

export interface PerplexityResult {
  perplexity: number;
  tokens: number;
  nll: number;
  windows: number;
  windowLength: number;
  stride: number;
}

export interface PerplexityOptions {
  windowLength?: number;
  stride?: number;
  /** Windows per forward pass. */
  batch?: number;
  /** Called after each forward pass with the predictions scored so far and their total (n − 1). */
  onProgress?: (scored: number, total: number) => void;
}

export function slidingWindowPerplexity(
  model: TrainModel,
  tokens: Int32Array,
  opts: PerplexityOptions = {},
): PerplexityResult {
  const L = Math.min(opts.windowLength ?? model.config.maxSeqLen, model.config.maxSeqLen);
  const S = opts.stride ?? Math.max(1, Math.floor(L / 2));
  if (S < 1 || S > L) throw new InputError(`stride must be between 1 and the window length ${L}`);
  const n = tokens.length;
  if (n < 2) throw new InputError('the text has fewer than 2 tokens: nothing to predict');
  // Windows and, per window, the first position (within the window) whose next token it scores.
  const wins: Array<{ start: number; len: number; from: number }> = [];
  let scoredUpTo = 0; // tokens[0..scoredUpTo] have been predicted (token 0 never is)
  for (let start = 0; ; start += S) {
    const len = Math.min(L, n - start);
    const end = start + len - 1; // last token index in the window
    if (end > scoredUpTo) {
      wins.push({ start, len, from: Math.max(0, scoredUpTo - start) });
      scoredUpTo = end;
    }
    if (start + len >= n) break;
  }
  const batch = opts.batch ?? 4;
  let nll = 0,
    count = 0;
  for (let i = 0; i < wins.length; i += batch) {
    const group = wins.slice(i, i + batch);
    // Windows of one batch share T; shorter (final) windows run alone.
    const sameLen = group.filter((w) => w.len === group[0]!.len);
    const rest = group.slice(sameLen.length);
    for (const g of [sameLen, ...rest.map((w) => [w])]) {
      if (g.length === 0) continue;
      const T = g[0]!.len,
        B = g.length;
      const inputs = new Int32Array(B * T),
        targets = new Int32Array(B * T).fill(IGNORE_INDEX);
      g.forEach((w, b) => {
        inputs.set(tokens.subarray(w.start, w.start + T), b * T);
        for (let t = w.from; t < T - 1; t++) targets[b * T + t] = tokens[w.start + t + 1]!;
      });
      const r = model.step({ inputs, targets, B, T }, 0, false);
      nll += r.lossSum;
      count += r.count;
      opts.onProgress?.(count, n - 1);
    }
  }
  if (count !== n - 1) throw new Error(`internal: scored ${count} of ${n - 1} tokens`);
  return {
    perplexity: Math.exp(nll / count),
    tokens: count,
    nll: nll / count,
    windows: wins.length,
    windowLength: L,
    stride: S,
  };
}
