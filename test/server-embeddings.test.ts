/**
 * /v1/embeddings: the wasm backend's final hidden states (after norm_f) against MosaicML's
 * goldens and the reference backend, in batches with other sequences and split passes; the
 * endpoint through OpenAI's client (float and base64), its vector against mean-pooled,
 * normalised reference-backend hidden states computed here; its 400s; and that an embedding
 * read in chunks lets another sequence decode meanwhile.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import type { ModelRunner } from '../src/backends/backend.js';
import { loadWasmRunner, type WasmLoadOptions } from '../src/backends/wasm/index.js';
import type { WasmRunner } from '../src/backends/wasm/runner.js';
import { openCheckpoint } from '../src/model/load.js';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel, type ServedModel } from '../src/server/model-host.js';
import { Scheduler, type EndReason, type SequenceClient } from '../src/server/scheduler.js';
import { Goldens, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { TOL } from './helpers/backend-conformance.js';
import { TINY_NEOX, startTestServer, tinyModel, type TestServer } from './helpers/serve-fixture.js';

async function loadWasm(name: string, opts: WasmLoadOptions = {}): Promise<WasmRunner> {
  const ck = await openCheckpoint(fixturePath(name));
  try {
    return await loadWasmRunner(ck.config, ck.tensors, { threads: 2, ...opts });
  } finally {
    await ck.tensors.close();
  }
}

/** The goldens' last hidden state: norm_f(output of the last block), [7, d_model]. */
function goldenFinal(g: Goldens, nLayers: number, d: number): Float32Array {
  const t = g.tensor('hidden_states/seq7');
  assert.deepEqual(t.shape, [nLayers + 1, 7, d]);
  return t.data.subarray(nLayers * 7 * d);
}

describe('wasm backend: SequenceInput.finalHidden', () => {
  for (const name of ['tiny-alibi', 'tiny-learned-pos', 'tiny-rmsnorm', 'tiny-gqa', 'tiny-neox-vocab']) {
    test(`${name}: rows after norm_f equal MosaicML's hidden_states/seq7[n_layers]`, async () => {
      const g = new Goldens(fixturePath(name));
      const r = await loadWasm(name);
      try {
        const c = r.config,
          ids: number[] = g.json.inputs.seq7;
        const want = goldenFinal(g, c.nLayers, c.dModel);
        // Alone, and beside another sequence's decode step with logits, in one call.
        const cache = r.createCache({ capacity: 16 }),
          other = r.createCache({ capacity: 16 });
        const [o] = await r.forward([{ cache, tokens: ids, finalHidden: true }], { logits: 'none' });
        assert.ok(maxAbsDiff(o!.finalHidden!, want) <= TOL, `${maxAbsDiff(o!.finalHidden!, want)}`);
        cache.truncate(0);
        const both = await r.forward(
          [
            { cache: other, tokens: [ids[0]!] },
            { cache, tokens: ids, finalHidden: true, logits: 'none' },
          ],
          { logits: 'last' },
        );
        assert.equal(both[0]!.finalHidden, undefined);
        assert.equal(both[0]!.logits.length, c.vocabSize);
        assert.ok(maxAbsDiff(both[1]!.finalHidden!, want) <= TOL);
        cache.dispose();
        other.dispose();
      } finally {
        await r.dispose();
      }
    });
  }

  test('passes split a sequence (maxRows 3), small and wide passes, and the reference backend agree', async () => {
    const g = new Goldens(fixturePath('tiny-alibi'));
    const ids: number[] = g.json.inputs.seq7;
    const r = await loadWasm('tiny-alibi', { maxRows: 3 });
    try {
      const c = r.config;
      const want = goldenFinal(g, c.nLayers, c.dModel);
      const cache = r.createCache({ capacity: 16 });
      const [o] = await r.forward([{ cache, tokens: ids, finalHidden: true }], { logits: 'all' });
      assert.ok(maxAbsDiff(o!.finalHidden!, want) <= TOL);
      assert.equal(o!.logits.length, ids.length * c.vocabSize);
      // One token at a time on the cache (decode-sized passes).
      cache.truncate(0);
      const rows: number[] = [];
      for (const id of ids) {
        const [s] = await r.forward([{ cache, tokens: [id], finalHidden: true }], { logits: 'last' });
        rows.push(...s!.finalHidden!);
      }
      assert.ok(maxAbsDiff(rows, want) <= TOL);
      cache.dispose();
    } finally {
      await r.dispose();
    }
  });
});

/** Mean of the rows, scaled to unit length (what the endpoint promises), from the reference backend. */
async function referenceEmbedding(runner: ModelRunner, ids: number[]): Promise<Float32Array> {
  const cache = runner.createCache({ capacity: ids.length });
  const [o] = await runner.forward([{ cache, tokens: ids }], { logits: 'none', outputHiddenStates: true });
  cache.dispose();
  const h = o!.hiddenStates!.at(-1)!,
    d = runner.config.dModel;
  const mean = new Float64Array(d);
  for (let t = 0; t < ids.length; t++) for (let j = 0; j < d; j++) mean[j]! += h[t * d + j]! / ids.length;
  const norm = Math.sqrt(mean.reduce((a, v) => a + v * v, 0));
  return Float32Array.from(mean, (v) => v / norm);
}

describe('POST /v1/embeddings (wasm backend, as mpt serve runs it)', () => {
  let served: ServedModel;
  let server: MptServer;
  let client: OpenAI;
  let reference: ServedModel;

  before(async () => {
    served = await loadServedModel(TINY_NEOX, { backend: 'wasm', threads: 2, ctx: 64, onNote: () => {} });
    server = new MptServer(served, { port: 0, host: '127.0.0.1' });
    const { url } = await server.listen();
    client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 60_000 });
    reference = await tinyModel();
  });

  after(async () => {
    await server.shutdown(0);
    await served.runner.dispose();
  });

  test('float and base64 give the same unit vector: the mean-pooled reference hidden states', async () => {
    const text = 'The quick brown fox jumps over the lazy dog';
    const ids = reference.tokenizer.encode(text);
    const float = await client.embeddings.create({ model: served.id, input: text, encoding_format: 'float' });
    // The client asks for base64 when no format is given, and decodes it into floats.
    const b64 = await client.embeddings.create({ model: served.id, input: text });
    assert.equal(float.object, 'list');
    assert.equal(float.model, served.id);
    assert.deepEqual(float.usage, { prompt_tokens: ids.length, total_tokens: ids.length });
    const [e] = float.data;
    assert.equal(e!.object, 'embedding');
    assert.equal(e!.index, 0);
    assert.equal(e!.embedding.length, served.runner.config.dModel);
    assert.deepEqual(b64.data[0]!.embedding, e!.embedding);
    const want = await referenceEmbedding(reference.runner, ids);
    assert.ok(maxAbsDiff(e!.embedding, want) <= 1e-3, `${maxAbsDiff(e!.embedding, want)}`);
    assert.ok(Math.abs(Math.hypot(...e!.embedding) - 1) < 1e-5);
  });

  test('raw base64 is the little-endian float32 bytes of the float vector', async () => {
    const body = { model: served.id, input: 'hello there' };
    const post = async (fmt: string) =>
      (
        await fetch(`${client.baseURL.replace(/\/$/, '')}/embeddings`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ ...body, encoding_format: fmt }),
        })
      ).json() as Promise<{ data: Array<{ embedding: number[] | string }> }>;
    const f = (await post('float')).data[0]!.embedding as number[];
    const b = Buffer.from((await post('base64')).data[0]!.embedding as string, 'base64');
    assert.equal(b.length, f.length * 4);
    f.forEach((v, i) => {
      assert.equal(b.readFloatLE(i * 4), v);
    });
  });

  test('arrays of strings, a token-id array and token-id arrays: one vector each, in order', async () => {
    const texts = ['alpha beta', 'a somewhat longer sentence about gamma and delta'];
    const ids = texts.map((t) => reference.tokenizer.encode(t));
    const byText = await client.embeddings.create({ model: served.id, input: texts, encoding_format: 'float' });
    const byIds = await client.embeddings.create({ model: served.id, input: ids, encoding_format: 'float' });
    const one = await client.embeddings.create({ model: served.id, input: ids[1]!, encoding_format: 'float' });
    assert.deepEqual(
      byText.data.map((d) => d.index),
      [0, 1],
    );
    const total = ids[0]!.length + ids[1]!.length;
    assert.deepEqual(byText.usage, { prompt_tokens: total, total_tokens: total });
    for (let i = 0; i < 2; i++) {
      const want = await referenceEmbedding(reference.runner, ids[i]!);
      assert.ok(maxAbsDiff(byText.data[i]!.embedding, want) <= 1e-3);
      assert.deepEqual(byIds.data[i]!.embedding, byText.data[i]!.embedding);
    }
    assert.deepEqual(one.data[0]!.embedding, byText.data[1]!.embedding);
  });

  test('an input longer than the context, an empty input, a wrong model, bad dimensions: 400 / 404', async () => {
    const long = Array.from({ length: 65 }, (_, i) => 100 + i);
    await assert.rejects(client.embeddings.create({ model: served.id, input: long }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.match(e.message, /maximum context length is 64 tokens, but the input has 65/);
      assert.equal((e.error as { code?: string }).code, 'context_length_exceeded');
      return true;
    });
    await assert.rejects(
      client.embeddings.create({ model: served.id, input: ['ok', 'word '.repeat(100)] }),
      /input\[1\]'.*64 tokens/,
    );
    // A text that cannot fit is refused from its length, before the server spends seconds
    // tokenizing it (the same 400 /v1/completions gives), in a list too.
    const huge = 'x'.repeat(512 * 1024);
    const cases: [string | string[], string][] = [
      [huge, 'input'],
      [['ok', huge], 'input[1]'],
    ];
    for (const [input, param] of cases) {
      await assert.rejects(client.embeddings.create({ model: served.id, input }), (e: unknown) => {
        assert.ok(e instanceof OpenAI.BadRequestError);
        assert.match(
          e.message,
          /the input alone is at least \d+ tokens long \(judged from its length, before tokenizing\)/,
        );
        assert.equal((e.error as { code?: string }).code, 'context_length_exceeded');
        assert.equal((e.error as { param?: string }).param, param);
        return true;
      });
    }
    await assert.rejects(client.embeddings.create({ model: served.id, input: '' }), (e: unknown) => {
      assert.ok(e instanceof OpenAI.BadRequestError);
      assert.match(e.message, /'input': the input is empty/);
      return true;
    });
    await assert.rejects(client.embeddings.create({ model: served.id, input: [] }), /Invalid 'input'/);
    await assert.rejects(
      client.embeddings.create({ model: served.id, input: [[1, 2], []] }),
      /'input\[1\]': the input is empty/,
    );
    await assert.rejects(client.embeddings.create({ model: 'other', input: 'x' }), OpenAI.NotFoundError);
    await assert.rejects(
      client.embeddings.create({ model: served.id, input: 'x', dimensions: 3 }),
      /has 16 dimensions|have 16 dimensions/,
    );
  });
});

describe('POST /v1/embeddings on the reference backend', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv.close();
  });

  test('reads the hidden states apart from the batch and gives the same vector', async () => {
    const client = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const text = 'Embeddings on the reference backend';
    const r = await client.embeddings.create({ model: srv.model.id, input: text, encoding_format: 'float' });
    const want = await referenceEmbedding(srv.model.runner, srv.model.tokenizer.encode(text));
    assert.ok(maxAbsDiff(r.data[0]!.embedding, want) <= 1e-6);
  });
});

test('an embedding read in chunks does not hold up another sequence decoding', async () => {
  const runner = await loadWasm('tiny-neox-vocab');
  const scheduler = new Scheduler(runner, { maxActive: 4, maxQueue: 4, prefillChunk: 8 });
  try {
    const events: string[] = [];
    let decodeEnd!: (r: EndReason) => void, embedEnd!: (r: EndReason) => void;
    const decodeDone = new Promise<EndReason>((r) => {
      decodeEnd = r;
    });
    const embedDone = new Promise<EndReason>((r) => {
      embedEnd = r;
    });
    let rows = 0;
    const embed: SequenceClient = {
      prompt: Array.from({ length: 120 }, (_, i) => 200 + i),
      capacity: 120,
      promptHidden: (r) => {
        rows += r.length / runner.config.dModel;
        events.push(`embed ${rows}`);
      },
      next: () => null,
      onEnd: (reason) => {
        events.push('embed end');
        embedEnd(reason);
      },
    };
    let steps = 0;
    const decode: SequenceClient = {
      prompt: [300],
      capacity: 8,
      next: () => {
        events.push('decode');
        return ++steps < 5 ? 301 : null;
      },
      onEnd: (reason) => {
        events.push('decode end');
        decodeEnd(reason);
      },
    };
    // Decoding already under way when the embedding arrives: its steps carry on beside the chunks.
    scheduler.submitAll([decode]);
    scheduler.submitAll([embed]);
    assert.equal(await decodeDone, 'finished');
    assert.equal(await embedDone, 'finished');
    assert.equal(rows, 120);
    // The decode finished while the embedding was still being read, chunk by chunk.
    assert.ok(events.indexOf('decode end') < events.indexOf('embed end'), events.join(', '));
    assert.ok(events.filter((e) => e.startsWith('embed ')).length >= 120 / 8);
  } finally {
    await scheduler.close();
    await runner.dispose();
  }
});
