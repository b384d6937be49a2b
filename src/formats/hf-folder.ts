/**
 * The weights of a Hugging Face model folder, as one TensorSource. The folder may hold, in the
 * order transformers looks for them: `model.safetensors`, `model.safetensors.index.json` (shards),
 * `pytorch_model.bin`, or `pytorch_model.bin.index.json` (the layout mosaicml/mpt-7b ships).
 * Shard headers are read up front (so the tensor list is complete and checked against the index);
 * tensor bytes are read on demand.
 */
import { promises as fsp } from 'node:fs';
import { basename, join } from 'node:path';
import { FormatError } from '../errors.js';
import { JSON_FILE_LIMITS, readJsonFile } from './json-file.js';
import { openSafetensors } from './safetensors.js';
import type { TensorInfo, TensorSource } from './tensor-source.js';
import { openTorchBin } from './torch-bin.js';

/** The weight layouts recognised in a folder, in the order they are preferred. */
export const HF_WEIGHT_FILES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
] as const;

/** A TensorSource over a folder's weights, remembering which file(s) it came from. */
export interface HfFolderSource extends TensorSource {
  readonly dir: string;
  /** The weight file found (one of HF_WEIGHT_FILES). */
  readonly layout: (typeof HF_WEIGHT_FILES)[number];
  /** Every weight file opened (the shards, for an index). */
  readonly files: readonly string[];
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await fsp.stat(path)).isFile();
  } catch {
    return false;
  }
}

function openWeightFile(path: string): Promise<TensorSource> {
  return path.endsWith('.bin') ? openTorchBin(path) : openSafetensors(path);
}

/** Opens the weights of the Hugging Face model folder `dir`. */
export async function openHfFolderTensors(dir: string): Promise<HfFolderSource> {
  let st;
  try {
    st = await fsp.stat(dir);
  } catch (e) {
    throw new FormatError(`model folder ${dir} does not exist`, { cause: e });
  }
  if (!st.isDirectory()) throw new FormatError(`${dir} is not a folder`);
  for (const layout of HF_WEIGHT_FILES) {
    const path = join(dir, layout);
    if (!(await isFile(path))) continue;
    if (!layout.endsWith('.index.json')) {
      const source = await openWeightFile(path);
      return { ...bindSource(source), dir, layout, files: [path] };
    }
    return openSharded(dir, layout, path);
  }
  const present = await fsp.readdir(dir).catch(() => [] as string[]);
  const ggufs = present.filter((f) => f.endsWith('.gguf'));
  throw new FormatError(
    `no weights in ${dir}: expected ${HF_WEIGHT_FILES.join(', ')}` + (ggufs.length > 0 ? ` (found GGUF file ${ggufs[0]}: open that file instead)` : ''),
  );
}

/** Copies a source's methods into a plain object (so spreading it keeps them working). */
function bindSource(s: TensorSource): TensorSource {
  const bound: TensorSource = { list: () => s.list(), info: (n) => s.info(n), read: (n) => s.read(n), close: () => s.close() };
  if (s.readInto) bound.readInto = (n, dest, start) => s.readInto!(n, dest, start);
  return bound;
}

async function openSharded(dir: string, layout: HfFolderSource['layout'], indexPath: string): Promise<HfFolderSource> {
  const index = await readJsonFile(indexPath, 'weight index', JSON_FILE_LIMITS.index);
  const weightMap = typeof index === 'object' && index !== null ? (index as Record<string, unknown>)['weight_map'] : undefined;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new FormatError(`weight index ${indexPath} has no "weight_map" object`);
  }
  const wanted = new Map<string, string[]>(); // shard file → tensor names the index puts there
  const listedIn = new Map<string, string>(); // tensor name → its shard file
  for (const [name, file] of Object.entries(weightMap as Record<string, unknown>)) {
    // Shard names are plain file names in the same folder; anything else could escape it.
    if (typeof file !== 'string' || file === '' || basename(file) !== file || file === '.' || file === '..') {
      throw new FormatError(`weight index ${indexPath}: tensor ${name} maps to ${JSON.stringify(file)}, which is not a file name in the folder`);
    }
    listedIn.set(name, file);
    const list = wanted.get(file) ?? [];
    list.push(name);
    wanted.set(file, list);
  }
  if (wanted.size === 0) throw new FormatError(`weight index ${indexPath} lists no tensors`);

  const files = [...wanted.keys()].sort();
  const shards: TensorSource[] = [];
  const owner = new Map<string, { shard: TensorSource; file: string; info: TensorInfo }>();
  try {
    for (const file of files) {
      const path = join(dir, file);
      if (!(await isFile(path))) throw new FormatError(`weight index ${indexPath} names shard ${file}, which is missing from ${dir}`);
      const shard = await openWeightFile(path);
      shards.push(shard);
      for (const info of shard.list()) {
        const prev = owner.get(info.name);
        if (prev !== undefined) throw new FormatError(`tensor ${info.name} is in two shards: ${prev.file} and ${file} (in ${dir})`);
        owner.set(info.name, { shard, file, info });
      }
      for (const name of wanted.get(file)!) {
        if (shard.info(name) === undefined) {
          throw new FormatError(`weight index ${indexPath} puts tensor ${name} in ${file}, but that shard does not contain it`);
        }
      }
    }
    // The index is the list of the checkpoint's tensors: a shard may not hold more than it says.
    for (const [name, o] of owner) {
      if (listedIn.get(name) !== o.file) {
        const shard = join(dir, o.file);
        throw new FormatError(`${shard} holds tensor ${name}, which the weight index ${indexPath} does not list there`);
      }
    }
  } catch (e) {
    await Promise.all(shards.map((s) => s.close().catch(() => {})));
    throw e;
  }
  const infos = [...owner.values()].map((o) => o.info);
  // Positioned reads into the caller's memory when every shard can do them (safetensors; not .bin).
  const readInto = shards.every((s) => s.readInto) ? (name: string, dest: Uint8Array, start?: number) => {
    const o = owner.get(name);
    if (o === undefined) return Promise.reject(new FormatError(`the weights in ${dir} have no tensor named ${name}`));
    return o.shard.readInto!(name, dest, start);
  } : undefined;
  return {
    ...(readInto ? { readInto } : {}),
    dir,
    layout,
    files: files.map((f) => join(dir, f)),
    list: () => infos.map((i) => ({ ...i, shape: i.shape.slice() })),
    info: (name) => owner.get(name)?.shard.info(name),
    read: (name) => {
      const o = owner.get(name);
      if (o === undefined) return Promise.reject(new FormatError(`the weights in ${dir} have no tensor named ${name}`));
      return o.shard.read(name);
    },
    close: async () => {
      await Promise.all(shards.map((s) => s.close()));
    },
  };
}
