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
import { InputError } from '../errors.js';

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
  if (o.topK !== undefined && (!Number.isInteger(o.topK) || o.topK < 0)) throw new InputError(`top-k must be an integer >= 0, got ${o.topK}`);
  checkRange('top-p', o.topP, 0, 1, true);
  checkRange('min-p', o.minP, 0, 1);
  checkRange('repetition penalty', o.repetitionPenalty, 0, 100, true);
  checkRange('presence penalty', o.presencePenalty, -2, 2);
  checkRange('frequency penalty', o.frequencyPenalty, -2, 2);
  if (o.penaltyLastN !== undefined && (!Number.isInteger(o.penaltyLastN) || o.penaltyLastN < 0)) {
    throw new InputError(`penalty window must be an integer >= 0, got ${o.penaltyLastN}`);
  }
  if (o.seed !== undefined && !Number.isFinite(o.seed)) throw new InputError(`seed must be a number, got ${o.seed}`);
  if (o.vocabLimit !== undefined && (!Number.isInteger(o.vocabLimit) || o.vocabLimit < 1)) throw new InputError(`vocabLimit must be a positive integer, got ${o.vocabLimit}`);
}

/**
 * Applies masking, logit bias and the three penalties to a copy of the logits (steps 1–4 of the
 * module comment). `history` is every token so far, of which those from `promptLength` on were
 * generated (the presence and frequency penalties count only those).
 */
export function applyPenalties(logits: Float32Array, history: ArrayLike<number>, promptLength: number, o: SamplingOptions): Float32Array {
  const V = logits.length;
  const out = new Float32Array(logits);
  const limit = Math.min(o.vocabLimit ?? V, V);
  for (let i = limit; i < V; i++) out[i] = -Infinity;
  if (o.bannedIds) for (const id of o.bannedIds) if (id >= 0 && id < V) out[id] = -Infinity;
  if (o.logitBias) {
    const entries = o.logitBias instanceof Map ? o.logitBias.entries() : Object.entries(o.logitBias).map(([k, v]) => [Number(k), v] as const);
    for (const [id, b] of entries) if (id >= 0 && id < limit && Number.isFinite(out[id]!)) out[id] = out[id]! + b;
  }
  const rep = o.repetitionPenalty ?? 1;
  const pres = o.presencePenalty ?? 0;
  const freq = o.frequencyPenalty ?? 0;
  if (rep === 1 && pres === 0 && freq === 0) return out;
  const start = o.penaltyLastN ? Math.max(0, history.length - o.penaltyLastN) : 0;
  if (rep !== 1) {
    const seen = new Set<number>();
    for (let i = start; i < history.length; i++) seen.add(history[i]!);
    for (const id of seen) {
      if (id < 0 || id >= V) continue;
      const x = out[id]!;
      out[id] = x > 0 ? x / rep : x * rep;
    }
  }
  if (pres !== 0 || freq !== 0) {
    const counts = new Map<number, number>();
    for (let i = Math.max(start, promptLength); i < history.length; i++) counts.set(history[i]!, (counts.get(history[i]!) ?? 0) + 1);
    for (const [id, c] of counts) {
      if (id < 0 || id >= V) continue;
      out[id] = out[id]! - c * freq - (c > 0 ? pres : 0);
    }
  }
  return out;
}

/** Index of the largest value (the lowest index among equal maxima); -1 when all are -Infinity or NaN. */
export function argmax(x: ArrayLike<number>): number {
  let best = -1;
  let bestVal = -Infinity;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v > bestVal) { bestVal = v; best = i; }
  }
  return best;
}

/** The k-th largest finite value of x (1-based k <= number of finite values). */
function kthLargest(x: Float32Array, k: number): number {
  const buf = new Float64Array(k).fill(-Infinity);
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (!(v > buf[k - 1]!)) continue;
    let j = k - 1;
    while (j > 0 && buf[j - 1]! < v) { buf[j] = buf[j - 1]!; j--; }
    buf[j] = v;
  }
  return buf[k - 1]!;
}

/** The logit threshold that temperature, top-k, top-p and min-p amount to (see filteredDistribution). */
function samplingThreshold(penalized: Float32Array, o: SamplingOptions): { threshold: number; maxLogit: number; temperature: number } | undefined {
  const temperature = o.temperature ?? DEFAULT_SAMPLING.temperature;
  const topK = o.topK ?? DEFAULT_SAMPLING.topK;
  const topP = o.topP ?? DEFAULT_SAMPLING.topP;
  const minP = o.minP ?? DEFAULT_SAMPLING.minP;
  let finite = 0;
  let maxLogit = -Infinity;
  for (let i = 0; i < penalized.length; i++) {
    const v = penalized[i]!;
    if (v > -Infinity) { finite++; if (v > maxLogit) maxLogit = v; }
  }
  if (finite === 0) return undefined;
  // Thresholds are found on the raw (penalised) logits: dividing by a positive temperature keeps
  // the order, and exp((x - max) / T) gives the tempered weights.
  const weight = (x: number) => Math.exp((x - maxLogit) / temperature);
  let threshold = -Infinity;
  if (topK > 0 && topK < finite) threshold = kthLargest(penalized, topK);
  if (topP < 1) {
    // Values that survive top-k, most likely first (a native numeric sort of a typed array).
    const vals = new Float64Array(finite);
    let n = 0;
    for (let i = 0; i < penalized.length; i++) { const v = penalized[i]!; if (v > -Infinity && v >= threshold) vals[n++] = v; }
    const sorted = vals.subarray(0, n).sort().reverse();
    let total = 0;
    for (let i = 0; i < n; i++) total += weight(sorted[i]!);
    // Keep a token while the mass ranked above it is < top_p (HF: drop when the cumulative mass
    // from the bottom is <= 1 - top_p); the last kept value is the threshold.
    let above = 0;
    let i = 0;
    while (i < n && above < topP * total) { above += weight(sorted[i]!); i++; }
    const cut = sorted[Math.max(0, i - 1)]!;
    if (cut > threshold) threshold = cut;
  }
  if (minP > 0) {
    // p_i >= min_p * p_max  <=>  (x_i - max) / T >= ln(min_p).
    const cut = maxLogit + temperature * Math.log(minP);
    if (cut > threshold) threshold = cut;
  }
  return { threshold, maxLogit, temperature };
}

/**
 * The tokens left after temperature, top-k, top-p and min-p, in ascending id order, with their
 * renormalised probabilities. Each filter amounts to a logit threshold (tokens at or above it
 * stay, so ties at a boundary are all kept, as HF keeps every score >= the k-th largest); the
 * strictest threshold wins. Exposed for tests and for callers that want the distribution.
 */
export function filteredDistribution(penalized: Float32Array, o: SamplingOptions): { ids: number[]; probs: number[] } {
  const t = samplingThreshold(penalized, o);
  if (!t) return { ids: [], probs: [] };
  const { threshold, maxLogit, temperature } = t;
  const weight = (x: number) => Math.exp((x - maxLogit) / temperature);
  const ids: number[] = [];
  const probs: number[] = [];
  let kept = 0;
  for (let i = 0; i < penalized.length; i++) {
    const v = penalized[i]!;
    if (v > -Infinity && v >= threshold) {
      const w = weight(v);
      ids.push(i);
      probs.push(w);
      kept += w;
    }
  }
  for (let i = 0; i < probs.length; i++) probs[i] = probs[i]! / kept;
  return { ids, probs };
}

/**
 * Chooses next tokens for one sequence. Holds the options and the PRNG state; `sample` may be
 * called with logits from any backend or batch layout.
 */
export class Sampler {
  readonly options: Readonly<SamplingOptions>;
  /** The seed in use (given, or drawn at construction). */
  readonly seed: number;
  private readonly rng: Xoshiro128;
  private weights = new Float64Array(0);

  constructor(options: SamplingOptions = {}) {
    validateSamplingOptions(options);
    this.options = { ...options };
    this.seed = options.seed ?? randomSeed();
    this.rng = new Xoshiro128(this.seed);
  }

  /** True when this sampler always takes the argmax. */
  get isGreedy(): boolean {
    return this.options.greedy === true || (this.options.temperature ?? DEFAULT_SAMPLING.temperature) === 0;
  }

  /**
   * Picks the next token id from one row of logits. `history` holds every token of the sequence
   * so far (prompt and generated), of which the generated ones start at `promptLength`.
   */
  sample(logits: Float32Array, history: ArrayLike<number> = [], promptLength = 0): number {
    const penalized = applyPenalties(logits, history, promptLength, this.options);
    if (this.isGreedy) {
      const id = argmax(penalized);
      if (id < 0) throw new InputError('no token can be chosen: every logit is masked or NaN');
      return id;
    }
    // The same distribution as filteredDistribution, drawn without building it: weights go into
    // a reused typed array and the draw scans it once (this runs per token per sequence).
    const t = samplingThreshold(penalized, this.options);
    if (!t) throw new InputError('no token can be chosen: every logit is masked or NaN');
    const V = penalized.length;
    if (this.weights.length < V) this.weights = new Float64Array(V);
    const w = this.weights;
    const invT = 1 / t.temperature;
    let total = 0;
    let last = -1;
    for (let i = 0; i < V; i++) {
      const v = penalized[i]!;
      if (v >= t.threshold && v > -Infinity) {
        const e = Math.exp((v - t.maxLogit) * invT);
        w[i] = e;
        total += e;
        last = i;
      } else w[i] = 0;
    }
    const target = this.rng.nextFloat() * total;
    let acc = 0;
    for (let i = 0; i <= last; i++) {
      acc += w[i]!;
      if (target < acc) return i;
    }
    return last;
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

/** One entry of `topLogprobs`. */
export interface TokenLogprob { id: number; logprob: number }

/**
 * The k most likely tokens of the model's distribution (log softmax of the raw logits, over ids
 * below `vocabLimit`), most likely first; also the log probability of `chosen` when given. This is
 * what an OpenAI-style `logprobs` / `top_logprobs` response reports.
 */
export function topLogprobs(logits: Float32Array, k: number, options: { vocabLimit?: number; chosen?: number } = {}): { top: TokenLogprob[]; chosen?: TokenLogprob } {
  const limit = Math.min(options.vocabLimit ?? logits.length, logits.length);
  const lp = logSoftmax(logits.subarray(0, limit));
  const top: TokenLogprob[] = [];
  if (k > 0) {
    // Keep a small sorted buffer: k is tiny compared with the vocabulary.
    for (let i = 0; i < limit; i++) {
      const v = lp[i]!;
      if (top.length === k && v <= top[k - 1]!.logprob) continue;
      let j = top.length < k ? top.length : k - 1;
      if (top.length < k) top.push({ id: i, logprob: v });
      while (j > 0 && top[j - 1]!.logprob < v) { top[j] = top[j - 1]!; j--; }
      top[j] = { id: i, logprob: v };
    }
  }
  const result: { top: TokenLogprob[]; chosen?: TokenLogprob } = { top };
  if (options.chosen !== undefined && options.chosen >= 0 && options.chosen < limit) result.chosen = { id: options.chosen, logprob: lp[options.chosen]! };
  return result;
}
