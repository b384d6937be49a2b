// Seeded mutation fuzzing of Hugging Face model folders, from the fixtures and the shipped model:
// the safetensors header (its JSON: names, dtypes, shapes, offsets; and its bytes), config.json
// (every field, typed values replaced by hostile ones), a sharded checkpoint's weight index, and a
// torch.save .bin whose pickle is mutated and re-zipped (so the CRC does not stop it first). Each
// folder is opened as loading a model does and every tensor read and widened to f32; each case
// must succeed or end in an MptError, in bounded time.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bytesSource } from '../src/formats/byte-source.js';
import { tensorToFloat32 } from '../src/formats/dtypes.js';
import type { FolderSource } from '../src/formats/folder-source.js';
import { openSafetensorsSource } from '../src/formats/safetensors.js';
import { ZipArchive } from '../src/formats/zip.js';
import { openFolderCheckpoint } from '../src/model/load.js';
import { assertReached, fuzz, mutateBytes, mutateJson, type Rand, splicedSource, type Tally } from './helpers/fuzz.js';
import { buildZip } from './helpers/zip-writer.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURES = join(ROOT, 'test/fixtures');

/** A folder held in memory: file name → bytes. */
type Files = Map<string, Uint8Array>;

function readFolder(dir: string, only?: (f: string) => boolean): Files {
  const files: Files = new Map();
  for (const f of readdirSync(dir)) {
    if (f.startsWith('goldens') || (only && !only(f))) continue;
    files.set(f, new Uint8Array(readFileSync(join(dir, f))));
  }
  return files;
}

function memoryFolder(files: Files): FolderSource {
  return {
    name: 'fuzz-folder',
    open: async (f) => {
      const b = files.get(f);
      return b === undefined ? undefined : bytesSource(b, `fuzz-folder/${f}`);
    },
    list: async () => [...files.keys()],
  };
}

/** Opens the folder as a model and reads every tensor as f32. */
async function loadFolder(files: Files): Promise<void> {
  const ck = await openFolderCheckpoint(memoryFolder(files));
  try {
    for (const info of ck.tensors.list()) tensorToFloat32(info, await ck.tensors.read(info.name));
  } finally {
    await ck.tensors.close();
  }
}

/** A safetensors file's JSON header text and the data after it. */
function splitSafetensors(b: Uint8Array): { header: string; data: Uint8Array } {
  const n = Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
  return { header: new TextDecoder().decode(b.subarray(8, 8 + n)), data: b.subarray(8 + n) };
}

function joinSafetensors(header: string, data: Uint8Array): Uint8Array {
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/**
 * A mutated copy of a safetensors file: its header JSON (70%) or its bytes near the start. `b` may
 * be the file's first bytes only (the header and a little data), the rest served from elsewhere.
 */
function mutateSafetensors(b: Uint8Array, r: Rand, log: string[]): Uint8Array {
  const { header, data } = splitSafetensors(b);
  if (r.chance(0.7)) return joinSafetensors(mutateJson(header, r, log), data);
  const end = 8 + header.length + 64;
  const head = mutateBytes(b.subarray(0, end), r, { fields: [{ at: 0, size: 8 }], describe: log });
  const out = new Uint8Array(head.length + b.length - end);
  out.set(head);
  out.set(b.subarray(end), head.length);
  return out;
}

/** Loads the folder unmutated, then `seeds` cases of it mutated by `mutate`. */
async function fuzzFolder(
  label: string,
  files: Files,
  seeds: number,
  mutate: (files: Files, r: Rand, log: string[]) => Files,
): Promise<Tally> {
  await loadFolder(files);
  return fuzz(label, seeds, (r, log) => {
    const mutated = mutate(new Map(files), r, log);
    return () => loadFolder(mutated);
  });
}

/** Replaces one file of the folder by a mutation of it. */
function mutating(file: string, how: (b: Uint8Array, r: Rand, log: string[]) => Uint8Array) {
  return (files: Files, r: Rand, log: string[]): Files => {
    files.set(file, how(files.get(file)!, r, log));
    return files;
  };
}

const jsonFile = (b: Uint8Array, r: Rand, log: string[]) =>
  new TextEncoder().encode(mutateJson(new TextDecoder().decode(b), r, log));

/** The pickle of a torch.save zip mutated, and the zip rebuilt around it (valid CRC, aligned data). */
async function torchBinMutator(bin: Uint8Array): Promise<(b: Uint8Array, r: Rand, log: string[]) => Uint8Array> {
  const zip = await ZipArchive.openSource(bytesSource(bin));
  const entries = await Promise.all(zip.entries.map(async (e) => ({ name: e.name, data: await zip.read(e.name) })));
  const pkl = entries.findIndex((e) => e.name.endsWith('/data.pkl'));
  assert.ok(pkl >= 0);
  return (_b, r, log) => {
    const copy = entries.slice();
    copy[pkl] = { name: copy[pkl]!.name, data: mutateBytes(copy[pkl]!.data, r, { describe: log, max: 4 }) };
    return new Uint8Array(buildZip(copy, { dataDescriptor: true, align: 64 }));
  };
}

describe('HF folder fuzz: mutated folders load, or fail with an MptError', () => {
  it('safetensors headers (tiny-alibi)', async () => {
    const files = readFolder(join(FIXTURES, 'tiny-alibi'));
    const label = 'tiny-alibi model.safetensors';
    assertReached(await fuzzFolder(label, files, 400, mutating('model.safetensors', mutateSafetensors)), label);
  });

  it('safetensors header of the shipped model (header only: tensors are read lazily)', async () => {
    const b = new Uint8Array(readFileSync(join(ROOT, 'models/default/model.safetensors')));
    const { data } = splitSafetensors(b);
    const head = b.subarray(0, b.length - data.length + 64);
    const label = 'shipped model.safetensors';
    const tally = await fuzz(label, 150, (r, log) => {
      const source = splicedSource(mutateSafetensors(head, r, log), data.subarray(64), 'model.safetensors');
      return async () => (await openSafetensorsSource(source)).close();
    });
    assertReached(tally, label);
  });

  it('config.json (tiny-alibi, and the shipped model’s with tiny-alibi’s weights)', async () => {
    const files = readFolder(join(FIXTURES, 'tiny-alibi'));
    const label = 'tiny-alibi config.json';
    assertReached(await fuzzFolder(label, files, 400, mutating('config.json', jsonFile)), label);
    // The shipped model's config does not fit these weights: every case fails, on the config or,
    // once it is parsed, on the shapes.
    files.set('config.json', new Uint8Array(readFileSync(join(ROOT, 'models/default/config.json'))));
    await fuzz('shipped config.json', 150, (r, log) => {
      const mutated = mutating('config.json', jsonFile)(new Map(files), r, log);
      return () => loadFolder(mutated);
    });
  });

  it('sharded weight index (tiny-alibi-sharded)', async () => {
    const files = readFolder(join(FIXTURES, 'tiny-alibi-sharded'));
    const index = 'model.safetensors.index.json';
    assertReached(await fuzzFolder(index, files, 300, mutating(index, jsonFile)), index);
  });

  it('torch.save pickle (tiny-alibi-bin), re-zipped', async () => {
    const files = readFolder(join(FIXTURES, 'tiny-alibi-bin'));
    const mutate = await torchBinMutator(files.get('pytorch_model.bin')!);
    const label = 'pytorch_model.bin data.pkl';
    assertReached(await fuzzFolder(label, files, 300, mutating('pytorch_model.bin', mutate)), label);
  });

  it('torch.save zip structure (tiny-alibi-bin), bytes', async () => {
    const files = readFolder(join(FIXTURES, 'tiny-alibi-bin'));
    const zipBytes = (b: Uint8Array, r: Rand, log: string[]) => mutateBytes(b, r, { describe: log, max: 3 });
    const label = 'pytorch_model.bin bytes';
    assertReached(await fuzzFolder(label, files, 200, mutating('pytorch_model.bin', zipBytes)), label);
  });
});
