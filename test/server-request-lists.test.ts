/**
 * Lists in request bodies (a prompt's token ids, stop strings, /detokenize's ids) are checked with
 * one read of each element, not by zod's per-element machinery: a union's list of strings tried
 * on 250,000 token ids made an issue for every one of them (seconds of the event loop). What is
 * counted is reads of the list's elements (a Proxy), not time; the answers are zod's own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiError } from '../src/server/api-error.js';
import { CompletionRequest, parseBody } from '../src/server/request-schema.js';

/** `items` behind a Proxy that counts reads of its elements. */
function counted<T>(items: T[]): { list: T[]; reads: () => number } {
  let reads = 0;
  const list = new Proxy(items, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  return { list, reads: () => reads };
}

/** The 400 parseBody throws for `body`, as [param, message]. */
function refusal(body: object): [string | null, string] {
  try {
    parseBody(CompletionRequest, body);
  } catch (e) {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.status, 400);
    return [e.param, e.message];
  }
  throw new Error('the body was accepted');
}

const N = 100_000;
const ids = () => Array.from({ length: N }, (_, i) => (i * 7919) % 50_000);

test('a prompt of 100,000 token ids is accepted reading each id about once', () => {
  const { list, reads } = counted(ids());
  const r = parseBody(CompletionRequest, { model: 'm', prompt: list });
  assert.equal(r.prompt, list);
  // The old union read every id in each of its three list branches (and made 200,000 issues).
  assert.ok(reads() <= N + 10, `${reads()} reads of ${N} ids`);
});

test('a bad id in a long prompt is named, reading each id about once', () => {
  const items: unknown[] = ids();
  items[N - 1] = 1.5;
  const { list, reads } = counted(items);
  const [param, message] = refusal({ model: 'm', prompt: list });
  assert.equal(param, `prompt[${N - 1}]`);
  assert.equal(message, `Invalid type for 'prompt[${N - 1}]': expected an integer, but got a number.`);
  assert.ok(reads() <= N + 10, `${reads()} reads of ${N} ids`);
});

test('the list a prompt is taken for, and its first bad element, as the old union chose them', () => {
  const cases: [unknown, string, string][] = [
    [[1, -2], 'prompt[1]', "Invalid value for 'prompt[1]': must be >= 0, got -2."],
    [[1, 1.5], 'prompt[1]', "Invalid type for 'prompt[1]': expected an integer, but got a number."],
    [['a', 1], 'prompt[1]', "Invalid type for 'prompt[1]': expected a string, but got an integer."],
    [[[1], []], 'prompt[1]', "Invalid 'prompt[1]': expected at least 1 items."],
    [[], 'prompt', "Invalid 'prompt': expected at least 1 items."],
    [5, 'prompt', "Invalid type for 'prompt': expected a string or an array, but got an integer."],
  ];
  for (const [prompt, param, message] of cases)
    assert.deepEqual(refusal({ model: 'm', prompt }), [param, message], JSON.stringify(prompt));
  assert.deepEqual(parseBody(CompletionRequest, { model: 'm', prompt: [[1, 2], [3]] }).prompt, [[1, 2], [3]]);
  assert.deepEqual(parseBody(CompletionRequest, { model: 'm', prompt: ['a', 'b'] }).prompt, ['a', 'b']);
});

test('a stop list longer than its limit is refused, as zod refused it, without reading its strings', () => {
  const { list, reads } = counted(Array.from({ length: N }, () => 'stop'));
  const [param, message] = refusal({ model: 'm', prompt: 'x', stop: list });
  assert.equal(param, 'stop');
  assert.equal(message, "Invalid 'stop': expected at most 4 items.");
  assert.ok(reads() <= 10, `${reads()} reads of ${N} stop strings`);
  assert.deepEqual(parseBody(CompletionRequest, { model: 'm', prompt: 'x', stop: ['a', 'b'] }).stop, ['a', 'b']);
  assert.equal(refusal({ model: 'm', prompt: 'x', stop: ['a', 'x'.repeat(257)] })[0], 'stop[1]');
});

test('a logit_bias of more than 300 entries is refused without reading its values', () => {
  const entries: Record<string, number> = {};
  for (let i = 0; i < N; i++) entries[String(i)] = 1;
  let reads = 0;
  const bias = new Proxy(entries, {
    get(target, key, receiver) {
      reads++;
      return Reflect.get(target, key, receiver) as unknown;
    },
  });
  const [param, message] = refusal({ model: 'm', prompt: 'x', logit_bias: bias });
  assert.equal(param, 'logit_bias');
  assert.equal(message, "Invalid value for 'logit_bias': at most 300 entries.");
  // The old record checked all 100,000 keys and values (half a second and more, busy) first.
  assert.ok(reads <= 10, `${reads} values read of ${N}`);
  const ok = parseBody(CompletionRequest, { model: 'm', prompt: 'x', logit_bias: { '5': -100, '7': 2.5 } });
  assert.deepEqual(ok.logit_bias, { '5': -100, '7': 2.5 });
  assert.equal(refusal({ model: 'm', prompt: 'x', logit_bias: { '5': 101 } })[0], 'logit_bias.5');
  assert.deepEqual(parseBody(CompletionRequest, { model: 'm', prompt: 'x', metadata: { a: 'b' } }).metadata, {
    a: 'b',
  });
  assert.equal(refusal({ model: 'm', prompt: 'x', metadata: { a: 'b', c: 1 } })[0], 'metadata.c');
});
