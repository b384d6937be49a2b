/**
 * `tools` / `tool_choice` in chat completions, on the shipped model, through OpenAI's client and
 * LangChain's `bindTools`: a forced call names its tool and its arguments satisfy the tool's
 * parameters (checked with zod, written independently of the schema the server compiles);
 * "required" calls one of several; "none" answers in text; streaming sends delta.tool_calls;
 * tool results and past calls are rendered into the prompt.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { tool } from '@langchain/core/tools';
import { ChatOpenAI } from '@langchain/openai';
import OpenAI from 'openai';
import * as z from 'zod';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';

const SHIPPED = fileURLToPath(new URL('../../models/default/', import.meta.url));

const WeatherArgs = z
  .object({ city: z.string().max(20), unit: z.enum(['celsius', 'fahrenheit']), days: z.number().int().min(1).max(7) })
  .strict();
const weatherTool: OpenAI.Chat.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather forecast for a city',
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string', maxLength: 20 },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
        days: { type: 'integer', minimum: 1, maximum: 7 },
      },
      required: ['city', 'unit', 'days'],
      additionalProperties: false,
    },
  },
};
const SumArgs = z.object({ a: z.number(), b: z.number() }).strict();
const sumTool: OpenAI.Chat.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'add',
    parameters: {
      type: 'object',
      properties: { a: { type: 'number' }, b: { type: 'number' } },
      required: ['a', 'b'],
      additionalProperties: false,
    },
  },
};

let server: MptServer;
let client: OpenAI;
let baseURL: string;

before(async () => {
  const model = await loadServedModel(SHIPPED, { threads: 1, onNote: () => {} });
  server = new MptServer(model, { port: 0, host: '127.0.0.1' });
  baseURL = `${(await server.listen()).url}/v1`;
  client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
});

after(async () => {
  await server.shutdown(0);
  await server.model.runner.dispose();
});

test('a forced function: the call names it and its arguments satisfy its parameters', async () => {
  for (const seed of [1, 2, 3]) {
    const r: OpenAI.Chat.ChatCompletion = await client.chat.completions.create({
      model: 'default',
      seed,
      temperature: 1,
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools: [sumTool, weatherTool],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const c = r.choices[0]!;
    assert.equal(c.finish_reason, 'tool_calls');
    assert.equal(c.message.content, null);
    const calls = c.message.tool_calls!;
    assert.equal(calls.length, 1);
    const call = calls[0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    assert.match(call.id, /^call_/);
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    const args = WeatherArgs.safeParse(JSON.parse(call.function.arguments));
    assert.ok(args.success, call.function.arguments);
  }
});

test('"required" calls one of the tools; "none" answers in text', async () => {
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Add 2 and 3.' }];
  const names = new Set<string>();
  for (const seed of [1, 2, 3, 4]) {
    const r = await client.chat.completions.create({
      model: 'default',
      seed,
      messages,
      tools: [sumTool, weatherTool],
      tool_choice: 'required',
    });
    const call = r.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.ChatCompletionMessageFunctionToolCall;
    names.add(call.function.name);
    const schema = call.function.name === 'add' ? SumArgs : WeatherArgs;
    assert.ok(schema.safeParse(JSON.parse(call.function.arguments)).success, call.function.arguments);
  }
  assert.ok([...names].every((n) => n === 'add' || n === 'get_weather'));
  const text = await client.chat.completions.create({
    model: 'default',
    seed: 1,
    max_tokens: 8,
    messages,
    tools: [sumTool],
    tool_choice: 'none',
  });
  assert.equal(text.choices[0]!.message.tool_calls, undefined);
  assert.equal(typeof text.choices[0]!.message.content, 'string');
  assert.notEqual(text.choices[0]!.finish_reason, 'tool_calls');
});

test('streaming sends the call as delta.tool_calls, then finish_reason tool_calls', async () => {
  const stream = await client.chat.completions.create({
    model: 'default',
    seed: 5,
    stream: true,
    messages: [{ role: 'user', content: 'Weather?' }],
    tools: [weatherTool],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  let name = '',
    args = '',
    id = '',
    finish: string | null = null,
    content = '';
  for await (const ch of stream) {
    const c = ch.choices[0];
    if (!c) continue;
    content += c.delta.content ?? '';
    for (const t of c.delta.tool_calls ?? []) {
      assert.equal(t.index, 0);
      if (t.id) id = t.id;
      name += t.function?.name ?? '';
      args += t.function?.arguments ?? '';
    }
    finish = c.finish_reason ?? finish;
  }
  assert.equal(content, '');
  assert.match(id, /^call_/);
  assert.equal(name, 'get_weather');
  assert.equal(finish, 'tool_calls');
  assert.ok(WeatherArgs.safeParse(JSON.parse(args)).success, args);
});

test('past calls and tool results are accepted and rendered into the prompt', async () => {
  const args = '{"a": 2, "b": 3}';
  const r = await client.chat.completions.create({
    model: 'default',
    max_tokens: 1,
    temperature: 0,
    messages: [
      { role: 'user', content: 'Add 2 and 3.' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'add', arguments: args } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '5' },
    ],
    tools: [sumTool],
    tool_choice: 'none',
  });
  const m = server.model;
  const want = m.format.render([
    { role: 'user', content: 'Add 2 and 3.' },
    { role: 'assistant', content: '{"name":"add","arguments":{"a":2,"b":3}}' },
    { role: 'tool', content: '5' },
  ]);
  assert.equal(r.usage!.prompt_tokens, m.tokenizer.encode(want).length);
});

test('bad tool requests: an unknown forced name, tool_choice without tools', async () => {
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'x' }];
  await assert.rejects(
    client.chat.completions.create({
      model: 'default',
      messages,
      tools: [sumTool],
      tool_choice: { type: 'function', function: { name: 'nope' } },
    }),
    /no tool named 'nope'/,
  );
  await assert.rejects(
    client.chat.completions.create({ model: 'default', messages, tool_choice: 'required' }),
    /no 'tools' are given/,
  );
});

test("LangChain ChatOpenAI.bindTools with tool_choice: the call's args validate under the tool's zod schema", async () => {
  const weather = tool(async () => 'sunny', {
    name: 'get_weather',
    description: 'Weather forecast for a city',
    schema: WeatherArgs,
  });
  const llm = new ChatOpenAI({ model: 'default', apiKey: 'unused', temperature: 1, configuration: { baseURL } });
  const bound = llm.bindTools([weather], { tool_choice: 'get_weather' });
  const msg = await bound.invoke('What is the weather in Oslo?');
  assert.equal(msg.tool_calls?.length, 1);
  const call = msg.tool_calls![0]!;
  assert.equal(call.name, 'get_weather');
  const r = WeatherArgs.safeParse(call.args);
  assert.ok(r.success, JSON.stringify(call.args));
});
