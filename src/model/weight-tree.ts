/**
 * The tensors of an MPT checkpoint arranged as the forward pass reads them (embedding, blocks,
 * final norm, LM head), whatever a backend holds for each one: f32 arrays (reference), GPU
 * buffers (webgpu). `readWeightTree` walks the canonical names once, in file order.
 */
import type { MptConfig } from './config.js';
import { blockPrefix } from './weights-layout.js';

export interface NormOf<T> {
  weight?: T;
  bias?: T;
}
export interface LinearOf<T> {
  weight: T;
  bias?: T;
}

export interface BlockOf<T> {
  norm1: NormOf<T>;
  wqkv: LinearOf<T>;
  qLn?: NormOf<T>;
  kLn?: NormOf<T>;
  outProj: LinearOf<T>;
  norm2: NormOf<T>;
  gateProj?: LinearOf<T>;
  upProj: LinearOf<T>;
  downProj: LinearOf<T>;
}

export interface WeightTree<T> {
  wte: T;
  wpe?: T;
  blocks: BlockOf<T>[];
  normF: NormOf<T>;
  /** The LM head: wte itself when embeddings are tied. */
  lmHead: T;
}

/** Reads every tensor the config uses through `get` (`has` tells whether an optional one exists). */
export async function readWeightTree<T>(
  config: MptConfig,
  has: (name: string) => boolean,
  get: (name: string) => Promise<T>,
): Promise<WeightTree<T>> {
  const opt = async (name: string) => (has(name) ? get(name) : undefined);
  const bias = !config.noBias;
  const norm = async (name: string): Promise<NormOf<T>> => ({
    weight: await get(`${name}.weight`),
    bias: bias ? await opt(`${name}.bias`) : undefined,
  });
  const lin = async (name: string): Promise<LinearOf<T>> => ({
    weight: await get(`${name}.weight`),
    bias: bias ? await get(`${name}.bias`) : undefined,
  });
  const wte = await get('transformer.wte.weight');
  const wpe = config.learnedPosEmb ? await get('transformer.wpe.weight') : undefined;
  const blocks: BlockOf<T>[] = [];
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
