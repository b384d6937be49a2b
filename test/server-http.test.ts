/**
 * The HTTP layer with raw requests: OpenAI error JSON for every bad request, body limits, API
 * key, CORS, the queue limit (429), disconnects freeing their slot, timeouts, 16 concurrent
 * clients, request isolation, metrics, graceful shutdown.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, test } from 'node:test';
import { metricValue, startTestServer, waitFor, type TestServer } from './helpers/serve-fixture.js';

let srv: TestServer;
let model: string;

before(async () => {
  srv = await startTestServer({ parallel: 8, queue: 64, maxBodyBytes: 64 * 1024 });
  model = srv.model.id;
});

after(async () => {
  await srv.close();
});

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: any; headers: Headers }> {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, json, headers: r.headers };
}

function assertOpenAiError(
  r: { status: number; json: any },
  status: number,
  param: string | null,
  pattern?: RegExp,
): void {
  assert.equal(r.status, status, JSON.stringify(r.json));
  const e = r.json.error;
  assert.ok(e, `no error object: ${JSON.stringify(r.json)}`);
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  assert.equal(e.param, param);
  if (status < 500 && status !== 429) assert.equal(e.type, 'invalid_request_error');
  if (pattern) assert.match(e.message, pattern);
  if (param) assert.ok(e.message.includes(param.split(/[.[]/)[0]!), `message names the field: ${e.message}`);
}

async function metrics(url: string): Promise<string> {
  return (await fetch(`${url}/metrics`)).text();
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model,
  messages: [{ role: 'user', content: 'Hello' }],
  max_tokens: 4,
  ...extra,
});

test('malformed JSON, wrong types, missing and unknown fields get OpenAI errors naming the field', async () => {
  const u = `${srv.url}/v1/chat/completions`;
  assertOpenAiError(await post(u, '{"model": "x", '), 400, null, /JSON/);
  assertOpenAiError(await post(u, ''), 400, null, /empty/);
  assertOpenAiError(await post(u, '[1,2]'), 400, null, /JSON object/);
  assertOpenAiError(
    await post(u, chat({ temperature: 'hot' })),
    400,
    'temperature',
    /expected a number, but got a string/,
  );
  assertOpenAiError(await post(u, chat({ temperature: 2.5 })), 400, 'temperature', /<= 2/);
  assertOpenAiError(await post(u, chat({ n: 0 })), 400, 'n');
  assertOpenAiError(await post(u, chat({ n: 1.5 })), 400, 'n', /integer/);
  assertOpenAiError(await post(u, chat({ max_tokens: -1 })), 400, 'max_tokens');
  assertOpenAiError(await post(u, chat({ stop: 7 })), 400, 'stop', /string or an array/);
  assertOpenAiError(await post(u, chat({ stop: ['a', 'b', 'c', 'd', 'e'] })), 400, 'stop', /at most 4/);
  assertOpenAiError(await post(u, chat({ stream: 'yes' })), 400, 'stream');
  assertOpenAiError(await post(u, chat({ frobnicate: true })), 400, 'frobnicate', /Unrecognized request argument/);
  assertOpenAiError(await post(u, chat({ functions: [{ name: 'f' }] })), 400, 'functions', /not supported/);
  const badName = chat({ tools: [{ type: 'function', function: { name: 'f g' } }] });
  assertOpenAiError(await post(u, badName), 400, 'tools[0].function.name');
  assertOpenAiError(await post(u, chat({ top_logprobs: 3 })), 400, 'top_logprobs', /logprobs/);
  assertOpenAiError(await post(u, { model, max_tokens: 3 }), 400, 'messages', /Missing required parameter/);
  assertOpenAiError(await post(u, { model, messages: [] }), 400, 'messages', /at least 1/);
  assertOpenAiError(await post(u, { model, messages: [{ role: 'user', content: 5 }] }), 400, 'messages[0].content');
  assertOpenAiError(await post(u, { model, messages: [{ role: 'wizard', content: 'x' }] }), 400, 'messages[0].role');
  assertOpenAiError(
    await post(u, { model, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }),
    400,
    'messages[0].content[0].type',
  );
  assertOpenAiError(await post(u, { messages: [{ role: 'user', content: 'x' }] }), 400, 'model', /Missing/);
  assertOpenAiError(await post(u, chat({ response_format: { type: 'xml' } })), 400, 'response_format.type');
  assertOpenAiError(
    await post(
      u,
      chat({
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'x', schema: { type: 'string', pattern: '(?=a)a+' } },
        },
      }),
    ),
    400,
    'response_format.json_schema.schema',
    /lookaround/,
  );
  assertOpenAiError(await post(u, chat({ logit_bias: { 99999999: 5 } })), 400, 'logit_bias');
  // Inputs sized to make the server work hard are refused up front.
  assertOpenAiError(
    await post(u, chat({ logit_bias: Object.fromEntries(Array.from({ length: 301 }, (_, i) => [String(i), 1])) })),
    400,
    'logit_bias',
    /300/,
  );
  assertOpenAiError(await post(u, chat({ stop: 'x'.repeat(300) })), 400, 'stop');
  const schemaOf = (schema: unknown) =>
    chat({ response_format: { type: 'json_schema', json_schema: { name: 's', schema } } });
  let deep: any = { type: 'string' };
  for (let i = 0; i < 200; i++) deep = { type: 'array', items: deep };
  assertOpenAiError(await post(u, schemaOf(deep)), 400, 'response_format.json_schema.schema', /nested/);
  assertOpenAiError(await post(u, schemaOf({ $ref: '#' })), 400, 'response_format.json_schema.schema', /itself/);
  assertOpenAiError(
    await post(u, schemaOf({ enum: Array.from({ length: 2000 }, (_, i) => i) })),
    400,
    'response_format.json_schema.schema',
    /enum/,
  );
  const c = `${srv.url}/v1/completions`;
  assertOpenAiError(await post(c, { model, prompt: [1, -2] }), 400, 'prompt[1]');
  assertOpenAiError(await post(c, { model, prompt: [999999] }), 400, 'prompt', /outside the vocabulary/);
  assertOpenAiError(await post(c, { model, prompt: 'x', logprobs: 9 }), 400, 'logprobs');
  assertOpenAiError(await post(c, { model, prompt: 'x', suffix: 'y' }), 400, 'suffix');
  // Context overflow: prompt + max_tokens beyond the context.
  const r = await post(c, { model, prompt: 'x', max_tokens: srv.model.contextLength + 1 });
  assertOpenAiError(r, 400, 'prompt', /maximum context length/);
  assert.equal(r.json.error.code, 'context_length_exceeded');
});

test('unknown model 404, unknown path 404, wrong method 405', async () => {
  const r = await post(`${srv.url}/v1/chat/completions`, chat({ model: 'no-such-model' }));
  assertOpenAiError(r, 404, 'model', /no-such-model/);
  assert.equal(r.json.error.code, 'model_not_found');
  const p = await fetch(`${srv.url}/v1/nothing`);
  assert.equal(p.status, 404);
  assert.ok((await p.json()).error);
  const m = await fetch(`${srv.url}/v1/chat/completions`);
  assert.equal(m.status, 405);
  assert.equal(m.headers.get('allow'), 'POST');
  const mm = await fetch(`${srv.url}/v1/models/not-it`);
  assert.equal(mm.status, 404);
  assert.ok((await mm.json()).error.message.includes(`\`${model}\``));
});

test("an error about the request's model names the model served, so that the client can fix it", async () => {
  const served = `This server serves \`${model}\``;
  const { model: _, ...noModel } = chat();
  const cases: Array<[string, unknown, number, RegExp]> = [
    ['/v1/chat/completions', noModel, 400, /Missing required parameter: 'model'/],
    ['/v1/chat/completions', chat({ model: 7 }), 400, /Invalid type for 'model'/],
    ['/v1/chat/completions', chat({ model: 'gpt-4o' }), 404, /`gpt-4o` does not exist/],
    ['/v1/completions', { prompt: 'x', max_tokens: 1 }, 400, /Missing required parameter: 'model'/],
    ['/v1/completions', { model: 'gpt-4o', prompt: 'x', max_tokens: 1 }, 404, /`gpt-4o` does not exist/],
    ['/v1/embeddings', { input: 'x' }, 400, /Missing required parameter: 'model'/],
  ];
  for (const [path, body, status, pattern] of cases) {
    const r = await post(`${srv.url}${path}`, body);
    assertOpenAiError(r, status, 'model', pattern);
    assert.ok(r.json.error.message.includes(served), `${path}: ${r.json.error.message}`);
  }
  // Other fields' errors stay as they were.
  const other = await post(`${srv.url}/v1/chat/completions`, chat({ temperature: 'hot' }));
  assertOpenAiError(other, 400, 'temperature');
  assert.ok(!other.json.error.message.includes(served));
});

test('a huge body gets 413, declared or streamed, and the server keeps serving', async () => {
  const big = JSON.stringify(chat({ messages: [{ role: 'user', content: 'x'.repeat(200_000) }] }));
  const r = await post(`${srv.url}/v1/chat/completions`, big);
  assertOpenAiError(r, 413, null, /larger than/);
  // Chunked upload without Content-Length.
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(
      `${srv.url}/v1/chat/completions`,
      { method: 'POST', headers: { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' } },
      (res) => {
        res.resume();
        resolve(res.statusCode!);
      },
    );
    req.on('error', reject);
    const piece = 'y'.repeat(16 * 1024);
    let sent = 0;
    const pump = () => {
      while (sent < 40) {
        sent++;
        if (!req.write(piece)) {
          req.once('drain', pump);
          return;
        }
      }
      req.end();
    };
    pump();
  });
  assert.equal(status, 413);
  const ok = await post(`${srv.url}/v1/chat/completions`, chat());
  assert.equal(ok.status, 200);
});

test('16 concurrent streaming clients all finish, batched together, each with its own text', async () => {
  const prompts = Array.from({ length: 16 }, (_, i) => `Client number ${i} says:`);
  // Each prompt alone first (greedy), then all at once: batching must not change or mix outputs.
  const solo: string[] = [];
  for (const p of prompts.slice(0, 4))
    solo.push(
      (await post(`${srv.url}/v1/completions`, { model, prompt: p, max_tokens: 12, temperature: 0 })).json.choices[0]
        .text,
    );
  let maxActive = 0;
  const poll = setInterval(() => {
    maxActive = Math.max(maxActive, srv.server.scheduler.activeCount);
  }, 2);
  const results = await Promise.all(
    prompts.map(async (p) => {
      const r = await fetch(`${srv.url}/v1/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model, prompt: p, max_tokens: 12, temperature: 0, stream: true }),
      });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type')!, /text\/event-stream/);
      const text = await r.text();
      const events = text.split('\n\n').filter(Boolean);
      assert.equal(events[events.length - 1], 'data: [DONE]');
      let out = '';
      let finish: string | null = null;
      for (const e of events.slice(0, -1)) {
        assert.ok(e.startsWith('data: '));
        const j = JSON.parse(e.slice(6));
        out += j.choices[0].text;
        finish = j.choices[0].finish_reason ?? finish;
      }
      return { out, finish };
    }),
  );
  clearInterval(poll);
  for (const r of results) assert.equal(r.finish, 'length');
  assert.deepEqual(
    results.slice(0, 4).map((r) => r.out),
    solo,
  );
  assert.ok(maxActive >= 4 && maxActive <= 8, `max active ${maxActive}`);
  assert.equal(srv.server.scheduler.activeCount, 0);
});

test('a client disconnecting mid-stream frees its slot (metrics back to 0)', async () => {
  const ac = new AbortController();
  const r = await fetch(`${srv.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    signal: ac.signal,
    body: JSON.stringify(chat({ max_tokens: 1500, stream: true })),
  });
  const reader = r.body!.getReader();
  let got = 0;
  while (got < 3) {
    const { value } = await reader.read();
    got += (new TextDecoder().decode(value).match(/data: /g) ?? []).length;
  }
  assert.equal(metricValue(await metrics(srv.url), 'mpt_active_sequences'), 1);
  ac.abort();
  await waitFor(async () => metricValue(await metrics(srv.url), 'mpt_active_sequences') === 0, 5000, 'slot freed');
  // A non-streaming request whose client hangs up is cancelled too.
  await new Promise<void>((resolve) => {
    const req = request(`${srv.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
    });
    req.on('error', () => resolve());
    req.end(JSON.stringify({ model, prompt: 'x', max_tokens: 1500 }));
    setTimeout(() => {
      req.destroy();
      resolve();
    }, 150);
  });
  await waitFor(() => srv.server.scheduler.activeCount === 1 || srv.server.scheduler.activeCount === 0, 2000);
  await waitFor(
    async () => metricValue(await metrics(srv.url), 'mpt_active_sequences') === 0,
    5000,
    'slot freed after hang-up',
  );
  const text = await metrics(srv.url);
  assert.match(text, /mpt_requests_total\{endpoint="\/v1\/completions",status="499"\} 1/);
});

test('/health and /metrics', async () => {
  const h = await (await fetch(`${srv.url}/health`)).json();
  assert.equal(h.status, 'ok');
  const text = await metrics(srv.url);
  for (const name of [
    'mpt_requests_total',
    'mpt_prompt_tokens_total',
    'mpt_generation_tokens_total',
    'mpt_queue_depth',
    'mpt_active_sequences',
    'mpt_decode_tokens_per_second',
    'mpt_time_to_first_token_seconds',
  ]) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'));
  }
  assert.ok(metricValue(text, 'mpt_generation_tokens_total') > 100);
  assert.match(text, /mpt_requests_total\{endpoint="\/v1\/chat\/completions",status="400"\} \d+/);
  // Every sample line is NAME{labels} VALUE with a numeric value.
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    assert.match(line, /^[a-z_]+(\{[^}]*\})? (-?[0-9.e+]+|NaN|[+-]Inf)$/, line);
  }
});

test('API key: 401 without or with a wrong key; CORS preflight for the allowed origin only', async () => {
  const s = await startTestServer({ apiKey: 'sekrit', cors: 'http://app.example' });
  try {
    assertOpenAiError(await post(`${s.url}/v1/chat/completions`, chat()), 401, null, /API key/);
    assertOpenAiError(await post(`${s.url}/v1/chat/completions`, chat(), { Authorization: 'Bearer nope' }), 401, null);
    const no = await fetch(`${s.url}/v1/models`);
    assert.equal(no.status, 401);
    assert.equal(no.headers.get('www-authenticate'), 'Bearer');
    const ok = await post(`${s.url}/v1/chat/completions`, chat(), { Authorization: 'Bearer sekrit' });
    assert.equal(ok.status, 200);
    assert.equal((await fetch(`${s.url}/health`)).status, 200, 'health needs no key');
    const pre = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST' },
    });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers.get('access-control-allow-origin'), 'http://app.example');
    assert.match(pre.headers.get('access-control-allow-headers')!, /Authorization/);
    const other = await fetch(`${s.url}/v1/models`, {
      headers: { Origin: 'http://evil.example', Authorization: 'Bearer sekrit' },
    });
    assert.equal(other.headers.get('access-control-allow-origin'), null);
  } finally {
    await s.close();
  }
});

test('a full queue answers 429 with Retry-After; a timed-out request answers 504 and frees its slot', async () => {
  const s = await startTestServer({ parallel: 1, queue: 0, timeoutS: 0.4 });
  try {
    const first = fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, prompt: 'x', max_tokens: 1900 }),
    });
    await waitFor(() => s.server.scheduler.activeCount === 1, 5000, 'first request active');
    const r = await post(`${s.url}/v1/completions`, { model, prompt: 'y', max_tokens: 2 });
    assertOpenAiError(r, 429, null, /busy/);
    assert.equal(r.headers.get('retry-after'), '1');
    const t = await first;
    const body = await t.json();
    assert.equal(t.status, 504);
    assert.equal(body.error.type, 'timeout_error');
    await waitFor(() => s.server.scheduler.activeCount === 0, 2000, 'slot freed after timeout');
    const again = await post(`${s.url}/v1/completions`, { model, prompt: 'y', max_tokens: 2 });
    assert.equal(again.status, 200);
  } finally {
    await s.close();
  }
});

test('graceful shutdown: in-flight streams finish, new requests are refused, then it stops', async () => {
  const s = await startTestServer();
  const stream = fetch(`${s.url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'x', max_tokens: 120, stream: true }),
  }).then((r) => r.text());
  await waitFor(() => s.server.scheduler.activeCount === 1, 5000);
  const stopped = s.server.shutdown(30_000);
  const text = await stream;
  assert.match(text, /"finish_reason":"length"/);
  assert.ok(text.endsWith('data: [DONE]\n\n'));
  await stopped;
  await assert.rejects(fetch(`${s.url}/health`));
  // With no grace, an in-flight stream is ended with an error event.
  const s2 = await startTestServer();
  const stream2 = fetch(`${s2.url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, prompt: 'x', max_tokens: 1900, stream: true }),
  }).then((r) => r.text());
  await waitFor(() => s2.server.scheduler.activeCount === 1, 5000);
  await s2.server.shutdown(0);
  assert.match(await stream2, /"code":"shutting_down"/);
});

test('--prefix-cache: the next chat turn reads only what is new, and replies as a server without it', async () => {
  const cached = await startTestServer({ parallel: 2, prefixCache: 4 });
  try {
    const turn1 = [{ role: 'user', content: 'Tell me about the sea.' }];
    const r1 = await post(`${cached.url}/v1/chat/completions`, {
      model,
      messages: turn1,
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(r1.status, 200, JSON.stringify(r1.json));
    const turn2 = [
      ...turn1,
      { role: 'assistant', content: r1.json.choices[0].message.content },
      { role: 'user', content: 'And the sky?' },
    ];
    const r2 = await post(`${cached.url}/v1/chat/completions`, {
      model,
      messages: turn2,
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(r2.status, 200, JSON.stringify(r2.json));
    const text = await metrics(cached.url);
    const reused = metricValue(text, 'mpt_prefix_cache_tokens_total');
    assert.ok(reused > 0 && reused < r2.json.usage.prompt_tokens, `reused ${reused} of ${r2.json.usage.prompt_tokens}`);
    assert.equal(
      metricValue(text, 'mpt_prefill_tokens_total'),
      r1.json.usage.prompt_tokens + r2.json.usage.prompt_tokens - reused,
    );
    // the same turn on the shared server (no prefix cache): the same greedy reply
    const plain = await post(`${srv.url}/v1/chat/completions`, {
      model,
      messages: turn2,
      max_tokens: 12,
      temperature: 0,
    });
    assert.equal(r2.json.choices[0].message.content, plain.json.choices[0].message.content);
  } finally {
    await cached.close();
  }
});
