/**
 * The tensors of an MPT checkpoint arranged as the forward pass reads them (embedding, blocks,
 * final norm, LM head), whatever a backend holds for each one: f32 arrays (reference), GPU
 * buffers (webgpu), `Param`s (the trainer). `weightNames` is the arrangement, once; `mapWeightTree`
 * and `readWeightTree` fill it.
 */
import type { MptConfig } from './config.js';
import { mptFacts } from './facts.js';
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

/** The canonical tensor names of a config, arranged as the forward pass reads them. */
export function weightNames(config: MptConfig): WeightTree<string> {
  const f = mptFacts(config);
  const linearBias = !config.noBias;
  const norm = (name: string): NormOf<string> => ({
    weight: `${name}.weight`,
    bias: f.norm.bias ? `${name}.bias` : undefined,
  });
  const lin = (name: string): LinearOf<string> => ({
    weight: `${name}.weight`,
    bias: linearBias ? `${name}.bias` : undefined,
  });
  const blocks: BlockOf<string>[] = [];
  for (let l = 0; l < config.nLayers; l++) {
    const p = blockPrefix(l);
    blocks.push({
      norm1: norm(`${p}norm_1`),
      wqkv: lin(`${p}attn.Wqkv`),
      qLn: f.qkLn ? norm(`${p}attn.q_ln`) : undefined,
      kLn: f.qkLn ? norm(`${p}attn.k_ln`) : undefined,
      outProj: lin(`${p}attn.out_proj`),
      norm2: norm(`${p}norm_2`),
      gateProj: f.glu ? lin(`${p}ffn.gate_proj`) : undefined,
      upProj: lin(`${p}ffn.up_proj`),
      downProj: lin(`${p}ffn.down_proj`),
    });
  }
  const wte = 'transformer.wte.weight';
  return {
    wte,
    wpe: f.learnedPositions ? 'transformer.wpe.weight' : undefined,
    blocks,
    normF: norm('transformer.norm_f'),
    lmHead: f.tiedHead ? wte : 'lm_head.weight',
  };
}

/** The tree with every tensor replaced by `fn(tensor)`, in forward order; a tied head stays the embedding itself. */
export function mapWeightTree<A, B>(tree: WeightTree<A>, fn: (a: A) => B): WeightTree<B> {
  const opt = (a: A | undefined) => (a === undefined ? undefined : fn(a));
  const norm = (n: NormOf<A>): NormOf<B> => ({ weight: opt(n.weight), bias: opt(n.bias) });
  const lin = (m: LinearOf<A>): LinearOf<B> => ({ weight: fn(m.weight), bias: opt(m.bias) });
  const normOpt = (n: NormOf<A> | undefined) => (n ? norm(n) : undefined);
  const linOpt = (m: LinearOf<A> | undefined) => (m ? lin(m) : undefined);
  const wte = fn(tree.wte);
  const wpe = opt(tree.wpe);
  const blocks = tree.blocks.map(
    (b): BlockOf<B> => ({
      norm1: norm(b.norm1),
      wqkv: lin(b.wqkv),
      qLn: normOpt(b.qLn),
      kLn: normOpt(b.kLn),
      outProj: lin(b.outProj),
      norm2: norm(b.norm2),
      gateProj: linOpt(b.gateProj),
      upProj: lin(b.upProj),
      downProj: lin(b.downProj),
    }),
  );
  const normF = norm(tree.normF);
  const lmHead = tree.lmHead === tree.wte ? wte : fn(tree.lmHead);
  return { wte, wpe, blocks, normF, lmHead };
}

/** Reads every tensor the config uses through `get`, one at a time in file order. */
export async function readWeightTree<T>(config: MptConfig, get: (name: string) => Promise<T>): Promise<WeightTree<T>> {
  const names = weightNames(config);
  const read = new Map<string, T>();
  mapWeightTree(names, (name) => read.set(name, undefined as T));
  for (const name of read.keys()) read.set(name, await get(name));
  return mapWeightTree(names, (name) => read.get(name)!);
}
