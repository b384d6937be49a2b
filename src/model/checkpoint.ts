/**
 * A checkpoint: a model's parsed config and its lazy tensor source, with where it came from, made
 * from a Hugging Face folder or a GGUF file. load.ts (URLs, Blobs, folder sources) and
 * open-path.ts (local paths, Node only) both end here.
 */
import type { FolderSource } from '../formats/folder-source.js';
import type { ByteSource } from '../formats/byte-source.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { parseMptConfig, type MptConfig } from './config.js';
import type { GgufTokenizer } from './gguf-tokenizer.js';
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
  ggufTokenizer?: GgufTokenizer;
  /** GGUF metadata, for `mpt info`. */
  ggufMetadata?: Map<string, unknown>;
}

/** The checkpoint of a folder whose config.json parsed as `raw` (load.ts and open-path.ts). */
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
 * The checkpoint of the GGUF file `source` (load.ts and open-path.ts); `dir` defaults to the
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
