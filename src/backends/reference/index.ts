/**
 * The reference backend: plain TypeScript, float32 weights, float64 sums. Slow, exact, readable;
 * every fast backend is tested against it.
 */
import { InputError } from '../../errors.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { mptFacts } from '../../model/facts.js';
import type {
  Backend,
  ForwardOptions,
  KvCache,
  KvCacheOptions,
  KvSnapshot,
  LoadRunnerOptions,
  ModelRunner,
  SequenceInput,
  SequenceOutput,
} from '../backend.js';
import { ReferenceModel } from './forward.js';
import { ReferenceKvCache } from './kv-cache.js';
import { restoreReferenceCache, snapshotReferenceCache } from './kv-snapshot.js';
import { loadReferenceWeights, type ReferenceWeights } from './weights.js';

export class ReferenceRunner implements ModelRunner {
  readonly backendName = 'reference';
  readonly model: ReferenceModel;

  constructor(
    readonly config: MptConfig,
    weights: ReferenceWeights,
  ) {
    this.model = new ReferenceModel(config, weights);
  }

  createCache(options: KvCacheOptions): KvCache {
    const c = this.config;
    return new ReferenceKvCache(c.nLayers, mptFacts(c).kvDim, options.capacity, options.kvType ?? 'f32');
  }

  async forward(batch: SequenceInput[], options: ForwardOptions): Promise<SequenceOutput[]> {
    return batch.map((s) => {
      if (!(s.cache instanceof ReferenceKvCache))
        throw new InputError('this KV cache was not created by the reference backend');
      if (s.padMask && s.padMask.length !== s.tokens.length)
        throw new InputError(`padMask has ${s.padMask.length} entries for ${s.tokens.length} tokens`);
      return this.model.forward(s.cache, s.tokens, s.padMask, s.logits ? { ...options, logits: s.logits } : options);
    });
  }

  async dispose(): Promise<void> {}

  // Prompt cache support (kv-snapshot.ts).
  saveCache(cache: KvCache): KvSnapshot {
    if (!(cache instanceof ReferenceKvCache))
      throw new InputError('this KV cache was not created by the reference backend');
    return snapshotReferenceCache(cache);
  }

  restoreCache(snapshot: KvSnapshot, options: KvCacheOptions): KvCache {
    const c = this.config;
    return restoreReferenceCache(c.nLayers, mptFacts(c).kvDim, snapshot, options);
  }
}

export const referenceBackend: Backend = {
  name: 'reference',
  async load(config: MptConfig, tensors: TensorSource, options?: LoadRunnerOptions): Promise<ModelRunner> {
    const weights = await loadReferenceWeights(config, tensors, options?.onProgress);
    return new ReferenceRunner(config, weights);
  },
};

export { ReferenceKvCache, ReferenceModel };
export type { ReferenceWeights };
