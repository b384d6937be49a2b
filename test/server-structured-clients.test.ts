/**
 * Structured output through the client libraries people use, unchanged, against a server on the
 * shipped model: LangChain's `withStructuredOutput` and the AI SDK's `generateObject` send the
 * JSON Schema zod writes (`.int()` gives minimum/maximum, `.email()` gives format + pattern).
 * The model is tiny, so only the constraint can make the object validate.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { ChatOpenAI } from '@langchain/openai';
import { generateObject } from 'ai';
import * as z from 'zod';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';

const SHIPPED = fileURLToPath(new URL('../../models/default/', import.meta.url));

const Person = z.object({
  name: z.string().min(1).max(12),
  age: z.number().int().min(0).max(120),
  email: z.email().max(40),
  mood: z.enum(['happy', 'sad']),
  address: z.object({ city: z.string().max(10), zip: z.number().int().min(10000).max(99999) }),
  score: z.number().min(-1).max(1),
});

let server: MptServer;
let baseURL: string;

before(async () => {
  const model = await loadServedModel(SHIPPED, { threads: 1, onNote: () => {} });
  server = new MptServer(model, { port: 0, host: '127.0.0.1' });
  baseURL = `${(await server.listen()).url}/v1`;
});

after(async () => {
  await server.shutdown(0);
  await server.model.runner.dispose();
});

test('LangChain withStructuredOutput(zod) returns an object valid under the zod schema', async () => {
  const llm = new ChatOpenAI({ model: 'default', apiKey: 'unused', temperature: 0, configuration: { baseURL } });
  const structured = llm.withStructuredOutput(Person, { name: 'person', method: 'jsonSchema' });
  const out = await structured.invoke('Invent a person.');
  const r = Person.safeParse(out);
  assert.ok(r.success, `${JSON.stringify(out)}: ${r.success ? '' : r.error.message}`);
});

test('AI SDK generateObject(zod) returns an object valid under the zod schema', async () => {
  const provider = createOpenAICompatible({ baseURL, name: 'mpt', apiKey: 'unused', supportsStructuredOutputs: true });
  const { object } = await generateObject({
    model: provider.chatModel('default'),
    schema: Person,
    prompt: 'Invent a person.',
    temperature: 0.7,
    seed: 3,
  });
  const r = Person.safeParse(object);
  assert.ok(r.success, `${JSON.stringify(object)}: ${r.success ? '' : r.error.message}`);
});
