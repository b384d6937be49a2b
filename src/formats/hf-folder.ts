/**
 * The weights of a Hugging Face model folder, as one TensorSource. The folder may hold, in the
 * order transformers looks for them: `model.safetensors`, `model.safetensors.index.json` (shards),
 * `pytorch_model.bin`, or `pytorch_model.bin.index.json` (the layout mosaicml/mpt-7b ships).
 * Shard headers are read up front (so the tensor list is complete and checked against the index);
 * tensor bytes are read on demand. The folder is a FolderSource: on disk, at a URL, or files a
 * user chose.
 */
import { FormatError, nameForMessage, quoteValue } from '../errors.js';
import type { ByteSource } from './byte-source.js';
import { isPlainFileName, type FolderSource } from './folder-source.js';
import { JSON_FILE_LIMITS, readJsonSource } from './json-source.js';
import { openSafetensorsSource } from './safetensors.js';
import type { TensorInfo, TensorSource } from './tensor-source.js';
import { openTorchBinSource } from './torch-bin.js';

/** The weight layouts recognised in a folder, in the order they are preferred. */
export const HF_WEIGHT_FILES = [
  'model.safetensors',
  'model.safetensors.index.json',
  'pytorch_model.bin',
  'pytorch_model.bin.index.json',
] as const;

/** A TensorSource over a folder's weights, remembering which file(s) it came from. */
export interface HfFolderSource extends TensorSource {
  /** The folder's name: its path, base URL, or what the chosen files are called. */
  readonly dir: string;
  /** The weight file found (one of HF_WEIGHT_FILES). */
  readonly layout: (typeof HF_WEIGHT_FILES)[number];
  /** Every weight file opened (the shards, for an index), by their sources' names. */
  readonly files: readonly string[];
}

/** Opens the weight file `file` of a folder by its kind (a PyTorch zip or safetensors). */
function openWeightSource(file: string, source: ByteSource): Promise<TensorSource> {
  return file.endsWith('.bin') ? openTorchBinSource(source) : openSafetensorsSource(source);
}

/** Opens the weights of the Hugging Face model folder `dir` on disk (Node); see openHfFolderFromSources. */
export async function openHfFolderTensors(dir: string): Promise<HfFolderSource> {
  const { openDirFolder } = await import('./file-reader.js');
  return openHfFolderFromSources(await openDirFolder(dir));
}

/** Opens the weights of a Hugging Face model folder given as a FolderSource (URL, chosen files, disk). */
export async function openHfFolderFromSources(folder: FolderSource): Promise<HfFolderSource> {
  const dir = folder.name;
  for (const layout of HF_WEIGHT_FILES) {
    const source = await folder.open(layout);
    if (source === undefined) continue;
    if (!layout.endsWith('.index.json')) {
      const tensors = await openWeightSource(layout, source);
      return { ...bindSource(tensors), dir, layout, files: [source.name] };
    }
    return openSharded(folder, layout, source);
  }
  const present = (await folder.list?.().catch(() => [])) ?? [];
  const ggufs = present.filter((f) => f.endsWith('.gguf'));
  throw new FormatError(
    `no weights in ${dir}: expected ${HF_WEIGHT_FILES.join(', ')}` +
      (ggufs.length > 0 ? ` (found GGUF file ${ggufs[0]}: open that file instead)` : ''),
  );
}

/** Copies a source's methods into a plain object (so spreading it keeps them working). */
function bindSource(s: TensorSource): TensorSource {
  const bound: TensorSource = {
    list: () => s.list(),
    info: (n) => s.info(n),
    read: (n) => s.read(n),
    close: () => s.close(),
  };
  if (s.readInto) bound.readInto = (n, dest, start) => s.readInto!(n, dest, start);
  return bound;
}

async function openSharded(
  folder: FolderSource,
  layout: HfFolderSource['layout'],
  indexSource: ByteSource,
): Promise<HfFolderSource> {
  const dir = folder.name;
  const indexPath = indexSource.name;
  let index: unknown;
  try {
    index = await readJsonSource(indexSource, 'weight index', JSON_FILE_LIMITS.index);
  } finally {
    await indexSource.close();
  }
  const weightMap =
    typeof index === 'object' && index !== null ? (index as Record<string, unknown>)['weight_map'] : undefined;
  if (typeof weightMap !== 'object' || weightMap === null || Array.isArray(weightMap)) {
    throw new FormatError(`weight index ${indexPath} has no "weight_map" object`);
  }
  const wanted = new Map<string, string[]>(); // shard file → tensor names the index puts there
  const listedIn = new Map<string, string>(); // tensor name → its shard file
  for (const [name, file] of Object.entries(weightMap as Record<string, unknown>)) {
    // Shard names are plain file names in the same folder; anything else could escape it.
    if (typeof file !== 'string' || !isPlainFileName(file)) {
      throw new FormatError(
        `weight index ${indexPath}: tensor ${name} maps to ${quoteValue(file)}, which is not a file name in the folder`,
      );
    }
    listedIn.set(name, file);
    const list = wanted.get(file) ?? [];
    list.push(name);
    wanted.set(file, list);
  }
  if (wanted.size === 0) throw new FormatError(`weight index ${indexPath} lists no tensors`);

  const files = [...wanted.keys()].sort();
  const shards: TensorSource[] = [];
  const shardNames = new Map<string, string>(); // shard file → its source's name
  const owner = new Map<string, { shard: TensorSource; file: string; info: TensorInfo }>();
  try {
    for (const file of files) {
      const source = await folder.open(file);
      if (source === undefined)
        throw new FormatError(
          `weight index ${indexPath} names shard ${nameForMessage(file)}, which is missing from ${dir}`,
        );
      shardNames.set(file, source.name);
      const shard = await openWeightSource(file, source);
      shards.push(shard);
      for (const info of shard.list()) {
        const prev = owner.get(info.name);
        if (prev !== undefined)
          throw new FormatError(`tensor ${info.name} is in two shards: ${prev.file} and ${file} (in ${dir})`);
        owner.set(info.name, { shard, file, info });
      }
      for (const name of wanted.get(file)!) {
        if (shard.info(name) === undefined) {
          throw new FormatError(
            `weight index ${indexPath} puts tensor ${name} in ${file}, but that shard does not contain it`,
          );
        }
      }
    }
    // The index is the list of the checkpoint's tensors: a shard may not hold more than it says.
    for (const [name, o] of owner) {
      if (listedIn.get(name) !== o.file) {
        const shard = shardNames.get(o.file)!;
        throw new FormatError(`${shard} holds tensor ${name}, which the weight index ${indexPath} does not list there`);
      }
    }
  } catch (e) {
    await Promise.all(shards.map((s) => s.close().catch(() => {})));
    throw e;
  }
  const infos = [...owner.values()].map((o) => o.info);
  // Positioned reads into the caller's memory when every shard can do them (safetensors; not .bin).
  const readInto = shards.every((s) => s.readInto)
    ? (name: string, dest: Uint8Array, start?: number) => {
        const o = owner.get(name);
        if (o === undefined)
          return Promise.reject(new FormatError(`the weights in ${dir} have no tensor named ${name}`));
        return o.shard.readInto!(name, dest, start);
      }
    : undefined;
  return {
    ...(readInto ? { readInto } : {}),
    dir,
    layout,
    files: files.map((f) => shardNames.get(f)!),
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
