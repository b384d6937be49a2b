// Every weight layout among the fixtures loads through openHfFolderTensors and yields the same
// tensors: f32 layouts bit for bit, bf16/fp16 ones equal to the f32 weights rounded (checked with our
// narrowing and, independently, by widening and measuring the rounding error). Also: sha256 of every
// checkpoint file against goldens.json, and broken folders/indexes → FormatError.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FormatError } from '../src/errors.js';
import { f32ToBf16Bytes, f32ToF16Bytes } from '../src/formats/dtypes.js';
import { openHfFolderTensors, type HfFolderSource } from '../src/formats/hf-folder.js';
import { JSON_FILE_LIMITS, readJsonFile, readJsonFileSync } from '../src/formats/json-file.js';
import { writeSafetensors } from '../src/formats/safetensors.js';

const FIXTURES = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
const LAYOUTS: Record<string, HfFolderSource['layout']> = {
  'tiny-alibi': 'model.safetensors',
  'tiny-alibi-bin': 'pytorch_model.bin',
  'tiny-alibi-sharded': 'model.safetensors.index.json',
  'tiny-alibi-bf16': 'model.safetensors',
  'tiny-alibi-fp16': 'model.safetensors',
  'tiny-alibi-bin-sharded-bf16': 'pytorch_model.bin.index.json',
};
const tmp = mkdtempSync(join(tmpdir(), 'mpt-formats-hf-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** name → raw bytes of every tensor in a fixture folder. */
async function loadAll(folder: string): Promise<{ source: HfFolderSource; bytes: Map<string, Uint8Array> }> {
  const source = await openHfFolderTensors(join(FIXTURES, folder));
  const bytes = new Map<string, Uint8Array>();
  for (const t of source.list()) bytes.set(t.name, await source.read(t.name));
  await source.close();
  return { source, bytes };
}

/** Float32 values of raw little-endian bytes, read with DataView (independent of dtypes.ts). */
function f32Values(b: Uint8Array): number[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 4 }, (_, i) => v.getFloat32(4 * i, true));
}
/** bf16 bytes widened by putting them in the top half of a float32 (the definition of bf16). */
function bf16Values(b: Uint8Array): number[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = new DataView(new ArrayBuffer(4));
  return Array.from({ length: b.length / 2 }, (_, i) => {
    out.setUint32(0, v.getUint16(2 * i, true) << 16);
    return out.getFloat32(0);
  });
}
/** binary16 bytes widened from the IEEE formula. */
function f16Values(b: Uint8Array): number[] {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return Array.from({ length: b.length / 2 }, (_, i) => {
    const h = v.getUint16(2 * i, true);
    const s = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 31;
    const m = h & 1023;
    return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
  });
}

describe('openHfFolderTensors on every fixture layout', () => {
  let reference: Map<string, Uint8Array>;
  before(async () => {
    reference = (await loadAll('tiny-alibi')).bytes;
  });

  it('checkpoint files match the sha256 in goldens.json', () => {
    for (const folder of Object.keys(LAYOUTS)) {
      const files = JSON.parse(readFileSync(join(FIXTURES, folder, 'goldens.json'), 'utf8')).checkpoint_files as Record<
        string,
        { bytes: number; sha256: string }
      >;
      for (const [name, { bytes, sha256 }] of Object.entries(files)) {
        const data = readFileSync(join(FIXTURES, folder, name));
        assert.equal(data.length, bytes, `${folder}/${name}`);
        assert.equal(createHash('sha256').update(data).digest('hex'), sha256, `${folder}/${name}`);
      }
    }
  });

  for (const [folder, layout] of Object.entries(LAYOUTS)) {
    it(`${folder} loads as ${layout} with the tiny-alibi tensor set`, async () => {
      const { source, bytes } = await loadAll(folder);
      assert.equal(source.layout, layout);
      assert.deepEqual([...bytes.keys()].sort(), [...reference.keys()].sort());
      for (const t of source.list()) {
        assert.equal(t.byteLength, bytes.get(t.name)!.length);
        assert.equal(t.byteLength, (reference.get(t.name)!.length / 4) * (t.dtype === 'f32' ? 4 : 2));
      }
    });
  }

  it('f32 layouts (single, sharded, .bin) are bitwise identical', async () => {
    for (const folder of ['tiny-alibi-bin', 'tiny-alibi-sharded']) {
      const { bytes } = await loadAll(folder);
      for (const [name, b] of reference) assert.deepEqual(bytes.get(name), b, `${folder} ${name}`);
    }
  });

  it('bf16 weights are the f32 weights rounded to nearest even', async () => {
    const { source, bytes } = await loadAll('tiny-alibi-bf16');
    for (const [name, f32] of reference) {
      assert.equal(source.info(name)?.dtype, 'bf16');
      const bf = bytes.get(name)!;
      assert.deepEqual(bf, f32ToBf16Bytes(new Float32Array(f32.buffer, f32.byteOffset, f32.length / 4)), name);
      // Independently: widened, each value is within half a bf16 ulp (2^-8 relative) of the f32 one.
      const wide = bf16Values(bf);
      f32Values(f32).forEach((x, i) => {
        assert.ok(Math.abs(wide[i]! - x) <= Math.abs(x) * 2 ** -8, `${name}[${i}]`);
      });
    }
  });

  it('fp16 weights are the f32 weights rounded to nearest even', async () => {
    const { source, bytes } = await loadAll('tiny-alibi-fp16');
    for (const [name, f32] of reference) {
      assert.equal(source.info(name)?.dtype, 'f16');
      const h = bytes.get(name)!;
      assert.deepEqual(h, f32ToF16Bytes(new Float32Array(f32.buffer, f32.byteOffset, f32.length / 4)), name);
      const wide = f16Values(h);
      f32Values(f32).forEach((x, i) => {
        assert.ok(Math.abs(wide[i]! - x) <= Math.max(Math.abs(x) * 2 ** -11, 2 ** -25), `${name}[${i}]`);
      });
    }
  });

  it('the sharded bf16 .bin (mpt-7b layout) equals tiny-alibi-bf16 exactly', async () => {
    const a = await loadAll('tiny-alibi-bf16');
    const b = await loadAll('tiny-alibi-bin-sharded-bf16');
    assert.deepEqual(
      b.source
        .list()
        .map((t) => [t.name, t.dtype, t.shape])
        .sort(),
      a.source
        .list()
        .map((t) => [t.name, t.dtype, t.shape])
        .sort(),
    );
    for (const [name, bytes] of a.bytes) assert.deepEqual(b.bytes.get(name), bytes, name);
    assert.equal(b.source.files.length, 2);
  });
});

describe('broken folders and indexes', () => {
  /** Copies a fixture folder into the temp dir so it can be damaged. */
  const copy = (folder: string, as: string) => {
    const dir = join(tmp, as);
    mkdirSync(dir, { recursive: true });
    for (const f of readdirSync(join(FIXTURES, folder))) copyFileSync(join(FIXTURES, folder, f), join(dir, f));
    return dir;
  };
  const editIndex = (dir: string, file: string, edit: (index: { weight_map: Record<string, string> }) => void) => {
    const index = JSON.parse(readFileSync(join(dir, file), 'utf8'));
    edit(index);
    writeFileSync(join(dir, file), JSON.stringify(index));
  };
  const rejects = (dir: string, pattern: RegExp) =>
    assert.rejects(openHfFolderTensors(dir), (e: unknown) => {
      assert.ok(e instanceof FormatError, String(e));
      assert.match((e as Error).message, pattern);
      return true;
    });

  it('an index that puts a tensor in the wrong shard', async () => {
    const dir = copy('tiny-alibi-sharded', 'wrong-shard');
    editIndex(
      dir,
      'model.safetensors.index.json',
      (i) => (i.weight_map['transformer.wte.weight'] = 'model-00002-of-00003.safetensors'),
    );
    await rejects(
      dir,
      /puts tensor transformer\.wte\.weight in model-00002-of-00003\.safetensors, but that shard does not contain it/,
    );
  });

  it('a tensor present in two shards', async () => {
    const dir = copy('tiny-alibi-sharded', 'duplicate');
    await writeSafetensors(join(dir, 'model-00003-of-00003.safetensors'), [
      { name: 'transformer.norm_f.weight', dtype: 'f32', shape: [64], data: new Uint8Array(256) },
      { name: 'transformer.wte.weight', dtype: 'f32', shape: [1], data: new Uint8Array(4) },
    ]);
    editIndex(dir, 'model.safetensors.index.json', (i) => {
      for (const k of Object.keys(i.weight_map)) if (k.includes('blocks.1')) delete i.weight_map[k];
    });
    await rejects(dir, /tensor transformer\.wte\.weight is in two shards/);
  });

  it('a missing shard, a path outside the folder, no weight_map, malformed JSON', async () => {
    const dir = copy('tiny-alibi-bin-sharded-bf16', 'missing-shard');
    rmSync(join(dir, 'pytorch_model-00001-of-00002.bin'));
    await rejects(dir, /names shard pytorch_model-00001-of-00002\.bin, which is missing/);
    const escaping = copy('tiny-alibi-sharded', 'escape');
    editIndex(
      escaping,
      'model.safetensors.index.json',
      (i) => (i.weight_map['transformer.wte.weight'] = '../tiny-alibi/model.safetensors'),
    );
    await rejects(escaping, /not a file name in the folder/);
    writeFileSync(join(escaping, 'model.safetensors.index.json'), '{"metadata": {}}');
    await rejects(escaping, /no "weight_map" object/);
    writeFileSync(join(escaping, 'model.safetensors.index.json'), '{"weight_map": {"a": "x.safetensors",}');
    await rejects(escaping, /weight index .*model\.safetensors\.index\.json is not valid JSON/);
    writeFileSync(join(escaping, 'model.safetensors.index.json'), '{"weight_map": {}}');
    await rejects(escaping, /lists no tensors/);
  });

  it('a shard holding a tensor the index does not list', async () => {
    const dir = copy('tiny-alibi-sharded', 'unlisted');
    let shard = '';
    editIndex(dir, 'model.safetensors.index.json', (i) => {
      shard = i.weight_map['transformer.norm_f.weight']!;
      delete i.weight_map['transformer.norm_f.weight'];
    });
    const file = shard.replace(/\./g, '\\.');
    await rejects(dir, new RegExp(`${file} holds tensor transformer\\.norm_f\\.weight, which the weight index`));
  });

  it('an index file too big for one is refused before it is read', async () => {
    const dir = copy('tiny-alibi-sharded', 'huge-index');
    truncateSync(join(dir, 'model.safetensors.index.json'), JSON_FILE_LIMITS.index + 1);
    await rejects(
      dir,
      /weight index .*model\.safetensors\.index\.json is 16777217 bytes, more than the 16777216 allowed/,
    );
  });

  it('a corrupt shard is reported with its own file name', async () => {
    const dir = copy('tiny-alibi-sharded', 'corrupt-shard');
    const shard = join(dir, 'model-00002-of-00003.safetensors');
    writeFileSync(shard, readFileSync(shard).subarray(0, 1000));
    await rejects(dir, /model-00002-of-00003\.safetensors: tensor .* past the end/);
  });

  it('folders without weights, or with GGUF only, or not folders at all', async () => {
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    writeFileSync(join(empty, 'config.json'), '{}');
    await rejects(
      empty,
      /no weights in .*empty: expected model\.safetensors, model\.safetensors\.index\.json, pytorch_model\.bin, pytorch_model\.bin\.index\.json$/,
    );
    writeFileSync(join(empty, 'model-q4_0.gguf'), 'GGUF');
    await rejects(empty, /found GGUF file model-q4_0\.gguf/);
    await rejects(join(tmp, 'nope'), /does not exist/);
    await rejects(join(FIXTURES, 'tiny-alibi/config.json'), /is not a folder/);
  });

  it('prefers model.safetensors over pytorch_model.bin', async () => {
    const dir = copy('tiny-alibi-bin', 'both');
    copyFileSync(join(FIXTURES, 'tiny-alibi-bf16/model.safetensors'), join(dir, 'model.safetensors'));
    const s = await openHfFolderTensors(dir);
    assert.equal(s.layout, 'model.safetensors');
    assert.equal(s.info('transformer.wte.weight')?.dtype, 'bf16');
    await s.close();
  });
});

describe('readJsonFile', () => {
  it('parses, and names the file on every failure', async () => {
    const limit = JSON_FILE_LIMITS.config;
    const config = join(FIXTURES, 'tiny-alibi/config.json');
    assert.equal(((await readJsonFile(config, 'model config', limit)) as { d_model: number }).d_model, 64);
    const bad = join(tmp, 'bad.json');
    writeFileSync(bad, '{"a": }');
    await assert.rejects(
      readJsonFile(bad, 'model config', limit),
      (e: unknown) => e instanceof FormatError && /^model config .*bad\.json is not valid JSON/.test(e.message),
    );
    await assert.rejects(
      readJsonFile(join(tmp, 'absent.json'), 'model config', limit),
      /model config .*absent\.json does not exist/,
    );
    await assert.rejects(readJsonFile(tmp, 'model config', limit), /model config .* is not a regular file/);
  });

  it('refuses files over the limit without reading them, and reads the same way synchronously', async () => {
    const big = join(tmp, 'big.json');
    writeFileSync(big, '{}');
    truncateSync(big, JSON_FILE_LIMITS.config + 1);
    const tooBig = /^model config .*big\.json is 1048577 bytes, more than the 1048576 allowed/;
    await assert.rejects(
      readJsonFile(big, 'model config', JSON_FILE_LIMITS.config),
      (e: unknown) => e instanceof FormatError && tooBig.test(e.message),
    );
    assert.throws(
      () => readJsonFileSync(big, 'model config', JSON_FILE_LIMITS.config),
      (e: unknown) => e instanceof FormatError && tooBig.test(e.message),
    );
    assert.throws(
      () => readJsonFileSync(tmp, 'tokenizer', JSON_FILE_LIMITS.tokenizer),
      /FormatError: tokenizer .* is not a regular file/,
    );
    const config = join(FIXTURES, 'tiny-alibi/config.json');
    const parsed = readJsonFileSync(config, 'model config', JSON_FILE_LIMITS.config);
    assert.deepEqual(parsed, JSON.parse(readFileSync(config, 'utf8')));
    // Room for real tokenizer.json files (GPT-NeoX-20B's is 2 MB, 250k-token vocabularies ~20 MB).
    assert.ok(JSON_FILE_LIMITS.tokenizer >= 32 * 2 ** 20);
  });
});
