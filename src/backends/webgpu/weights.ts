/**
 * A checkpoint's tensors into GPU buffers, one tensor at a time (no whole-model copy in this
 * machine's memory). Matrices stay in their stored type when the kernels read it — f32, f16,
 * bf16, ggml's q8_0, q4_0, q4_K, q5_K and q6_K blocks, widened to f32 in registers as ggml
 * dequantizes them — laid out for 16-byte loads (layout.ts); other types (the other ggml blocks)
 * are dequantized to f32; norms and biases are f32.
 */
import { UnsupportedError } from '../../errors.js';
import { dequantize } from '../../formats/ggml-quants.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { readWeightTree, type WeightTree } from '../../model/weight-tree.js';
import { expectedTensors } from '../../model/weights-layout.js';
import { checkTensorsAgainstConfig } from '../../model/weights-layout.js';
import { STORAGE, type GpuBuffer, type GpuContext } from './gpu.js';
import { matrixLayout, packMatrix, type GpuWeightType, type MatrixLayout } from './layout.js';

export type { GpuWeightType } from './layout.js';

/** Types kept as stored (matrices only); every other type is dequantized to f32. */
const KEPT: readonly string[] = ['f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'];

export interface GpuTensor {
  buf: GpuBuffer;
  type: GpuWeightType;
  /** The checkpoint's name for it. */
  name: string;
  /** Matrices (2-D tensors): where the rows lie. */
  layout?: MatrixLayout;
}

/** The largest buffer this device binds. */
export function bindingLimit(gpu: GpuContext): number {
  return limitOf(gpu.device.limits);
}

/** The largest buffer that device or adapter limits allow binding. */
export function limitOf(limits: Record<string, number>): number {
  return Math.min(limits['maxStorageBufferBindingSize'] ?? Infinity, limits['maxBufferSize'] ?? Infinity);
}

function storedType(dtype: string, dims: number): GpuWeightType {
  return dims === 2 && KEPT.includes(dtype) ? (dtype as GpuWeightType) : 'f32';
}

/** Bytes a tensor takes on the GPU: in its layout when a matrix, else f32. */
export function gpuTensorBytes(info: { dtype: string; shape: number[] }): number {
  if (info.shape.length === 2) return matrixLayout(storedType(info.dtype, 2), info.shape[0]!, info.shape[1]!).bytes;
  return info.shape.reduce((a, b) => a * b, 1) * 4;
}

/** The first tensor the config uses that takes more than `limit` bytes on the GPU, or undefined. */
export function tensorOverLimit(
  limit: number,
  config: MptConfig,
  tensors: Pick<TensorSource, 'info'>,
): { name: string; bytes: number } | undefined {
  for (const t of expectedTensors(config)) {
    const info = tensors.info(t.name);
    const bytes = gpuTensorBytes(info ?? { dtype: 'f32', shape: t.shape });
    if (bytes > limit) return { name: t.name, bytes };
  }
  return undefined;
}

/** Throws, naming it, for a tensor the config uses that this device cannot bind in one buffer. */
export function checkBindings(gpu: GpuContext, config: MptConfig, tensors: TensorSource): void {
  const limit = bindingLimit(gpu);
  const over = tensorOverLimit(limit, config, tensors);
  if (over !== undefined) {
    throw new UnsupportedError(
      `tensor ${over.name} takes ${over.bytes} bytes on the GPU, more than this GPU binds in one buffer (${limit}, ${gpu.adapterName}); the webgpu backend does not split tensors yet`,
    );
  }
}

/** A storage buffer holding `bytes` (padded to whole 4-byte words). */
export function uploadBytes(gpu: GpuContext, bytes: Uint8Array, label: string): GpuBuffer {
  const b = gpu.device.createBuffer({
    size: Math.max(16, Math.ceil(bytes.byteLength / 4) * 4),
    usage: STORAGE,
    mappedAtCreation: true,
    label,
  });
  new Uint8Array(b.getMappedRange()).set(bytes);
  b.unmap();
  return b;
}

export async function loadGpuWeights(
  gpu: GpuContext,
  config: MptConfig,
  tensors: TensorSource,
  onProgress?: (done: number, total: number) => void,
): Promise<WeightTree<GpuTensor>> {
  checkTensorsAgainstConfig(config, tensors);
  checkBindings(gpu, config, tensors);
  const total = expectedTensors(config).reduce((s, e) => s + (tensors.info(e.name)?.byteLength ?? 0), 0);
  let done = 0;
  const get = async (name: string): Promise<GpuTensor> => {
    const info = tensors.info(name)!;
    const bytes = await tensors.read(name);
    const type = storedType(info.dtype, info.shape.length);
    let data = bytes;
    if (info.dtype !== type) {
      const f = dequantize(
        info.dtype,
        bytes,
        info.shape.reduce((a, b) => a * b, 1),
      );
      data = new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
    }
    let t: GpuTensor;
    if (info.shape.length === 2) {
      const layout = matrixLayout(type, info.shape[0]!, info.shape[1]!);
      const buf = gpu.device.createBuffer({ size: layout.bytes, usage: STORAGE, mappedAtCreation: true, label: name });
      packMatrix(layout, data, new Uint8Array(buf.getMappedRange()));
      buf.unmap();
      t = { buf, type, name, layout };
    } else {
      t = { buf: uploadBytes(gpu, data, name), type, name };
    }
    done += info.byteLength;
    onProgress?.(done, total);
    return t;
  };
  return readWeightTree(config, get);
}
