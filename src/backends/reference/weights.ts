/**
 * Loads an MPT checkpoint into float32 arrays for the reference backend, checking it against the
 * tensors the config requires: a missing tensor, an unexpected one or a wrong shape is a
 * WeightsError naming it. Quantized tensors are dequantized here (the reference computes in f32).
 */
import { WeightsError } from '../../errors.js';
import { dequantize } from '../../formats/ggml-quants.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { blockPrefix, expectedTensors } from '../../model/weights-layout.js';

export interface NormWeights { weight?: Float32Array; bias?: Float32Array }
export interface LinearWeights { weight: Float32Array; bias?: Float32Array }

export interface BlockWeights {
  norm1: NormWeights;
  wqkv: LinearWeights;
  qLn?: NormWeights;
  kLn?: NormWeights;
  outProj: LinearWeights;
  norm2: NormWeights;
  gateProj?: LinearWeights;
  upProj: LinearWeights;
  downProj: LinearWeights;
}

export interface ReferenceWeights {
  wte: Float32Array;
  wpe?: Float32Array;
  blocks: BlockWeights[];
  normF: NormWeights;
  /** The LM head: wte itself when embeddings are tied. */
  lmHead: Float32Array;
}

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
  const opt = async (name: string) => (tensors.info(name) ? get(name) : undefined);
  const bias = !config.noBias;
  const norm = async (name: string): Promise<NormWeights> => ({ weight: await get(`${name}.weight`), bias: bias ? await opt(`${name}.bias`) : undefined });
  const lin = async (name: string): Promise<LinearWeights> => ({ weight: await get(`${name}.weight`), bias: bias ? await get(`${name}.bias`) : undefined });
  const wte = await get('transformer.wte.weight');
  const wpe = config.learnedPosEmb ? await get('transformer.wpe.weight') : undefined;
  const blocks: BlockWeights[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = blockPrefix(l);
    blocks.push({
      norm1: await norm(`${p}norm_1`),
      wqkv: await lin(`${p}attn.Wqkv`),
      qLn: config.attn.qkLn ? await norm(`${p}attn.q_ln`) : undefined,
      kLn: config.attn.qkLn ? await norm(`${p}attn.k_ln`) : undefined,
      outProj: await lin(`${p}attn.out_proj`),
      norm2: await norm(`${p}norm_2`),
      gateProj: config.ffn.ffnType === 'mptglu' ? await lin(`${p}ffn.gate_proj`) : undefined,
      upProj: await lin(`${p}ffn.up_proj`),
      downProj: await lin(`${p}ffn.down_proj`),
    });
  }
  const normF = await norm('transformer.norm_f');
  const lmHead = config.tieWordEmbeddings ? wte : await get('lm_head.weight');
  return { wte, wpe, blocks, normF, lmHead };
}
