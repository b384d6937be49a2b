// The bugs the fuzz tests (test/fuzz-*.test.ts) found, one plain test each, written before the
// fix: each input here crashed, hung or allocated without bound, and must now be a typed error.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, FormatError, QUOTED_CHARS, quoteValue } from '../src/errors.js';
import { bytesSource } from '../src/formats/byte-source.js';
import type { FolderSource } from '../src/formats/folder-source.js';
import { openSafetensorsSource } from '../src/formats/safetensors.js';
import { openFolderCheckpoint } from '../src/model/load.js';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';
import { MptTokenizer } from '../src/runtime/tokenizer.js';
import { TINY_NEOX } from './helpers/serve-fixture.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));

/** A fixture folder in memory, with some files replaced. */
function folderWith(dir: string, replaced: Record<string, string | Uint8Array>): FolderSource {
  const files = new Map<string, Uint8Array>();
  for (const f of readdirSync(join(FIXTURES, dir))) files.set(f, new Uint8Array(readFileSync(join(FIXTURES, dir, f))));
  for (const [f, v] of Object.entries(replaced)) files.set(f, typeof v === 'string' ? new TextEncoder().encode(v) : v);
  return {
    name: dir,
    open: async (f) => (files.has(f) ? bytesSource(files.get(f)!, `${dir}/${f}`) : undefined),
  };
}

/** JSON text of an array nested `n` deep. */
const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);

describe('JSON nested thousands deep in a model file (overflowed the stack: RangeError)', () => {
  it('config.json: a ConfigError saying how deep it nests', async () => {
    const config = JSON.parse(readFileSync(join(FIXTURES, 'tiny-alibi/config.json'), 'utf8')) as object;
    const text = JSON.stringify({ ...config, n_heads: 0 }).replace('"n_heads":0', `"n_heads":${nested(100_000)}`);
    await assert.rejects(
      openFolderCheckpoint(folderWith('tiny-alibi', { 'config.json': text })),
      (e: unknown) => e instanceof ConfigError && /more than 64 deep/.test(e.message),
    );
  });

  it('model.safetensors.index.json: a FormatError', async () => {
    const index = `{"weight_map": {"transformer.wte.weight": ${nested(100_000)}}}`;
    await assert.rejects(
      openFolderCheckpoint(folderWith('tiny-alibi-sharded', { 'model.safetensors.index.json': index })),
      (e: unknown) => e instanceof FormatError && /more than 64 deep/.test(e.message),
    );
  });

  it('the safetensors header: a FormatError', async () => {
    const header = new TextEncoder().encode(`{"x": {"dtype": "F32", "shape": ${nested(100_000)}}}`);
    const file = new Uint8Array(8 + header.length);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
    file.set(header, 8);
    await assert.rejects(
      openSafetensorsSource(bytesSource(file, 'deep.safetensors')),
      (e: unknown) => e instanceof FormatError && /more than 64 deep/.test(e.message),
    );
  });

  it('JSON nested 64 deep is still read (real files nest 3 to 6)', async () => {
    const header = new TextEncoder().encode(`{"__metadata__": {}, "x": ${nested(63)}}`);
    const file = new Uint8Array(8 + header.length);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
    file.set(header, 8);
    // Past the depth check, refused for what the entry is (not a tensor), not for its depth.
    await assert.rejects(
      openSafetensorsSource(bytesSource(file, 'deep.safetensors')),
      (e: unknown) => e instanceof FormatError && /header entry is not an object/.test(e.message),
    );
  });
});

describe('a request body nested thousands deep (was a 500 from a stack overflow)', () => {
  let server: MptServer;
  let url: string;
  before(async () => {
    const model = await loadServedModel(TINY_NEOX, { backend: 'reference', ctx: 64, onNote: () => {} });
    server = new MptServer(model, { port: 0, host: '127.0.0.1' });
    url = (await server.listen()).url;
  });
  after(() => server.shutdown(0));

  for (const [path, body] of [
    ['/v1/embeddings', `{"model": "m", "input": "hi", "encoding_format": ${nested(100_000)}}`],
    [
      '/v1/chat/completions',
      `{"model": "m", "messages": [{"role": "user", "content": "hi"}], "truncate": ${nested(100_000)}}`,
    ],
  ] as const) {
    it(`${path}: a 400 saying how deep it nests`, async () => {
      const res = await fetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body,
      });
      const answer = (await res.json()) as { error: { message: string; code: string } };
      assert.equal(res.status, 400, answer.error.message);
      assert.equal(answer.error.code, 'invalid_json');
      assert.match(answer.error.message, /more than 1000 deep/);
    });
  }
});

describe('a hostile value is quoted bounded in the error that names it (was repeated at full length)', () => {
  const big = 'x'.repeat(100_000);

  it('quoteValue: short values whole, long ones cut with their length', () => {
    assert.equal(quoteValue('gelu'), '"gelu"');
    assert.equal(quoteValue([1, 2]), '[1,2]');
    assert.equal(quoteValue(undefined), 'undefined');
    assert.equal(quoteValue(10n), '10');
    const q = quoteValue(big);
    assert.equal(q, `"${'x'.repeat(QUOTED_CHARS - 1)}… (100002 chars)`);
    // Not cut between the halves of a surrogate pair.
    assert.doesNotMatch(quoteValue(`${'x'.repeat(QUOTED_CHARS - 2)}😀😀`), /\ud83d…/u);
    assert.ok(quoteValue(JSON.parse(nested(100_000))).length < 100, 'an array too deep to stringify');
  });

  for (const [field, value] of [
    ['norm_type', big],
    ['d_model', big],
    ['no_bias', [...Array(10_000).keys()]],
    ['model_type', big],
  ] as const) {
    it(`config.json ${field}: the message names the field and stays short`, async () => {
      const config = JSON.parse(readFileSync(join(FIXTURES, 'tiny-alibi/config.json'), 'utf8')) as object;
      const text = JSON.stringify({ ...config, [field]: value });
      await assert.rejects(openFolderCheckpoint(folderWith('tiny-alibi', { 'config.json': text })), (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.match(e.message, new RegExp(field));
        assert.match(e.message, /chars\)/);
        assert.ok(e.message.length < 300, `${e.message.length} characters`);
        return true;
      });
    });
  }

  it('a safetensors tensor name and dtype of 100 kB', async () => {
    const header = new TextEncoder().encode(
      JSON.stringify({ [big]: { dtype: big, shape: [1], data_offsets: [0, 4] } }),
    );
    const file = new Uint8Array(8 + header.length + 4);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
    file.set(header, 8);
    await assert.rejects(openSafetensorsSource(bytesSource(file, 'long.safetensors')), (e: unknown) => {
      assert.ok(e instanceof FormatError, String(e));
      assert.match(e.message, /dtype "x+… \(100002 chars\)/);
      assert.ok(e.message.length < 300, `${e.message.length} characters`);
      return true;
    });
  });
});

describe('tokenizer.json parts the tokenizer library failed on with a TypeError ("x.split is not a function")', () => {
  const base = JSON.parse(readFileSync(join(FIXTURES, '../../assets/gpt-neox-20b/tokenizer.json'), 'utf8')) as {
    model: { merges: unknown[] };
    added_tokens: unknown[];
  };
  const load = (tj: unknown) => () => new MptTokenizer(tj as Record<string, unknown>, {}, 'tokenizer.json');

  for (const bad of [true, null, 7, ['a'], { a: 1 }]) {
    it(`model.merges[3] = ${JSON.stringify(bad)}: names the item and the form expected`, () => {
      const merges = [...base.model.merges];
      merges[3] = bad;
      assert.throws(
        load({ ...base, model: { ...base.model, merges } }),
        (e: unknown) =>
          e instanceof FormatError &&
          /model\.merges\[3\] must be a string "A B", as model\.merges\[0\] is/.test(e.message),
      );
    });
  }

  it('merges written as pairs: a string among them is refused', () => {
    const merges = base.model.merges.map((m) => (m as string).split(' '));
    merges[5] = 'a b' as unknown as string[];
    assert.throws(
      load({ ...base, model: { ...base.model, merges } }),
      (e: unknown) => e instanceof FormatError && /model\.merges\[5\] must be a pair of strings/.test(e.message),
    );
  });

  for (const bad of [true, big(), { id: 1 }, { content: 'x' }]) {
    it(`added_tokens[1] = ${JSON.stringify(bad).slice(0, 30)}: names the entry and what it needs`, () => {
      const added = [...base.added_tokens];
      added[1] = bad;
      assert.throws(load({ ...base, added_tokens: added }), (e: unknown) => {
        assert.ok(e instanceof FormatError, String(e));
        assert.match(e.message, /added_tokens\[1\] must be an object with a string "content" and an integer "id"/);
        assert.ok(e.message.length < 300);
        return true;
      });
    });
  }

  function big(): string {
    return 'y'.repeat(100_000);
  }
});
