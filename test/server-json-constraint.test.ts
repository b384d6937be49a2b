/**
 * The JSON-schema constrained decoder, checked against independent references: JSON.parse and
 * zod's JSON-Schema validator (z.fromJSONSchema) decide what is valid.
 *
 * - soundness: every document the automaton accepts parses and validates (valid documents,
 *   mutated ones, hand-written invalid ones, and random walks over the real GPT-NeoX vocabulary);
 * - completeness: every compact serialization of a valid instance is accepted, byte by byte;
 * - the trie walk allows exactly the tokens a brute-force check over the vocabulary allows.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as z from 'zod';
import { JsonAutomatonState } from '../src/server/constrain/json-automaton.js';
import { JsonGrammar, maskHas } from '../src/server/constrain/json-constraint.js';
import { compileJsonSchema, SchemaCompiler, SchemaError, type SchemaNode } from '../src/server/constrain/schema.js';
import { shortestValueBytes } from '../src/server/constrain/shortest.js';
import { constraintVocabulary, tinyModel } from './helpers/serve-fixture.js';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });
/** For messages: never throws on a partial character. */
const show = (b: Uint8Array) => JSON.stringify(new TextDecoder().decode(b));

/** A small deterministic PRNG for the property tests. */
function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!,
  };
}
type Rng = ReturnType<typeof rng>;

/** Accepts the whole text as a complete value. */
function accepts(schema: unknown, text: string | Uint8Array): boolean {
  const st = JsonAutomatonState.initial(compileJsonSchema(schema)).feedBytes(
    typeof text === 'string' ? enc.encode(text) : text,
  );
  return st?.accepting === true;
}

function validates(schema: unknown, text: string): boolean {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return false;
  }
  return z.fromJSONSchema(schema as never).safeParse(v).success;
}

/** True when some object in the text repeats a key (JSON.parse would silently keep the last). */
function hasDuplicateKeys(text: string): boolean {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const k = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(k)) return true;
        top.add(k);
      }
      expectKey = false;
      i = j;
    } else if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
    } else if (c === '}' || c === ']') stack.pop();
    else if (c === ',') expectKey = stack[stack.length - 1] instanceof Set;
  }
  return false;
}

// ---- test schemas and independent instance generators ---------------------------------------

const WORDS = ['a', 'bc', 'déjà', 'x"y', 'tab\there', 'back\\slash', '日本', 'ok', ''];

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 8 },
    age: { type: 'integer' },
    score: { type: 'number' },
    tags: { type: 'array', items: { enum: ['red', 'green', 7, null] }, maxItems: 3 },
    alive: { type: 'boolean' },
    pet: { anyOf: [{ type: 'null' }, { $ref: '#/$defs/pet' }] },
  },
  required: ['name', 'age'],
  additionalProperties: false,
  $defs: {
    pet: {
      type: 'object',
      properties: { kind: { enum: ['cat', 'dog'] }, legs: { type: 'integer' } },
      required: ['kind'],
      additionalProperties: false,
    },
  },
};

function genNumber(r: Rng, integer: boolean): number {
  const n = (r.int(2) ? -1 : 1) * r.int(1_000_000);
  return integer ? n : n / r.pick([1, 2, 4, 8, 1000]);
}

function genPerson(r: Rng): unknown {
  const o: Record<string, unknown> = {};
  const keys = ['name', 'age', 'score', 'tags', 'alive', 'pet'].filter((k) => k === 'name' || k === 'age' || r.int(2));
  // Any key order is valid JSON: shuffle.
  keys.sort(() => r.next() - 0.5);
  for (const k of keys) {
    switch (k) {
      case 'name':
        o[k] = r.pick(WORDS.filter((w) => w.length >= 1 && [...w].length <= 8));
        break;
      case 'age':
        o[k] = genNumber(r, true);
        break;
      case 'score':
        o[k] = genNumber(r, false);
        break;
      case 'tags':
        o[k] = Array.from({ length: r.int(4) }, () => r.pick(['red', 'green', 7, null]));
        break;
      case 'alive':
        o[k] = r.int(2) === 1;
        break;
      case 'pet':
        o[k] = r.int(3) === 0 ? null : { kind: r.pick(['cat', 'dog']), ...(r.int(2) ? { legs: r.int(5) } : {}) };
        break;
    }
  }
  return o;
}

const TREE = {
  $ref: '#/$defs/node',
  $defs: {
    node: {
      type: 'object',
      properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } },
      required: ['v'],
      additionalProperties: false,
    },
  },
};

function genTree(r: Rng, depth = 0): unknown {
  const o: Record<string, unknown> = { v: r.int(100) };
  if (depth < 3 && r.int(2)) o['kids'] = Array.from({ length: r.int(3) }, () => genTree(r, depth + 1));
  return o;
}

const ANY_OBJECT = { type: 'object' };

function genAny(r: Rng, depth = 0): unknown {
  const k = r.int(depth > 3 ? 4 : 6);
  switch (k) {
    case 0:
      return null;
    case 1:
      return r.int(2) === 1;
    case 2:
      return genNumber(r, r.int(2) === 1);
    case 3:
      return r.pick(WORDS);
    case 4:
      return Array.from({ length: r.int(4) }, () => genAny(r, depth + 1));
    default:
      return Object.fromEntries(
        Array.from({ length: r.int(4) }, (_, i) => [`${r.pick(WORDS)}${i}`, genAny(r, depth + 1)]),
      );
  }
}

const TUPLE = {
  type: 'array',
  prefixItems: [{ type: 'string', maxLength: 3 }, { type: ['integer', 'null'] }],
  items: false,
  minItems: 1,
};

function genTuple(r: Rng): unknown {
  const s = r.pick(['', 'ab', 'xyz', 'é']);
  return r.int(2) ? [s] : [s, r.int(2) ? null : r.int(50)];
}

const CASES = [
  { name: 'person', schema: PERSON, gen: genPerson },
  { name: 'recursive tree', schema: TREE, gen: (r: Rng) => genTree(r) },
  {
    name: 'any object (json_object)',
    schema: ANY_OBJECT,
    gen: (r: Rng) => Object.fromEntries(Array.from({ length: r.int(4) }, (_, i) => [`k${i}`, genAny(r)])),
  },
  { name: 'tuple', schema: TUPLE, gen: genTuple },
];

const MUTATION_CHARS = ['{', '}', '[', ']', ',', ':', '"', '0', '1', '-', '.', 'e', 't', 'n', 'a', '\\', 'x', 'é'];

function mutate(r: Rng, s: string): string {
  const chars = [...s];
  const i = r.int(chars.length + 1);
  switch (r.int(3)) {
    case 0:
      chars.splice(i, 1);
      break;
    case 1:
      chars.splice(i, 0, r.pick(MUTATION_CHARS));
      break;
    default:
      chars.splice(i, 1, r.pick(MUTATION_CHARS));
      break;
  }
  return chars.join('');
}

for (const c of CASES) {
  test(`automaton (${c.name}): accepts every valid document and every prefix, accepts nothing invalid`, () => {
    const r = rng(1234);
    const root = compileJsonSchema(c.schema);
    let mutatedRejected = 0;
    for (let k = 0; k < 150; k++) {
      const doc = JSON.stringify(c.gen(r));
      assert.ok(validates(c.schema, doc), `generator made an invalid doc ${doc}`);
      // Completeness: every prefix stays alive; the whole is accepted.
      let st: JsonAutomatonState | null = JsonAutomatonState.initial(root);
      const bytes = enc.encode(doc);
      for (let i = 0; i < bytes.length; i++) {
        st = st!.feed(bytes[i]!);
        assert.ok(st, `prefix ${show(bytes.subarray(0, i + 1))} of ${doc} rejected`);
      }
      assert.ok(st!.accepting, `${doc} not accepted`);
      // Soundness: mutated documents are accepted only when they are valid.
      for (let m = 0; m < 6; m++) {
        const bad = mutate(r, doc);
        if (accepts(c.schema, bad)) {
          assert.ok(validates(c.schema, bad), `accepted invalid ${bad}`);
          assert.ok(!hasDuplicateKeys(bad), `accepted duplicate keys in ${bad}`);
        } else mutatedRejected++;
      }
    }
    assert.ok(mutatedRejected > 100, 'mutations exercised rejection');
  });
}

test('automaton rejects hand-picked invalid documents and accepts formatting it promises', () => {
  const bad: Array<[unknown, string]> = [
    [PERSON, '{"name":"a"}'], // missing required
    [PERSON, '{"name":"a","age":1,"x":1}'], // extra key
    [PERSON, '{"name":"a","age":1,}'], // trailing comma
    [PERSON, '{"name":"a","age":1.5}'], // not an integer
    [PERSON, '{"name":"","age":1}'], // minLength
    [PERSON, '{"name":"123456789","age":1}'], // maxLength
    [PERSON, '{"name":"a","age":01}'], // leading zero
    [PERSON, '{"name":"a","name":"b","age":1}'], // duplicate key
    [PERSON, '{"name":"a","age":1,"tags":["blue"]}'], // enum
    [PERSON, '{"name":"a","age":1,"tags":[1,2,3,4]}'], // maxItems (and enum)
    [PERSON, '{"name":"a","age":1,"pet":{"kind":"cow"}}'],
    [PERSON, '{"name":"a\\q","age":1}'], // bad escape
    [PERSON, '{"name":"a\u0001","age":1}'], // raw control character
    [PERSON, '{"name":"a","age":1}x'], // trailing garbage
    [PERSON, '\r\n{"name":"a","age":1}'], // carriage return
    [PERSON, '{  "name":"a","age":1}'], // more than one whitespace byte in a gap
    [PERSON, '{"name":"a",\n "age":1}'],
    [TUPLE, '[]'], // minItems
    [TUPLE, '["a",1,2]'], // items: false
    [ANY_OBJECT, '[1]'], // json_object means an object
    [ANY_OBJECT, '{"a":tru}'],
    [ANY_OBJECT, '{"a":1e}'],
    [ANY_OBJECT, '{"a":-}'],
  ];
  for (const [schema, doc] of bad) assert.equal(accepts(schema, doc), false, doc);
  // Invalid UTF-8 inside a string: an overlong encoding and a lone continuation byte.
  assert.equal(accepts(ANY_OBJECT, Uint8Array.of(0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d)), false);
  assert.equal(accepts(ANY_OBJECT, Uint8Array.of(0x7b, 0x22, 0x80, 0x22, 0x3a, 0x31, 0x7d)), false);
  const good: Array<[unknown, string]> = [
    [PERSON, '{\n"name": "a",\n"age": -0\n}'],
    [PERSON, '{"age":1,"name":"\\u00e9\\n"}'],
    [ANY_OBJECT, '{"a":[1.5e-3,true,null,{"b":"\\"x"}]}'],
    [TUPLE, '[ "abc" , null ]'],
  ];
  for (const [schema, doc] of good) {
    assert.ok(validates(schema, doc), `reference rejects ${doc}`);
    assert.equal(accepts(schema, doc), true, doc);
  }
});

test('schemas the automaton cannot enforce are refused, naming the keyword', () => {
  for (const [schema, word] of [
    [{ type: 'string', pattern: '^(?!a)' }, 'lookaround'],
    [{ type: 'string', pattern: '(a)\\1' }, 'backreferences'],
    [{ type: 'string', pattern: '\\bword' }, 'word boundaries'],
    [{ type: 'string', pattern: 'é' }, 'non-ASCII'],
    // JavaScript reads these as (^a)|(b$) and "a, twice" twice (an error): never as ^(a|b)$ or a{2}
    [{ type: 'string', pattern: '^a|b$' }, '"^" is supported only at the start'],
    [{ type: 'string', pattern: 'a+{2}' }, 'nothing to repeat'],
    [{ type: 'string', format: 'uri' }, 'format'],
    [{ type: 'number', multipleOf: 0.5 }, 'multipleOf'],
    [{ type: 'integer', minimum: 1, maximum: 0 }, 'bounds'],
    [{ type: 'object', properties: { a: { not: {} } } }, 'not'],
    [{ $ref: 'http://example.com/x' }, '$ref'],
    [{ type: 'wat' }, 'type'],
  ] as const) {
    assert.throws(
      () => compileJsonSchema(schema),
      (e: unknown) => e instanceof SchemaError && e.message.includes(word),
      word,
    );
  }
});

/**
 * Length of the shortest document the automaton accepts, by breadth-first search over bytes
 * (states that accept the same continuations merged by their key); Infinity when it finds none
 * within `limit` bytes.
 */
function shortestAccepted(root: SchemaNode, limit = 40): number {
  let frontier = [JsonAutomatonState.initial(root)];
  const seen = new Set<string>();
  for (let len = 0; len <= limit && frontier.length; len++) {
    if (frontier.some((st) => st.accepting)) return len;
    const next: JsonAutomatonState[] = [];
    for (const st of frontier) {
      // Printable ASCII without whitespace spells a shortest document of every schema here (whose
      // objects allow only their listed keys: free keys would make the search exponential).
      for (let b = 0x21; b < 0x7f; b++) {
        const n = st.feed(b);
        if (n && !seen.has(n.key)) {
          seen.add(n.key);
          next.push(n);
        }
      }
    }
    frontier = next;
  }
  return Infinity;
}

/** An object schema with only its listed keys. */
const closed = (s: Record<string, unknown>) => ({ type: 'object', ...s, additionalProperties: false });

test('the shortest value of a schema is the shortest document the automaton accepts', () => {
  const exact: unknown[] = [
    PERSON,
    TREE,
    ANY_OBJECT,
    TUPLE,
    { type: 'string', minLength: 5 },
    { enum: ['long one', 12345, 'ab'] },
    closed({ properties: { a: false, bb: { type: 'integer' }, c: { type: 'null' } }, minProperties: 2 }),
    closed({ required: ['k'], properties: { k: { anyOf: [false, { items: { type: 'null' }, minItems: 2 }] } } }),
    { type: 'array', prefixItems: [{ type: 'boolean' }, false], minItems: 1 },
    closed({ properties: { next: { $ref: '#' }, v: { const: 'x' } }, required: ['v'] }),
    { $defs: { n: { type: 'object', properties: { n: { $ref: '#/$defs/n' } } } }, $ref: '#/$defs/n' },
    { type: ['string', 'integer'], minLength: 3 },
  ];
  for (const schema of exact) {
    const root = compileJsonSchema(schema);
    assert.equal(shortestValueBytes(root), shortestAccepted(root), JSON.stringify(schema));
  }
  // With free keys, by hand: {"":""} (and as if every further key could be "" too, which they
  // cannot all be: a lower bound, 13 where {"":"","a":""} is 14).
  const extra = (minProperties: number) =>
    compileJsonSchema({
      type: 'object',
      properties: { a: false },
      additionalProperties: { type: 'string' },
      minProperties,
    });
  assert.equal(shortestValueBytes(extra(1)), 7);
  assert.equal(shortestValueBytes(extra(2)), 13);
});

test('counts from a schema are multiplied, not listed: minItems and minProperties up to 2^53', () => {
  // A request's schema may ask for 2^40 items: listing them held the event loop for seconds
  // (minItems 10^7: 29 s) and ran out of memory beyond.
  const n = 2 ** 40;
  assert.equal(shortestValueBytes(compileJsonSchema({ type: 'array', minItems: n })), 2 + n + (n - 1));
  const tuple = { type: 'array', prefixItems: [{ const: 'abc' }], items: { type: 'integer' }, minItems: n };
  assert.equal(shortestValueBytes(compileJsonSchema(tuple)), 2 + 5 + (n - 1) + (n - 1));
  // Free keys: '"":1' is 4 bytes a member (a lower bound: keys cannot all be ""); '"k":null' 8.
  const object = { type: 'object', properties: { k: { type: 'null' } }, required: ['k'], minProperties: n };
  assert.equal(shortestValueBytes(compileJsonSchema(object)), 2 + 8 + 4 * (n - 1) + (n - 1));
  const closedItems = { type: 'array', prefixItems: [{ type: 'null' }], items: false, minItems: 1 };
  assert.equal(shortestValueBytes(compileJsonSchema(closedItems)), 6);
  assert.throws(
    () => compileJsonSchema({ type: 'array', items: { not: {} }, minItems: n }),
    (e) => e instanceof SchemaError,
  );
});

test('a schema no value satisfies is refused when compiled, naming where', () => {
  for (const [schema, where] of [
    [closed({ properties: { a: false }, required: ['a'] }), '#/properties/a'],
    [{ $defs: { x: false }, type: 'array', items: { $ref: '#/$defs/x' }, minItems: 1 }, '#/$defs/x'],
    [closed({ properties: { a: { $ref: '#' } }, required: ['a'] }), '#/properties/a'],
    [{ anyOf: [false, closed({ properties: { b: false }, required: ['b'] })] }, '#'],
    [{ type: 'object', properties: { a: false }, additionalProperties: false, minProperties: 1 }, '#'],
  ] as const) {
    const refused = (e: unknown) => e instanceof SchemaError && e.message.endsWith(`(at ${where})`);
    assert.throws(() => compileJsonSchema(schema), refused, JSON.stringify(schema));
    const root = new SchemaCompiler(schema).compile();
    assert.equal(shortestAccepted(root, 12), Infinity, `the automaton accepts nothing for ${JSON.stringify(schema)}`);
  }
});

test('token masks from the trie walk equal a brute-force check of every token', async () => {
  const model = await tinyModel();
  const vocab = await constraintVocabulary(model);
  const g = new JsonGrammar(PERSON, vocab);
  const c = g.start();
  const r = rng(7);
  // Check the masks along a random constrained walk, at a handful of its states.
  for (let step = 0; step < 40 && !c.finished; step++) {
    const mask = c.mask();
    const allowed: number[] = [];
    for (let id = 0; id < vocab.vocabSize; id++) if (maskHas(mask, id)) allowed.push(id);
    if (step % 8 === 0) {
      const state = (c as unknown as { state: JsonAutomatonState }).state;
      for (let id = 0; id < vocab.vocabSize; id++) {
        const b = vocab.trie.tokenBytes(id);
        const want = vocab.eosIds.includes(id) ? state.accepting : b != null && state.feedBytes(b) !== null;
        assert.equal(maskHas(mask, id), want, `step ${step}, token ${id} ${b ? show(b) : 'special'}`);
      }
    }
    const id = r.pick(allowed);
    if (vocab.eosIds.includes(id)) break;
    assert.ok(c.accept(id));
  }
});

test('random constrained generation over the GPT-NeoX vocabulary always ends in a valid document', async () => {
  const model = await tinyModel();
  const vocab = await constraintVocabulary(model);
  // Every free-form part of these schemas is bounded (maxLength, maxItems, digit caps), so a
  // random walk must end.
  const bounded = [PERSON, TREE, TUPLE];
  const r = rng(99);
  for (const schema of bounded) {
    const g = new JsonGrammar(schema, vocab);
    for (let run = 0; run < 6; run++) {
      const c = g.start();
      const out: number[] = [];
      let steps = 0;
      for (; steps < 3000 && !c.finished; steps++) {
        const mask = c.mask();
        const allowed: number[] = [];
        for (let id = 0; id < vocab.vocabSize; id++) if (maskHas(mask, id)) allowed.push(id);
        assert.ok(allowed.length > 0, 'a state with no way forward');
        // Prefer ending when allowed, so runs finish: otherwise a uniform pick.
        const eos = allowed.find((id) => vocab.eosIds.includes(id));
        const id = eos !== undefined && r.int(2) ? eos : r.pick(allowed);
        if (vocab.eosIds.includes(id)) {
          assert.ok(c.accepting);
          break;
        }
        assert.ok(c.accept(id));
        out.push(id);
      }
      assert.ok(steps < 3000, 'generation ended');
      const text = dec.decode(concat(out.map((id) => vocab.trie.tokenBytes(id)!)));
      assert.ok(validates(schema, text), `invalid output ${JSON.stringify(text)}`);
      assert.ok(!hasDuplicateKeys(text));
    }
  }
  // Disallowed tokens are refused by accept() and leave the state unchanged.
  const c = new JsonGrammar(PERSON, vocab).start();
  const x = model.tokenizer.encode('x')[0]!;
  assert.equal(c.accept(x), false);
  assert.equal(c.accept(model.tokenizer.encode('{')[0]!), true);
  const logits = new Float32Array(vocab.vocabSize).fill(1);
  const left = c.apply(logits);
  assert.ok(left > 0 && left < 1000, `${left} tokens may follow "{"`);
  assert.equal(logits[x], -Infinity);
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
