/**
 * The server through OpenAI's official npm client: completions, chat, streaming, n > 1,
 * logprobs, stop strings, json_schema. Greedy outputs are checked against Hugging Face's greedy
 * generation (fixture goldens) and against the runtime's single-sequence generator.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import * as z from 'zod';
import { generate } from '../src/runtime/generate.js';
import { Goldens } from './helpers/goldens.js';
import { startTestServer, TINY_NEOX, type TestServer } from './helpers/serve-fixture.js';

const goldens = new Goldens(TINY_NEOX);
let srv: TestServer;
let client: OpenAI;
let model: string;

before(async () => {
  srv = await startTestServer({ parallel: 8 });
  client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
  model = srv.model.id;
});

after(async () => {
  await srv.close();
});

test('models.list names the served model', async () => {
  const list = await client.models.list();
  assert.deepEqual(
    list.data.map((m) => m.id),
    [model],
  );
  const one = await client.models.retrieve(model);
  assert.equal(one.id, model);
  assert.equal(one.object, 'model');
});

test('greedy completion equals Hugging Face generate() on the fixture', async () => {
  const text: string = goldens.json.inputs_text.seq7;
  const want: number[] = goldens.json.generate.new_tokens;
  const r = await client.completions.create({ model, prompt: text, max_tokens: want.length, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0]!.text, srv.model.tokenizer.decode(want));
  assert.equal(r.choices[0]!.finish_reason, 'length');
  assert.deepEqual(r.usage, { prompt_tokens: 7, completion_tokens: 20, total_tokens: 27 });
  // Token-id prompts give the same.
  const r2 = await client.completions.create({
    model,
    prompt: goldens.json.inputs.seq7,
    max_tokens: 5,
    temperature: 0,
  });
  assert.equal(r2.choices[0]!.text, srv.model.tokenizer.decode(want.slice(0, 5)));
});

test('streamed completion concatenates to the non-streamed text; usage at the end', async () => {
  const prompt = 'Once upon a time';
  const full = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0 });
  const stream = await client.completions.create({
    model,
    prompt,
    max_tokens: 12,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let finish: string | null = null;
  let usage: unknown = null;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    assert.equal(c.object, 'text_completion');
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(chunks > 3);
  assert.equal(text, full.choices[0]!.text);
  assert.equal(finish, 'length');
  assert.deepEqual(usage, full.usage);
});

test('chat: greedy reply equals the runtime generator on the rendered prompt; streaming matches', async () => {
  const messages = [
    { role: 'system' as const, content: 'You are terse.' },
    { role: 'user' as const, content: 'Name a colour.' },
  ];
  const r = await client.chat.completions.create({ model, messages, max_tokens: 16, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  const msg = r.choices[0]!.message;
  assert.equal(msg.role, 'assistant');
  // Independent reference: the runtime's own generation loop on the same prompt.
  const m = srv.model;
  const ids = m.tokenizer.encode(m.format.render(messages, { addGenerationPrompt: true }));
  const ref = await generate(m.runner, ids, {
    tokenizer: m.tokenizer,
    temperature: 0,
    maxTokens: 16,
    stopTokenIds: m.stopIds,
    stopStrings: m.format.stopStrings,
  });
  assert.equal(msg.content, ref.text);
  assert.equal(r.usage!.prompt_tokens, ids.length);
  assert.equal(r.usage!.completion_tokens, ref.tokens.length);
  assert.equal(r.choices[0]!.finish_reason, ref.finishReason === 'length' ? 'length' : 'stop');

  const stream = await client.chat.completions.create({
    model,
    messages,
    max_tokens: 16,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let content = '';
  let role: string | undefined;
  let finish: string | null = null;
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const c of stream) {
    assert.equal(c.object, 'chat.completion.chunk');
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    role ??= ch.delta.role;
    content += ch.delta.content ?? '';
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(content, msg.content);
  assert.equal(finish, r.choices[0]!.finish_reason);
  assert.deepEqual(usage, r.usage);
});

test('n > 1: independent seeded choices, reproducible, streamed per index', async () => {
  const req = {
    model,
    messages: [{ role: 'user' as const, content: 'Tell me a story.' }],
    max_tokens: 10,
    n: 3,
    seed: 42,
    temperature: 1,
  };
  const a = await client.chat.completions.create(req);
  const b = await client.chat.completions.create(req);
  assert.deepEqual(
    a.choices.map((c) => c.index),
    [0, 1, 2],
  );
  assert.deepEqual(
    a.choices.map((c) => c.message.content),
    b.choices.map((c) => c.message.content),
  );
  assert.equal(new Set(a.choices.map((c) => c.message.content)).size, 3, 'choices differ');
  assert.equal(a.usage!.completion_tokens, 30);
  const stream = await client.chat.completions.create({ ...req, stream: true });
  const texts = ['', '', ''];
  const finishes: (string | null)[] = [null, null, null];
  for await (const c of stream) {
    for (const ch of c.choices) {
      texts[ch.index] += ch.delta.content ?? '';
      if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
    }
  }
  assert.deepEqual(
    texts,
    a.choices.map((c) => c.message.content),
  );
  assert.deepEqual(finishes, ['length', 'length', 'length']);
  // Several prompts × n in one completion request: indices prompt-major.
  const multi = await client.completions.create({ model, prompt: ['A', 'B'], n: 2, max_tokens: 3, temperature: 0 });
  assert.deepEqual(
    multi.choices.map((c) => c.index),
    [0, 1, 2, 3],
  );
  assert.equal(multi.choices[0]!.text, multi.choices[1]!.text, 'greedy choices of one prompt agree');
});

test('logprobs: the greedy token is the top alternative, alternatives sorted, matching completions', async () => {
  const r = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 6,
    temperature: 0,
    logprobs: true,
    top_logprobs: 3,
  });
  const content = r.choices[0]!.logprobs!.content!;
  assert.equal(content.length, r.usage!.completion_tokens);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 3);
    assert.equal(t.token, t.top_logprobs[0]!.token);
    assert.ok(Math.abs(t.logprob - t.top_logprobs[0]!.logprob) < 1e-12);
    assert.ok(
      t.top_logprobs[0]!.logprob >= t.top_logprobs[1]!.logprob &&
        t.top_logprobs[1]!.logprob >= t.top_logprobs[2]!.logprob,
    );
    assert.ok(t.logprob < 0);
    assert.deepEqual(Buffer.from(t.bytes!).toString('utf8'), t.token);
  }
  assert.equal(content.map((t) => t.token).join(''), r.choices[0]!.message.content);
  const c = await client.completions.create({ model, prompt: 'Hi', max_tokens: 4, temperature: 0, logprobs: 2 });
  const lp = c.choices[0]!.logprobs!;
  assert.equal(lp.tokens!.join(''), c.choices[0]!.text);
  assert.equal(lp.top_logprobs!.length, 4);
  assert.deepEqual(
    lp.text_offset,
    lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join('').length),
  );
});

test('stop strings end the text before them, even when they span tokens', async () => {
  const prompt = goldens.json.inputs_text.seq7 as string;
  const full = (await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0 })).choices[0]!.text;
  // A stop string that starts inside the third token and ends inside a later one.
  const ids: number[] = goldens.json.generate.new_tokens;
  const tok = srv.model.tokenizer;
  const startAt = tok.decode(ids.slice(0, 2)).length + 1;
  const stop = full.slice(startAt, startAt + 6);
  const r = await client.completions.create({ model, prompt, max_tokens: 20, temperature: 0, stop: [stop] });
  assert.equal(r.choices[0]!.text, full.slice(0, full.indexOf(stop)));
  assert.equal(r.choices[0]!.finish_reason, 'stop');
});

test('response_format json_schema: the reply parses and validates against the schema', async () => {
  const schema = {
    type: 'object',
    properties: {
      name: { type: 'string', maxLength: 12 },
      colour: { enum: ['red', 'green', 'blue'] },
      age: { type: 'integer' },
      tags: { type: 'array', items: { type: 'boolean' }, maxItems: 3 },
    },
    required: ['name', 'colour', 'age'],
    additionalProperties: false,
  };
  const validator = z.fromJSONSchema(schema as never);
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Describe a person as JSON.' }],
      max_tokens: 400,
      seed,
      response_format: { type: 'json_schema', json_schema: { name: 'person', schema, strict: true } },
    });
    const text = r.choices[0]!.message.content!;
    assert.equal(r.choices[0]!.finish_reason, 'stop', `did not finish: ${text}`);
    const value = JSON.parse(text);
    assert.ok(validator.safeParse(value).success, `does not validate: ${text}`);
  }
  // Streaming with a schema, and json_object mode.
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'JSON please' }],
    max_tokens: 400,
    seed: 5,
    stream: true,
    response_format: {
      type: 'json_schema',
      json_schema: {
        name: 'flags',
        schema: {
          type: 'object',
          properties: { ok: { type: 'boolean' } },
          required: ['ok'],
          additionalProperties: false,
        },
      },
    },
  });
  let text = '';
  for await (const c of stream) text += c.choices[0]?.delta.content ?? '';
  assert.equal(typeof JSON.parse(text).ok, 'boolean');
  const obj = await client.chat.completions.create({
    model,
    messages: [{ role: 'user', content: 'x' }],
    max_tokens: 30,
    seed: 9,
    temperature: 0.5,
    response_format: { type: 'json_object' },
  });
  const out = obj.choices[0]!.message.content!;
  // Within 30 tokens it is a complete object or a prefix of one that was cut at the limit.
  if (obj.choices[0]!.finish_reason === 'stop') assert.equal(typeof JSON.parse(out), 'object');
  else assert.ok(out.trimStart().startsWith('{'), out);
});

test('the official client surfaces server errors as typed exceptions', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.NotFoundError);
      assert.equal(e.code, 'model_not_found');
      return true;
    },
  );
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], temperature: 5 }),
    (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.equal(e.param, 'temperature');
      assert.match(e.message, /temperature/);
      return true;
    },
  );
});
