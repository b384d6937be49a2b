/**
 * A checkpoint that does not match its config is refused with an error naming the tensor:
 * missing, unexpected, wrong shape; malformed or unsupported config.json.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError, UnsupportedError, WeightsError } from '../src/errors.js';
import { openSafetensors, writeSafetensors } from '../src/formats/safetensors.js';
import { loadRunner } from '../src/model/load.js';
import { fixturePath } from './helpers/goldens.js';

const tmp = mkdtempSync(join(tmpdir(), 'mpt-weights-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const src = fixturePath('tiny-alibi');
const config = JSON.parse(readFileSync(`${src}/config.json`, 'utf8'));

async function folderWith(name: string, edit: (t: { name: string; dtype: 'f32'; shape: number[]; data: Uint8Array }[]) => void, cfg = config): Promise<string> {
  const dir = join(tmp, name);
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const st = await openSafetensors(`${src}/model.safetensors`);
  const tensors = [];
  for (const info of st.list()) tensors.push({ name: info.name, dtype: 'f32' as const, shape: info.shape, data: await st.read(info.name) });
  await st.close();
  edit(tensors);
  await writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

describe('weights that do not match the config', () => {
  it('a missing tensor is named', async () => {
    const dir = await folderWith('missing', (t) => t.splice(t.findIndex((x) => x.name.endsWith('blocks.1.ffn.up_proj.weight')), 1));
    await assert.rejects(loadRunner(dir), (e: unknown) => e instanceof WeightsError && /missing tensor transformer\.blocks\.1\.ffn\.up_proj\.weight/.test((e as Error).message));
  });
  it('an unexpected tensor is named', async () => {
    const dir = await folderWith('unexpected', (t) => t.push({ name: 'transformer.blocks.0.attn.rotary.inv_freq', dtype: 'f32', shape: [2], data: new Uint8Array(8) }));
    await assert.rejects(loadRunner(dir), (e: unknown) => e instanceof WeightsError && /unexpected tensor transformer\.blocks\.0\.attn\.rotary\.inv_freq/.test((e as Error).message));
  });
  it('a shape mismatch names the tensor and both shapes', async () => {
    const dir = await folderWith('shape', () => {}, { ...config, expansion_ratio: 2 });
    await assert.rejects(loadRunner(dir), (e: unknown) => e instanceof WeightsError && /up_proj\.weight has shape \[256,64\], but the config requires \[128,64\]/.test((e as Error).message));
  });
  it('malformed config.json is a ConfigError naming the file', async () => {
    const dir = join(tmp, 'badjson');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    writeFileSync(join(dir, 'config.json'), '{"d_model": 64,');
    copyFileSync(`${src}/model.safetensors`, join(dir, 'model.safetensors'));
    await assert.rejects(loadRunner(dir), (e: unknown) => e instanceof ConfigError && /config\.json is not valid JSON/.test((e as Error).message));
  });
  it('an unsupported option is refused by name at load', async () => {
    const dir = await folderWith('rope', () => {}, { ...config, attn_config: { ...config.attn_config, rope: true } });
    await assert.rejects(loadRunner(dir), (e: unknown) => e instanceof UnsupportedError && /rope is not supported/.test((e as Error).message));
  });
});
