/**
 * Loads an MPT checkpoint into float32 arrays for the reference backend, checking it against the
 * tensors the config requires: a missing tensor, an unexpected one or a wrong shape is a
 * WeightsError naming it. Quantized tensors are dequantized here (the reference computes in f32).
 */
import { WeightsError } from '../../errors.js';
import { dequantize } from '../../formats/ggml-quants.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { expectedTensors } from '../../model/weights-layout.js';
import { readWeightTree, type BlockOf, type LinearOf, type NormOf, type WeightTree } from '../../model/weight-tree.js';

export type NormWeights = NormOf<Float32Array>;
export type LinearWeights = LinearOf<Float32Array>;
export type BlockWeights = BlockOf<Float32Array>;
export type ReferenceWeights = WeightTree<Float32Array>;

/** Checks a tensor source against the config's expected tensors (names and shapes). */
export function checkTensorSource(config: MptConfig, tensors: TensorSource): void {
  const expected = expectedTensors(config);
  const names = new Set(expected.map((e) => e.name));
  for (const e of expected) {
    const info = tensors.info(e.name);
    if (!info) throw new WeightsError(`missing tensor ${e.name} (shape [${e.shape}]) required by the config`);
    if (info.shape.length !== e.shape.length || info.shape.some((s, i) => s !== e.shape[i])) {
      throw new WeightsError(`tensor ${e.name} has shape [${info.shape}], but the config requires [${e.shape}]`);
    }
  }
  for (const info of tensors.list()) {
    if (names.has(info.name)) continue;
    // HF may save the tied head; it duplicates wte and is not used.
    if (info.name === 'lm_head.weight' && config.tieWordEmbeddings) continue;
    throw new WeightsError(`unexpected tensor ${info.name} [${info.shape}]: the config does not use it (check config.json against the weights)`);
  }
}

export async function loadReferenceWeights(config: MptConfig, tensors: TensorSource, onProgress?: (done: number, total: number) => void): Promise<ReferenceWeights> {
  checkTensorSource(config, tensors);
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
  return readWeightTree(config, (name) => !!tensors.info(name), get);
}
