/**
 * Loads an MPT checkpoint into float32 arrays for the reference backend, checking it against the
 * tensors the config requires: a missing tensor, an unexpected one or a wrong shape is a
 * WeightsError naming it. Quantized tensors are dequantized here (the reference computes in f32).
 */
import { dequantize } from '../../formats/ggml-quants.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { checkTensorsAgainstConfig, expectedTensors } from '../../model/weights-layout.js';
import { readWeightTree, type BlockOf, type LinearOf, type NormOf, type WeightTree } from '../../model/weight-tree.js';

export type NormWeights = NormOf<Float32Array>;
export type LinearWeights = LinearOf<Float32Array>;
export type BlockWeights = BlockOf<Float32Array>;
export type ReferenceWeights = WeightTree<Float32Array>;

export async function loadReferenceWeights(
  config: MptConfig,
  tensors: TensorSource,
  onProgress?: (done: number, total: number) => void,
): Promise<ReferenceWeights> {
  checkTensorsAgainstConfig(config, tensors);
  const expected = expectedTensors(config);
  const total = expected.reduce((s, e) => s + (tensors.info(e.name)?.byteLength ?? 0), 0);
  let done = 0;
  const get = async (name: string): Promise<Float32Array> => {
    const info = tensors.info(name)!;
    const bytes = await tensors.read(name);
    const count = info.shape.reduce((a, b) => a * b, 1);
    const out = dequantize(info.dtype, bytes, count);
    done += info.byteLength;
    onProgress?.(done, total);
    return out;
  };
  return readWeightTree(config, get);
}
