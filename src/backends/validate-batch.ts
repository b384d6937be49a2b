/**
 * The checks every backend with its own KV caches makes on a forward call before touching
 * anything, so that a refused call leaves every cache as it was: caches of this runner, alive,
 * each once, room for the new tokens, a pad mask per token, token ids in the vocabulary.
 */
import { InputError, UnsupportedError } from '../errors.js';
import type { ForwardOptions, KvCache, SequenceInput } from './backend.js';
import type { KvCacheBase } from './kv-cache-base.js';

export function validateBatch<C extends KvCacheBase & KvCache>(
  batch: SequenceInput[],
  options: ForwardOptions,
  vocabSize: number,
  own: (c: KvCache) => c is C,
  backend: string,
): C[] {
  if (options.outputHiddenStates || options.outputAttentions) {
    throw new UnsupportedError(
      'hidden states and attention probabilities are available from the reference backend only',
    );
  }
  const seen = new Set<C>();
  return batch.map((s, i) => {
    const c = s.cache;
    if (!own(c)) throw new InputError(`sequence ${i}: its KV cache was not created by this ${backend} runner`);
    if (c.disposed) throw new InputError(`sequence ${i}: its KV cache has been disposed`);
    if (seen.has(c)) throw new InputError(`sequence ${i}: the same KV cache appears twice in one batch`);
    seen.add(c);
    const T = s.tokens.length;
    if (c.len + T > c.capacity)
      throw new InputError(
        `sequence ${i}: ${c.len} cached + ${T} new tokens exceed the KV cache capacity ${c.capacity}`,
      );
    if (s.padMask && s.padMask.length !== T)
      throw new InputError(`sequence ${i}: padMask has ${s.padMask.length} entries for ${T} tokens`);
    if (s.logits !== undefined && s.logits !== 'all' && s.logits !== 'last' && s.logits !== 'none') {
      throw new InputError(`sequence ${i}: logits must be 'all', 'last' or 'none', got ${String(s.logits)}`);
    }
    for (let t = 0; t < T; t++) {
      const id = s.tokens[t]!;
      if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
        throw new InputError(
          `sequence ${i}: token id ${id} at position ${t} is outside the vocabulary [0, ${vocabSize})`,
        );
      }
    }
    return c;
  });
}
