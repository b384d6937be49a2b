/**
 * The WebGPU backend: the MPT forward pass in WGSL compute shaders, on the browser's WebGPU or,
 * in Node, the optional `webgpu` package (Dawn over Vulkan, Metal or D3D12).
 *
 *   webgpuBackend.load(config, tensors)       matrices in their stored type (f32, f16, bf16, q8_0,
 *                                             q4_0, q4_k, q5_k, q6_k; other types as f32)
 */
import type { MptConfig } from '../../model/config.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { Backend, LoadRunnerOptions, ModelRunner } from '../backend.js';
import { InputError } from '../../errors.js';
import { openGpu } from './gpu.js';
import { WebGpuRunner } from './runner.js';
import { loadGpuWeights } from './weights.js';

export interface WebGpuLoadOptions extends LoadRunnerOptions {
  /** Tokens per command buffer (default 128): bounds the scratch buffers. */
  maxRows?: number;
  /** Use subgroup operations where the adapter has them (default true; false: workgroup memory only). */
  subgroups?: boolean;
  /**
   * Products multiplied in f16 where the adapter has `shader-f16` (default false: f32 throughout;
   * `runner.gpu.f16` says whether it was). Changes results: see bench/webgpu-f16-kl.ts for the KL
   * against f32.
   */
  f16Math?: boolean;
}

/** Loads a checkpoint onto the GPU. Throws UnsupportedError when WebGPU has no adapter here. */
export async function loadWebGpuRunner(
  config: MptConfig,
  tensors: TensorSource,
  options: WebGpuLoadOptions = {},
): Promise<WebGpuRunner> {
  const maxRows = options.maxRows ?? 128;
  if (!Number.isInteger(maxRows) || maxRows < 1 || maxRows > 65535)
    throw new InputError(`maxRows must be an integer in [1, 65535], got ${maxRows}`);
  const gpu = await openGpu({ subgroups: options.subgroups, f16: options.f16Math });
  try {
    return new WebGpuRunner(config, gpu, await loadGpuWeights(gpu, config, tensors, options.onProgress), maxRows);
  } catch (e) {
    gpu.device.destroy();
    throw e;
  }
}

export const webgpuBackend: Backend = {
  name: 'webgpu',
  load(config: MptConfig, tensors: TensorSource, options?: LoadRunnerOptions): Promise<ModelRunner> {
    return loadWebGpuRunner(config, tensors, options);
  },
};

export { WebGpuRunner, WebGpuKvCache } from './runner.js';
export type { WebGpuStats } from './dispatch.js';
