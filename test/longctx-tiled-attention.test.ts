/**
 * The wasm backend's tiled attention (FlashAttention-style: 32-key tiles, 4-row query tiles,
 * 16-row work items, passes of maxRows tokens, online softmax, ALiBi and the causal mask from
 * positions) against the reference backend's row-by-row attention and the fixtures' goldens, at
 * lengths on both sides of every tile edge, for one-pass prefill, chunked prefill, single-token
 * decode and batches of sequences of different lengths. tiny-storywriter has alibi_bias_max 16
 * and clip_qkv 6 like MPT-7B-StoryWriter, and max_seq_len 128: the longer runs extrapolate.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ModelRunner } from '../src/backends/backend.js';
import { getBackend, loadRunner } from '../src/backends/registry.js';
import { openCheckpoint } from '../src/model/load.js';
import { Goldens, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { runChunks } from './helpers/chunked.js';

const TOL = 5e-4;
const LENGTHS = [1, 2, 3, 4, 5, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257];
const N = 300;

function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

let wasmAvailable = true;
try {
  await getBackend('wasm');
} catch {
  wasmAvailable = false;
}

describe('tiled attention (wasm) equals row-by-row attention (reference)', {
  skip: !wasmAvailable && 'wasm backend not built',
}, async () => {
  if (!wasmAvailable) return;
  const SW = fixturePath('tiny-storywriter');
  const { runner: ref } = await loadRunner(SW, { backend: 'reference' });
  const V = ref.config.vocabSize;
  const ids = randomIds(N, V, 7);
  // Row t of a causal model depends on tokens 0..t only: one reference pass gives every prefix.
  const refCache = ref.createCache({ capacity: N });
  const want = (await ref.forward([{ cache: refCache, tokens: ids }], { logits: 'all' }))[0]!.logits;
  const rows = (a: number, b: number) => want.subarray(a * V, b * V);

  const { loadWasmRunner } = await import('../src/backends/wasm/index.js');
  const ck = await openCheckpoint(SW);
  const wasm: ModelRunner = await loadWasmRunner(ck.config, ck.tensors, { threads: 2 });
  const small: ModelRunner = await loadWasmRunner(ck.config, ck.tensors, { threads: 2, maxRows: 20 });
  await ck.tensors.close();

  const run = (r: ModelRunner, chunks: number[]) => runChunks(r, ids, chunks, V);

  it('matches the golden logits of tiny-storywriter', async () => {
    const g = new Goldens(SW);
    const seq = (g.json.inputs as Record<string, number[]>)['seq64']!;
    const cache = wasm.createCache({ capacity: 64 });
    const [o] = await wasm.forward([{ cache, tokens: seq }], { logits: 'all' });
    cache.dispose();
    assert.ok(maxAbsDiff(o!.logits, g.tensor('logits/seq64').data) <= TOL);
  });

  it(`one-pass prefill at lengths ${LENGTHS.join(', ')}`, async () => {
    for (const L of LENGTHS) {
      const d = maxAbsDiff(await run(wasm, [L]), rows(0, L));
      assert.ok(d <= TOL, `length ${L}: max abs diff ${d}`);
    }
  });

  it('passes of 20 rows (maxRows) over 257 tokens, and irregular chunks then single-token decode', async () => {
    let d = maxAbsDiff(await run(small, [257]), rows(0, 257));
    assert.ok(d <= TOL, `maxRows 20: ${d}`);
    const chunks = [31, 1, 33, 64, 2, 17, 15, 4, 5, ...Array<number>(20).fill(1), 65];
    const total = chunks.reduce((a, b) => a + b, 0);
    for (const r of [wasm, small]) {
      d = maxAbsDiff(await run(r, chunks), rows(0, total));
      assert.ok(d <= TOL, `chunks ${chunks.join(',')}: ${d}`);
    }
  });

  it('a batch of sequences of different lengths in one call', async () => {
    const lens = [45, 70, 1, 129];
    const caches = lens.map((n) => wasm.createCache({ capacity: n + 3 }));
    const outs = await wasm.forward(
      lens.map((n, i) => ({ cache: caches[i]!, tokens: ids.slice(0, n) })),
      { logits: 'all' },
    );
    lens.forEach((n, i) => {
      assert.ok(maxAbsDiff(outs[i]!.logits, rows(0, n)) <= TOL, `sequence of ${n}`);
    });
    // then one decode step each, together
    const steps = await wasm.forward(
      lens.map((n, i) => ({ cache: caches[i]!, tokens: [ids[n]!] })),
      { logits: 'last' },
    );
    lens.forEach((n, i) => {
      assert.ok(maxAbsDiff(steps[i]!.logits, rows(n, n + 1)) <= TOL, `decode after ${n}`);
    });
    for (const c of caches) c.dispose();
  });

  it('cleans up', async () => {
    await wasm.dispose();
    await small.dispose();
  });
});
