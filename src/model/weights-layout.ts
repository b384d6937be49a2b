/**
 * The tensors an MPT checkpoint holds for a given config, with MosaicML's state-dict names and
 * PyTorch shapes. Loaders check a checkpoint against this list: a missing tensor, an unexpected
 * one or a wrong shape is an error naming the tensor.
 */
import { WeightsError } from '../errors.js';
import type { TensorSource } from '../formats/tensor-source.js';
import type { MptConfig } from './config.js';
import { qkvDim } from './config.js';
import { mptFacts } from './facts.js';

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

export function blockPrefix(layer: number): string {
  return `transformer.blocks.${layer}.`;
}

/**
 * The tensors a config requires, in forward order, one at a time: a config may claim far more
 * layers than any checkpoint holds, so callers that check a checkpoint stop at the first one missing.
 */
export function* eachExpectedTensor(c: MptConfig): Generator<ExpectedTensor> {
  const d = c.dModel;
  const f = mptFacts(c);
  const kvd = f.kvDim;
  const ff = c.ffn.hiddenSize;
  const bias = !c.noBias;
  function* norm(name: string, n: number): Generator<ExpectedTensor> {
    yield { name: `${name}.weight`, shape: [n] };
    if (f.norm.bias) yield { name: `${name}.bias`, shape: [n] };
  }
  function* linear(name: string, o: number, i: number): Generator<ExpectedTensor> {
    yield { name: `${name}.weight`, shape: [o, i] };
    if (bias) yield { name: `${name}.bias`, shape: [o] };
  }
  yield { name: 'transformer.wte.weight', shape: [c.vocabSize, d] };
  if (c.learnedPosEmb) yield { name: 'transformer.wpe.weight', shape: [c.maxSeqLen, d] };
  for (let l = 0; l < c.nLayers; l++) {
    const p = blockPrefix(l);
    yield* norm(`${p}norm_1`, d);
    yield* linear(`${p}attn.Wqkv`, qkvDim(c), d);
    if (c.attn.qkLn) {
      yield* norm(`${p}attn.q_ln`, d);
      yield* norm(`${p}attn.k_ln`, kvd);
    }
    yield* linear(`${p}attn.out_proj`, d, d);
    yield* norm(`${p}norm_2`, d);
    if (c.ffn.ffnType === 'mptglu') yield* linear(`${p}ffn.gate_proj`, ff, d);
    yield* linear(`${p}ffn.up_proj`, ff, d);
    yield* linear(`${p}ffn.down_proj`, d, ff);
  }
  yield* norm('transformer.norm_f', d);
  if (!c.tieWordEmbeddings) yield { name: 'lm_head.weight', shape: [c.vocabSize, d] };
}

/** Every tensor a config requires (for a config already checked against a checkpoint, or a random one). */
export function expectedTensors(c: MptConfig): ExpectedTensor[] {
  return [...eachExpectedTensor(c)];
}

/**
 * Checks a checkpoint's tensors against its config before anything sized by the config exists:
 * the first missing tensor, wrong shape or unexpected tensor is a WeightsError naming it (and
 * `where`, the checkpoint). Every size in the config that a tensor carries (d_model, vocab_size,
 * n_layers, heads, MLP width, a learned max_seq_len) is thereby bounded by the file.
 */
export function checkTensorsAgainstConfig(c: MptConfig, tensors: TensorSource, where?: string): void {
  const at = where ? `${where}: ` : '';
  const expected = new Set<string>();
  for (const e of eachExpectedTensor(c)) {
    const info = tensors.info(e.name);
    if (!info) throw new WeightsError(`${at}missing tensor ${e.name} (shape [${e.shape}]) required by the config`);
    if (info.shape.length !== e.shape.length || info.shape.some((s, i) => s !== e.shape[i])) {
      throw new WeightsError(`${at}tensor ${e.name} has shape [${info.shape}], but the config requires [${e.shape}]`);
    }
    expected.add(e.name);
  }
  for (const info of tensors.list()) {
    // HF may save the tied head; it duplicates wte and is not used.
    if (expected.has(info.name) || (info.name === 'lm_head.weight' && c.tieWordEmbeddings)) continue;
    const hint = 'the config does not use it (check config.json against the weights)';
    throw new WeightsError(`${at}unexpected tensor ${info.name} [${info.shape}]: ${hint}`);
  }
}
