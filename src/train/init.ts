/**
 * llm-foundry's default initialization of a model trained from scratch (`kaiming_normal_`, fan_in,
 * relu gain: std √(2/fan_in)) for the embedding and every Linear, residual projections (out_proj,
 * down_proj) divided by √(2·n_layers), norm weights 1, biases 0.
 */
import type { Param, ParamSet } from './params.js';
import { Rng } from './rng.js';

export function initializeParams(params: ParamSet, nLayers: number, seed: number): void {
  const tree = params.tree;
  const rng = new Rng(seed);
  const div = Math.sqrt(2 * nLayers);
  const residual = new Set<Param>(tree.blocks.flatMap((b) => [b.outProj.weight, b.downProj.weight]));
  const norms = new Set<Param>();
  const normOf = (n: { weight?: Param } | undefined) => n?.weight && norms.add(n.weight);
  for (const b of tree.blocks) [b.norm1, b.norm2, b.qLn, b.kLn].forEach(normOf);
  normOf(tree.normF);
  // In the state dict's order, which the random stream follows.
  for (const p of params.list) {
    if (p.name.includes('.lora_')) continue;
    if (p.name.endsWith('.bias')) p.data.fill(0);
    else if (norms.has(p)) p.data.fill(1);
    else {
      let std = Math.sqrt(2 / p.shape[1]!);
      if (residual.has(p)) std /= div;
      for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal() * std;
    }
  }
}
