/**
 * What the server refuses before any work, always as OpenAI's error JSON: bodies that are not
 * JSON by their Content-Type or not UTF-8, numbers JSON can only spell as infinities, requests
 * Node's HTTP parser rejects (oversized headers, malformed request lines), and JSON schemas no
 * value (or no value that fits the completion) can satisfy.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { startTestServer, type TestServer } from './helpers/serve-fixture.js';

let srv: TestServer;
let model: string;

before(async () => {
  srv = await startTestServer({ parallel: 4 });
  model = srv.model.id;
});

after(async () => {
  await srv.close();
});

interface Reply {
  status: number;
  headers: Headers;
  json: any;
}

const JSON_TYPE = { 'Content-Type': 'application/json' };

async function send(path: string, body: string | Uint8Array<ArrayBuffer>, headers: Record<string, string> = JSON_TYPE) {
  const r = await fetch(`${srv.url}${path}`, { method: 'POST', headers, body });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  const reply: Reply = { status: r.status, headers: r.headers, json };
  return reply;
}

function assertError(r: Reply, status: number, param: string | null, pattern: RegExp): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  const e = r.json?.error;
  assert.ok(e, `no error object: ${JSON.stringify(r.json)}`);
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(e.param, param);
  assert.match(e.message, pattern);
}

const chat = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2, ...extra });

test('a body that is not declared as JSON gets 415; application/json with a UTF-8 charset is fine', async () => {
  const wrong = [
    'text/plain',
    'application/x-www-form-urlencoded',
    'application/json; charset=latin1',
    'application/jsonx',
  ];
  for (const type of wrong) {
    const r = await send('/v1/chat/completions', chat(), { 'Content-Type': type });
    assertError(r, 415, null, /Content-Type/);
    assert.equal(r.json.error.type, 'invalid_request_error');
  }
  // A byte body: fetch adds no Content-Type of its own.
  const bytes = new TextEncoder().encode(chat());
  const none = await fetch(`${srv.url}/v1/chat/completions`, { method: 'POST', body: bytes });
  assertError({ status: none.status, headers: none.headers, json: await none.json() }, 415, null, /Content-Type/);
  for (const type of ['application/json', 'application/json; charset=utf-8', 'Application/JSON;charset="UTF-8"']) {
    const r = await send('/v1/chat/completions', chat(), { 'Content-Type': type });
    assert.equal(r.status, 200, `${type}: ${JSON.stringify(r.json)}`);
  }
});

/** Sends raw bytes on a fresh connection and returns what came back, split into head and body. */
function rawExchange(request: string): Promise<{ status: number; head: string; body: string }> {
  const { hostname, port } = new URL(srv.url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    sock.on('data', (c) => chunks.push(c));
    sock.on('error', reject);
    sock.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const split = text.indexOf('\r\n\r\n');
      const head = split < 0 ? text : text.slice(0, split);
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
      resolve({ status, head, body: split < 0 ? '' : text.slice(split + 4) });
    });
    sock.end(request);
  });
}

test("requests Node's HTTP parser refuses get OpenAI error JSON too (431, 400, 417)", async () => {
  const cases: [string, number, RegExp][] = [
    [`GET /v1/models?q=${'x'.repeat(60_000)} HTTP/1.1\r\nHost: a\r\n\r\n`, 431, /header/i],
    [`GET /health HTTP/1.1\r\nHost: a\r\nX-Big: ${'y'.repeat(40_000)}\r\n\r\n`, 431, /header/i],
    ['THIS IS NOT HTTP\r\n\r\n', 400, /could not be parsed/i],
    [
      'POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
      400,
      /could not be parsed/i,
    ],
    [
      'POST /v1/completions HTTP/1.1\r\nHost: a\r\nConnection: close\r\nExpect: 200-ok\r\nContent-Length: 2\r\n\r\n{}',
      417,
      /Expect/,
    ],
  ];
  for (const [request, status, pattern] of cases) {
    const r = await rawExchange(request);
    assert.equal(r.status, status, r.head);
    assert.match(r.head, /content-type: application\/json/i);
    const e = JSON.parse(r.body).error;
    assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
    assert.equal(e.type, 'invalid_request_error');
    assert.match(e.message, pattern);
  }
  // The server is unharmed.
  assert.equal((await fetch(`${srv.url}/health`)).status, 200);
});

test('a malformed %-escape in /v1/models/ID is a 400, not a 500', async () => {
  const r = await fetch(`${srv.url}/v1/models/%E0%A4%A`);
  assertError({ status: r.status, headers: r.headers, json: await r.json() }, 400, null, /model id/);
});

test('numbers beyond what JSON can represent are refused as not finite, naming the field', async () => {
  const chatFields = [
    'temperature',
    'top_p',
    'top_k',
    'min_p',
    'seed',
    'presence_penalty',
    'frequency_penalty',
    'repetition_penalty',
    'n',
    'max_tokens',
    'max_completion_tokens',
    'top_logprobs',
  ];
  const chatBody = `{"model": "${model}", "messages": [{"role": "user", "content": "Hi"}]`;
  const completionBody = `{"model": "${model}", "prompt": "Hi"`;
  const fields = [
    ...chatFields.map((f) => ['/v1/chat/completions', chatBody, f] as const),
    ...['logprobs', 'best_of', 'max_tokens'].map((f) => ['/v1/completions', completionBody, f] as const),
  ];
  for (const [path, base, field] of fields) {
    for (const big of ['1e400', '-1e400']) {
      const r = await send(path!, `${base}, "${field}": ${big}}`);
      assertError(r, 400, field, /finite/);
      assert.ok(r.json.error.message.includes(`'${field}'`), r.json.error.message);
      assert.doesNotMatch(r.json.error.message, /but got a number/);
    }
  }
  const bias = await send('/v1/chat/completions', `${chatBody}, "logit_bias": {"5": 1e999}}`);
  assertError(bias, 400, 'logit_bias.5', /finite/);
  const ids = await send('/v1/completions', `{"model": "${model}", "prompt": [1, 2e308]}`);
  assertError(ids, 400, 'prompt[1]', /finite/);
});

test('a body that is not valid UTF-8 is refused, naming the byte offset', async () => {
  const prefix = `{"model": "${model}", "messages": [{"role": "user", "content": "caf`;
  const enc = new TextEncoder();
  for (const bad of [[0xff], [0xc3], [0xe9, 0x22], [0xed, 0xa0, 0x80], [0xc0, 0xaf]]) {
    const body = new Uint8Array([...enc.encode(prefix), ...bad, ...enc.encode('"}]}')]);
    const r = await send('/v1/chat/completions', body);
    assertError(r, 400, null, /UTF-8/);
    assert.match(r.json.error.message, new RegExp(`byte ${enc.encode(prefix).length}\\b`), r.json.error.message);
  }
  // The same text, correctly encoded, is fine (and a byte-order mark is tolerated).
  const good = new Uint8Array([0xef, 0xbb, 0xbf, ...enc.encode(`${prefix}é"}], "max_tokens": 2}`)]);
  assert.equal((await send('/v1/chat/completions', good)).status, 200);
});

test('a JSON schema no value can satisfy is refused with 400, not answered with text that does not parse', async () => {
  const schemaOf = (schema: unknown, extra: Record<string, unknown> = {}) =>
    chat({ max_tokens: 8, response_format: { type: 'json_schema', json_schema: { name: 's', schema } }, ...extra });
  const param = 'response_format.json_schema.schema';
  const unsatisfiable: [unknown, RegExp][] = [
    [{ type: 'object', properties: { a: false }, required: ['a'] }, /properties\/a/],
    [
      { type: 'object', properties: { a: { properties: { b: false }, required: ['b'] } }, required: ['a'] },
      /properties\/a\/properties\/b/,
    ],
    [{ anyOf: [false, { type: 'array', prefixItems: [{ type: 'string' }, false], minItems: 2 }] }, /no value/],
    [{ type: 'object', properties: { next: { $ref: '#' } }, required: ['next'] }, /no finite value|itself/],
    [
      { type: 'object', properties: { a: false, b: false }, additionalProperties: false, minProperties: 1 },
      /minProperties/,
    ],
    [{ type: 'array', items: false, prefixItems: [false], minItems: 1 }, /prefixItems\/0/],
    [{ enum: [] }, /enum/],
    [{ type: 'string', minLength: 9, maxLength: 3 }, /minLength/],
    [{ type: 'array', minItems: 4, maxItems: 2 }, /minItems/],
    [{ type: 'string', minLength: 1e9 }, /shortest.*1000000002 bytes/],
    // Not unsatisfiable but malformed: a 400 too, not a 500.
    [{ $ref: '#/%E0%A4%A' }, /percent-encoding/],
  ];
  for (const [schema, pattern] of unsatisfiable) {
    const r = await send('/v1/chat/completions', schemaOf(schema));
    assertError(r, 400, param, pattern);
    assert.equal(r.json.error.code, 'invalid_json_schema');
  }
  // Satisfiable, but not within max_tokens: 602 bytes need two of this vocabulary's tokens (at most 512 bytes each).
  const long = { type: 'string', minLength: 600 };
  assertError(await send('/v1/chat/completions', schemaOf(long, { max_tokens: 1 })), 400, param, /max_tokens/);
  assert.equal((await send('/v1/chat/completions', schemaOf(long, { max_tokens: 2 }))).status, 200);
  // Schemas that only exclude some values stay accepted.
  for (const schema of [
    { type: 'object', properties: { a: false } },
    { type: 'object', properties: { next: { $ref: '#' } } },
    { anyOf: [false, { type: 'integer' }] },
    { type: 'array', prefixItems: [{ type: 'string' }, false] },
  ]) {
    const r = await send('/v1/chat/completions', schemaOf(schema));
    assert.equal(r.status, 200, `${JSON.stringify(schema)}: ${JSON.stringify(r.json)}`);
  }
});
