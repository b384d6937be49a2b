/** What the trainer's forward, backward and loss read: the model's facts, parameters, vocabulary and kernels. */
import type { MptConfig } from '../model/config.js';
import type { MptFacts } from '../model/facts.js';
import type { WeightTree } from '../model/weight-tree.js';
import type { Kernels } from './kernels.js';
import type { LoraConfig } from './lora-adapters.js';
import type { Param } from './params.js';
import type { CompactVocab } from './vocab.js';

export interface TrainState {
  readonly config: MptConfig;
  readonly facts: MptFacts;
  readonly kernels: Kernels;
  readonly vocab: CompactVocab;
  /** The parameters as the forward pass reads them. */
  readonly tree: WeightTree<Param>;
  readonly lora: LoraConfig | null;
}
