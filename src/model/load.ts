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
import { openUrlSource, type UrlSourceOptions } from '../formats/url-source.js';
import { type Checkpoint, ggufCheckpoint, hfCheckpoint } from './checkpoint.js';

export type { Checkpoint } from './checkpoint.js';

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
