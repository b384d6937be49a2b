/**
 * The tensors an MPT checkpoint holds for a given config, with MosaicML's state-dict names and
 * PyTorch shapes. Loaders check a checkpoint against this list: a missing tensor, an unexpected
 * one or a wrong shape is an error naming the tensor.
 */
import type { MptConfig } from './config.js';
import { qkvDim } from './config.js';

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

export function blockPrefix(layer: number): string {
  return `transformer.blocks.${layer}.`;
}

export function expectedTensors(c: MptConfig): ExpectedTensor[] {
  const d = c.dModel;
  const kvd = c.attn.kvNHeads * c.headDim;
  const ff = c.ffn.hiddenSize;
  const bias = !c.noBias;
  const rms = c.normType.includes('rmsnorm');
  const out: ExpectedTensor[] = [{ name: 'transformer.wte.weight', shape: [c.vocabSize, d] }];
  if (c.learnedPosEmb) out.push({ name: 'transformer.wpe.weight', shape: [c.maxSeqLen, d] });
  const norm = (name: string, n: number) => {
    out.push({ name: `${name}.weight`, shape: [n] });
    if (bias && !rms) out.push({ name: `${name}.bias`, shape: [n] });
  };
  const linear = (name: string, o: number, i: number) => {
    out.push({ name: `${name}.weight`, shape: [o, i] });
    if (bias) out.push({ name: `${name}.bias`, shape: [o] });
  };
  for (let l = 0; l < c.nLayers; l++) {
    const p = blockPrefix(l);
    norm(`${p}norm_1`, d);
    linear(`${p}attn.Wqkv`, qkvDim(c), d);
    if (c.attn.qkLn) {
      norm(`${p}attn.q_ln`, d);
      norm(`${p}attn.k_ln`, kvd);
    }
    linear(`${p}attn.out_proj`, d, d);
    norm(`${p}norm_2`, d);
    if (c.ffn.ffnType === 'mptglu') linear(`${p}ffn.gate_proj`, ff, d);
    linear(`${p}ffn.up_proj`, ff, d);
    linear(`${p}ffn.down_proj`, d, ff);
  }
  norm('transformer.norm_f', d);
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [c.vocabSize, d] });
  return out;
}
