/**
 * Masks by token class (plain-text tokens decided by their character count, a trie walk over the
 * others) and masks inside pattern strings (the trie walked with the pattern's DFA state as an
 * integer) must be exactly the masks of a brute-force check that feeds every token's bytes to the
 * automaton: over random constrained walks through many schemas, biased towards the edges
 * (strings a character or two from maxLength, non-ASCII and escaped text, free and fixed keys,
 * patterns with length limits, formats, bounded numbers, enums, unions of strings with different
 * limits).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { patternPosition, plainTextRoom, type JsonAutomatonState } from '../src/server/constrain/json-automaton.js';
import { computeMask, JsonGrammar, maskHas } from '../src/server/constrain/json-constraint.js';
import { constraintVocabulary, tinyModel } from './helpers/serve-fixture.js';

const SCHEMAS: unknown[] = [
  { type: 'string', maxLength: 1 },
  { type: 'string', minLength: 2, maxLength: 3 },
  { type: 'array', items: { type: 'string', maxLength: 2 }, maxItems: 3 },
  { type: 'object', properties: { s: { type: 'string', maxLength: 5 } }, required: ['s'] },
  { type: 'object', additionalProperties: { type: 'integer' }, maxProperties: 2 },
  { type: 'object', additionalProperties: true, maxProperties: 3 },
  {
    type: 'object',
    properties: { name: { type: 'string', maxLength: 4 }, tag: { enum: ['a"b', 'é', 'x\\y'] } },
    required: ['name'],
    additionalProperties: { type: 'string', maxLength: 2 },
  },
  { type: 'object', properties: { k: { type: 'string', pattern: '^[a-c]{1,3}$' } }, additionalProperties: false },
  { anyOf: [{ type: 'string', maxLength: 1 }, { type: 'string', minLength: 3, maxLength: 4 }, { type: 'number' }] },
  { type: 'array', items: {}, maxItems: 2 },
  { type: 'string', pattern: '^[a-z]+-[0-9]{2,4}$', maxLength: 9 },
  { type: 'array', items: { type: 'string', format: 'date' }, maxItems: 2 },
  { type: 'array', items: { type: 'string', pattern: '^(ab|c)+x?$', maxLength: 5 }, minItems: 2, maxItems: 3 },
  {
    type: 'object',
    properties: { n: { type: 'integer', minimum: -20, maximum: 999 }, x: { type: 'number', maximum: 2.5 } },
    required: ['n', 'x'],
    additionalProperties: false,
  },
  {
    type: 'array',
    items: {
      anyOf: [
        { type: 'integer', exclusiveMinimum: -9_007_199_254_740_991, maximum: -9_007_199_254_740_000 },
        { type: 'integer', minimum: 9_007_199_254_740_990, exclusiveMaximum: 2 ** 53 },
        { type: 'number', exclusiveMinimum: -130.5, exclusiveMaximum: -7 },
      ],
    },
    maxItems: 4,
  },
  { type: 'integer', minimum: -5000, maximum: 80_000, multipleOf: 7 },
  {
    type: 'array',
    items: {
      anyOf: [
        { type: 'number', minimum: -0.125, maximum: 31.4159 },
        { type: 'integer', maximum: -40 },
      ],
    },
    maxItems: 3,
  },
];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

test('masks by token class equal a brute-force check of every token, across schemas and edge states', async () => {
  const vocab = await constraintVocabulary(await tinyModel());
  const r = rng(2026);
  let checked = 0;
  let byClass = 0;
  let byPattern = 0;
  for (const schema of SCHEMAS) {
    const g = new JsonGrammar(schema, vocab);
    for (let run = 0; run < 2; run++) {
      const c = g.start();
      for (let step = 0; step < 8 && !c.finished; step++) {
        const state = (c as unknown as { state: JsonAutomatonState }).state;
        const mask = computeMask(vocab, state);
        const allowed: number[] = [];
        const unusual: number[] = [];
        for (let id = 0; id < vocab.vocabSize; id++) {
          const b = vocab.trie.tokenBytes(id);
          const want = vocab.eosIds.includes(id) ? state.accepting : b !== null && state.feedBytes(b) !== null;
          if (maskHas(mask, id) !== want)
            assert.fail(`${JSON.stringify(schema)} at ${state.key}: token ${id} ${want ? 'missing' : 'allowed'}`);
          if (!want || !b) continue;
          allowed.push(id);
          if (b.some((x) => x >= 0x80 || x === 0x5c)) unusual.push(id);
        }
        checked++;
        if (plainTextRoom(state) !== null) byClass++;
        if (patternPosition(state)) byPattern++;
        // Half the time a non-ASCII or backslash token: partial characters and escapes.
        const pool = unusual.length && r() < 0.5 ? unusual : allowed;
        if (!pool.length) break;
        assert.ok(c.accept(pool[Math.floor(r() * pool.length)]!));
      }
    }
  }
  // The walks must have exercised the class and pattern paths, not only the plain walk.
  assert.ok(byClass >= 30, `${byClass} of ${checked} states used token classes`);
  assert.ok(byPattern >= 20, `${byPattern} of ${checked} states used the pattern walk`);
});
