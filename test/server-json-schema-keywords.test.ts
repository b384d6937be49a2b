/**
 * The JSON Schema keywords structured-output clients send (zod's JSON Schema through LangChain
 * and the AI SDK): numeric bounds, multipleOf, string lengths with pattern and format, array
 * sizes, and the rest. For each, random walks through the automaton produce documents that a
 * hand-written validator of that keyword must accept; and documents breaking the keyword are
 * refused byte by byte.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { JsonAutomatonState } from '../src/server/constrain/json-automaton.js';
import { compileJsonSchema } from '../src/server/constrain/schema.js';

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A random document the automaton accepts: random allowed bytes (printable ASCII and newline),
 * stopping at random once the text is complete, and steering towards closing bytes when long.
 */
function randomWalk(schema: unknown, next: () => number, limit = 400): string | null {
  let st = JsonAutomatonState.initial(compileJsonSchema(schema));
  const out: number[] = [];
  // Bytes that tend to complete a value ('@', '.' and a letter complete an email address).
  const closers = [0x22, 0x7d, 0x5d, 0x30, 0x31, 0x40, 0x2e, 0x61];
  while (out.length < limit) {
    if (st.finished || (st.accepting && next() < (out.length > 30 ? 0.6 : 0.15)))
      return dec.decode(Uint8Array.from(out));
    const allowed: number[] = [];
    for (let b = 0x0a; b < 0x7f; b++) if ((b === 0x0a || b >= 0x20) && st.feed(b)) allowed.push(b);
    if (!allowed.length && st.accepting) return dec.decode(Uint8Array.from(out));
    assert.ok(allowed.length > 0, `dead end after ${JSON.stringify(dec.decode(Uint8Array.from(out)))}`);
    const closing = allowed.filter((b) => closers.includes(b));
    const pool = out.length > 20 && closing.length && next() < 0.7 ? closing : allowed;
    const b = pool[Math.floor(next() * pool.length)]!;
    st = st.feed(b)!;
    out.push(b);
  }
  return null;
}

function accepts(schema: unknown, text: string): boolean {
  const st = JsonAutomatonState.initial(compileJsonSchema(schema)).feedBytes(enc.encode(text));
  return st?.accepting === true;
}

const isDate = (v: string) => {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
  if (!m) return false;
  const d = new Date(0);
  d.setUTCFullYear(Number(m[1]), Number(m[2]) - 1, Number(m[3]));
  return d.getUTCFullYear() === Number(m[1]) && d.getUTCMonth() + 1 === Number(m[2]) && d.getUTCDate() === Number(m[3]);
};
// zod 4's own email pattern (what z.email() puts in its JSON Schema).
const ZOD_EMAIL =
  "^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$";

const CASES: Array<{ name: string; schema: unknown; valid: (v: unknown) => boolean; invalid: string[] }> = [
  {
    name: 'integer minimum/maximum',
    schema: { type: 'integer', minimum: -5, maximum: 17 },
    valid: (v) => Number.isInteger(v) && (v as number) >= -5 && (v as number) <= 17,
    invalid: ['-6', '18', '100', '1.5', '1e1'],
  },
  {
    name: 'integer exclusive bounds and multipleOf',
    schema: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 100, multipleOf: 7 },
    valid: (v) => Number.isInteger(v) && (v as number) > 0 && (v as number) < 100 && (v as number) % 7 === 0,
    invalid: ['0', '8', '105', '-7'],
  },
  {
    name: "zod's .int() (safe-integer bounds)",
    schema: { type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 },
    valid: (v) => Number.isSafeInteger(v),
    invalid: ['9007199254740992', '-90071992547409910'],
  },
  {
    name: 'number minimum/maximum',
    schema: { type: 'number', minimum: 0.5, maximum: 2.25 },
    valid: (v) => typeof v === 'number' && v >= 0.5 && v <= 2.25,
    invalid: ['0.49', '2.26', '3', '-1', '1e0'],
  },
  {
    name: 'number exclusive bounds',
    schema: { type: 'number', exclusiveMinimum: -1, exclusiveMaximum: 0 },
    valid: (v) => typeof v === 'number' && v > -1 && v < 0,
    invalid: ['-1', '0', '-0', '0.5', '-1.0'],
  },
  {
    name: 'pattern with lengths',
    schema: { type: 'string', minLength: 2, maxLength: 5, pattern: '^[a-c]+x?$' },
    valid: (v) => typeof v === 'string' && v.length >= 2 && v.length <= 5 && /^[a-c]+x?$/.test(v),
    invalid: ['"a"', '"abcabc"', '"ax x"', '"xa"', '"abd"'],
  },
  {
    name: 'unanchored pattern',
    schema: { type: 'string', pattern: 'a{2}[0-9]', maxLength: 12 },
    valid: (v) => typeof v === 'string' && v.length <= 12 && /aa[0-9]/.test(v),
    invalid: ['"a1"', '"aba9"', '""'],
  },
  {
    name: 'format date',
    schema: { type: 'string', format: 'date' },
    valid: (v) => typeof v === 'string' && isDate(v),
    invalid: ['"2024-13-01"', '"2024-02-30"', '"24-01-01"', '"2024-1-01"'],
  },
  {
    name: 'format date-time',
    schema: { type: 'string', format: 'date-time' },
    valid: (v) =>
      typeof v === 'string' &&
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/.test(v) &&
      isDate(v.slice(0, 10)) &&
      new Date(v).toISOString() === v.replace('Z', '.000Z'),
    invalid: ['"2024-01-01T24:00:00Z"', '"2024-01-01 10:00:00Z"', '"2024-01-01T10:60:00Z"'],
  },
  {
    name: 'format uuid',
    schema: { type: 'string', format: 'uuid' },
    valid: (v) =>
      typeof v === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i.test(v),
    invalid: ['"00000000-0000-0000-0000-00000000000"', '"g0000000-0000-1000-8000-000000000000"'],
  },
  {
    name: "format email with zod's pattern",
    schema: { type: 'string', format: 'email', pattern: ZOD_EMAIL },
    valid: (v) => typeof v === 'string' && new RegExp(ZOD_EMAIL).test(v) && v.split('@').length === 2,
    invalid: ['"a@b"', '"@b.cd"', '"a@@b.cd"', '"a b@c.de"'],
  },
  {
    name: 'minItems/maxItems, const, enum',
    schema: { type: 'array', items: { enum: ['x', 2] }, minItems: 2, maxItems: 3, prefixItems: [{ const: 'k' }] },
    valid: (v) =>
      Array.isArray(v) &&
      v.length >= 2 &&
      v.length <= 3 &&
      v[0] === 'k' &&
      v.slice(1).every((x) => x === 'x' || x === 2),
    invalid: ['["k"]', '["k",2,2,2]', '["x",2]', '["k",3]'],
  },
  {
    name: 'anyOf, $ref/$defs, nullable type, additionalProperties, annotations',
    schema: {
      $schema: 'https://json-schema.org/draft/2020-12/schema',
      title: 'T',
      description: 'd',
      type: 'object',
      properties: {
        a: { $ref: '#/$defs/small' },
        b: { type: ['string', 'null'], maxLength: 2, default: 'x' },
        c: { anyOf: [{ type: 'boolean' }, { const: 0 }] },
      },
      required: ['a', 'b', 'c'],
      additionalProperties: false,
      $defs: { small: { type: 'integer', minimum: 1, maximum: 3 } },
    },
    valid: (v) => {
      const o = v as Record<string, unknown>;
      return (
        typeof o === 'object' &&
        o !== null &&
        Object.keys(o).length === 3 &&
        [1, 2, 3].includes(o.a as number) &&
        (o.b === null || (typeof o.b === 'string' && o.b.length <= 2)) &&
        (typeof o.c === 'boolean' || o.c === 0)
      );
    },
    invalid: [
      '{"a":4,"b":null,"c":0}',
      '{"a":1,"b":null,"c":0,"d":1}',
      '{"a":1,"b":"abc","c":true}',
      '{"a":1,"b":null,"c":1}',
    ],
  },
];

for (const c of CASES) {
  test(`keyword ${c.name}: every random document satisfies it; violations are refused`, () => {
    const next = rng(99);
    let finished = 0;
    for (let k = 0; k < 60; k++) {
      const doc = randomWalk(c.schema, next);
      if (doc === null) continue;
      finished++;
      // At most one whitespace byte between tokens (outside strings).
      assert.ok(!/^(?:[^"]|"(?:[^"\\]|\\.)*")*?\s\s/.test(doc), `whitespace run in ${JSON.stringify(doc)}`);
      assert.ok(c.valid(JSON.parse(doc)), `${JSON.stringify(doc)} breaks ${c.name}`);
    }
    assert.ok(finished >= 40, `only ${finished} of 60 walks finished`);
    for (const bad of c.invalid) assert.equal(accepts(c.schema, bad), false, bad);
  });
}

test('documents within the keywords are accepted (the constraint is not empty-handed)', () => {
  const good: Array<[unknown, string]> = [
    [{ type: 'integer', minimum: -5, maximum: 17 }, '-5'],
    [{ type: 'integer', minimum: -5, maximum: 17 }, '17'],
    [{ type: 'number', minimum: 0.5, maximum: 2.25 }, '2.25'],
    [{ type: 'number', minimum: 0.5, maximum: 2.25 }, '0.5000'],
    [{ type: 'integer', minimum: -9007199254740991, maximum: 9007199254740991 }, '9007199254740991'],
    [{ type: 'string', format: 'email', pattern: ZOD_EMAIL }, '"ann.lee@mail.example.org"'],
    [{ type: 'string', format: 'date-time' }, '"2024-02-28T23:59:59Z"'],
    [{ type: 'string', format: 'uuid' }, '"123e4567-e89b-12d3-a456-426614174000"'],
  ];
  for (const [schema, doc] of good) assert.equal(accepts(schema, doc), true, doc);
});
