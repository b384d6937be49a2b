/**
 * Completions with `echo` and `logprobs` (what lm-evaluation-harness's loglikelihood requests
 * send): every prompt token after the first gets its log probability given the tokens before it.
 * Checked against MosaicML's logits for the fixture (goldens, float64 log-softmax here), through
 * the official `openai` client, streamed and not, with n > 1, beside other requests in the same
 * batches, with prompts read in several chunks, and on the wasm backend.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';
import { Goldens } from './helpers/goldens.js';
import { startTestServer, TINY_NEOX, type TestServer } from './helpers/serve-fixture.js';

const goldens = new Goldens(TINY_NEOX);
const IDS: number[] = goldens.json.inputs.seq64;
const V = 50432;
/** Logprob agreement: the logits match MosaicML's within 5e-4, so their log-softmax within 1e-3. */
const TOL = 1e-3;

/**
 * Row t of MosaicML's logits for seq64, as float64 log probabilities over the first `vocab` ids
 * (prompt tokens are scored over the whole vocabulary, as MosaicML's and HF's log-softmax does;
 * generated ones over the ids the tokenizer can decode, which sampling draws from).
 */
function goldenLogSoftmax(t: number, vocab = V): Float64Array {
  const all = goldens.tensor('logits/seq64').data;
  const row = all.subarray(t * V, t * V + vocab);
  let max = -Infinity;
  for (const x of row) if (x > max) max = x;
  let sum = 0;
  for (const x of row) sum += Math.exp(x - max);
  const lse = max + Math.log(sum);
  return Float64Array.from(row, (x) => x - lse);
}

const EXPECTED = IDS.slice(1).map((id, t) => goldenLogSoftmax(t)[id]!);
const BEST = IDS.slice(1).map((_, t) => Math.max(...goldenLogSoftmax(t)));

interface Lp {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

function checkPromptPart(lp: Lp, what: string): void {
  assert.equal(lp.token_logprobs[0], null, `${what}: the first token has no log probability`);
  assert.equal(lp.top_logprobs[0], null, what);
  for (let i = 1; i < IDS.length; i++) {
    const got = lp.token_logprobs[i]!;
    assert.ok(Math.abs(got - EXPECTED[i - 1]!) <= TOL, `${what}: token ${i}: ${got} vs ${EXPECTED[i - 1]}`);
    const top = Object.values(lp.top_logprobs[i]!);
    assert.ok(Math.abs(Math.max(...top) - BEST[i - 1]!) <= TOL, `${what}: top of token ${i}`);
    assert.ok(top.every((v) => v <= Math.max(...top)) && top.length >= 1);
  }
  // text_offset: where each token's text starts in the echoed text
  let off = 0;
  lp.tokens.forEach((t, i) => {
    assert.equal(lp.text_offset[i], off, `${what}: text_offset ${i}`);
    off += t.length;
  });
}

async function post(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: await res.json() };
}

describe('echo with logprobs (reference backend)', () => {
  let srv: TestServer;
  let client: OpenAI;
  let model: string;

  before(async () => {
    // Prompt chunks of at most 24 tokens: seq64 is scored over 3 steps.
    srv = await startTestServer({ parallel: 8, prefillChunk: 24 });
    client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
    model = srv.model.id;
  });

  after(async () => {
    await srv.close();
  });

  it("max_tokens 0: the prompt alone, each token scored as MosaicML's logits score it", async () => {
    const r = await client.completions.create({ model, prompt: IDS, max_tokens: 0, echo: true, logprobs: 3 });
    const c = r.choices[0]!;
    assert.equal(c.text, srv.model.tokenizer.decode(IDS));
    assert.equal(c.finish_reason, 'length');
    assert.equal(c.logprobs!.tokens!.length, IDS.length);
    assert.equal(c.logprobs!.tokens!.join(''), c.text);
    checkPromptPart(c.logprobs as Lp, 'max_tokens 0');
    assert.deepEqual(r.usage, { prompt_tokens: 64, completion_tokens: 0, total_tokens: 64 });
  });

  it('max_tokens 1, greedy: the prompt entries, then the generated token (the most likely one)', async () => {
    const r = await client.completions.create({
      model,
      prompt: IDS,
      max_tokens: 1,
      temperature: 0,
      echo: true,
      logprobs: 1,
    });
    const lp = r.choices[0]!.logprobs as Lp;
    assert.equal(lp.tokens.length, IDS.length + 1);
    checkPromptPart(lp, 'max_tokens 1');
    const last = goldenLogSoftmax(IDS.length - 1, srv.model.vocabLimit);
    const best = Math.max(...last);
    assert.ok(Math.abs(lp.token_logprobs[IDS.length]! - best) <= TOL);
    assert.equal(lp.tokens[IDS.length], srv.model.tokenizer.decode([last.indexOf(best)]));
    // lm-eval's loglikelihood of a continuation: the sum over its tokens
    const ctxlen = 40;
    const sum = lp.token_logprobs.slice(ctxlen, IDS.length).reduce((a, b) => a! + b!, 0)!;
    const want = EXPECTED.slice(ctxlen - 1).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(sum - want) <= 24 * TOL, `${sum} vs ${want}`);
  });

  it('streamed: the echo chunk carries the same log probabilities, before any generated text', async () => {
    const body = { model, prompt: IDS, max_tokens: 3, temperature: 0, echo: true, logprobs: 2 };
    const full = await client.completions.create(body);
    const stream = await client.completions.create({ ...body, stream: true });
    const chunks: { text: string; logprobs: Lp | null }[] = [];
    for await (const ch of stream) if (ch.choices[0]) chunks.push(ch.choices[0] as never);
    assert.equal(chunks[0]!.text, srv.model.tokenizer.decode(IDS));
    assert.deepEqual(chunks[0]!.logprobs, {
      tokens: full.choices[0]!.logprobs!.tokens!.slice(0, 64),
      token_logprobs: full.choices[0]!.logprobs!.token_logprobs!.slice(0, 64),
      top_logprobs: full.choices[0]!.logprobs!.top_logprobs!.slice(0, 64),
      text_offset: full.choices[0]!.logprobs!.text_offset!.slice(0, 64),
    });
    assert.equal(chunks.map((c) => c.text).join(''), full.choices[0]!.text);
    const gen = chunks.slice(1).flatMap((c) => c.logprobs?.text_offset ?? []);
    assert.deepEqual(gen, full.choices[0]!.logprobs!.text_offset!.slice(64));
  });

  it('n = 2 and two prompts: every choice scores its own prompt', async () => {
    const short = IDS.slice(0, 9);
    const r = await client.completions.create({
      model,
      prompt: [IDS, short],
      n: 2,
      max_tokens: 2,
      temperature: 0,
      echo: true,
      logprobs: 1,
    });
    assert.equal(r.choices.length, 4);
    for (const c of r.choices.slice(0, 2)) checkPromptPart(c.logprobs as Lp, `choice ${c.index}`);
    for (const c of r.choices.slice(2)) {
      const lp = c.logprobs as Lp;
      assert.equal(lp.tokens.length, 9 + 2);
      assert.deepEqual(lp.token_logprobs.slice(0, 9), (r.choices[0]!.logprobs as Lp).token_logprobs.slice(0, 9));
    }
  });

  it('beside other requests in the same steps: the same numbers as alone', async () => {
    const body = { model, prompt: IDS, max_tokens: 0, echo: true, logprobs: 2 };
    const alone = await post(srv.url, body);
    const others = Array.from({ length: 3 }, (_, i) =>
      post(srv.url, { model, prompt: `Story ${i}:`, max_tokens: 20, temperature: 0 }),
    );
    const [busy] = await Promise.all([post(srv.url, body), ...others]);
    assert.equal(busy.status, 200);
    assert.deepEqual(busy.json.choices[0].logprobs, alone.json.choices[0].logprobs);
  });

  it('a one-token prompt: one entry, with no log probability', async () => {
    const r = await post(srv.url, { model, prompt: [IDS[0]], max_tokens: 0, echo: true, logprobs: 1 });
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.choices[0].logprobs.token_logprobs, [null]);
  });

  it('max_tokens 0 without echo is refused, naming the field', async () => {
    const r = await post(srv.url, { model, prompt: 'Hi', max_tokens: 0 });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'max_tokens');
    const chat = await fetch(`${srv.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 0 }),
    });
    assert.equal(chat.status, 400);
  });
});

describe('echo with logprobs (wasm backend, mixed batches)', () => {
  it('the same scores within tolerance, alone and beside decoding sequences', async () => {
    const model = await loadServedModel(TINY_NEOX, { backend: 'wasm', threads: 2, parallel: 8, onNote: () => {} });
    const server = new MptServer(model, { port: 0, host: '127.0.0.1', parallel: 8, prefillChunk: 40 });
    const { url } = await server.listen();
    try {
      const body = { model: model.id, prompt: IDS, max_tokens: 2, temperature: 0, echo: true, logprobs: 2 };
      const alone = await post(url, body);
      assert.equal(alone.status, 200);
      checkPromptPart(alone.json.choices[0].logprobs, 'wasm alone');
      const others = Array.from({ length: 3 }, (_, i) =>
        post(url, { model: model.id, prompt: `Story ${i}:`, max_tokens: 24, temperature: 0 }),
      );
      const [busy] = await Promise.all([post(url, body), ...others]);
      checkPromptPart(busy.json.choices[0].logprobs, 'wasm busy');
      assert.equal(busy.json.choices[0].text, alone.json.choices[0].text);
    } finally {
      await server.shutdown(0);
    }
  });
});
