/**
 * The backends by name, and loading a checkpoint into one. This sits above the model layer
 * (which opens checkpoints and knows nothing of backends) and loads each backend only when it is
 * asked for: the wasm one is optional at build time, the WebGPU one needs a GPU.
 */
import { FormatError, InputError } from '../errors.js';
import { openCheckpoint, type Checkpoint, type CheckpointInput } from '../model/load.js';
import type { Backend, LoadRunnerOptions, ModelRunner } from './backend.js';

export type BackendName = 'reference' | 'wasm' | 'webgpu';

export async function getBackend(name: BackendName): Promise<Backend> {
  if (name === 'reference') return (await import('./reference/index.js')).referenceBackend;
  if (name === 'wasm') {
    try {
      // A string literal, so that bundlers include the backend (its kernels, dist/wasm/, are fetched at load).
      return (await import('./wasm/index.js')).wasmBackend;
    } catch (e) {
      throw new FormatError(`the wasm backend is not available in this build: ${(e as Error).message}`);
    }
  }
  if (name === 'webgpu') return (await import('./webgpu/index.js')).webgpuBackend;
  throw new InputError(`unknown backend "${String(name)}" (reference, wasm, webgpu)`);
}

export interface LoadOptions extends LoadRunnerOptions {
  backend?: BackendName;
  /** Overrides config.max_seq_len (ALiBi extrapolates beyond the trained length). */
  maxSeqLen?: number;
}

function isCheckpoint(v: CheckpointInput | Checkpoint): v is Checkpoint {
  return typeof v === 'object' && 'tensors' in v && 'config' in v && 'kind' in v;
}

/**
 * Loads a checkpoint into a backend. Given anything but an open Checkpoint, it opens one (see
 * openCheckpoint) and closes its tensor source once the backend holds the weights.
 */
export async function loadRunner(
  from: CheckpointInput | Checkpoint,
  options: LoadOptions = {},
): Promise<{ runner: ModelRunner; checkpoint: Checkpoint }> {
  const opened = !isCheckpoint(from);
  const ck = isCheckpoint(from) ? from : await openCheckpoint(from);
  try {
    const backend = await getBackend(options.backend ?? 'reference');
    const runner = await backend.load(ck.config, ck.tensors, options);
    return { runner, checkpoint: ck };
  } finally {
    if (opened) await ck.tensors.close();
  }
}
