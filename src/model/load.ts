/**
 * Opening a model: a Hugging Face folder (config.json + safetensors or PyTorch .bin, sharded or
 * not) or a GGUF file, given as a local path (Node), an http(s) URL, a Blob or File (GGUF), a
 * ByteSource (GGUF) or a FolderSource (a folder at a URL, the files a user chose). Returns the
 * parsed config and a lazy tensor source with canonical (MosaicML) tensor names. Loading it into
 * a backend is the next layer's business (src/backends/registry.ts).
 */
import { ConfigError, InputError } from '../errors.js';
import { blobSource, isBlob, type ByteSource } from '../formats/byte-source.js';
import { urlFolder, type FolderSource } from '../formats/folder-source.js';
import { JSON_FILE_LIMITS, readJsonSource } from '../formats/json-source.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { openUrlSource, type UrlSourceOptions } from '../formats/url-source.js';
import { parseMptConfig, type MptConfig } from './config.js';
import { checkTensorsAgainstConfig } from './weights-layout.js';

export interface Checkpoint {
  /** The model: absolute path of the folder or GGUF file, its URL, or its source's name. */
  path: string;
  /**
   * The folder holding tokenizer files: a path for a local model (the model folder, or the GGUF's
   * folder); otherwise the folder source's name, whose files are read through `folder`.
   */
  dir: string;
  /** The files beside the weights (tokenizer.json, generation_config.json…); absent for a lone Blob. */
  folder?: FolderSource;
  kind: 'hf' | 'gguf';
  config: MptConfig;
  tensors: TensorSource;
  /** Tokenizer data embedded in a GGUF file. */
  ggufTokenizer?: unknown;
  /** GGUF metadata, for `mpt info`. */
  ggufMetadata?: Map<string, unknown>;
}

/**
 * What openCheckpoint opens: a local path (Node) or an http(s) URL (of a folder, or of a file
 * ending in .gguf), a Blob or File holding a GGUF file, a ByteSource of one, or a model folder.
 */
export type CheckpointInput = string | URL | Blob | ByteSource | FolderSource;

export interface OpenCheckpointOptions {
  /** For URLs: request headers (an Authorization header for gated repositories), requests in flight. */
  url?: UrlSourceOptions;
  /** Opens a GGUF file's URL (default openUrlSource; a page's loadModel reads through its offline copies). */
  openGguf?: (url: URL, options: UrlSourceOptions) => Promise<ByteSource>;
  /** Opens a model folder's URL (default urlFolder; a page's loadModel reads through its offline copies). */
  openFolder?: (url: URL, options: UrlSourceOptions) => Promise<FolderSource>;
}

function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

function isFolderSource(v: ByteSource | FolderSource): v is FolderSource {
  return typeof (v as FolderSource).open === 'function';
}

/**
 * Opens a checkpoint without reading tensor data. Its tensors are checked against its config
 * here (names and shapes), so nothing sized by the config is built for a checkpoint that lacks it.
 */
export async function openCheckpoint(input: CheckpointInput, options: OpenCheckpointOptions = {}): Promise<Checkpoint> {
  if (input instanceof URL || (typeof input === 'string' && isUrl(input))) return openUrl(String(input), options);
  if (typeof input === 'string') {
    // Node only, so loaded only for a path: the rest of this module runs in a browser too.
    const { openPathCheckpoint } = await import('./open-path.js');
    return openPathCheckpoint(input);
  }
  if (isBlob(input)) {
    const source = blobSource(input);
    if ((input as Partial<File>).name !== undefined && !source.name.toLowerCase().endsWith('.gguf')) {
      throw new InputError(
        `${source.name} is a file but not a .gguf: choose a GGUF file, or a whole model folder (config.json + weights)`,
      );
    }
    return ggufCheckpoint(source, source.name);
  }
  if (isFolderSource(input)) return openFolderCheckpoint(input);
  return ggufCheckpoint(input, input.name);
}

async function openUrl(url: string, options: OpenCheckpointOptions): Promise<Checkpoint> {
  const parsed = new URL(url);
  const o = options.url ?? {};
  if (parsed.pathname.toLowerCase().endsWith('.gguf')) {
    const source = await (options.openGguf ?? openUrlSource)(parsed, o);
    return ggufCheckpoint(source, parsed.href, urlFolder(new URL('./', parsed), o));
  }
  const folder = options.openFolder ? await options.openFolder(parsed, o) : urlFolder(parsed, o);
  return openFolderCheckpoint(folder);
}

/** Opens the Hugging Face model folder `folder` (config.json + weights). */
export async function openFolderCheckpoint(folder: FolderSource): Promise<Checkpoint> {
  const source = await folder.open('config.json');
  if (source === undefined) throw new InputError(`${folder.name} has no config.json: is it an MPT model folder?`);
  let raw: unknown;
  try {
    raw = await readJsonSource(source, 'model config', JSON_FILE_LIMITS.config, ConfigError);
  } finally {
    await source.close();
  }
  return hfCheckpoint(raw, folder, folder.name);
}

/** The checkpoint of a folder whose config.json parsed as `raw` (shared with open-path.ts). */
export async function hfCheckpoint(raw: unknown, folder: FolderSource, path: string): Promise<Checkpoint> {
  const config = parseMptConfig(raw);
  const { openHfFolderFromSources } = await import('../formats/hf-folder.js');
  const tensors = await openHfFolderFromSources(folder);
  try {
    checkTensorsAgainstConfig(config, tensors, path);
  } catch (e) {
    await tensors.close();
    throw e;
  }
  return { path, dir: path, folder, kind: 'hf', config, tensors };
}

/**
 * The checkpoint of the GGUF file `source` (shared with open-path.ts); `dir` defaults to the
 * folder's name, or `path` when there is no folder.
 */
export async function ggufCheckpoint(
  source: ByteSource,
  path: string,
  folder?: FolderSource,
  dir?: string,
): Promise<Checkpoint> {
  const { openGgufCheckpoint } = await import('./gguf-model.js');
  const g = await openGgufCheckpoint(source);
  const ck: Checkpoint = {
    path,
    dir: dir ?? folder?.name ?? path,
    kind: 'gguf',
    config: g.config,
    tensors: g.tensors,
    ggufTokenizer: g.tokenizer,
    ggufMetadata: g.metadata as Map<string, unknown> | undefined,
  };
  if (folder !== undefined) ck.folder = folder;
  return ck;
}
