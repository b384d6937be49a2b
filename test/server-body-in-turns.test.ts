/**
 * What is left of a large request's work on the server's event loop, in short turns: JSON.parse
 * of a megabyte body a slice per turn (the value is JSON.parse's own, checked against it on
 * generated texts, valid and broken), a truncation search that sends the conversation to the
 * prompt worker once rather than with every probe, 64 choices' sequences made a few per turn, and
 * OpenAI's limits on `metadata`. What is counted is turns (a `setImmediate` ticker), characters
 * and messages, not time.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { jsonNestsDeeperThan } from '../src/formats/json-source.js';
import { jinjaFormat, plainFormat } from '../src/runtime/chat-template.js';
import { ApiError } from '../src/server/api-error.js';
import { MptServer } from '../src/server/http-server.js';
import { MalformedJson, NestsTooDeep, parseJsonInTurns } from '../src/server/json-in-turns.js';
import { servedModelFrom } from '../src/server/model-host.js';
import { readJsonBody } from '../src/server/request-body.js';
import { CompletionRequest, parseBody } from '../src/server/request-schema.js';
import { tinyModel } from './helpers/serve-fixture.js';
import { turnCounter } from './helpers/turns.js';

/** A request whose body arrives as 64 KiB chunks, one per turn of the event loop. */
function requestOf(bytes: Buffer): IncomingMessage {
  const req = new EventEmitter() as EventEmitter & { headers: Record<string, string> };
  req.headers = { 'content-type': 'application/json' };
  let at = 0;
  const next = () => {
    if (at < bytes.length) {
      req.emit('data', bytes.subarray(at, at + 65536));
      at += 65536;
      setImmediate(next);
    } else req.emit('end');
  };
  setImmediate(next);
  return req as unknown as IncomingMessage;
}

/** Counts turns of the event loop while `run` runs. */
async function inTurns<T>(run: (turn: () => number) => Promise<T>): Promise<T> {
  const turns = turnCounter();
  try {
    return await run(turns.now);
  } finally {
    turns.stop();
  }
}

/** Pseudo-random JSON texts of every shape, with whitespace, escapes, `__proto__` and duplicate keys. */
function generator(seed: number) {
  let x = seed;
  const rnd = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
  const ws = () => ['', ' ', '\n', '\t ', ''][rnd(5)]!;
  const strings = ['a', 'b"c', '\\', '[{', '__proto__', 'x,y', 'é', 's'.repeat(40)];
  const keys = ['a', 'b', '__proto__', '1', '10', 'k,', 'a', '}'];
  const value = (d: number): string => {
    const r = rnd(d > 3 ? 5 : 8);
    if (r === 0) return String(rnd(1000) - 500) + (rnd(3) ? '' : '.5e1');
    if (r === 1) return JSON.stringify(strings[rnd(strings.length)]);
    if (r === 2) return ['true', 'false', 'null'][rnd(3)]!;
    if (r <= 4) return String(rnd(10));
    const n = rnd(12);
    const items = Array.from({ length: n }, () =>
      r === 5 ? value(d + 1) : `${JSON.stringify(keys[rnd(keys.length)])}${ws()}:${ws()}${value(d + 1)}`,
    );
    const [open, close] = r === 5 ? ['[', ']'] : ['{', '}'];
    return `${open}${ws()}${items.join(`${ws()},${ws()}`)}${ws()}${close}`;
  };
  const marks = [',', ']', '}', '[', '{', '"', ':', ' ', '1', 'x'];
  const mutate = (t: string) => {
    const i = rnd(t.length + 1);
    const c = marks[rnd(marks.length)]!;
    return [t.slice(0, i) + t.slice(i + 1), t.slice(0, i) + c + t.slice(i), t.slice(0, i) + c + t.slice(i + 1)][
      rnd(3)
    ]!;
  };
  return { rnd, text: () => ws() + value(0) + ws(), mutate };
}

test('parsed in slices, a text gives what JSON.parse gives, and is refused where JSON.parse refuses it', async () => {
  const g = generator(7);
  const now = async () => {};
  let valid = 0;
  let broken = 0;
  for (let k = 0; k < 6000; k++) {
    let text = g.text();
    if (g.rnd(2)) text = g.mutate(text);
    const deep = jsonNestsDeeperThan(text, 4);
    let want: unknown;
    let refused = false;
    try {
      want = JSON.parse(text);
    } catch {
      refused = true;
    }
    // Slices of 1-30 characters: every array and object of a few elements is cut, at every place.
    const options = { maxDepth: 4, slice: 1 + g.rnd(30), turn: 1 + g.rnd(50), nextTurn: now };
    const got = await parseJsonInTurns(text, options).then(
      (v) => ({ v }),
      (e: unknown) => ({ e }),
    );
    const label = `${JSON.stringify(text)} (slice ${options.slice})`;
    if (deep) assert.ok('e' in got && got.e instanceof NestsTooDeep, label);
    else if (refused) {
      assert.ok('e' in got && got.e instanceof MalformedJson, `accepted: ${label}`);
      broken++;
    } else {
      assert.ok('v' in got, `refused: ${label}`);
      // The same value, keys in the same order (JSON.stringify), `__proto__` an own key.
      assert.deepEqual(got.v, want, label);
      assert.equal(JSON.stringify(got.v), JSON.stringify(want), label);
      valid++;
    }
  }
  assert.ok(valid > 1000 && broken > 1000, `${valid} valid, ${broken} broken texts`);
});

test('a body of 250,000 token ids is parsed a slice per turn, not in one JSON.parse', async () => {
  const ids = Array.from({ length: 250_000 }, (_, i) => (i * 7919) % 50_000);
  const text = JSON.stringify({ model: 'm', prompt: ids, max_tokens: 1 });
  // Characters given to JSON.parse in each turn.
  const perTurn = new Map<number, number>();
  const parse = JSON.parse;
  const body = await inTurns(async (turn) => {
    JSON.parse = function (this: JSON, ...args: Parameters<typeof parse>) {
      perTurn.set(turn(), (perTurn.get(turn()) ?? 0) + args[0].length);
      return parse.apply(this, args) as unknown;
    };
    try {
      return await readJsonBody(requestOf(Buffer.from(text)), 4 << 20);
    } finally {
      JSON.parse = parse;
    }
  });
  assert.deepEqual(body, parse(text));
  const most = Math.max(...perTurn.values());
  // The old server parsed all 1.4 million characters in one turn.
  assert.ok(most <= 200 * 1024, `${most} characters parsed in one turn`);
  assert.ok(perTurn.size >= text.length / (200 * 1024), `${perTurn.size} turns`);
});

test('a large body that is not JSON gets the message of a whole JSON.parse, found where the server says', async () => {
  const good = JSON.stringify({
    model: 'm',
    messages: Array.from({ length: 4000 }, () => ({ role: 'user', content: 'hi there' })),
  });
  for (const broken of [
    `${good.slice(0, 70_000)}]${good.slice(70_000)}`,
    `${good} x`,
    good.replace('"hi there"}', '"hi there",}'),
  ]) {
    const why = (() => {
      try {
        JSON.parse(broken);
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('parsed');
    })();
    let asked = 0;
    for (const errorOf of [
      undefined,
      async (t: string) => {
        asked++;
        return t === broken ? why : 'wrong text';
      },
    ]) {
      const refusal = await readJsonBody(requestOf(Buffer.from(broken)), 4 << 20, errorOf).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(refusal instanceof ApiError && refusal.status === 400, String(refusal));
      assert.equal(refusal.message, `We could not parse the JSON body of your request: ${why}.`);
    }
    assert.equal(asked, 1);
  }
});

test("metadata is held to OpenAI's limits: 16 pairs, keys of 64 characters, values of 512", () => {
  const refusal = (metadata: unknown): [string | null, string] | null => {
    try {
      parseBody(CompletionRequest, { model: 'm', prompt: 'x', metadata });
      return null;
    } catch (e) {
      assert.ok(e instanceof ApiError && e.status === 400, String(e));
      return [e.param, e.message];
    }
  };
  const pairs = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, 'v']));
  assert.equal(refusal(pairs(16)), null);
  assert.equal(refusal({ ['k'.repeat(64)]: 'v'.repeat(512) }), null);
  // The old server accepted each of these (and read all 50,000 entries of the first).
  assert.deepEqual(refusal(pairs(50_000)), ['metadata', "Invalid value for 'metadata': at most 16 key-value pairs."]);
  assert.deepEqual(refusal(pairs(17)), ['metadata', "Invalid value for 'metadata': at most 16 key-value pairs."]);
  assert.equal(
    refusal({ ['k'.repeat(65)]: 'v' })?.[1],
    "Invalid key in 'metadata': keys must be at most 64 characters.",
  );
  assert.deepEqual(refusal({ a: 'v'.repeat(513) }), [
    'metadata.a',
    "Invalid 'metadata.a': expected at most 512 characters.",
  ]);
});

/** Characters of message contents and texts in what this thread posts to worker threads while `run` runs. */
async function postedChars(run: () => Promise<void>): Promise<number> {
  let chars = 0;
  const post = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (this: Worker, job: unknown, ...rest: unknown[]) {
    const j = job as { messages?: { content: string }[]; text?: unknown };
    for (const m of j?.messages ?? []) chars += m.content.length;
    if (typeof j?.text === 'string') chars += j.text.length;
    post.call(this, job, ...(rest as []));
  };
  try {
    await run();
  } finally {
    Worker.prototype.postMessage = post;
  }
  return chars;
}

test('a truncation search sends the conversation to the prompt worker once, not with each probe', {
  timeout: 120_000,
}, async () => {
  const m = await tinyModel();
  const template =
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  for (const format of [jinjaFormat(template, {}), plainFormat()]) {
    const served = servedModelFrom(m.runner, m.tokenizer, { id: m.id, ctx: 512, format });
    const server = new MptServer(served, { port: 0, host: '127.0.0.1', maxBodyBytes: 4 << 20 });
    const { url } = await server.listen();
    try {
      const messages = Array.from({ length: 400 }, (_, i) => ({
        role: i % 2 ? 'assistant' : 'user',
        content: `turn ${i} says hello there, and a little more about the weather`,
      }));
      const size = messages.reduce((a, x) => a + x.content.length, 0);
      let answer: { status: number; prompt: number } = { status: 0, prompt: 0 };
      const chars = await postedChars(async () => {
        const r = await fetch(`${url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ model: m.id, messages, max_tokens: 1, truncate: 'oldest_turns' }),
        });
        const json = (await r.json()) as { usage: { prompt_tokens: number } };
        answer = { status: r.status, prompt: json.usage?.prompt_tokens };
      });
      assert.equal(answer.status, 200);
      assert.ok(answer.prompt > 256 && answer.prompt < 512, `${answer.prompt} prompt tokens`);
      // The old server sent the messages with each of ~16 renders (Jinja), or each rendered text (plain).
      assert.ok(chars < 1.5 * size, `${format.name}: ${chars} characters posted for a conversation of ${size}`);
    } finally {
      await server.shutdown(0);
    }
  }
});

test('64 choices of a long prompt are set up a few per turn of the event loop', { timeout: 120_000 }, async () => {
  const m = await tinyModel();
  const served = servedModelFrom(m.runner, m.tokenizer, { id: m.id, ctx: 512, format: plainFormat() });
  // Each choice's sequence reads the model's stop ids once, when it is made: the turn of each.
  const made = new Map<number, number>();
  let turnNow = () => 0;
  const stopIds = served.stopIds;
  Object.defineProperty(served, 'stopIds', {
    get: () => {
      made.set(turnNow(), (made.get(turnNow()) ?? 0) + 1);
      return stopIds;
    },
  });
  const server = new MptServer(served, { port: 0, host: '127.0.0.1', parallel: 4, queue: 128 });
  const { url } = await server.listen();
  try {
    const prompt = Array.from({ length: 400 }, (_, i) => 1 + i);
    const status = await inTurns(async (turn) => {
      turnNow = turn;
      const r = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: m.id, prompt, n: 64, max_tokens: 1 }),
      });
      await r.arrayBuffer();
      return r.status;
    });
    assert.equal(status, 200);
  } finally {
    await server.shutdown(0);
  }
  assert.equal(
    [...made.values()].reduce((a, b) => a + b, 0),
    64,
  );
  // The old server made all 64 in the turn the prompt was ready.
  assert.ok(Math.max(...made.values()) <= 8, `${JSON.stringify([...made])}: choices made per turn`);
});
