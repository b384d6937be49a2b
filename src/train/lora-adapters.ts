/**
 * LoRA adapters inside the trainable model: y = W x + (alpha / rank) · B A x on the chosen Linear
 * layers, A drawn like a Linear's weight, B zero, everything else frozen; merging folds B A into W.
 * (The PEFT file layout is lora.ts.)
 */
import type { WeightTree } from '../model/weight-tree.js';
import type { Kernels } from './kernels.js';
import type { Param, ParamSet } from './params.js';
import { Rng } from './rng.js';

/** LoRA adapter settings: y = W x + (alpha / rank) · B A x on the chosen Linear layers. */
export interface LoraConfig {
  rank: number;
  alpha: number;
  /** Which Linear layers get adapters, by short name. */
  targets: Array<'Wqkv' | 'out_proj' | 'up_proj' | 'down_proj'>;
}

/** The Linear weight a target names in a block. */
function targetWeight(tree: WeightTree<Param>, layer: number, t: LoraConfig['targets'][number]): Param {
  const b = tree.blocks[layer]!;
  return (t === 'Wqkv' ? b.wqkv : t === 'out_proj' ? b.outProj : t === 'up_proj' ? b.upProj : b.downProj).weight;
}

/** Adds adapters (A ~ normal with std 1/√in, B = 0) and freezes every other parameter. */
export function addAdapters(params: ParamSet, cfg: LoraConfig, kernels: Kernels, seed: number): void {
  const rng = new Rng(seed);
  for (const p of params.list) {
    p.trainable = false;
    p.grad = null;
  }
  for (let l = 0; l < params.tree.blocks.length; l++) {
    for (const t of cfg.targets) {
      const W = targetWeight(params.tree, l, t);
      const [o, i] = W.shape as [number, number];
      const base = W.name.slice(0, -'.weight'.length);
      const A: Param = {
        name: `${base}.lora_A`,
        shape: [cfg.rank, i],
        data: kernels.alloc(cfg.rank * i),
        grad: null,
        trainable: true,
      };
      const B: Param = {
        name: `${base}.lora_B`,
        shape: [o, cfg.rank],
        data: kernels.alloc(o * cfg.rank),
        grad: null,
        trainable: true,
      };
      const std = 1 / Math.sqrt(i);
      for (let k = 0; k < A.data.length; k++) A.data[k] = rng.normal() * std;
      params.add(A);
      params.add(B);
      W.adapter = { A, B };
    }
  }
}

/** Folds every adapter into its base weight (W += alpha/r · B A), removes the adapters and unfreezes the model. */
export function mergeAdapters(params: ParamSet, cfg: LoraConfig, kernels: Kernels): void {
  const s = cfg.alpha / cfg.rank;
  for (const W of params.list) {
    if (!W.adapter) continue;
    const [o, i] = W.shape as [number, number];
    const delta = new Float32Array(o * i);
    kernels.matmul(delta, W.adapter.B.data, W.adapter.A.data, o, i, cfg.rank);
    for (let k = 0; k < delta.length; k++) W.data[k]! += s * delta[k]!;
    W.adapter = undefined;
  }
  params.remove((p) => p.name.includes('.lora_'));
  for (const p of params.list) p.trainable = true;
}
