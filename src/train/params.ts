/**
 * The trainer's parameters: one f32 array per tensor of the checkpoint, under MosaicML's
 * state-dict names, in `named_parameters()` order (the tensor list of model/weights-layout.ts), and
 * the same parameters arranged as the forward pass reads them (model/weight-tree.ts), so the hot
 * loops never look a tensor up by name.
 */
import type { MptConfig } from '../model/config.js';
import { mapWeightTree, weightNames, type WeightTree } from '../model/weight-tree.js';
import { eachExpectedTensor } from '../model/weights-layout.js';
import { InputError } from '../errors.js';
import type { Kernels } from './kernels.js';

export interface Param {
  name: string;
  shape: number[];
  data: Float32Array;
  /** Gradient accumulator (allocated for trainable parameters). */
  grad: Float32Array | null;
  trainable: boolean;
  /**
   * How many copies of each element the full-size model holds (the shared row of a compact
   * vocabulary counts m times in the global gradient norm). Per element; null = 1 everywhere.
   */
  multiplicity?: (index: number) => number;
  /** A Linear weight's LoRA adapter (lora-adapters.ts): y += (alpha / rank) · B A x. */
  adapter?: { A: Param; B: Param };
}

/**
 * Expected parameter names and shapes, in MosaicML's `named_parameters()` order: the checkpoint's
 * tensor list, with `embRows` rows of the embedding (a compact vocabulary's, vocab.ts).
 */
export function parameterShapes(c: MptConfig, embRows = c.vocabSize): Array<[string, number[]]> {
  const out: Array<[string, number[]]> = [];
  for (const t of eachExpectedTensor(c))
    out.push([t.name, t.name === 'transformer.wte.weight' ? [embRows, t.shape[1]!] : t.shape]);
  return out;
}

/** The parameters of a model: in order, by name, and as the forward pass reads them. */
export class ParamSet {
  readonly list: Param[];
  readonly byName = new Map<string, Param>();
  /** The base weights as the forward pass reads them (adapters hang on their Linear's weight). */
  readonly tree: WeightTree<Param>;

  constructor(config: MptConfig, embRows: number, kernels: Kernels) {
    this.list = parameterShapes(config, embRows).map(([name, shape]) => ({
      name,
      shape,
      data: kernels.alloc(shape.reduce((a, b) => a * b, 1)),
      grad: null,
      trainable: true,
    }));
    for (const p of this.list) this.byName.set(p.name, p);
    this.tree = mapWeightTree(weightNames(config), (name) => this.get(name));
  }

  get(name: string): Param {
    const p = this.byName.get(name);
    if (!p) throw new InputError(`no parameter ${name}`);
    return p;
  }

  add(p: Param): void {
    this.list.push(p);
    this.byName.set(p.name, p);
  }

  /** Removes the parameters `drop` selects. */
  remove(drop: (p: Param) => boolean): void {
    for (let k = this.list.length - 1; k >= 0; k--) {
      const p = this.list[k]!;
      if (drop(p)) {
        this.byName.delete(p.name);
        this.list.splice(k, 1);
      }
    }
  }
}
