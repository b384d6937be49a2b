/**
 * The WebGPU backend: the MPT forward pass in WGSL compute shaders, on the browser's WebGPU or,
 * in Node, the optional `webgpu` package (Dawn over Vulkan, Metal or D3D12).
 *
 *   webgpuBackend.load(config, tensors)       f32 weights on the GPU
 */
import type { MptConfig } from '../../model/config.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { Backend, LoadRunnerOptions, ModelRunner } from '../backend.js';
import { InputError, UnsupportedError } from '../../errors.js';
import { expectedTensors } from '../../model/weights-layout.js';
import { loadReferenceWeights } from '../reference/weights.js';
import { openGpu } from './gpu.js';
import { uploadWeights, type WebGpuRunner } from './runner.js';

export interface WebGpuLoadOptions extends LoadRunnerOptions {
  /** Tokens per command buffer (default 128): bounds the scratch buffers. */
  maxRows?: number;
}

/** Loads a checkpoint onto the GPU. Throws UnsupportedError when WebGPU has no adapter here. */
export async function loadWebGpuRunner(config: MptConfig, tensors: TensorSource, options: WebGpuLoadOptions = {}): Promise<WebGpuRunner> {
  const maxRows = options.maxRows ?? 128;
  if (!Number.isInteger(maxRows) || maxRows < 1 || maxRows > 65535) throw new InputError(`maxRows must be an integer in [1, 65535], got ${maxRows}`);
  await checkFits(config);
  const gpu = await openGpu();
  try {
    // Refused before anything is read: a matrix larger than one binding of this adapter.
    const limit = Math.min(gpu.device.limits['maxStorageBufferBindingSize'] ?? Infinity, gpu.device.limits['maxBufferSize'] ?? Infinity);
    for (const t of expectedTensors(config)) {
      const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
      if (bytes > limit) throw new UnsupportedError(`tensor ${t.name} takes ${bytes} bytes in f32, more than this GPU binds in one buffer (${limit}, ${gpu.adapterName}); the webgpu backend does not split tensors yet`);
    }
    // The checkpoint as f32 arrays (any stored type, quantized ones dequantized), then uploaded.
    const weights = await loadReferenceWeights(config, tensors, options.onProgress);
    return uploadWeights(gpu, config, weights, maxRows);
  } catch (e) {
    gpu.device.destroy();
    throw e;
  }
}

/**
 * The weights pass through this machine's memory as f32 on their way to the GPU: refuse, with the
 * numbers, a model that would not fit there (Node only; a browser has no such figure).
 */
async function checkFits(config: MptConfig): Promise<void> {
  const total = expectedTensors(config).reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
  // node:os only where it exists (this file also runs in browsers).
  const mem = typeof process !== 'undefined' && process.versions?.node ? (await import('node:os')).totalmem() : Infinity;
  if (total > 0.8 * mem) {
    throw new UnsupportedError(`the webgpu backend keeps weights in f32: ${(total / 2 ** 30).toFixed(1)} GiB, too much for this machine's ${(mem / 2 ** 30).toFixed(1)} GiB (use the wasm backend, which keeps quantized weights)`);
  }
}

export const webgpuBackend: Backend = {
  name: 'webgpu',
  load(config: MptConfig, tensors: TensorSource, options?: LoadRunnerOptions): Promise<ModelRunner> {
    return loadWebGpuRunner(config, tensors, options);
  },
};

export { WebGpuRunner, WebGpuKvCache } from './runner.js';
