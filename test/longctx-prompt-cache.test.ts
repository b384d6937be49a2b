/**
 * Prompt cache files: a restored cache continues with exactly the logits of the cache that was
 * saved (every KV type, reference and wasm backends), and files of another model, KV type,
 * format version or prompt, and truncated or damaged files, are rejected with the reason named.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { KvType, ModelRunner } from '../src/backends/backend.js';
import { InputError } from '../src/errors.js';
import { getBackend, loadRunner } from '../src/backends/registry.js';
import {
  PromptCacheError,
  fingerprintCheckpoint,
  loadPromptCache,
  preparePromptCache,
  readPromptCacheInfo,
  savePromptCache,
  type PromptCacheRejection,
} from '../src/runtime/prompt-cache.js';
import { Goldens, fixturePath, maxAbsDiff } from './helpers/goldens.js';

const dir = mkdtempSync(join(tmpdir(), 'mpt-prompt-cache-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SW = fixturePath('tiny-storywriter');
const ids = (new Goldens(SW).json.inputs as Record<string, number[]>)['seq64']!;

async function forward(
  runner: ModelRunner,
  cache: ReturnType<ModelRunner['createCache']>,
  tokens: number[],
): Promise<Float32Array> {
  const [o] = await runner.forward([{ cache, tokens }], { logits: 'all' });
  return o!.logits;
}

function rejects(reason: PromptCacheRejection) {
  return (e: unknown) => {
    assert.ok(e instanceof PromptCacheError, `expected a PromptCacheError, got ${String(e)}`);
    assert.equal(e.reason, reason, e.message);
    return true;
  };
}

let wasmAvailable = true;
try {
  await getBackend('wasm');
} catch {
  wasmAvailable = false;
}

describe('prompt cache', async () => {
  const { runner } = await loadRunner(SW, { backend: 'reference' });
  const hash = await fingerprintCheckpoint(SW);

  for (const kvType of ['f32', 'f16', 'q8_0'] as KvType[]) {
    it(`${kvType}: a restored cache continues with identical logits`, async () => {
      const a = runner.createCache({ capacity: 80, kvType });
      await forward(runner, a, ids.slice(0, 40));
      const file = join(dir, `round-${kvType}.kvc`);
      const bytes = await savePromptCache(file, runner, a, ids.slice(0, 40), { modelHash: hash });
      assert.equal(readFileSync(file).length, bytes);
      const info = readPromptCacheInfo(file);
      assert.deepEqual([info.kvType, info.length, info.tokens], [kvType, 40, ids.slice(0, 40)]);
      const { cache: b, tokens } = await loadPromptCache(file, runner, { modelHash: hash, capacity: 80, prompt: ids });
      assert.deepEqual(tokens, ids.slice(0, 40));
      assert.equal(b.length, 40);
      assert.equal(b.kvType, kvType);
      const la = await forward(runner, a, ids.slice(40));
      const lb = await forward(runner, b, ids.slice(40));
      assert.deepEqual(lb, la);
      // and the saved prefix is the real one: the continuation matches a single full pass
      const full = runner.createCache({ capacity: 80, kvType });
      const lf = (await forward(runner, full, ids)).subarray(40 * runner.config.vocabSize);
      assert.deepEqual(lb, lf);
    });
  }

  it('keeps the pad mask of a left-padded sequence', async () => {
    const a = runner.createCache({ capacity: 40 });
    const padMask = [0, 0, 0, ...Array<number>(17).fill(1)];
    await runner.forward([{ cache: a, tokens: ids.slice(0, 20), padMask }], { logits: 'none' });
    const file = join(dir, 'padded.kvc');
    await savePromptCache(file, runner, a, ids.slice(0, 20), { modelHash: hash });
    const { cache: b } = await loadPromptCache(file, runner, { modelHash: hash, capacity: 40 });
    assert.deepEqual(await forward(runner, b, ids.slice(20, 30)), await forward(runner, a, ids.slice(20, 30)));
  });

  it('writes atomically (no temporary file left) and the file size follows the KV type', async () => {
    assert.deepEqual(
      readdirSync(dir).filter((f) => f.includes('.tmp-')),
      [],
    );
    const size = (t: string) => readFileSync(join(dir, `round-${t}.kvc`)).length;
    assert.ok(size('q8_0') < size('f16') && size('f16') < size('f32'), `${size('q8_0')} ${size('f16')} ${size('f32')}`);
  });

  it('a prompt that shares only part of the cached tokens reuses that part, exactly', async () => {
    const file = join(dir, 'round-f32.kvc');
    const prompt = [...ids.slice(0, 25), ...ids.slice(26, 50).reverse()];
    const { cache, tokens } = await loadPromptCache(file, runner, { modelHash: hash, capacity: 80, prompt });
    assert.equal(tokens.length, 25);
    const got = await forward(runner, cache, prompt.slice(25));
    const fresh = runner.createCache({ capacity: 80 });
    const want = (await forward(runner, fresh, prompt)).subarray(25 * runner.config.vocabSize);
    assert.deepEqual(got, want);
    await assert.rejects(
      loadPromptCache(file, runner, { modelHash: hash, capacity: 80, prompt, requireFullPrefix: true }),
      rejects('tokens'),
    );
  });

  it('rejects a file made for another prompt, model, shape, KV type or context', async () => {
    const file = join(dir, 'round-f32.kvc');
    const other = ids.map((x) => (x + 1) % runner.config.vocabSize);
    await assert.rejects(
      loadPromptCache(file, runner, { modelHash: hash, capacity: 80, prompt: other }),
      rejects('tokens'),
    );
    const alibiHash = await fingerprintCheckpoint(fixturePath('tiny-alibi'));
    assert.notEqual(alibiHash, hash);
    const { runner: alibi } = await loadRunner(fixturePath('tiny-alibi'), { backend: 'reference' });
    await assert.rejects(loadPromptCache(file, alibi, { modelHash: alibiHash, capacity: 80 }), rejects('model'));
    const { runner: gqa } = await loadRunner(fixturePath('tiny-gqa'), { backend: 'reference' });
    await assert.rejects(loadPromptCache(file, gqa, { modelHash: hash, capacity: 80 }), rejects('shape'));
    await assert.rejects(
      loadPromptCache(file, runner, { modelHash: hash, capacity: 80, kvType: 'q8_0' }),
      rejects('kv-type'),
    );
    await assert.rejects(loadPromptCache(file, runner, { modelHash: hash, capacity: 30 }), rejects('capacity'));
  });

  it('the fingerprint ignores how a model is stored but sees its weights', async () => {
    assert.equal(
      await fingerprintCheckpoint(fixturePath('tiny-alibi-sharded')),
      await fingerprintCheckpoint(fixturePath('tiny-alibi')),
    );
    assert.notEqual(
      await fingerprintCheckpoint(fixturePath('tiny-alibi-fp16')),
      await fingerprintCheckpoint(fixturePath('tiny-alibi')),
    );
  });

  it('rejects truncated, damaged, foreign and other-version files', async () => {
    const src = readFileSync(join(dir, 'round-q8_0.kvc'));
    const variant = (name: string, edit: (b: Buffer) => Buffer) => {
      const p = join(dir, name);
      writeFileSync(p, edit(Buffer.from(src)));
      return p;
    };
    const load = (p: string) => loadPromptCache(p, runner, { modelHash: hash, capacity: 80 });
    for (const cut of [1, 40, 1000, src.length - 20]) {
      const p = variant(`cut${cut}.kvc`, (b) => b);
      truncateSync(p, src.length - cut);
      await assert.rejects(load(p), rejects('truncated'));
    }
    await assert.rejects(
      load(
        variant('flip.kvc', (b) => {
          b[b.length - 500]! ^= 1;
          return b;
        }),
      ),
      rejects('corrupt'),
    );
    await assert.rejects(
      load(
        variant('version.kvc', (b) => {
          b.writeUInt32LE(99, 8);
          return b;
        }),
      ),
      rejects('version'),
    );
    await assert.rejects(
      load(
        variant('magic.kvc', (b) => {
          b[0] = 0x50;
          return b;
        }),
      ),
      rejects('not-a-cache'),
    );
    await assert.rejects(load(variant('extra.kvc', (b) => Buffer.concat([b, Buffer.alloc(8)]))), rejects('corrupt'));
    await assert.rejects(load(variant('empty.kvc', () => Buffer.alloc(0))), rejects('not-a-cache'));
  });

  it('a folder or a named pipe at the path is refused without reading; a missing folder before any work', async () => {
    const folder = join(dir, 'a-folder.kvc');
    mkdirSync(folder);
    const paths = [folder];
    const fifo = join(dir, 'a-fifo.kvc');
    if (process.platform !== 'win32' && spawnSync('mkfifo', [fifo]).status === 0) paths.push(fifo);
    for (const p of paths) {
      await assert.rejects(loadPromptCache(p, runner, { modelHash: hash, capacity: 80 }), rejects('not-a-cache'));
      assert.throws(() => readPromptCacheInfo(p), rejects('not-a-cache'));
      const prepare = preparePromptCache(runner, SW, ids.slice(0, 8), 64, { file: p, modelHash: hash });
      await assert.rejects(prepare, rejects('not-a-cache'));
    }
    const missing = join(dir, 'no-such-folder', 'x.kvc');
    await assert.rejects(
      preparePromptCache(runner, SW, ids.slice(0, 8), 64, { file: missing, modelHash: hash }),
      (e: unknown) => e instanceof InputError && /the folder .*no-such-folder does not exist/.test(e.message),
    );
  });

  it('preparePromptCache writes the file once, then reuses it', async () => {
    const file = join(dir, 'prepare.kvc');
    const notes: string[] = [];
    const first = await preparePromptCache(runner, SW, ids.slice(0, 48), 64, {
      file,
      batchSize: 13,
      onNote: (m) => notes.push(m),
    });
    assert.equal(first.reused, 0);
    assert.ok(first.written > 0 && existsSync(file));
    const l1 = await forward(runner, first.cache, ids.slice(48));
    const second = await preparePromptCache(runner, SW, ids, 64, { file, onNote: (m) => notes.push(m) });
    assert.equal(second.reused, 48);
    assert.equal(second.written, 0);
    assert.equal(second.cache.length, 64);
    const fresh = runner.createCache({ capacity: 64 });
    const want = await forward(runner, fresh, ids);
    assert.deepEqual(l1, want.subarray(48 * runner.config.vocabSize));
    assert.match(notes.join('\n'), /wrote 48 tokens[\s\S]*reused 48 of 64/);
  });

  it('wasm backend: round trip is exact, and a reference-made file restores into wasm', {
    skip: !wasmAvailable && 'wasm backend not built',
  }, async () => {
    const { runner: w } = await loadRunner(SW, { backend: 'wasm', threads: 2 });
    try {
      const a = w.createCache({ capacity: 80 });
      await forward(w, a, ids.slice(0, 37));
      const file = join(dir, 'wasm.kvc');
      await savePromptCache(file, w, a, ids.slice(0, 37), { modelHash: hash });
      const { cache: b } = await loadPromptCache(file, w, { modelHash: hash, capacity: 80 });
      assert.deepEqual(await forward(w, b, ids.slice(37)), await forward(w, a, ids.slice(37)));
      const { cache: c } = await loadPromptCache(join(dir, 'round-f32.kvc'), w, { modelHash: hash, capacity: 80 });
      const got = await forward(w, c, ids.slice(40));
      const ref = runner.createCache({ capacity: 80 });
      const want = (await forward(runner, ref, ids)).subarray(40 * runner.config.vocabSize);
      assert.ok(maxAbsDiff(got, want) <= 5e-4, `wasm after reference-made cache: ${maxAbsDiff(got, want)}`);
    } finally {
      await w.dispose();
    }
  });
});
