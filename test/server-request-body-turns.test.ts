/**
 * The passes over a large request body, and what reads it next, do not share one turn of the event
 * loop: decoding, the nesting scan, JSON.parse and the handler's checks of a megabyte each cost
 * 5-30 ms of a busy machine, and together held every other client for 50-150 ms. What is counted
 * is turns (a `setImmediate` ticker numbers them) and work, not time.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { jsonNestsDeeperThan } from '../src/formats/json-source.js';
import { readJsonBody } from '../src/server/request-body.js';
import { ChatRequest, parseBody } from '../src/server/request-schema.js';
import { turnCounter } from './helpers/turns.js';

/** A request whose body arrives as `chunks`, one per turn of the event loop. */
function requestOf(chunks: Buffer[]): IncomingMessage {
  const req = new EventEmitter() as EventEmitter & { headers: Record<string, string> };
  req.headers = { 'content-type': 'application/json' };
  let i = 0;
  const next = () => {
    if (i < chunks.length) {
      req.emit('data', chunks[i++]);
      setImmediate(next);
    } else req.emit('end');
  };
  setImmediate(next);
  return req as unknown as IncomingMessage;
}

/** A chat body of `count` messages, about `bytes` in all. */
function chatBody(count: number, bytes: number): { model: string; messages: { role: string; content: string }[] } {
  const content = 'the model answers café '.repeat(Math.ceil(bytes / count / 23)).slice(0, Math.floor(bytes / count));
  const messages = Array.from({ length: count }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content }));
  return { model: 'm', messages };
}

test('a large body is decoded, parsed and handed on in turns of the event loop of their own', async () => {
  const text = JSON.stringify(chatBody(512, 512 * 1024));
  const bytes = Buffer.from(text);
  const chunks = Array.from({ length: Math.ceil(bytes.length / 65536) }, (_, k) =>
    bytes.subarray(k * 65536, (k + 1) * 65536),
  );
  const turns = turnCounter();
  const at: Record<string, number> = {};
  const parse = JSON.parse;
  const decode = TextDecoder.prototype.decode;
  // The turns in which text was given to JSON.parse (a large body's slices each go in a turn).
  const parsed = new Set<number>();
  JSON.parse = function (this: JSON, ...args: Parameters<typeof parse>) {
    parsed.add(turns.now());
    at.parse ??= turns.now();
    at.parsed = turns.now();
    return parse.apply(this, args) as unknown;
  };
  TextDecoder.prototype.decode = function (this: TextDecoder, ...args: Parameters<typeof decode>) {
    if ((args[0]?.byteLength ?? 0) >= 65536) at.decode = turns.now();
    return decode.apply(this, args);
  };
  let body: unknown;
  try {
    body = await readJsonBody(requestOf(chunks), 4 << 20);
    at.handedOn = turns.now();
  } finally {
    JSON.parse = parse;
    TextDecoder.prototype.decode = decode;
    turns.stop();
  }
  assert.deepEqual(body, parse(text));
  // The old server did all three in the turn the body's last byte arrived.
  assert.ok(at.decode! < at.parse!, `decoded in turn ${at.decode}, parsed from turn ${at.parse}`);
  assert.ok(at.parsed! < at.handedOn!, `parsed until turn ${at.parsed}, handed on in turn ${at.handedOn}`);
  assert.ok(parsed.size > 1, `parsed in ${parsed.size} turns`);
});

test('the nesting scan skips a string with a search, not a look at each character', () => {
  const text = JSON.stringify(chatBody(64, 256 * 1024));
  const charCodeAt = String.prototype.charCodeAt;
  let looks = 0;
  String.prototype.charCodeAt = function (this: string, i: number) {
    looks++;
    return charCodeAt.call(this, i);
  };
  let deep: boolean;
  try {
    deep = jsonNestsDeeperThan(text, 3);
  } finally {
    String.prototype.charCodeAt = charCodeAt;
  }
  assert.equal(deep, false);
  // The old scan looked at all 262,144 characters of the messages' text.
  assert.ok(looks < text.length / 20, `${looks} characters looked at of ${text.length}`);
  assert.equal(jsonNestsDeeperThan('{"a":"\\\\"}', 1), false);
  assert.equal(jsonNestsDeeperThan('{"a":"\\"[[[["}', 1), false);
  assert.equal(jsonNestsDeeperThan('{"a":"\\\\",[[]]}', 2), true);
});

test("a chat's text messages are accepted as they are, not copied one by one", () => {
  const body = chatBody(2048, 64 * 1024);
  const r = parseBody(ChatRequest, body);
  // zod's list copies each message it checks: the old check made 2,048 objects.
  assert.equal(r.messages, body.messages);
  // A message with more than a role and a text is checked (and its unknown fields dropped) as before.
  const odd = parseBody(ChatRequest, {
    model: 'm',
    messages: [
      { role: 'user', content: 'a' },
      { role: 'user', content: [{ type: 'text', text: 'b' }], extra: 1 },
    ],
  });
  assert.deepEqual(odd.messages, [
    { role: 'user', content: 'a' },
    { role: 'user', content: [{ type: 'text', text: 'b' }] },
  ]);
  assert.throws(() => parseBody(ChatRequest, { model: 'm', messages: [{ role: 'robot', content: 'a' }] }), {
    param: 'messages[0].role',
  });
});
