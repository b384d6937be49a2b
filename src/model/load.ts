/**
 * Opening a model from a path: a Hugging Face folder (config.json + safetensors or PyTorch .bin,
 * sharded or not) or a GGUF file. Returns the parsed config and a lazy tensor source with
 * canonical (MosaicML) tensor names; `loadRunner` hands them to a backend.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Backend, LoadRunnerOptions, ModelRunner } from '../backends/backend.js';
import { ConfigError, FormatError, InputError } from '../errors.js';
import { JSON_FILE_LIMITS, readJsonFile } from '../formats/json-file.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { parseMptConfig, type MptConfig } from './config.js';
import { checkTensorsAgainstConfig } from './weights-layout.js';

export type BackendName = 'reference' | 'wasm' | 'webgpu';

export interface Checkpoint {
  /** Absolute path of the folder or GGUF file. */
  path: string;
  /** The folder holding tokenizer files (the model folder, or the GGUF's folder). */
  dir: string;
  kind: 'hf' | 'gguf';
  config: MptConfig;
  tensors: TensorSource;
  /** Tokenizer data embedded in a GGUF file. */
  ggufTokenizer?: unknown;
  /** GGUF metadata, for `mpt info`. */
  ggufMetadata?: Map<string, unknown>;
}

async function readConfigJson(dir: string): Promise<unknown> {
  const p = join(dir, 'config.json');
  if (!existsSync(p)) throw new InputError(`${dir} has no config.json: is it an MPT model folder?`);
  return readJsonFile(p, 'model config', JSON_FILE_LIMITS.config, ConfigError);
}

/**
 * Opens a checkpoint without reading tensor data. Its tensors are checked against its config
 * here (names and shapes), so nothing sized by the config is built for a checkpoint that lacks it.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  const abs = resolve(path);
  if (!existsSync(abs)) throw new InputError(`model not found: ${path}`);
  const st = statSync(abs);
  if (st.isFile()) {
    if (!abs.endsWith('.gguf')) {
      throw new InputError(`${path} is a file but not a .gguf: give a model folder (config.json + weights) or a GGUF file`);
    }
    const { openGgufCheckpoint } = await import('./gguf-model.js');
    const g = await openGgufCheckpoint(abs);
    return { path: abs, dir: resolve(abs, '..'), kind: 'gguf', config: g.config, tensors: g.tensors, ggufTokenizer: g.tokenizer, ggufMetadata: g.metadata as Map<string, unknown> | undefined };
  }
  const raw = await readConfigJson(abs);
  const config = parseMptConfig(raw);
  const { openHfFolderTensors } = await import('../formats/hf-folder.js');
  const tensors = await openHfFolderTensors(abs);
  try {
    checkTensorsAgainstConfig(config, tensors, abs);
  } catch (e) {
    await tensors.close();
    throw e;
  }
  return { path: abs, dir: abs, kind: 'hf', config, tensors };
}

export async function getBackend(name: BackendName): Promise<Backend> {
  if (name === 'reference') return (await import('../backends/reference/index.js')).referenceBackend;
  if (name === 'wasm') {
    try {
      // A computed specifier: the wasm backend is optional at build time (built by scripts/build-wasm.mjs).
      const spec = '../backends/wasm/index.js';
      return ((await import(spec)) as { wasmBackend: Backend }).wasmBackend;
    } catch (e) {
      throw new FormatError(`the wasm backend is not available in this build: ${(e as Error).message}`);
    }
  }
  if (name === 'webgpu') return (await import('../backends/webgpu/index.js')).webgpuBackend;
  throw new InputError(`unknown backend "${String(name)}" (reference, wasm, webgpu)`);
}

export interface LoadOptions extends LoadRunnerOptions {
  backend?: BackendName;
  /** Overrides config.max_seq_len (ALiBi extrapolates beyond the trained length). */
  maxSeqLen?: number;
}

/** Opens a checkpoint and loads it into a backend. */
export async function loadRunner(pathOrCheckpoint: string | Checkpoint, options: LoadOptions = {}): Promise<{ runner: ModelRunner; checkpoint: Checkpoint }> {
  const ck = typeof pathOrCheckpoint === 'string' ? await openCheckpoint(pathOrCheckpoint) : pathOrCheckpoint;
  const backend = await getBackend(options.backend ?? 'reference');
  try {
    const runner = await backend.load(ck.config, ck.tensors, options);
    return { runner, checkpoint: ck };
  } finally {
    if (typeof pathOrCheckpoint === 'string') await ck.tensors.close();
  }
}
