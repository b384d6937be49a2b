// The bugs the fuzz tests (test/fuzz-*.test.ts) found, one plain test each, written before the
// fix: each input here crashed, hung or allocated without bound, and must now be a typed error.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, FormatError } from '../src/errors.js';
import { bytesSource } from '../src/formats/byte-source.js';
import type { FolderSource } from '../src/formats/folder-source.js';
import { openSafetensorsSource } from '../src/formats/safetensors.js';
import { openFolderCheckpoint } from '../src/model/load.js';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';
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
