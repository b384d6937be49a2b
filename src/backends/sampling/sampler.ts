/**
 * Picking the next token from a row of logits: penalties, temperature, top-k, top-p, min-p, and a
 * seeded PRNG so that a seed reproduces a sampled run exactly. One `Sampler` per sequence (it
 * owns the random state), reusable by any loop that has logits: the single-sequence generator
 * and the server's continuous batching alike.
 *
 * Definitions (the order is Hugging Face transformers' logits-processor order):
 * 1. Ids at or past `vocabLimit` and `bannedIds` are removed (MPT-7B pads its 50,277-token
 *    vocabulary to 50,432 embedding rows; those rows are never a token).
 * 2. `logitBias[id]` is added.
 * 3. Repetition penalty (HF `RepetitionPenaltyLogitsProcessor`, over every token of the history,
 *    prompt included): a logit of a token that occurs is divided by the penalty when positive and
 *    multiplied by it when negative.
 * 4. Presence and frequency penalties (as OpenAI defines them, over the generated tokens only):
 *    `logit -= count · frequency_penalty + (count > 0) · presence_penalty`.
 * 5. Temperature 0 (or `greedy`) takes the argmax of the penalised logits (lowest id on ties).
 *    Otherwise logits are divided by the temperature, then filtered: top-k (ties with the k-th
 *    value are kept, as HF does), top-p (the smallest set of most likely tokens whose probability
 *    reaches top_p; a token is kept when the mass of the tokens ranked above it is < top_p),
 *    min-p (tokens with probability < min_p · the top probability are dropped); at least one
 *    token always stays. Then one token is drawn from the renormalised distribution.
 */
import { InputError } from '../../errors.js';
import { DRAW_BLOCK } from './wasm-kernels.js';
import { expF32, f32Ceil, samplingKernels, type SamplingKernels } from './weights.js';

export { argmax } from './weights.js';

/** Options of the sampler. Every field is optional; see the module comment for the semantics. */
export interface SamplingOptions {
  /** 0 means greedy. Default 0.8. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 = off). Default 40. */
  topK?: number;
  /** Nucleus sampling mass (1 = off). Default 0.95. */
  topP?: number;
  /** Drop tokens below min_p × the top probability (0 = off). Default 0.05. */
  minP?: number;
  /** HF repetition penalty (1 = off). Default 1. */
  repetitionPenalty?: number;
  /** OpenAI presence penalty (0 = off). Default 0. */
  presencePenalty?: number;
  /** OpenAI frequency penalty (0 = off). Default 0. */
  frequencyPenalty?: number;
  /**
   * Only the last N tokens of the history count for the penalties (0 or undefined = all of it).
   */
  penaltyLastN?: number;
  /** Seed of the PRNG; the same seed and inputs give the same tokens. Default: random. */
  seed?: number;
  /** Always take the argmax (same as temperature 0). */
  greedy?: boolean;
  /** Ids >= vocabLimit are never chosen (default: the whole logits row). */
  vocabLimit?: number;
  /** Ids that are never chosen. */
  bannedIds?: Iterable<number>;
  /** Added to the logits of these ids before anything else (OpenAI `logit_bias`). */
  logitBias?: Record<number, number> | Map<number, number>;
}

/** The fields of SamplingOptions (what a Sampler keeps of the options it is given). */
const SAMPLING_KEYS = [
  'temperature',
  'topK',
  'topP',
  'minP',
  'repetitionPenalty',
  'presencePenalty',
  'frequencyPenalty',
  'penaltyLastN',
  'seed',
  'greedy',
  'vocabLimit',
  'bannedIds',
  'logitBias',
] as const satisfies readonly (keyof SamplingOptions)[];

// Every field of SamplingOptions is listed (a new field that is not would be dropped silently).
const everyKeyListed: [Exclude<keyof SamplingOptions, (typeof SAMPLING_KEYS)[number]>] extends [never] ? true : never =
  true;
void everyKeyListed;

/** The defaults the CLI and the library use when an option is not given. */
export const DEFAULT_SAMPLING = {
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
} as const;

/**
 * xoshiro128** (Blackman & Vigna), seeded through splitmix32: small, fast and well distributed;
 * its state is four 32-bit words, so runs are reproducible across platforms.
 */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = ((Math.trunc(seed) >>> 0) ^ Math.imul(Math.floor(seed / 2 ** 32) >>> 0, 0x9e3779b9)) >>> 0;
    const splitmix = () => {
      x = (x + 0x9e3779b9) | 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = splitmix();
    this.s1 = splitmix();
    this.s2 = splitmix();
    this.s3 = splitmix();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** Next 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    const hi = this.nextU32() >>> 5; // 27 bits
    const lo = this.nextU32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A random 32-bit seed from the platform's cryptographic source (used when none is given). */
export function randomSeed(): number {
  const a = new Uint32Array(1);
  globalThis.crypto.getRandomValues(a);
  return a[0]!;
}

function checkRange(name: string, v: number | undefined, lo: number, hi: number, loOpen = false): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || Number.isNaN(v) || v < lo || v > hi || (loOpen && v === lo)) {
    throw new InputError(`${name} must be ${loOpen ? '>' : '>='} ${lo} and <= ${hi}, got ${v}`);
  }
}

/** Validates sampling options; throws InputError naming the first bad one. */
export function validateSamplingOptions(o: SamplingOptions): void {
  checkRange('temperature', o.temperature, 0, 100);
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0))
    throw new InputError(`top-k must be an integer >= 0, got ${o.topK}`);
  checkRange('top-p', o.topP, 0, 1, true);
  checkRange('min-p', o.minP, 0, 1);
  checkRange('repetition penalty', o.repetitionPenalty, 0, 100, true);
  checkRange('presence penalty', o.presencePenalty, -2, 2);
  checkRange('frequency penalty', o.frequencyPenalty, -2, 2);
  if (o.penaltyLastN !== undefined && (!Number.isInteger(o.penaltyLastN) || o.penaltyLastN < 0)) {
    throw new InputError(`penalty window must be an integer >= 0, got ${o.penaltyLastN}`);
  }
  if (o.seed !== undefined && !Number.isFinite(o.seed)) throw new InputError(`seed must be a number, got ${o.seed}`);
  if (o.vocabLimit !== undefined && (!Number.isInteger(o.vocabLimit) || o.vocabLimit < 1))
    throw new InputError(`vocabLimit must be a positive integer, got ${o.vocabLimit}`);
}

/**
 * Steps 1–4 of the module comment for one request, as edits of single logits: the ids at or past
 * `limit` become -Infinity, and each id in `ids` (ascending) goes through its own steps in order
 * (ban, each bias entry, repetition penalty, presence/frequency penalty). Every step reads and
 * writes one float32 logit, so applying the edits to any range of a row gives that range of the
 * whole penalised row, bit for bit: the worker threads apply them to the chunks of the LM head
 * they compute (backends/wasm/executor.ts), `applyPenalties` to a whole row.
 */
export interface PenaltyEdits {
  /** Ids >= limit are masked. */
  limit: number;
  /** Edited ids, ascending, unique, in [0, V). */
  ids: Int32Array;
  /** Per edited id: 1 if banned. */
  banned: Uint8Array;
  /** Per edited id, its bias entries are biases[biasAt[j] .. biasAt[j + 1]) (length ids + 1). */
  biasAt: Int32Array;
  biases: number[];
  /** Repetition penalty (1 = off) and, per edited id, 1 if it occurs in the penalty window. */
  rep: number;
  seen: Uint8Array;
  /** Presence / frequency penalties and, per edited id, its count among the generated tokens in the window. */
  pres: number;
  freq: number;
  counts: Int32Array;
}

const NO_EDITS = {
  ids: new Int32Array(0),
  banned: new Uint8Array(0),
  biasAt: new Int32Array(1),
  biases: [],
  seen: new Uint8Array(0),
  counts: new Int32Array(0),
} as const satisfies Partial<PenaltyEdits>;

/** An id a logit row of V entries can be indexed with (integers only: a typed array ignores other keys). */
function rowId(v: unknown, V: number): number {
  const id = Number(v);
  return Number.isInteger(id) && id >= 0 && id < V ? id | 0 : -1;
}

/**
 * The edits of options `o` for rows of V logits (see PenaltyEdits). `history` is every token so
 * far, of which those from `promptLength` on were generated (the presence and frequency
 * penalties count only those).
 */
export function penaltyEdits(
  history: ArrayLike<number>,
  promptLength: number,
  o: SamplingOptions,
  V: number,
): PenaltyEdits {
  const limit = Math.min(o.vocabLimit ?? V, V);
  const rep = o.repetitionPenalty ?? 1;
  const pres = o.presencePenalty ?? 0;
  const freq = o.frequencyPenalty ?? 0;
  const penalties = rep !== 1 || pres !== 0 || freq !== 0;
  // The common case, once per step and thread: nothing but (maybe) the mask.
  if (!o.bannedIds && !o.logitBias && !penalties) return { limit, ...NO_EDITS, rep, pres, freq };
  // Per id: [banned, bias entries, seen, count], gathered in any order, then sorted by id.
  type Edit = { banned: boolean; biases: number[]; seen: boolean; count: number };
  const edits = new Map<number, Edit>();
  const edit = (id: number): Edit => {
    const had = edits.get(id);
    if (had) return had;
    const e: Edit = { banned: false, biases: [], seen: false, count: 0 };
    edits.set(id, e);
    return e;
  };
  if (o.bannedIds)
    for (const v of o.bannedIds) {
      const id = rowId(v, V);
      if (id >= 0) edit(id).banned = true;
    }
  if (o.logitBias) {
    const entries = o.logitBias instanceof Map ? o.logitBias.entries() : Object.entries(o.logitBias);
    for (const [k, b] of entries) {
      const id = rowId(k, V);
      if (id >= 0 && id < limit) edit(id).biases.push(b);
    }
  }
  if (penalties) {
    const start = o.penaltyLastN ? Math.max(0, history.length - o.penaltyLastN) : 0;
    if (rep !== 1)
      for (let i = start; i < history.length; i++) {
        const id = rowId(history[i], V);
        if (id >= 0) edit(id).seen = true;
      }
    if (pres !== 0 || freq !== 0)
      for (let i = Math.max(start, promptLength); i < history.length; i++) {
        const id = rowId(history[i], V);
        if (id >= 0) edit(id).count++;
      }
  }
  const ids = Int32Array.from(edits.keys()).sort();
  const n = ids.length;
  const e: PenaltyEdits = {
    limit,
    ids,
    banned: new Uint8Array(n),
    biasAt: new Int32Array(n + 1),
    biases: [],
    rep,
    seen: new Uint8Array(n),
    pres,
    freq,
    counts: new Int32Array(n),
  };
  ids.forEach((id, j) => {
    const d = edits.get(id)!;
    e.banned[j] = d.banned ? 1 : 0;
    e.biases.push(...d.biases);
    e.biasAt[j + 1] = e.biases.length;
    e.seen[j] = d.seen ? 1 : 0;
    e.counts[j] = d.count;
  });
  return e;
}

/** True when the edits change no logit of a row of V (no mask, no edited id). */
export function noEdits(e: PenaltyEdits, V: number): boolean {
  return e.limit >= V && e.ids.length === 0;
}

/** Applies the edits to row[n0 .. n1) in place (row indexed by token id). */
export function applyEdits(row: Float32Array, n0: number, n1: number, e: PenaltyEdits): void {
  if (e.limit < n1) row.fill(-Infinity, Math.max(n0, e.limit), n1);
  const ids = e.ids;
  // First edited id >= n0.
  let lo = 0,
    hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ids[mid]! < n0) lo = mid + 1;
    else hi = mid;
  }
  for (let j = lo; j < ids.length && ids[j]! < n1; j++) {
    const id = ids[j]!;
    if (e.banned[j]) row[id] = -Infinity;
    for (let b = e.biasAt[j]!; b < e.biasAt[j + 1]!; b++)
      if (Number.isFinite(row[id]!)) row[id] = row[id]! + e.biases[b]!;
    if (e.seen[j]) {
      const x = row[id]!;
      row[id] = x > 0 ? x / e.rep : x * e.rep;
    }
    const c = e.counts[j]!;
    if (c > 0) row[id] = row[id]! - c * e.freq - e.pres;
  }
}

/**
 * Applies masking, logit bias and the three penalties to a copy of the logits (steps 1–4 of the
 * module comment; see penaltyEdits for `history` and `promptLength`). Writes into `into` when it
 * has the logits' length (a buffer reused from call to call), else into a new array.
 */
export function applyPenalties(
  logits: Float32Array,
  history: ArrayLike<number>,
  promptLength: number,
  o: SamplingOptions,
  into?: Float32Array,
): Float32Array {
  const V = logits.length;
  const out = into && into.length === V ? into : new Float32Array(V);
  out.set(logits);
  applyEdits(out, 0, V, penaltyEdits(history, promptLength, o, V));
  return out;
}

/**
 * The kept tokens' weights for options `o` (steps 5 of the module comment, less the draw): each
 * filter amounts to a logit threshold (tokens at or above it stay, so ties at a boundary are all
 * kept, as HF keeps every score >= the k-th largest); the strictest wins. Weights are
 * e^((x - max) / T) in f32 (see sampling-weights.ts), the total in f64. The returned weights are
 * a view that the next call on this thread overwrites. Undefined when no logit is finite.
 * `loaded`: kernels whose row already holds `penalized`.
 */
function keptWeights(
  penalized: Float32Array,
  o: SamplingOptions,
  loaded?: SamplingKernels,
): { kernels: SamplingKernels; weights: Float32Array; total: number; threshold: number } | undefined {
  const temperature = o.temperature ?? DEFAULT_SAMPLING.temperature;
  const topK = o.topK ?? DEFAULT_SAMPLING.topK;
  const topP = o.topP ?? DEFAULT_SAMPLING.topP;
  const minP = o.minP ?? DEFAULT_SAMPLING.minP;
  const kernels = loaded ?? samplingKernels();
  if (!loaded) kernels.setRow(penalized);
  const { max: maxLogit, finite } = kernels.stats();
  if (finite === 0) return undefined;
  if (maxLogit === Infinity) {
    // An infinite logit (a +Infinity bias) wins outright: weight 1 for each such token.
    const weights = Float32Array.from(penalized, (v) => (v === Infinity ? 1 : 0));
    return { kernels, weights, total: weights.reduce((a, b) => a + b, 0), threshold: Infinity };
  }
  // Thresholds are found on the raw (penalised) logits: dividing by a positive temperature keeps
  // the order, and e^((x - max) / T) gives the tempered weights.
  const invT = Math.fround(1 / temperature);
  let threshold = -Infinity;
  if (topK > 0 && topK < finite) threshold = kernels.kth(topK);
  if (topP < 1) {
    // Top-p's mass is over the tokens top-k kept (HF applies top-k first).
    const { weights, total } = kernels.weights(f32Ceil(threshold), maxLogit, invT);
    const cut = topPCut(penalized, weights, total, penalized.length, topP, maxLogit, invT);
    if (cut > threshold) threshold = cut;
  }
  if (minP > 0) {
    // p_i >= min_p * p_max  <=>  (x_i - max) / T >= ln(min_p).
    const cut = maxLogit + temperature * Math.log(minP);
    if (cut > threshold) threshold = cut;
  }
  const { weights, total } = kernels.weights(f32Ceil(threshold), maxLogit, invT);
  return { kernels, weights, total, threshold };
}

/**
 * The logit of the last token top-p keeps: walking the tokens from the most likely, a token is
 * kept while the mass ranked above it is < top_p · total (HF drops tokens whose cumulative mass
 * from the bottom is <= 1 - top_p). Only tokens of weight >= (1 - top_p) · total / V can be
 * reached (the others together weigh less than (1 - top_p) · total), so only those are sorted.
 * `logits[i]` and `weights[i]` are token i's (or, for a candidate list, candidate i's); V is the
 * vocabulary size.
 */
function topPCut(
  logits: Float32Array,
  weights: Float32Array,
  total: number,
  V: number,
  topP: number,
  maxLogit: number,
  invT: number,
): number {
  const floor = ((1 - topP) * total) / V;
  const reachable = (w: number) => w > 0 && w >= floor;
  let n = 0;
  for (let i = 0; i < logits.length; i++) if (reachable(weights[i]!)) n++;
  const sorted = new Float64Array(n);
  for (let i = 0, j = 0; i < logits.length; i++) if (reachable(weights[i]!)) sorted[j++] = logits[i]!;
  sorted.sort().reverse();
  const f = Math.fround;
  let above = 0;
  let i = 0;
  while (i < n && above < topP * total) {
    above += expF32(f(f(sorted[i]! - maxLogit) * invT));
    i++;
  }
  return sorted[Math.max(0, i - 1)] ?? -Infinity;
}

/** Top-k at most this large is sampled from its candidates alone (sparse path). */
const SPARSE_TOP_K = 4096;

/** Tokens that top-k kept: ids ascending and their penalised logits. */
interface Candidates {
  ids: Int32Array;
  x: Float32Array;
}

/**
 * The weights of the candidates >= threshold exactly as the dense kernels compute them for the
 * whole row (assembly/sampling.ts): the same f32 weights, per block of DRAW_BLOCK ids the f64
 * lane sums (lane = id mod 4) combined as (s0 + s1) + (s2 + s3), the total summed block by
 * block. Tokens that are not candidates weigh 0 there, and adding 0 changes no sum.
 */
function candidateWeights(
  c: Candidates,
  threshold: number,
  maxLogit: number,
  invT: number,
): { w: Float32Array; runs: number[]; sums: number[]; total: number } {
  const f = Math.fround;
  const n = c.ids.length;
  const w = new Float32Array(n);
  const runs: number[] = [];
  const sums: number[] = [];
  let total = 0;
  for (let i = 0; i < n; ) {
    const block = Math.floor(c.ids[i]! / DRAW_BLOCK);
    const lane = [0, 0, 0, 0];
    runs.push(i);
    for (; i < n && Math.floor(c.ids[i]! / DRAW_BLOCK) === block; i++) {
      const v = c.x[i]!;
      const e = v >= threshold ? expF32(f(f(v - maxLogit) * invT)) : 0;
      w[i] = e;
      lane[c.ids[i]! & 3]! += e;
    }
    const sb = lane[0]! + lane[1]! + (lane[2]! + lane[3]!);
    sums.push(sb);
    total += sb;
  }
  return { w, runs, sums, total };
}

/** The dense kernels' draw (assembly/sampling.ts sampling_draw) over candidate weights. */
function candidateDraw(c: Candidates, cw: ReturnType<typeof candidateWeights>, target: number): number {
  const n = c.ids.length;
  let acc = 0;
  for (let r = 0; r < cw.runs.length; r++) {
    const start = cw.runs[r]!,
      end = r + 1 < cw.runs.length ? cw.runs[r + 1]! : n;
    const next = acc + cw.sums[r]!;
    if (target < next) {
      let a = acc;
      for (let i = start; i < end; i++) {
        const wi = cw.w[i]!;
        if (wi > 0) {
          a += wi;
          if (target < a) return c.ids[i]!;
        }
      }
    }
    acc = next;
  }
  for (let i = n - 1; i >= 0; i--) if (cw.w[i]! > 0) return c.ids[i]!;
  return -1;
}

/**
 * Draws a token from the penalised row held by `kernels` (see `keptWeights`); `uniform()` gives
 * the u in [0, 1) of the draw (called once, and only when a draw is made). With a small top-k only the k candidates are weighed (kernels find the k-th
 * largest logit and gather the candidates; the rest is computed on them), giving exactly the
 * token the dense path gives. Undefined when no logit is finite; -1 when every kept token
 * weighs 0.
 */
function drawToken(
  penalized: Float32Array,
  o: SamplingOptions,
  kernels: SamplingKernels,
  uniform: () => number,
  sparse = true,
): number | undefined {
  const topK = o.topK ?? DEFAULT_SAMPLING.topK;
  if (sparse && topK > 0 && topK <= SPARSE_TOP_K) {
    const { max: maxLogit, finite } = kernels.stats();
    if (finite === 0) return undefined;
    if (maxLogit !== Infinity && topK < finite) {
      const temperature = o.temperature ?? DEFAULT_SAMPLING.temperature;
      const topP = o.topP ?? DEFAULT_SAMPLING.topP;
      const minP = o.minP ?? DEFAULT_SAMPLING.minP;
      const invT = Math.fround(1 / temperature);
      let threshold = kernels.kth(topK);
      const ids = kernels.gather(threshold).slice();
      const c: Candidates = { ids, x: Float32Array.from(ids, (id) => penalized[id]!) };
      if (topP < 1) {
        const cw = candidateWeights(c, f32Ceil(threshold), maxLogit, invT);
        const cut = topPCut(c.x, cw.w, cw.total, penalized.length, topP, maxLogit, invT);
        if (cut > threshold) threshold = cut;
      }
      if (minP > 0) {
        const cut = maxLogit + temperature * Math.log(minP);
        if (cut > threshold) threshold = cut;
      }
      const cw = candidateWeights(c, f32Ceil(threshold), maxLogit, invT);
      return candidateDraw(c, cw, uniform() * cw.total);
    }
  }
  const t = keptWeights(penalized, o, kernels);
  if (!t) return undefined;
  if (t.threshold === Infinity) return penalized.indexOf(Infinity);
  return t.kernels.draw(uniform() * t.total);
}

/** For tests: the token the sampler draws for uniform u, by the candidate path when it applies or always by the dense one. */
export function drawTokenForTest(
  penalized: Float32Array,
  o: SamplingOptions,
  u: number,
  sparse: boolean,
): number | undefined {
  const kernels = samplingKernels();
  kernels.setRow(penalized);
  return drawToken(penalized, o, kernels, () => u, sparse);
}

/**
 * The tokens left after temperature, top-k, top-p and min-p, in ascending id order, with their
 * renormalised probabilities: the distribution `Sampler.sample` draws from. Exposed for tests
 * and for callers that want the distribution.
 */
export function filteredDistribution(penalized: Float32Array, o: SamplingOptions): { ids: number[]; probs: number[] } {
  const t = keptWeights(penalized, o);
  if (!t) return { ids: [], probs: [] };
  const ids: number[] = [];
  const probs: number[] = [];
  for (let i = 0; i < penalized.length; i++) {
    const v = penalized[i]!;
    if (v > -Infinity && v >= t.threshold) {
      ids.push(i);
      probs.push(t.weights[i]! / t.total);
    }
  }
  return { ids, probs };
}

/**
 * Everything needed to choose one sequence's next token from its row of logits, away from the
 * `Sampler` that owns the random state: a backend's worker thread (or a GPU) can choose it right
 * after the forward pass (`ForwardOptions.sample`). Plain data (structured-cloneable).
 * `chooseToken(logits, request)` gives what `Sampler.sample` gives for the same row.
 */
export interface SampleRequest {
  options: SamplingOptions;
  /** Tokens so far (prompt and generated); only the penalties read it. */
  history: ArrayLike<number>;
  /** Where the generated tokens start in `history`. */
  promptLength: number;
  /** The u in [0, 1) of the draw (unused when greedy). */
  uniform: number;
}

/** True when options always take the argmax. */
export function greedyOptions(o: SamplingOptions): boolean {
  return o.greedy === true || (o.temperature ?? DEFAULT_SAMPLING.temperature) === 0;
}

/** True when a penalty reads the history (otherwise a request need not carry it). */
export function needsHistory(o: SamplingOptions): boolean {
  return (o.repetitionPenalty ?? 1) !== 1 || (o.presencePenalty ?? 0) !== 0 || (o.frequencyPenalty ?? 0) !== 0;
}

/** The token for a request (see SampleRequest); throws InputError when none can be chosen. */
export function chooseToken(logits: Float32Array, r: SampleRequest): number {
  // The penalised row is written straight into the sampling kernels' row.
  const kernels = samplingKernels();
  const penalized = applyPenalties(logits, r.history, r.promptLength, r.options, kernels.row(logits.length));
  if (greedyOptions(r.options)) {
    const id = kernels.argmax();
    if (id < 0) throw new InputError('no token can be chosen: every logit is masked or NaN');
    return id;
  }
  // Draws before anything else can use this thread's kernels (their row is a shared view).
  const id = drawToken(penalized, r.options, kernels, () => r.uniform);
  if (id === undefined) throw new InputError('no token can be chosen: every logit is masked or NaN');
  if (id < 0) throw new InputError('no token can be chosen: every kept token has zero weight');
  return id;
}

/**
 * Chooses next tokens for one sequence. Holds the options and the PRNG state; `sample` may be
 * called with logits from any backend or batch layout. Each sampled (not greedy) token takes one
 * uniform draw from the PRNG, whatever the row, so a seed gives the same tokens whether the row is
 * sampled here or by a backend from `request()`.
 */
export class Sampler {
  readonly options: Readonly<SamplingOptions>;
  /** The seed in use (given, or drawn at construction). */
  readonly seed: number;
  private readonly rng: Xoshiro128;

  constructor(options: SamplingOptions = {}) {
    validateSamplingOptions(options);
    // The sampling fields only, as plain data: a request is cloned to worker threads, and callers
    // pass wider option objects (generation options with callbacks, signals, tokenizers).
    const o: SamplingOptions = {};
    for (const k of SAMPLING_KEYS) if (options[k] !== undefined) (o as Record<string, unknown>)[k] = options[k];
    if (options.bannedIds) o.bannedIds = [...options.bannedIds];
    this.options = o;
    this.seed = options.seed ?? randomSeed();
    this.rng = new Xoshiro128(this.seed);
  }

  /** True when this sampler always takes the argmax. */
  get isGreedy(): boolean {
    return greedyOptions(this.options);
  }

  /**
   * The request for the next token (advances the PRNG by one draw unless greedy): pass it to
   * `chooseToken` or to a backend. `history` as for `sample`; it is copied only when a penalty
   * reads it.
   */
  request(history: ArrayLike<number> = [], promptLength = 0): SampleRequest {
    return {
      options: this.options,
      // A typed copy: cloned to a worker thread at memcpy speed, and immune to later pushes.
      history: needsHistory(this.options) ? Int32Array.from(history) : [],
      promptLength,
      uniform: this.isGreedy ? 0 : this.rng.nextFloat(),
    };
  }

  /**
   * Picks the next token id from one row of logits. `history` holds every token of the sequence
   * so far (prompt and generated), of which the generated ones start at `promptLength`.
   */
  sample(logits: Float32Array, history: ArrayLike<number> = [], promptLength = 0): number {
    return chooseToken(logits, this.request(history, promptLength));
  }
}

/** log softmax of a row of logits, in float64 (masked -Infinity entries stay -Infinity). */
export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i]! - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i]! - lse;
  return out;
}

/** Indices of the k largest values, largest first (ties: lowest index first; a NaN is kept where it falls). */
function topIds(v: ArrayLike<number>, k: number): number[] {
  const ids: number[] = [];
  if (k <= 0) return ids;
  // Keep a small sorted buffer: k is tiny compared with the vocabulary.
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (ids.length === k && x <= v[ids[k - 1]!]!) continue;
    let j = ids.length < k ? ids.length : k - 1;
    if (ids.length < k) ids.push(i);
    while (j > 0 && v[ids[j - 1]!]! < x) {
      ids[j] = ids[j - 1]!;
      j--;
    }
    ids[j] = i;
  }
  return ids;
}

/** One entry of `topLogprobs`. */
export interface TokenLogprob {
  id: number;
  logprob: number;
}

/**
 * The k most likely tokens of the model's distribution (log softmax of the raw logits, over ids
 * below `vocabLimit`), most likely first; also the log probability of `chosen` when given. This is
 * what an OpenAI-style `logprobs` / `top_logprobs` response reports. Within about 1e-7 of
 * `logSoftmax` (float32 exponentials, float64 sums); NaN logits are left out of the normaliser.
 */
export function topLogprobs(
  logits: Float32Array,
  k: number,
  options: { vocabLimit?: number; chosen?: number } = {},
): { top: TokenLogprob[]; chosen?: TokenLogprob } {
  const limit = Math.min(options.vocabLimit ?? logits.length, logits.length);
  const x = logits.subarray(0, limit);
  // The normaliser log Σ e^x from the sampling kernels (float32 e^(x - max), float64 sums: within
  // about 1e-7 of logSoftmax's float64 one, 10x faster than Math.exp over the vocabulary).
  const kernels = samplingKernels();
  kernels.setRow(x);
  const { max, finite } = kernels.stats();
  const lse = finite > 0 && max < Infinity ? max + Math.log(kernels.weights(-Infinity, max, 1).total) : NaN;
  // x - lse keeps the order of distinct float32 logits and their ties, so the k largest logits
  // are the k largest log probabilities, in the same order (ties: lowest id first). The kernels
  // find the k-th largest logit and the ids at or above it; only those are sorted.
  let ids: number[];
  if (k > 0 && k <= SPARSE_TOP_K && k < finite && max < Infinity) {
    ids = Array.from(kernels.gather(kernels.kth(k)));
    ids.sort((a, b) => x[b]! - x[a]! || a - b);
    ids.length = k;
  } else ids = topIds(x, k);
  let logprob = (i: number) => x[i]! - lse;
  if (!Number.isFinite(lse)) {
    // No finite logit, or an infinite one: exactly as logSoftmax gives them.
    const lp = logSoftmax(x);
    ids = topIds(lp, k);
    logprob = (i) => lp[i]!;
  }
  const result: { top: TokenLogprob[]; chosen?: TokenLogprob } = {
    top: ids.map((id) => ({ id, logprob: logprob(id) })),
  };
  if (options.chosen !== undefined && options.chosen >= 0 && options.chosen < limit)
    result.chosen = { id: options.chosen, logprob: logprob(options.chosen) };
  return result;
}
