/**
 * Work proportional to a request's size never stalls the server: a long prompt is tokenized off
 * the event loop (health checks and other requests keep being answered meanwhile), a prompt whose
 * bytes alone cannot fit the context is refused before it is tokenized, and counts that multiply
 * the work (messages, prompts × n) are checked before any of it is done.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, Server } from 'node:http';
import { after, before, test } from 'node:test';
import { InputError } from '../src/errors.js';
import { jinjaFormat } from '../src/runtime/chat-template.js';
import type { MptTokenizer } from '../src/runtime/tokenizer.js';
import { MptServer } from '../src/server/http-server.js';
import { servedModelFrom } from '../src/server/model-host.js';
import { INLINE_CHARS, PromptWorker } from '../src/server/prompt-worker.js';
import { fixturePath } from './helpers/goldens.js';
import { startTestServer, tinyModel, waitFor, type TestServer } from './helpers/serve-fixture.js';

function mptChatTemplate(): string {
  const config = readFileSync(fixturePath('mpt-configs/mpt-7b-chat.tokenizer_config.json'), 'utf8');
  return (JSON.parse(config) as { chat_template: string }).chat_template;
}

let srv: TestServer;
let model: string;

before(async () => {
  srv = await startTestServer({ parallel: 4, maxBodyBytes: 4 * 1024 * 1024 });
  model = srv.model.id;
});

after(async () => {
  await srv.close();
});

/** Counts calls of the tokenizer's encode on this thread until restored. */
function countEncodes(tok: MptTokenizer): { count: number; restore(): void } {
  const encode = tok.encode;
  const calls = {
    count: 0,
    restore: () => {
      tok.encode = encode;
    },
  };
  tok.encode = function (this: MptTokenizer, ...args: Parameters<typeof encode>) {
    calls.count++;
    return encode.apply(this, args);
  };
  return calls;
}

async function post(url: string, body: unknown, signal?: AbortSignal): Promise<{ status: number; json: any }> {
  const headers = { 'Content-Type': 'application/json' };
  const r = await fetch(url, { method: 'POST', headers, body: JSON.stringify(body), signal });
  return { status: r.status, json: await r.json() };
}

test('the server keeps answering while a long prompt is tokenized', async () => {
  // One 150,000-letter word: its byte-pair merges take seconds, while its bytes alone do not
  // rule out that it fits the context (a token of this vocabulary covers up to 257 such bytes).
  const prompt = 'a'.repeat(150_000);
  // The tokenizer's worker thread, started once per server, is not what is measured (3,000
  // dashes: long enough for the worker, a dozen tokens for the model).
  assert.equal(
    (await post(`${srv.url}/v1/completions`, { model, prompt: '-'.repeat(3000), max_tokens: 1 })).status,
    200,
  );
  const ac = new AbortController();
  let answered = false;
  const big = post(`${srv.url}/v1/completions`, { model, prompt, max_tokens: 1 }, ac.signal).then(
    () => {
      answered = true;
    },
    () => {},
  );
  const gaps: number[] = [];
  let last = performance.now();
  const until = last + 1500;
  // Health checks one after another for a while: the longest wait between two answers is how
  // long the event loop was held.
  while (performance.now() < until && !answered) {
    const h = await fetch(`${srv.url}/health`);
    assert.equal(h.status, 200);
    await h.arrayBuffer();
    const now = performance.now();
    gaps.push(now - last);
    last = now;
  }
  // Another client's request is served meanwhile too.
  const small = await post(`${srv.url}/v1/completions`, { model, prompt: 'Hello', max_tokens: 2 });
  assert.equal(small.status, 200);
  ac.abort();
  await big;
  const worst = Math.max(...gaps);
  assert.ok(worst < 1000, `the event loop was held for ${worst.toFixed(0)} ms (${gaps.length} health answers)`);
  assert.ok(gaps.length >= 5, `only ${gaps.length} health answers`);
});

test('the first JSON-schema request builds the constraint vocabulary off the event loop, health checks answered meanwhile', async () => {
  const m = await tinyModel();
  // A model of its own: the constraint vocabulary is built once per model, on first use.
  const fresh = servedModelFrom(m.runner, m.tokenizer, { id: m.id, ctx: 256, format: m.format });
  const s = new MptServer(fresh, { port: 0 });
  const { url } = await s.listen();
  // Building the vocabulary asks the tokenizer about every id (50,432 here); decoding the reply
  // asks about each generated token. Count the questions asked on this thread.
  const isKnown = m.tokenizer.isKnown;
  let calls = 0;
  m.tokenizer.isKnown = function (this: MptTokenizer, id: number) {
    calls++;
    return isKnown.call(this, id);
  };
  try {
    const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 6 } }, required: ['name'] };
    const body = {
      model,
      prompt: 'Give JSON:',
      max_tokens: 24,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema } },
    };
    let answered = false;
    const first = post(`${url}/v1/completions`, body).finally(() => {
      answered = true;
    });
    let health = 0;
    while (!answered) {
      const h = await fetch(`${url}/health`);
      assert.equal(h.status, 200);
      await h.arrayBuffer();
      health++;
    }
    const r = await first;
    assert.equal(r.status, 200, JSON.stringify(r.json));
    const text: string = r.json.choices[0].text;
    if (r.json.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(text).name, 'string');
    assert.ok(calls < 1000, `the vocabulary was read on the event loop (${calls} ids)`);
    assert.ok(health >= 2, `only ${health} health answers while the first JSON-schema request ran`);
  } finally {
    m.tokenizer.isKnown = isKnown;
    await s.shutdown(0);
  }
});

test('a long prompt tokenized off the event loop gives the same tokens as the tokenizer', async () => {
  const tok = srv.model.tokenizer;
  const line = (i: number) => `Line ${i}: the quick brown fox, naïve café — ${'ab'.repeat(i % 7)}<|endoftext|>`;
  const prompt = Array.from({ length: 50 }, (_, i) => line(i)).join('\n');
  assert.ok(prompt.length > INLINE_CHARS, 'long enough for the worker');
  const want = tok.encode(prompt);
  assert.ok(want.length < srv.model.contextLength);
  const r = await post(`${srv.url}/v1/completions`, { model, prompt, max_tokens: 0, echo: true, logprobs: 0 });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.usage.prompt_tokens, want.length);
  assert.deepEqual(
    r.json.choices[0].logprobs.tokens,
    want.map((id) => tok.decode([id])),
  );
});

test('a prompt whose bytes alone exceed the context is refused before it is tokenized', async () => {
  const m = await tinyModel();
  const small = servedModelFrom(m.runner, m.tokenizer, { id: m.id, ctx: 64, format: m.format });
  const s = new MptServer(small, { port: 0, maxBodyBytes: 4 * 1024 * 1024 });
  const { url } = await s.listen();
  const calls = countEncodes(m.tokenizer);
  try {
    // 20,000 letters cannot be fewer than ceil(20000 / 257) = 78 tokens, more than 64.
    const word = 'a'.repeat(20_000);
    const c = await post(`${url}/v1/completions`, { model, prompt: word });
    assert.equal(c.status, 400);
    assert.equal(c.json.error.code, 'context_length_exceeded');
    assert.equal(c.json.error.param, 'prompt');
    assert.match(c.json.error.message, /maximum context length is 64 tokens/);
    assert.match(c.json.error.message, /at least 78 tokens/);
    const list = await post(`${url}/v1/completions`, { model, prompt: ['Hi', word] });
    assert.equal(list.json.error.param, 'prompt[1]');
    assert.match(list.json.error.message, /at least 78 tokens/);
    const ch = await post(`${url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: word }] });
    assert.equal(ch.status, 400);
    assert.equal(ch.json.error.param, 'messages');
    assert.match(ch.json.error.message, /maximum context length is 64 tokens.*at least 78 tokens/);
    // Spaces, which this vocabulary packs up to 512 to a token, do not count against the bound.
    const spaced = await post(`${url}/v1/completions`, { model, prompt: `${' '.repeat(20_000)}x`, max_tokens: 1 });
    assert.equal(spaced.status, 400);
    assert.doesNotMatch(spaced.json.error.message, /at least/);
    assert.equal(calls.count, 0, 'nothing was tokenized on the event loop');
  } finally {
    calls.restore();
    await s.shutdown(0);
  }
});

test('counts that multiply the work are checked before any prompt is tokenized', async () => {
  const calls = countEncodes(srv.model.tokenizer);
  try {
    const prompt = Array.from({ length: 65 }, () => 'x');
    const many = await post(`${srv.url}/v1/completions`, { model, prompt, n: 2 });
    assert.equal(many.status, 400);
    assert.equal(many.json.error.param, 'n');
    assert.equal(calls.count, 0);
    // OpenAI's own limit on a conversation's length; a chat template renders each message.
    const messages = Array.from({ length: 2049 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'hi' }));
    const chat = await post(`${srv.url}/v1/chat/completions`, { model, messages });
    assert.equal(chat.status, 400);
    assert.equal(chat.json.error.param, 'messages');
    assert.match(chat.json.error.message, /2048/);
    assert.equal(calls.count, 0);
  } finally {
    calls.restore();
  }
});

test('the prompt worker drops what its caller gave up on, stops the worker on it, and serves the rest', async () => {
  const tok = srv.model.tokenizer;
  // Every text longer than 16 characters goes to the worker.
  const encoder = new PromptWorker(tok, { inlineChars: 16 });
  try {
    const long = new AbortController();
    const queued = new AbortController();
    const text = 'The rest of the queue is served in order, by a fresh worker.';
    const running = encoder.encode('a'.repeat(150_000), long.signal);
    const dropped = encoder.encode(`${text} (dropped)`, queued.signal);
    const served = encoder.encode(text);
    assert.deepEqual(await encoder.encode('short'), tok.encode('short'), 'short texts are encoded in place');
    queued.abort('queued reason');
    await assert.rejects(dropped, (e) => e === 'queued reason');
    long.abort('running reason');
    await assert.rejects(running, (e) => e === 'running reason');
    assert.deepEqual(await served, tok.encode(text));
    await assert.rejects(encoder.encode(text, AbortSignal.abort('already')), (e) => e === 'already');
  } finally {
    encoder.close('closed');
  }
  await assert.rejects(encoder.encode('a'.repeat(100)), (e) => e === 'closed');
  await assert.rejects(encoder.encode('x'), (e) => e === 'closed');
});

test('the bound from bytes never exceeds the number of tokens the tokenizer makes', async () => {
  const tok = srv.model.tokenizer;
  const encoder = new PromptWorker(tok);
  try {
    // Pieces that pack many bytes into a token, or that NFC composes (e + acute, Hangul jamo).
    const pieces = [
      ' ' + '-'.repeat(256),
      '-'.repeat(64),
      'a',
      'the',
      ' ',
      '\n',
      '\t',
      '  ',
      'e\u0301',
      '\u1100\u1161\u11a8',
      '日本語',
      '🙂',
      '\u00a0',
      '\u3000',
      '<|endoftext|>',
      '<|padding|>',
      'ǅ',
      '\u0344',
      '1234567890',
      '=====',
      '\ud800',
    ];
    let seed = 7;
    const next = () => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    const pick = () => pieces[Math.floor(next() * pieces.length)];
    for (let k = 0; k < 300; k++) {
      const text = Array.from({ length: 1 + Math.floor(next() * 40) }, pick).join('');
      const least = await encoder.leastTokens(text);
      const count = tok.encode(text).length;
      assert.ok(least <= count, `${JSON.stringify(text)}: bound ${least} > ${count} tokens`);
    }
    // And it is reached: three of the vocabulary's longest tokens.
    const longest = ` ${'-'.repeat(256)}`.repeat(3);
    assert.equal(tok.encode(longest).length, 3);
    assert.equal(await encoder.leastTokens(longest), 3);
  } finally {
    encoder.close('done');
  }
});

/** A template that spends its whole work budget before it would emit anything: refused after about half a second. */
const BUDGET_TEMPLATE =
  '{% set ns = namespace(n=0) %}{% for i in range(100000) %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ messages[0].content }}';

test('/health is answered while a chat template renders at its work budget', async () => {
  const m = await tinyModel();
  const format = jinjaFormat(BUDGET_TEMPLATE, {});
  // The order in which the server finishes its answers (its log line is written then).
  const finished: string[] = [];
  const log = (line: string) => finished.push(line.split(' ').slice(0, 3).join(' '));
  const s = new MptServer(servedModelFrom(m.runner, m.tokenizer, { id: m.id, format }), { port: 0, log });
  const { url } = await s.listen();
  try {
    // The worker thread is started by a first render, which is not what is measured.
    const first = await post(`${url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(first.status, 400);
    finished.length = 0;
    // Once the server has the hostile request (its HTTP server's 'request' event, on this thread),
    // ask for /health: a server that renders on its own thread answers the hostile request first.
    let health: Promise<number> | undefined;
    const http = (s as unknown as { server: Server }).server;
    http.on('request', (req: IncomingMessage) => {
      if (req.url !== '/v1/chat/completions' || health) return;
      health = fetch(`${url}/health`).then(async (h) => {
        await h.arrayBuffer();
        return h.status;
      });
    });
    const hostile = fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hostile' }] }),
    }).then(async (r) => ({ status: r.status, text: await r.text() }));
    const answer = await hostile;
    assert.equal(answer.status, 400);
    assert.match(JSON.parse(answer.text).error.message, /does too much work/);
    assert.equal(await health, 200);
    await waitFor(() => finished.length === 2, 5000, 'both log lines');
    assert.deepEqual(finished, ['GET /health 200', 'POST /v1/chat/completions 400']);
  } finally {
    await s.shutdown(0);
  }
});

test('the prompt worker renders, bounds and decodes as the format and tokenizer do in place', async () => {
  const tok = srv.model.tokenizer;
  const format = jinjaFormat(mptChatTemplate(), { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' });
  // Everything longer than 16 goes to the worker; every Jinja render does.
  const worker = new PromptWorker(tok, { format, inlineChars: 16 });
  try {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'naïve café — ünïcode and <|im_end|> inside' },
      { role: 'assistant', content: 'ok' },
      { role: 'user', content: 'x'.repeat(3000) },
    ];
    for (const gen of [true, false]) {
      assert.equal(await worker.render(messages, gen), format.render(messages, { addGenerationPrompt: gen }));
    }
    const text = await worker.render(messages, true);
    const ids = tok.encode(text);
    assert.deepEqual(await worker.encode(text), ids);
    assert.equal(await worker.decode(ids), tok.decode(ids));
    assert.deepEqual(
      await worker.pieces(ids),
      ids.map((id) => tok.decode([id])),
    );
    const inPlace = new PromptWorker(tok);
    try {
      assert.equal(await worker.leastTokens(text), await inPlace.leastTokens(text));
      assert.ok((await worker.leastTokens(text)) > 0);
    } finally {
      inPlace.close('done');
    }
    // The template's own refusal stays an InputError (a 400 in the server).
    const refusing = new PromptWorker(tok, { format: jinjaFormat("{{ raise_exception('no system role') }}", {}) });
    try {
      await assert.rejects(
        refusing.render(messages, true),
        (e) => e instanceof InputError && /no system role/.test(e.message),
      );
    } finally {
      refusing.close('done');
    }
  } finally {
    worker.close('done');
  }
});

test('/tokenize with pieces and /detokenize of long inputs answer as the tokenizer does', async () => {
  const tok = srv.model.tokenizer;
  const content = Array.from({ length: 900 }, (_, i) => `word${i % 37} naïve`).join(' ');
  const ids = tok.encode(content);
  assert.ok(ids.length > 2048, `${ids.length} ids: long enough for the worker`);
  const t = await post(`${srv.url}/tokenize`, { content, with_pieces: true });
  assert.equal(t.status, 200);
  assert.deepEqual(
    t.json.tokens,
    ids.map((id) => ({ id, piece: tok.decode([id]) })),
  );
  const d = await post(`${srv.url}/detokenize`, { tokens: ids });
  assert.equal(d.status, 200);
  assert.equal(d.json.content, tok.decode(ids));
});
