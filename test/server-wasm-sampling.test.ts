/**
 * The server on the wasm backend, where each sequence's token is chosen in the worker threads
 * (ForwardOptions.sample): seeded sampled completions, with penalties, top-k / top-p, logit bias
 * and n > 1, are the same text alone and batched with others, and equal the runtime's
 * single-sequence generator, which chooses on the main thread with the same seed.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generate } from '../src/runtime/generate.js';
import type { SamplingOptions } from '../src/runtime/sampling.js';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel, type ServedModel } from '../src/server/model-host.js';
import { TINY_NEOX } from './helpers/serve-fixture.js';

let model: ServedModel;
let server: MptServer;
let url: string;

before(async () => {
  model = await loadServedModel(TINY_NEOX, { backend: 'wasm', threads: 2, parallel: 8, onNote: () => {} });
  server = new MptServer(model, { port: 0, host: '127.0.0.1', parallel: 8 });
  url = (await server.listen()).url;
});

after(async () => {
  await server.shutdown(0);
});

interface Req {
  prompt: string;
  seed: number;
  n?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  repetition_penalty?: number;
  logit_bias?: Record<string, number>;
}

const REQUESTS: Req[] = [
  { prompt: 'Once upon a time', seed: 1 },
  { prompt: 'The river', seed: 2, temperature: 0.8, top_p: 0.9 },
  { prompt: 'A small town', seed: 3, top_k: 5, presence_penalty: 0.6, frequency_penalty: 0.3 },
  { prompt: 'In the morning', seed: 4, repetition_penalty: 1.3, min_p: 0.05, logit_bias: { 13: 5, 15: -100 } },
  { prompt: 'She said', seed: 5, n: 2, temperature: 1.2 },
  { prompt: 'Numbers: 1, 2,', seed: 6, temperature: 0 },
];
const MAX_TOKENS = 12;

async function complete(r: Req): Promise<string[]> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: model.id, max_tokens: MAX_TOKENS, ...r }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  const body = (await res.json()) as { choices: { index: number; text: string }[] };
  return body.choices.sort((a, b) => a.index - b.index).map((c) => c.text);
}

test('seeded sampled completions: the same alone and batched, and equal to the runtime generator', async () => {
  const alone: string[][] = [];
  for (const r of REQUESTS) alone.push(await complete(r));
  const batched = await Promise.all(REQUESTS.map(complete));
  assert.deepEqual(batched, alone);
  assert.notEqual(alone[4]![0], alone[4]![1], 'the two choices of n = 2 differ');
  // Independent of the worker path: the runtime's loop chooses every token on the main thread.
  for (const [i, r] of REQUESTS.entries()) {
    for (let choice = 0; choice < (r.n ?? 1); choice++) {
      const sampling: SamplingOptions = {
        temperature: r.temperature ?? 1,
        topP: r.top_p ?? 1,
        topK: r.top_k ?? 0,
        minP: r.min_p ?? 0,
        presencePenalty: r.presence_penalty ?? 0,
        frequencyPenalty: r.frequency_penalty ?? 0,
        repetitionPenalty: r.repetition_penalty ?? 1,
        seed: r.seed + choice,
        logitBias: r.logit_bias
          ? Object.fromEntries(Object.entries(r.logit_bias).map(([k, v]) => [Number(k), v]))
          : undefined,
      };
      const ref = await generate(model.runner, model.tokenizer.encode(r.prompt), {
        ...sampling,
        tokenizer: model.tokenizer,
        maxTokens: MAX_TOKENS,
        stopTokenIds: model.stopIds,
        vocabLimit: model.vocabLimit,
      });
      assert.equal(alone[i]![choice], ref.text, `request ${i} choice ${choice}`);
    }
  }
});
