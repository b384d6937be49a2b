/**
 * Greedy choice the way the wasm worker threads make it (backends/wasm/executor.ts): penalties
 * applied chunk by chunk of the LM head (`applyEdits`) and the argmax merged chunk by chunk in
 * whatever order the threads finish them (`sampling_argmax`). Checked against the definitions
 * written out here independently: the penalised row built whole, step after step over a
 * Float32Array as the module comment of sampler.ts states them, and the argmax as the lowest id
 * among the largest values that are neither NaN nor -Infinity.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WasmSamplingKernels } from '../src/backends/sampling/wasm-kernels.js';
import { JsSamplingKernels } from '../src/backends/sampling/weights.js';
import {
  applyEdits,
  applyPenalties,
  chooseToken,
  penaltyEdits,
  type SamplingOptions,
} from '../src/backends/sampling/sampler.js';

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Steps 1–4 of sampler.ts's module comment, over the whole row, one step after another. */
function penalisedByDefinition(
  logits: Float32Array,
  history: number[],
  promptLength: number,
  o: SamplingOptions,
): Float32Array {
  const V = logits.length;
  const out = Float32Array.from(logits);
  const limit = Math.min(o.vocabLimit ?? V, V);
  const valid = (id: number) => Number.isInteger(id) && id >= 0 && id < V;
  for (let i = limit; i < V; i++) out[i] = -Infinity;
  for (const id of o.bannedIds ?? []) if (valid(id)) out[id] = -Infinity;
  const bias = o.logitBias instanceof Map ? [...o.logitBias] : Object.entries(o.logitBias ?? {});
  for (const [k, b] of bias) {
    const id = Number(k);
    if (valid(id) && id < limit && Number.isFinite(out[id]!)) out[id] = out[id]! + b;
  }
  const start = o.penaltyLastN ? Math.max(0, history.length - o.penaltyLastN) : 0;
  const rep = o.repetitionPenalty ?? 1;
  if (rep !== 1)
    for (const id of new Set(history.slice(start)))
      if (valid(id)) out[id] = out[id]! > 0 ? out[id]! / rep : out[id]! * rep;
  const pres = o.presencePenalty ?? 0,
    freq = o.frequencyPenalty ?? 0;
  if (pres !== 0 || freq !== 0) {
    const counts = new Map<number, number>();
    for (const id of history.slice(Math.max(start, promptLength))) counts.set(id, (counts.get(id) ?? 0) + 1);
    for (const [id, c] of counts) if (valid(id)) out[id] = out[id]! - c * freq - pres;
  }
  return out;
}

function argmaxByDefinition(x: Float32Array): number {
  let best = -1;
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (Number.isNaN(v) || v === -Infinity) continue;
    if (best < 0 || v > x[best]!) best = i;
  }
  return best;
}

/** Splits [0, V) into chunks of `per` ids, in a shuffled order (threads finish chunks in any order). */
function chunks(V: number, per: number, rnd: () => number): Array<[number, number]> {
  const list: Array<[number, number]> = [];
  for (let n0 = 0; n0 < V; n0 += per) list.push([n0, Math.min(V, n0 + per)]);
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [list[i], list[j]] = [list[j]!, list[i]!];
  }
  return list;
}

/** Rows with ties (across lanes, blocks and chunks), NaN, -Infinity, ±0 and +Infinity. */
function hostileRows(V: number, rnd: () => number): Float32Array[] {
  const rows: Float32Array[] = [];
  const base = () => Float32Array.from({ length: V }, () => Math.fround((rnd() * 2 - 1) * 8));
  let x = base();
  x[V - 1] = 20; // the maximum in the scalar tail of the last chunk
  x[5] = 20; // ...and in lane 1 of an early block: the lower id wins
  rows.push(x);
  x = base();
  for (const i of [3, 2, V - 2, 17]) x[i] = 30; // a tie within one block, across lanes
  rows.push(x);
  x = base().fill(-Infinity);
  x[V >> 1] = NaN;
  rows.push(x); // nothing can be chosen
  x = base().map((v) => (v > 5 ? NaN : v));
  rows.push(x);
  x = base().fill(-1);
  x[9] = -0;
  x[4] = 0;
  x[2] = -0;
  rows.push(x); // -0 equals 0: the lowest id holding either
  x = base();
  x[11] = Infinity;
  x[7] = Infinity;
  rows.push(x);
  rows.push(new Float32Array(V).fill(1.5)); // all equal: id 0
  return rows;
}

test('the wasm argmax kernel, whole or merged chunk by chunk in any order, is the argmax', () => {
  const rnd = lcg(3);
  const wasm = new WasmSamplingKernels();
  const js = new JsSamplingKernels();
  for (const V of [1, 3, 4, 5, 15, 16, 17, 63, 257, 1001, 50432]) {
    for (const x of hostileRows(V, rnd)) {
      const want = argmaxByDefinition(x);
      wasm.setRow(x);
      js.setRow(x);
      assert.equal(wasm.argmax(), want, `V=${V} whole`);
      assert.equal(js.argmax(), want, `V=${V} js`);
      for (const per of [1, 4, 7, 16, 256])
        if (V / per < 3000) assert.equal(wasm.argmaxOver(chunks(V, per, rnd)), want, `V=${V} chunks of ${per}`);
    }
  }
});

const optionSets: SamplingOptions[] = [
  { greedy: true },
  { greedy: true, vocabLimit: 1000 },
  { temperature: 0, bannedIds: [0, 5, 999, 2.5, -3, 1e9] },
  // "0005" and "5" are the same id: both entries apply, one after the other; NaN and ±Infinity biases
  {
    greedy: true,
    logitBias: { 5: 3.25, '0005': -1.5, 7: NaN, 11: Infinity, 13: -Infinity, 2.5: 9, [-1]: 9 } as Record<
      number,
      number
    >,
  },
  {
    greedy: true,
    logitBias: new Map([
      [40, 100],
      [41, 100],
    ]),
    bannedIds: [41],
  },
  { greedy: true, repetitionPenalty: 1.7, penaltyLastN: 5 },
  { greedy: true, repetitionPenalty: 0.5, presencePenalty: 1.25, frequencyPenalty: -0.75 },
  { greedy: true, presencePenalty: 2, frequencyPenalty: 2, vocabLimit: 700, logitBias: { 3: 2 }, bannedIds: [8] },
];

test('penalties applied chunk by chunk give the penalised row of the definition, bit for bit', () => {
  const rnd = lcg(11);
  const V = 1024;
  for (const [k, o] of optionSets.entries()) {
    const logits = Float32Array.from({ length: V }, () => Math.fround((rnd() * 2 - 1) * 4));
    // The history repeats some ids, holds some the row cannot index, and ids of the generated part.
    const history = [5, 7, 5, 11, 13, 40, 3, 3, 3, 8, -2, 1.5, 4000, 600, 5, 600];
    const promptLength = 6;
    const want = penalisedByDefinition(logits, history, promptLength, o);
    const whole = applyPenalties(logits, history, promptLength, o);
    assert.deepEqual(new Uint32Array(whole.buffer), new Uint32Array(want.buffer), `options ${k}: whole row`);
    const e = penaltyEdits(history, promptLength, o, V);
    for (const per of [1, 3, 64, 256]) {
      const row = Float32Array.from(logits);
      for (const [n0, n1] of chunks(V, per, rnd)) applyEdits(row, n0, n1, e);
      assert.deepEqual(new Uint32Array(row.buffer), new Uint32Array(want.buffer), `options ${k}: chunks of ${per}`);
    }
    assert.equal(
      chooseToken(logits, { options: o, history, promptLength, uniform: 0 }),
      argmaxByDefinition(want),
      `options ${k}: greedy token`,
    );
  }
});
