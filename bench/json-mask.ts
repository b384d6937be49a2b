/**
 * JSON-constraint masks for new states (cache misses) over the real 50,432-token GPT-NeoX
 * vocabulary: the states a seeded random constrained walk reaches under several schemas, each
 * state's mask computed by three methods, alternated in rounds (each state, each method in turn):
 *   before: the trie walk as it was (one JsonAutomatonState per trie edge),
 *   walk:   the trie walk over parse-stack arrays (`walkMask` of the whole trie),
 *   fast:   `computeMask` (plain-text tokens by class and a walk over the others; inside a
 *           pattern string, a walk that follows the pattern's DFA with integers).
 * Every mask is checked equal to `before`'s. Output: JSON, ms per mask by schema and method.
 *
 *   node dist/bench/run.js json-mask [ROUNDS=3] [STEPS=60]
 */
import { fileURLToPath } from 'node:url';
import type { JsonAutomatonState } from '../src/server/constrain/json-automaton.js';
import { computeMask, JsonGrammar, maskHas, walkMask } from '../src/server/constrain/json-constraint.js';
import { PlainTextTokens } from '../src/server/constrain/plain-text-tokens.js';
import { loadServedModel } from '../src/server/model-host.js';
import { PromptWorker } from '../src/server/prompt-worker.js';

const [rounds = 3, steps = 60] = process.argv.slice(2).map(Number);
const fixtures = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));

const SCHEMAS: Record<string, unknown> = {
  freeString: { type: 'string' },
  maxLength: { type: 'object', properties: { s: { type: 'string', maxLength: 12 } }, required: ['s'] },
  pattern: { type: 'string', pattern: '^[a-z]+-[0-9]{2,4}$' },
  enum: { type: 'object', properties: { c: { enum: ['red', 'green', 'blue'] } }, required: ['c'] },
  freeKeys: { type: 'object', additionalProperties: { type: 'integer' } },
  fixedKeys: {
    type: 'object',
    properties: { name: { type: 'string' }, age: { type: 'integer' }, email: { type: 'string' } },
    required: ['name', 'age', 'email'],
    additionalProperties: false,
  },
  numbers: { type: 'array', items: { type: 'number' }, maxItems: 8 },
  boundedNumbers: {
    type: 'object',
    properties: {
      n: { type: 'integer', minimum: -20, maximum: 9_007_199_254_740_000 },
      x: { type: 'number', exclusiveMinimum: -2.5, maximum: 1e6 },
    },
    required: ['n', 'x'],
    additionalProperties: false,
  },
  // Digits after "-" and after a dot, against bounds with decimals (fractions were decided with bigints).
  signsAndDecimals: {
    type: 'array',
    items: {
      anyOf: [
        { type: 'number', minimum: -12.75, maximum: 3.5 },
        { type: 'integer', minimum: -900_000, maximum: -3 },
      ],
    },
    maxItems: 6,
  },
  nestedArrays: { type: 'array', items: { type: 'array', items: { type: 'string', maxLength: 6 } }, maxItems: 4 },
};

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const model = await loadServedModel(`${fixtures}tiny-neox-vocab/`, { backend: 'reference', onNote: () => {} });
const prompts = new PromptWorker(model.tokenizer);
const vocab = await model.constraintVocabulary(prompts);
prompts.close(new Error('bench over'));

let t0 = performance.now();
PlainTextTokens.of(vocab.trie);
const classesMs = performance.now() - t0;

function before(state: JsonAutomatonState): Uint32Array {
  const mask = new Uint32Array((vocab.vocabSize + 31) >>> 5);
  vocab.trie.walk(
    state,
    (s, b) => s.feed(b),
    (id) => {
      if (id < vocab.vocabSize) mask[id >>> 5]! |= 1 << (id & 31);
    },
  );
  if (state.accepting) for (const id of vocab.eosIds) mask[id >>> 5]! |= 1 << (id & 31);
  return mask;
}
const methods: Record<string, (s: JsonAutomatonState) => Uint32Array> = {
  before,
  walk: (s) => walkMask(vocab, s, vocab.trie),
  fast: (s) => computeMask(vocab, s),
};

const results: Record<string, unknown> = {};
for (const [name, schema] of Object.entries(SCHEMAS)) {
  // States of a random walk (prefers continuing, so strings and keys get long), distinct keys.
  const g = new JsonGrammar(schema, vocab);
  const states = new Map<string, JsonAutomatonState>();
  const r = rng(1234);
  for (let run = 0; run < 3; run++) {
    const c = g.start();
    for (let i = 0; i < steps / 3 && !c.finished; i++) {
      const state = (c as unknown as { state: JsonAutomatonState }).state;
      states.set(state.key, state);
      const mask = c.mask();
      const allowed: number[] = [];
      for (let id = 0; id < vocab.vocabSize; id++)
        if (maskHas(mask, id) && !vocab.eosIds.includes(id)) allowed.push(id);
      if (!allowed.length) break;
      c.accept(allowed[Math.floor(r() * allowed.length)]!);
    }
  }
  const list = [...states.values()];
  const ms: Record<string, number[]> = { before: [], walk: [], fast: [] };
  for (let round = 0; round < rounds; round++) {
    const total: Record<string, number> = { before: 0, walk: 0, fast: 0 };
    for (const state of list) {
      let want: Uint32Array | null = null;
      for (const [m, f] of Object.entries(methods)) {
        t0 = performance.now();
        const mask = f(state);
        total[m]! += performance.now() - t0;
        if (!want) want = mask;
        else if (!mask.every((w, i) => w === want![i])) throw new Error(`${name}: ${m} mask differs at ${state.key}`);
      }
    }
    for (const m of Object.keys(ms)) ms[m]!.push(+(total[m]! / list.length).toFixed(3));
  }
  results[name] = { states: list.length, msPerMask: ms };
}
console.log(JSON.stringify({ busy: true, rounds, classesMs: +classesMs.toFixed(1), results }, null, 1));
