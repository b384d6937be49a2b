/**
 * A server computes JSON-constraint masks on a thread of its own: a new grammar state's mask can
 * be a walk over the whole vocabulary (hundreds of ms for 50k tokens on a busy machine), which on
 * the event loop held every other client. The worker's masks must be the ones computed in place, a sequence waiting for its
 * mask must not hold the others' steps, and the event loop must not walk the vocabulary at all.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { JsonGrammar, maskHas } from '../src/server/constrain/json-constraint.js';
import { TokenTrie } from '../src/server/constrain/token-trie.js';
import { MptServer } from '../src/server/http-server.js';
import { servedModelFrom } from '../src/server/model-host.js';
import { PromptWorker } from '../src/server/prompt-worker.js';
import { Scheduler, type EndReason, type SequenceClient } from '../src/server/scheduler.js';
import { constraintVocabulary, tinyModel } from './helpers/serve-fixture.js';

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 8 },
    age: { type: 'integer', minimum: 0, maximum: 130 },
    tags: { type: 'array', items: { enum: ['a', 'bc', 'def'] }, maxItems: 3 },
  },
  required: ['name', 'age'],
  additionalProperties: false,
};

const workers: PromptWorker[] = [];
after(() => {
  for (const w of workers) w.close(new Error('test over'));
});

/** A small deterministic generator. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Counts TokenTrie walks on this thread until restored. */
function countWalks(): { count: number; restore(): void } {
  const walk = TokenTrie.prototype.walk;
  const calls = {
    count: 0,
    restore: () => {
      TokenTrie.prototype.walk = walk;
    },
  };
  TokenTrie.prototype.walk = function <S>(
    this: TokenTrie,
    state: S,
    step: (s: S, b: number) => S | null,
    accept: (id: number) => void,
  ) {
    calls.count++;
    return walk.call<TokenTrie, [S, (s: S, b: number) => S | null, (id: number) => void], void>(
      this,
      state,
      step,
      accept,
    );
  };
  return calls;
}

test("the mask worker's masks are those computed in place, along random constrained walks", async () => {
  const model = await tinyModel();
  const vocab = await constraintVocabulary(model);
  const masks = new PromptWorker(model.tokenizer);
  workers.push(masks);
  const schemaText = JSON.stringify(PERSON);
  const here = new JsonGrammar(PERSON, vocab);
  const there = new JsonGrammar(PERSON, vocab, (output) => masks.constraintMask(schemaText, vocab, output));
  const random = rng(5);
  let compared = 0;
  for (let run = 0; run < 2; run++) {
    const a = here.start();
    const b = there.start();
    for (let step = 0; step < 16 && !a.finished; step++) {
      const wait = b.ready();
      if (wait) {
        await wait;
        compared++;
      }
      assert.equal(b.ready(), null, 'ready once its mask has come back');
      const want = a.mask();
      const got = b.mask();
      assert.deepEqual(got, want, `run ${run}, step ${step}`);
      const allowed: number[] = [];
      for (let id = 0; id < vocab.vocabSize; id++)
        if (maskHas(want, id) && !vocab.eosIds.includes(id)) allowed.push(id);
      if (allowed.length === 0) break;
      const id = allowed[Math.floor(random() * allowed.length)]!;
      assert.ok(a.accept(id));
      assert.ok(b.accept(id));
    }
  }
  assert.ok(compared >= 8, `only ${compared} masks came from the worker`);
});

test('a failed mask ends only its own sequence, with the failure', async () => {
  const model = await tinyModel();
  const vocab = await constraintVocabulary(model);
  const boom = new Error('the mask worker is gone');
  const g = new JsonGrammar(PERSON, vocab, () => Promise.reject(boom));
  const c = g.start();
  const wait = c.ready();
  assert.ok(wait, 'the first mask is asked of the worker');
  await wait; // settles, does not reject
  assert.equal(c.ready(), null, 'not asked again');
  assert.throws(
    () => c.apply(new Float32Array(vocab.vocabSize)),
    (e) => e === boom,
  );
});

/** A client that takes the argmax for `max` tokens, not ready for logits until `release()`. */
function gated(prompt: number[], max: number) {
  const tokens: number[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => {
    open = r;
  });
  let released = false;
  let ended!: (r: EndReason) => void;
  const done = new Promise<EndReason>((r) => {
    ended = r;
  });
  const client: SequenceClient = {
    prompt,
    capacity: prompt.length + max,
    ready: () => (released ? null : gate),
    next(logits) {
      assert.ok(released, 'next() was called before the client was ready');
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i]! > logits[best]!) best = i;
      tokens.push(best);
      return tokens.length >= max ? null : best;
    },
    onEnd: (r) => ended(r),
  };
  return {
    client,
    tokens,
    done,
    release: () => {
      released = true;
      open();
    },
  };
}

test('a sequence waiting for its mask does not hold the steps of the others', async () => {
  const model = await tinyModel();
  const sched = new Scheduler(model.runner, { maxActive: 4, maxQueue: 4 });
  const waiting = gated([1, 2, 3], 4);
  const other = gated([4, 5, 6], 12);
  other.release();
  sched.submitAll([waiting.client, other.client]);
  assert.equal(await other.done, 'finished');
  assert.equal(other.tokens.length, 12);
  assert.equal(waiting.tokens.length, 0, 'the waiting sequence took no logits');
  // Alone and waiting: the loop sleeps until the mask comes (no step, no spinning), then goes on.
  const steps = sched.stats().steps;
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(sched.stats().steps - steps <= 1, `${sched.stats().steps - steps} steps while every sequence waited`);
  waiting.release();
  assert.equal(await waiting.done, 'finished');
  assert.equal(waiting.tokens.length, 4);
  // Cancelling a waiting sequence ends it at once.
  const cancelled = gated([7, 8], 4);
  const [handle] = sched.submitAll([cancelled.client]);
  await new Promise((r) => setTimeout(r, 20));
  handle!.cancel();
  assert.equal(await cancelled.done, 'cancelled');
  await sched.close();
});

test('a JSON-schema request is served without walking the vocabulary on the event loop', async () => {
  const m = await tinyModel();
  // A model of its own, so that no mask is cached from another test.
  const fresh = servedModelFrom(m.runner, m.tokenizer, { id: m.id, ctx: 256, format: m.format });
  const s = new MptServer(fresh, { port: 0 });
  const { url } = await s.listen();
  const walks = countWalks();
  try {
    for (const seed of [1, 2, 3]) {
      // The last one also scores its prompt (echo with logprobs: a sequence reading its prompt's logits).
      const echo = seed === 3;
      const body = {
        model: m.id,
        prompt: 'Give JSON:',
        max_tokens: 32,
        seed,
        temperature: 1,
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON } },
        ...(echo ? { echo: true, logprobs: 1 } : {}),
      };
      const r = await fetch(`${url}/v1/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await r.json()) as { choices: { text: string; finish_reason: string }[] };
      assert.equal(r.status, 200, JSON.stringify(json));
      const { text: all, finish_reason } = json.choices[0]!;
      if (echo) assert.ok(all.startsWith(body.prompt), all);
      const text = echo ? all.slice(body.prompt.length) : all;
      if (finish_reason === 'stop') {
        const value = JSON.parse(text) as { name: unknown; age: unknown };
        assert.equal(typeof value.name, 'string');
        assert.ok(Number.isInteger(value.age));
      } else {
        assert.equal(finish_reason, 'length');
        assert.ok(text.trimStart().startsWith('{'), text);
      }
    }
    assert.equal(walks.count, 0, `${walks.count} vocabulary walks on the event loop`);
  } finally {
    walks.restore();
    await s.shutdown(0);
  }
});
