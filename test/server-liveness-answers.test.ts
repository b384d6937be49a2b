/**
 * A large answer does not hold the server's event loop while it is made: 64 choices with 20
 * alternatives per token, or an echoed prompt's logprobs, are megabytes of JSON. What is counted
 * is the JSON text made in one turn of the event loop (a `setImmediate` ticker numbers the turns),
 * not time; the text itself must be what JSON.stringify makes of the same body.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { SlicedArray, sendJsonInTurns } from '../src/server/respond.js';
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

/** Numbers the turns of the event loop while it runs. */
function turnCounter(): { turn: number; stop(): void } {
  let stopped = false;
  const t = {
    turn: 0,
    stop: () => {
      stopped = true;
    },
  };
  const tick = () => {
    t.turn++;
    if (!stopped) setImmediate(tick);
  };
  setImmediate(tick);
  return t;
}

/** Characters of JSON.stringify's output made in each turn of the event loop while `run` runs. */
async function jsonPerTurn<T>(run: () => Promise<T>): Promise<{ result: T; perTurn: number[] }> {
  const turns = turnCounter();
  const made = new Map<number, number>();
  const stringify = JSON.stringify;
  JSON.stringify = function (this: JSON, ...args: Parameters<typeof stringify>) {
    const text = stringify.apply(this, args);
    if (typeof text === 'string') made.set(turns.turn, (made.get(turns.turn) ?? 0) + text.length);
    return text;
  } as typeof stringify;
  try {
    return { result: await run(), perTurn: [...made.values()] };
  } finally {
    JSON.stringify = stringify;
    turns.stop();
  }
}

async function post(path: string, body: unknown): Promise<{ status: number; text: string }> {
  const headers = { 'Content-Type': 'application/json' };
  const r = await fetch(`${srv.url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
  return { status: r.status, text: await r.text() };
}

test('sendJsonInTurns writes what JSON.stringify makes of the same body, a few items per turn', async () => {
  // The same body with plain arrays (the reference) or SlicedArrays, nested, with what JSON
  // drops or turns to null: undefined fields and items, non-finite numbers, functions.
  const made: number[] = [];
  let turns = turnCounter();
  const bodyOf = (sliced: boolean) => {
    const list = <T>(n: number, item: (i: number) => T, options?: { perTurn?: number; nested?: boolean }) =>
      sliced
        ? new SlicedArray(
            n,
            (i) => {
              // The choices' turns are what is counted.
              if (options?.nested) made.push(turns.turn);
              return item(i);
            },
            options,
          )
        : Array.from({ length: n }, (_, i) => item(i));
    return {
      id: 'x"\u2028é🙂',
      skipped: undefined,
      fn: () => 1,
      choices: list(
        200,
        (i) => ({
          index: i,
          gone: undefined,
          values: [i, Number.NaN, Number.POSITIVE_INFINITY, undefined, 'a\nb'],
          logprobs:
            i % 3 === 0
              ? null
              : {
                  content: list(i % 7, (k) => (k === 2 ? undefined : { k, text: `t${k}`, top: [{ p: -k }] }), {
                    perTurn: 8,
                  }),
                },
          // Written whole where they are not walked: inside an array, inside an item not walked.
          inArray: [{ inner: list(2, (k) => k) }],
          flat: list(2, (k) => ({ deeper: list(2, (m) => m + k) })),
        }),
        { nested: true },
      ),
      usage: { prompt_tokens: 3 },
    };
  };
  const want = JSON.stringify(bodyOf(false));
  turns.stop();
  // SlicedArrays anywhere else are written whole, as arrays.
  assert.equal(JSON.stringify(bodyOf(true)), want);
  made.length = 0;
  const server = createServer((_req, res) => {
    void sendJsonInTurns(res, 201, bodyOf(true), { 'X-Test': '1' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    turns = turnCounter();
    const r = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    turns.stop();
    assert.equal(r.status, 201);
    assert.equal(r.headers.get('x-test'), '1');
    assert.equal(r.headers.get('content-type'), 'application/json');
    const text = await r.text();
    assert.equal(text, want);
    assert.equal(Number(r.headers.get('content-length')), Buffer.byteLength(want));
    // 200 choices at 64 a turn (fewer where their contents, at 8 a turn, add to the turn's share).
    assert.equal(made.length, 200);
    const perTurn = new Map<number, number>();
    for (const t of made) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
    assert.ok(perTurn.size >= 4, `the choices were made in ${perTurn.size} turns`);
    assert.ok(Math.max(...perTurn.values()) <= 64, `${Math.max(...perTurn.values())} choices made in one turn`);
  } finally {
    server.close();
  }
});

test('a chat answer of 4 choices with 20 alternatives per token is made over many turns of the event loop', async () => {
  const body = {
    model,
    messages: [{ role: 'user', content: 'Hello' }],
    n: 4,
    max_tokens: 48,
    logprobs: true,
    top_logprobs: 20,
    // The end-of-text token is banned: every choice runs to max_tokens.
    logit_bias: { '0': -100 },
    seed: 1,
  };
  const { result: r, perTurn } = await jsonPerTurn(() => post('/v1/chat/completions', body));
  assert.equal(r.status, 200, r.text);
  const json = JSON.parse(r.text);
  assert.equal(json.choices.length, 4);
  for (const c of json.choices) {
    assert.equal(c.logprobs.content.length, 48);
    for (const e of c.logprobs.content) {
      assert.equal(e.top_logprobs.length, 20);
      assert.ok(e.logprob <= 0 && e.bytes.length > 0);
    }
    assert.equal(c.logprobs.content.map((e: { token: string }) => e.token).join(''), c.message.content);
  }
  // The old server made the whole body (4 × 48 × 21 entries) in the turn the last choice ended.
  const most = Math.max(...perTurn);
  assert.ok(most < r.text.length / 2, `${most} of ${r.text.length} characters of JSON made in one turn`);
});

test('an echoed prompt with logprobs, n 2, is made over many turns of the event loop', async () => {
  // 160 prompt tokens of the fixture's vocabulary (none of them end-of-text), each scored with 5 alternatives.
  const prompt = Array.from({ length: 160 }, (_, i) => 1 + ((i * 7919) % 50_000));
  const body = { model, prompt, n: 2, max_tokens: 1, echo: true, logprobs: 5, logit_bias: { '0': -100 } };
  const { result: r, perTurn } = await jsonPerTurn(() => post('/v1/completions', body));
  assert.equal(r.status, 200, r.text);
  const json = JSON.parse(r.text);
  assert.equal(json.choices.length, 2);
  for (const c of json.choices) {
    assert.equal(c.logprobs.tokens.length, 161);
    assert.equal(c.logprobs.top_logprobs[0], null);
    assert.equal(Object.keys(c.logprobs.top_logprobs[1]).length > 0, true);
    assert.equal(c.text, c.logprobs.tokens.join(''));
  }
  const most = Math.max(...perTurn);
  assert.ok(most < r.text.length / 2, `${most} of ${r.text.length} characters of JSON made in one turn`);
});

test("/detokenize of a long list makes its text's JSON off the event loop, as the tokenizer decodes it", async () => {
  // 20,000 ids (ten times what is decoded in place), none of them end-of-text.
  const ids = Array.from({ length: 20_000 }, (_, i) => 1 + ((i * 7919) % 50_000));
  const body = JSON.stringify({ tokens: ids });
  const { result: r, perTurn } = await jsonPerTurn(async () => {
    const res = await fetch(`${srv.url}/detokenize`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body,
    });
    return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
  });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.type, 'application/json');
  assert.equal(r.text, JSON.stringify({ content: srv.model.tokenizer.decode(ids) }));
  // The old server escaped the whole text on the event loop, in the turn the worker answered.
  const most = Math.max(0, ...perTurn);
  assert.ok(most < r.text.length / 10, `${most} of ${r.text.length} characters of JSON made in one turn`);
});

test("n choices of one prompt are matched by the prompt's list, not by joining its ids once a choice", async () => {
  // 40 choices of a 1,000-token prompt: the old scheduler joined the 1,000 ids 40 times in one turn.
  const prompt = Array.from({ length: 1000 }, (_, i) => 1 + ((i * 7919) % 50_000));
  const join = Array.prototype.join;
  let joined = 0;
  Array.prototype.join = function (this: unknown[], ...args: Parameters<typeof join>) {
    if (this.length >= 1000) joined++;
    return join.apply(this, args);
  };
  let r: { status: number; text: string };
  try {
    r = await post('/v1/completions', { model, prompt, n: 40, max_tokens: 1, logit_bias: { '0': -100 }, seed: 3 });
  } finally {
    Array.prototype.join = join;
  }
  assert.equal(r.status, 200, r.text);
  assert.equal(JSON.parse(r.text).choices.length, 40);
  assert.ok(joined <= 1, `the prompt's ids were joined ${joined} times`);
});
