/**
 * The sampler: penalty arithmetic as Hugging Face (repetition) and OpenAI (presence/frequency)
 * define it, top-k / top-p / min-p filtering against brute-force definitions, masking, seeded
 * reproducibility, and the empirical distribution of draws.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { InputError } from '../src/errors.js';
import {
  applyPenalties,
  chooseToken,
  filteredDistribution,
  logSoftmax,
  Sampler,
  topLogprobs,
  Xoshiro128,
} from '../src/runtime/sampling.js';

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('repetition penalty divides positive and multiplies negative logits of seen tokens', () => {
  const logits = Float32Array.from([2, -2, 1, -1, 0.5]);
  const out = applyPenalties(logits, [0, 1, 1, 4], 0, { repetitionPenalty: 2 });
  // HF RepetitionPenaltyLogitsProcessor: score < 0 ? score * p : score / p, once per distinct token.
  assert.deepEqual(Array.from(out), [1, -4, 1, -1, 0.25]);
  // The history is prompt + generated: the prompt counts too.
  assert.deepEqual(Array.from(applyPenalties(logits, [2], 1, { repetitionPenalty: 2 })), [2, -2, 0.5, -1, 0.5]);
  // penaltyLastN limits the window.
  assert.deepEqual(
    Array.from(applyPenalties(logits, [0, 2], 0, { repetitionPenalty: 2, penaltyLastN: 1 })),
    [2, -2, 0.5, -1, 0.5],
  );
});

test('presence and frequency penalties as OpenAI defines them, over generated tokens only', () => {
  const logits = Float32Array.from([1, 1, 1, 1]);
  // Prompt [3, 3], then generated [0, 1, 1, 1]: counts c0 = 1, c1 = 3, c3 = 0 (prompt ignored).
  const out = applyPenalties(logits, [3, 3, 0, 1, 1, 1], 2, { presencePenalty: 0.5, frequencyPenalty: 0.25 });
  // mu[j] - c[j] * frequency - (c[j] > 0) * presence
  close(out[0]!, 1 - 1 * 0.25 - 0.5);
  close(out[1]!, 1 - 3 * 0.25 - 0.5);
  close(out[2]!, 1);
  close(out[3]!, 1);
});

test('ids past vocabLimit and banned ids are never chosen; logit bias applies', () => {
  const logits = Float32Array.from([0, 1, 2, 50, 60]);
  assert.equal(new Sampler({ temperature: 0, vocabLimit: 3 }).sample(logits), 2);
  assert.equal(new Sampler({ temperature: 0, vocabLimit: 4, bannedIds: [3] }).sample(logits), 2);
  assert.equal(new Sampler({ temperature: 0, vocabLimit: 3, logitBias: { 0: 10 } }).sample(logits), 0);
  const s = new Sampler({ temperature: 1, topK: 0, topP: 1, minP: 0, vocabLimit: 3, seed: 1 });
  for (let i = 0; i < 500; i++) assert.ok(s.sample(logits) < 3);
});

/** Brute-force definitions, written independently of the implementation's threshold trick. */
function bruteForce(logits: number[], t: number, k: number, p: number, minP: number): Set<number> {
  let order = logits.map((x, id) => ({ id, x: x / t })).sort((a, b) => b.x - a.x);
  if (k > 0 && k < order.length) order = order.filter((e) => e.x >= order[k - 1]!.x);
  const probs = (list: { x: number }[]) => {
    const m = Math.max(...list.map((e) => e.x));
    const w = list.map((e) => Math.exp(e.x - m));
    const s = w.reduce((a, b) => a + b, 0);
    return w.map((v) => v / s);
  };
  if (p < 1) {
    // HF TopP: sort ascending, drop tokens whose cumulative probability (from the bottom) <= 1 - p.
    const asc = [...order].reverse();
    const pr = probs(asc);
    let cum = 0;
    const keep = asc.filter((_, i) => {
      cum += pr[i]!;
      return cum > 1 - p;
    });
    keep.push(asc[asc.length - 1]!);
    order = [...new Set(keep)].sort((a, b) => b.x - a.x);
  }
  if (minP > 0) {
    const pr = probs(order);
    const top = Math.max(...pr);
    order = order.filter((_, i) => pr[i]! >= minP * top);
  }
  return new Set(order.map((e) => e.id));
}

test('top-k, top-p and min-p keep the tokens their definitions keep', () => {
  let s = 99;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (let trial = 0; trial < 400; trial++) {
    const n = 2 + Math.floor(rnd() * 30);
    const logits = Array.from({ length: n }, () => Math.round((rnd() * 8 - 4) * 1000) / 1000);
    const t = [0.5, 1, 1.7][trial % 3]!;
    const k = [0, 1, 3, 10][Math.floor(rnd() * 4)]!;
    const p = [1, 0.9, 0.5, 0.1][Math.floor(rnd() * 4)]!;
    const minP = [0, 0.05, 0.3][Math.floor(rnd() * 3)]!;
    const { ids, probs } = filteredDistribution(Float32Array.from(logits), { temperature: t, topK: k, topP: p, minP });
    const expected = bruteForce(Array.from(Float32Array.from(logits)), t, k, p, minP);
    assert.deepEqual(new Set(ids), expected, JSON.stringify({ logits, t, k, p, minP }));
    close(
      probs.reduce((a, b) => a + b, 0),
      1,
      1e-9,
    );
    // Kept probabilities are the tempered softmax renormalised over the kept set.
    const w = ids.map((id) => Math.exp(logits[id]! / t));
    const total = w.reduce((a, b) => a + b, 0);
    ids.forEach((_, i) => {
      close(probs[i]!, w[i]! / total, 1e-6);
    });
  }
});

test('a seed reproduces the draws; different seeds differ; draws follow the distribution', () => {
  const logits = Float32Array.from([1, 2, 3, 0.5, -1, 2.5]);
  const o = { temperature: 1, topK: 0, topP: 1, minP: 0 };
  const run = (seed: number) => {
    const sm = new Sampler({ ...o, seed });
    return Array.from({ length: 50 }, () => sm.sample(logits));
  };
  assert.deepEqual(run(42), run(42));
  assert.notDeepEqual(run(42), run(43));
  const counts = new Array(6).fill(0);
  const sm = new Sampler({ ...o, seed: 7 });
  const N = 30000;
  for (let i = 0; i < N; i++) counts[sm.sample(logits)]++;
  const lp = logSoftmax(logits);
  for (let i = 0; i < 6; i++) {
    const pExp = Math.exp(lp[i]!);
    const sd = Math.sqrt((pExp * (1 - pExp)) / N);
    assert.ok(Math.abs(counts[i] / N - pExp) < 5 * sd + 1e-4, `token ${i}: ${counts[i] / N} vs ${pExp}`);
  }
  assert.equal(new Sampler({ seed: 5 }).seed, 5);
  assert.ok(Number.isInteger(new Sampler().seed));
});

test("request() + chooseToken (what a backend runs after its forward pass) gives sample()'s tokens for a seed", () => {
  const V = 300;
  let s = 99;
  const row = () =>
    Float32Array.from({ length: V }, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s / 2 ** 32) * 12 - 6;
    });
  const optionSets = [
    { temperature: 1, topK: 0, topP: 1, minP: 0 },
    {},
    {
      temperature: 0.7,
      topK: 5,
      topP: 0.9,
      minP: 0.02,
      repetitionPenalty: 1.3,
      presencePenalty: 0.5,
      frequencyPenalty: 0.4,
    },
    { temperature: 0, repetitionPenalty: 1.2 },
    { temperature: 1.3, topK: 250, logitBias: { 3: 4, 7: -100 }, bannedIds: new Set([1, 2]), vocabLimit: 290 },
  ];
  for (const o of optionSets) {
    const a = new Sampler({ ...o, seed: 11 }),
      b = new Sampler({ ...o, seed: 11 });
    const history = [5, 6, 5];
    for (let t = 0; t < 40; t++) {
      const logits = row();
      const request = b.request(history, 2);
      // plain data: what a worker thread receives
      const cloned = structuredClone(request);
      const viaRequest = chooseToken(logits, cloned);
      assert.equal(viaRequest, a.sample(logits, history, 2), `${JSON.stringify(o)} step ${t}`);
      history.push(viaRequest);
    }
  }
  // nothing can be chosen: the same error either way
  const masked = new Float32Array(4).fill(-Infinity);
  assert.throws(() => chooseToken(masked, new Sampler({ seed: 1 }).request()), InputError);
  assert.throws(() => new Sampler({ seed: 1 }).sample(masked), InputError);
});

test('greedy picks the argmax after penalties; xoshiro128** is uniform enough', () => {
  const logits = Float32Array.from([3, 2.9, 1]);
  assert.equal(new Sampler({ temperature: 0 }).sample(logits, [0]), 0);
  assert.equal(new Sampler({ temperature: 0, repetitionPenalty: 1.1 }).sample(logits, [0]), 1);
  assert.equal(new Sampler({ greedy: true, temperature: 1 }).sample(logits), 0);
  const r = new Xoshiro128(123);
  let sum = 0;
  for (let i = 0; i < 10000; i++) {
    const u = r.nextFloat();
    assert.ok(u >= 0 && u < 1);
    sum += u;
  }
  close(sum / 10000, 0.5, 0.02);
  assert.throws(() => new Sampler({ topP: 0 }), /top-p/);
  assert.throws(() => new Sampler({ temperature: -1 }), /temperature/);
});

test('top logprobs are the largest log-softmax entries, most likely first', () => {
  const logits = Float32Array.from([0.1, 3, -2, 2.5, 3, 9]);
  const { top, chosen } = topLogprobs(logits, 3, { vocabLimit: 5, chosen: 1 });
  const lp = logSoftmax(logits.subarray(0, 5));
  assert.deepEqual(
    top.map((t) => t.id),
    [1, 4, 3],
  );
  for (const t of top) close(t.logprob, lp[t.id]!, 1e-7);
  close(chosen!.logprob, lp[1]!, 1e-7);
  let z = 0;
  for (const v of lp) z += Math.exp(v);
  close(z, 1, 1e-12);
  // a realistic vocabulary: ties, masked ids, several k; against a sort of logSoftmax's values
  let s = 3;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const big = Float32Array.from({ length: 50432 }, () => Math.round((rnd() * 24 - 12) * 64) / 64);
  for (let i = 0; i < 200; i++) big[Math.floor(rnd() * 50432)] = -Infinity;
  big[777] = big[778] = 12.5; // a tie at the top
  const limit = 50277;
  const ref = logSoftmax(big.subarray(0, limit));
  const order = Array.from(ref.keys()).sort((a, b) => ref[b]! - ref[a]! || a - b);
  for (const k of [0, 1, 2, 5, 20, 300]) {
    const r = topLogprobs(big, k, { vocabLimit: limit, chosen: 123 });
    assert.deepEqual(
      r.top.map((t) => t.id),
      order.slice(0, k),
      `k ${k}`,
    );
    for (const t of r.top) close(t.logprob, ref[t.id]!, 1e-6);
    close(r.chosen!.logprob, ref[123]!, 1e-6);
  }
  assert.deepEqual(
    topLogprobs(big, 2, { vocabLimit: limit }).top.map((t) => t.id),
    [777, 778],
  );
  // degenerate rows go through logSoftmax itself
  const masked = new Float32Array(6).fill(-Infinity);
  assert.ok(topLogprobs(masked, 2).top.every((t) => Number.isNaN(t.logprob)));
  const inf = Float32Array.from([1, Infinity, 2]);
  const r = topLogprobs(inf, 2, { chosen: 1 });
  assert.equal(r.top.length, 2);
  assert.ok(
    [...r.top, r.chosen!].every((t) => Number.isNaN(t.logprob)),
    'an infinite logit: NaN, as logSoftmax',
  );
});
