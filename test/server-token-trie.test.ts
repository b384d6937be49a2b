/**
 * The vocabulary trie of constrained decoding: the same flat arrays as a direct construction (a
 * map of children per node, flattened breadth-first with children in byte order), for the
 * GPT-NeoX vocabulary and for random byte strings (shared prefixes, duplicates, empty and null
 * entries); and every token found again by walking it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenTrie } from '../src/server/constrain/token-trie.js';
import { tokenBytesOf } from '../src/server/constrain/vocabulary.js';
import { PromptWorker } from '../src/server/prompt-worker.js';
import { tinyModel } from './helpers/serve-fixture.js';

interface Node {
  children: Map<number, Node>;
  tokens: number[];
}

/** The trie's arrays built the plain way. */
function directTrie(tokenBytes: readonly (Uint8Array | null)[]) {
  const root: Node = { children: new Map(), tokens: [] };
  for (const [id, bytes] of tokenBytes.entries()) {
    if (!bytes || bytes.length === 0) continue;
    let n = root;
    for (const b of bytes) {
      let c = n.children.get(b);
      if (!c) {
        c = { children: new Map(), tokens: [] };
        n.children.set(b, c);
      }
      n = c;
    }
    n.tokens.push(id);
  }
  const order: Node[] = [root];
  const childStart: number[] = [];
  const childCount: number[] = [];
  const edgeByte: number[] = [];
  const edgeNode: number[] = [];
  for (let i = 0; i < order.length; i++) {
    const n = order[i]!;
    childStart.push(edgeByte.length);
    childCount.push(n.children.size);
    for (const [b, c] of [...n.children].sort((x, y) => x[0] - y[0])) {
      edgeByte.push(b);
      edgeNode.push(order.length);
      order.push(c);
    }
  }
  const tokenStart: number[] = [];
  const tokenIds: number[] = [];
  for (const n of order) {
    tokenStart.push(tokenIds.length);
    tokenIds.push(...n.tokens);
  }
  tokenStart.push(tokenIds.length);
  return { nodeCount: order.length, childStart, childCount, edgeByte, edgeNode, tokenStart, tokenIds };
}

function checkSame(tokenBytes: readonly (Uint8Array | null)[], what: string): void {
  const trie = TokenTrie.build(tokenBytes);
  const want = directTrie(tokenBytes);
  const n = want.nodeCount;
  assert.equal(trie.nodeCount, n, `${what}: node count`);
  assert.deepEqual(Array.from(trie.childStart), want.childStart, `${what}: childStart`);
  assert.deepEqual(Array.from(trie.childCount), want.childCount, `${what}: childCount`);
  // Edge arrays have one spare slot (n - 1 edges, n entries).
  assert.deepEqual(Array.from(trie.edgeByte.subarray(0, n - 1)), want.edgeByte, `${what}: edgeByte`);
  assert.deepEqual(Array.from(trie.edgeNode.subarray(0, n - 1)), want.edgeNode, `${what}: edgeNode`);
  assert.deepEqual(Array.from(trie.tokenStart), want.tokenStart, `${what}: tokenStart`);
  assert.deepEqual(Array.from(trie.tokenIds), want.tokenIds, `${what}: tokenIds`);
  for (const [id, bytes] of tokenBytes.entries())
    assert.deepEqual(trie.tokenBytes(id), bytes && bytes.length > 0 ? bytes : null, `${what}: bytes of ${id}`);
  assert.equal(trie.tokenBytes(tokenBytes.length), null, `${what}: an id past the vocabulary`);
  // Accepting every byte visits every token exactly once.
  const seen: number[] = [];
  trie.walk(
    0,
    () => 0,
    (id) => seen.push(id),
  );
  const present = tokenBytes.flatMap((b, id) => (b && b.length > 0 ? [id] : []));
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    present,
    `${what}: walk`,
  );
}

test('the trie of the GPT-NeoX vocabulary equals the direct construction', async () => {
  const m = await tinyModel();
  checkSame(tokenBytesOf(m.tokenizer, m.runner.config.vocabSize), 'GPT-NeoX');
});

test("a server's prompt worker builds the same trie, handed over as buffers", async () => {
  const m = await tinyModel();
  const prompts = new PromptWorker(m.tokenizer);
  try {
    const got = await prompts.constraintTrie(m.runner.config.vocabSize);
    const want = TokenTrie.build(tokenBytesOf(m.tokenizer, m.runner.config.vocabSize));
    assert.equal(got.nodeCount, want.nodeCount);
    for (const [name, array] of Object.entries(want.parts))
      assert.ok(Buffer.from(array.buffer).equals(Buffer.from(got.parts[name as keyof typeof want.parts].buffer)), name);
  } finally {
    prompts.close(new Error('closed'));
  }
});

test('tries of random byte strings equal the direct construction', () => {
  let seed = 11;
  const next = (k: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % k;
  };
  for (let round = 0; round < 40; round++) {
    const alphabet = 1 + next(round < 20 ? 4 : 256);
    const tokens = Array.from({ length: next(300) }, () => {
      if (next(10) === 0) return next(2) ? null : new Uint8Array(0);
      return Uint8Array.from({ length: 1 + next(6) }, () => next(alphabet) * (256 / alphabet));
    });
    checkSame(tokens, `round ${round}`);
  }
  checkSame([], 'empty');
});
