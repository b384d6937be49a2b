// Seeded mutation fuzzing of the server's request bodies: valid bodies for every POST endpoint
// (completions, chat completions, embeddings, tokenize, detokenize), one value replaced by a
// hostile one (wrong types, huge numbers, 1e400, deep nesting, giant strings, lone surrogates) or
// their bytes mutated (bad UTF-8, cut JSON). Every answer must be a 200 or a 4xx whose body is an
// OpenAI-style JSON error, within a time bound; a 5xx (an internal error) or no answer fails.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';
import { fuzz, mutateBytes, mutateJson, type Rand } from './helpers/fuzz.js';
import { TINY_NEOX } from './helpers/serve-fixture.js';

const BODIES: Record<string, object> = {
  '/v1/completions': {
    model: 'm',
    prompt: 'Once upon a time',
    max_tokens: 3,
    temperature: 0.7,
    top_p: 0.9,
    stop: ['\n'],
    logprobs: 2,
    seed: 1,
    logit_bias: { '50': -100 },
  },
  '/v1/chat/completions': {
    model: 'm',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Hi there' }] },
    ],
    max_tokens: 3,
    n: 2,
    logprobs: true,
    top_logprobs: 2,
    response_format: {
      type: 'json_schema',
      json_schema: {
        name: 'x',
        schema: { type: 'object', properties: { a: { type: 'string', maxLength: 4 } }, required: ['a'] },
      },
    },
  },
  '/v1/embeddings': { model: 'm', input: ['hello world', 'second'], encoding_format: 'float' },
  '/tokenize': { content: 'Hello world', add_special: false },
  '/detokenize': { tokens: [12092, 1533] },
};

/** A 4xx answer's body must be `{"error": {"message": string, "type": string, ...}}`. */
function checkErrorBody(status: number, text: string, label: string): void {
  let body: { error?: { message?: unknown; type?: unknown } };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new Error(`${label}: ${status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  if (typeof body.error?.message !== 'string' || typeof body.error.type !== 'string')
    throw new Error(`${label}: ${status} without an OpenAI-style error: ${text.slice(0, 200)}`);
}

describe('server fuzz: mutated request bodies get a 200 or a 4xx JSON error', () => {
  let server: MptServer;
  let url: string;
  before(async () => {
    const model = await loadServedModel(TINY_NEOX, { backend: 'reference', ctx: 64, onNote: () => {} });
    server = new MptServer(model, { port: 0, host: '127.0.0.1', parallel: 4, timeoutS: 30 });
    url = (await server.listen()).url;
  });
  after(() => server.shutdown(0));

  async function send(path: string, body: Uint8Array, label: string): Promise<void> {
    const res = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: Buffer.from(body),
    });
    const text = await res.text();
    if (res.status >= 500) throw new Error(`${label}: ${res.status} ${text.slice(0, 300)}`);
    if (res.status >= 400) checkErrorBody(res.status, text, label);
    else assert.equal(res.status, 200, `${label}: status ${res.status}`);
  }

  for (const [path, seeds] of [
    ['/v1/completions', 200],
    ['/v1/chat/completions', 200],
    ['/v1/embeddings', 80],
    ['/tokenize', 60],
    ['/detokenize', 60],
  ] as const) {
    it(`${path}: ${seeds} seeds`, async () => {
      const text = JSON.stringify(BODIES[path]);
      await send(path, new TextEncoder().encode(text), `${path} unmutated`);
      const tally = await fuzz(path, seeds, (r: Rand, log) => {
        // Mostly a value replaced; a fifth of the cases mutate the bytes (bad UTF-8, broken JSON).
        const body = r.chance(0.8)
          ? new TextEncoder().encode(mutateJson(text, r, log))
          : mutateBytes(new TextEncoder().encode(text), r, { describe: log });
        return () => send(path, body, `${path} ${log.join('; ')}`);
      });
      assert.ok(tally.total === tally.ok, 'every case answered as it must (checked in send)');
    });
  }

  it('a stream of a request with a hostile value ends with a JSON error or [DONE]', async () => {
    const body = { ...BODIES['/v1/completions'], stream: true };
    await fuzz('/v1/completions stream', 60, (r, log) => {
      const text = mutateJson(JSON.stringify(body), r, log);
      return async () => {
        const res = await fetch(`${url}/v1/completions`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: text,
        });
        const out = await res.text();
        if (res.status >= 500) throw new Error(`${log.join('; ')}: ${res.status} ${out.slice(0, 300)}`);
        if (res.status >= 400) return checkErrorBody(res.status, out, log.join('; '));
        assert.ok(
          out.trimEnd().endsWith('data: [DONE]') || /"error"/.test(out),
          `${log.join('; ')}: ${out.slice(-200)}`,
        );
      };
    });
  });
});
