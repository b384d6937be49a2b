/**
 * A checkpoint that does not match its config is refused with an error naming the tensor:
 * missing, unexpected, wrong shape; malformed or unsupported config.json.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, UnsupportedError, WeightsError } from '../src/errors.js';
import { openSafetensors, writeSafetensors } from '../src/formats/safetensors.js';
import { loadRunner } from '../src/backends/registry.js';
import { openCheckpoint } from '../src/model/load.js';
import { runCli } from './helpers/cli.js';
import { fixturePath } from './helpers/goldens.js';

const tmp = mkdtempSync(join(tmpdir(), 'mpt-weights-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const src = fixturePath('tiny-alibi');
const config = JSON.parse(readFileSync(`${src}/config.json`, 'utf8'));

async function folderWith(
  name: string,
  edit: (t: { name: string; dtype: 'f32'; shape: number[]; data: Uint8Array }[]) => void,
  cfg = config,
): Promise<string> {
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const st = await openSafetensors(`${src}/model.safetensors`);
  const tensors = [];
  for (const info of st.list())
    tensors.push({ name: info.name, dtype: 'f32' as const, shape: info.shape, data: await st.read(info.name) });
  await st.close();
  edit(tensors);
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

describe('weights that do not match the config', () => {
  it('a missing tensor is named', async () => {
    const dir = await folderWith('missing', (t) =>
      t.splice(
        t.findIndex((x) => x.name.endsWith('blocks.1.ffn.up_proj.weight')),
        1,
      ),
    );
    await assert.rejects(
      loadRunner(dir),
      (e: unknown) =>
        e instanceof WeightsError &&
        /missing tensor transformer\.blocks\.1\.ffn\.up_proj\.weight/.test((e as Error).message),
    );
  });
  it('an unexpected tensor is named', async () => {
    const dir = await folderWith('unexpected', (t) =>
      t.push({ name: 'transformer.blocks.0.attn.rotary.inv_freq', dtype: 'f32', shape: [2], data: new Uint8Array(8) }),
    );
    await assert.rejects(
      loadRunner(dir),
      (e: unknown) =>
        e instanceof WeightsError &&
        /unexpected tensor transformer\.blocks\.0\.attn\.rotary\.inv_freq/.test((e as Error).message),
    );
  });
  it('a shape mismatch names the tensor and both shapes', async () => {
    const dir = await folderWith('shape', () => {}, { ...config, expansion_ratio: 2 });
    await assert.rejects(
      loadRunner(dir),
      (e: unknown) =>
        e instanceof WeightsError &&
        /up_proj\.weight has shape \[256,64\], but the config requires \[128,64\]/.test((e as Error).message),
    );
  });
  it('malformed config.json is a ConfigError naming the file', async () => {
    const dir = join(tmp, 'badjson');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), '{"d_model": 64,');
    copyFileSync(`${src}/model.safetensors`, join(dir, 'model.safetensors'));
    await assert.rejects(
      loadRunner(dir),
      (e: unknown) => e instanceof ConfigError && /config\.json is not valid JSON/.test((e as Error).message),
    );
  });
  it('an unsupported option is refused by name at load', async () => {
    const dir = await folderWith('rope', () => {}, { ...config, attn_config: { ...config.attn_config, rope: true } });
    await assert.rejects(
      loadRunner(dir),
      (e: unknown) => e instanceof UnsupportedError && /rope is not supported/.test((e as Error).message),
    );
  });
});

/** Asserts that opening `dir` fails with `kind` and a message matching `re`. */
async function openRejects(dir: string, kind: typeof WeightsError | typeof ConfigError, re: RegExp): Promise<void> {
  await assert.rejects(openCheckpoint(dir), (e: unknown) => {
    assert.ok(e instanceof kind, `expected ${kind.name}, got ${String(e)}`);
    assert.match((e as Error).message, re);
    return true;
  });
}

describe('sizes in config.json are checked against the tensors before anything is allocated', () => {
  it('more layers than the checkpoint has: opening it names the first missing tensor', async () => {
    // Before: mpt logits grew past 3 GB listing a billion layers' tensors.
    const dir = await folderWith('layers', () => {}, { ...config, n_layers: 1e9 });
    await openRejects(
      dir,
      WeightsError,
      /layers: missing tensor transformer\.blocks\.2\.norm_1\.weight \(shape \[64\]\) required by the config/,
    );
    const cli = await runCli(['info', dir]);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /^mpt info: .*missing tensor transformer\.blocks\.2\.norm_1\.weight/);
    assert.equal(cli.stderr.trim().split('\n').length, 1, cli.stderr);
  });
  it('d_model and vocab_size that the embedding contradicts', async () => {
    await openRejects(
      await folderWith('dmodel', () => {}, { ...config, d_model: 2 ** 20 }),
      WeightsError,
      /tensor transformer\.wte\.weight has shape \[512,64\], but the config requires \[512,1048576\]/,
    );
    await openRejects(
      await folderWith('vocab', () => {}, { ...config, vocab_size: 2 ** 31 - 1 }),
      WeightsError,
      /tensor transformer\.wte\.weight has shape \[512,64\], but the config requires \[2147483647,64\]/,
    );
  });
  it('fewer layers than the checkpoint has: the first extra tensor is named', async () => {
    await openRejects(
      await folderWith('fewer', () => {}, { ...config, n_layers: 1 }),
      WeightsError,
      /unexpected tensor transformer\.blocks\.1\./,
    );
  });
});

describe('config.json is read through a bounded reader', () => {
  const withConfig = (name: string, make: (path: string) => void): string => {
    const dir = join(tmp, name);
    mkdirSync(dir);
    copyFileSync(`${src}/model.safetensors`, join(dir, 'model.safetensors'));
    make(join(dir, 'config.json'));
    return dir;
  };
  it('a config.json that is a folder is a ConfigError naming it, not EISDIR', async () => {
    const dir = withConfig('cfgdir', (p) => mkdirSync(p));
    await openRejects(dir, ConfigError, /model config .*cfgdir\/config\.json is not a regular file/);
  });
  it('an oversized config.json is refused without being read', async () => {
    const dir = withConfig('cfgbig', (p) => {
      writeFileSync(p, JSON.stringify(config));
      truncateSync(p, 1024 * 1024 + 1);
    });
    await openRejects(
      dir,
      ConfigError,
      /model config .*cfgbig\/config\.json is 1048577 bytes, more than the 1048576 allowed/,
    );
  });
  it('a missing config.json is still explained', async () => {
    const dir = withConfig('cfgnone', () => {});
    await assert.rejects(openCheckpoint(dir), /has no config\.json: is it an MPT model folder\?/);
  });
});
