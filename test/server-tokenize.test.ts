/**
 * POST /tokenize and /detokenize in llama-server's shapes, checked against the tokenizer itself
 * (whose encoding the tokenizer goldens check against Hugging Face's).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestServer, type TestServer } from './helpers/serve-fixture.js';

let srv: TestServer;
before(async () => {
  srv = await startTestServer();
});
after(async () => {
  await srv.close();
});

const post = async (path: string, body: unknown) => {
  const r = await fetch(srv.url + path, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: r.status, body: (await r.json()) as any };
};

test('/tokenize gives the ids (and pieces); /detokenize gives the text back', async () => {
  const text = 'Hello world, déjà vu!';
  const want = srv.model.tokenizer.encode(text);
  const t = await post('/tokenize', { content: text, add_special: true });
  assert.equal(t.status, 200);
  assert.deepEqual(t.body, { tokens: want });
  const p = await post('/tokenize', { content: text, with_pieces: true });
  assert.deepEqual(
    p.body.tokens.map((x: any) => x.id),
    want,
  );
  assert.deepEqual(
    p.body.tokens.map((x: any) => x.piece),
    want.map((id) => srv.model.tokenizer.decode([id])),
  );
  const d = await post('/detokenize', { tokens: want });
  assert.deepEqual(d, { status: 200, body: { content: text } });
});

test('/detokenize refuses ids outside the vocabulary, naming the entry', async () => {
  const d = await post('/detokenize', { tokens: [1, 10_000_000] });
  assert.equal(d.status, 400);
  assert.equal(d.body.error.param, 'tokens[1]');
  const t = await post('/tokenize', { text: 'x' });
  assert.equal(t.status, 400);
});
