/**
 * What the KV caches of the wasm and WebGPU backends share: a length that forward calls grow and
 * `truncate` shrinks, checked the same way, and a dispose that frees the memory once.
 */
import { InputError } from '../errors.js';

export abstract class KvCacheBase {
  /** @internal positions held */ len = 0;
  /** @internal */ disposed = false;
  abstract readonly capacity: number;

  get length(): number {
    return this.len;
  }

  truncate(n: number): void {
    if (this.disposed) throw new InputError('this KV cache was disposed');
    if (!Number.isInteger(n) || n < 0 || n > this.len)
      throw new InputError(`cannot truncate a cache of length ${this.len} to ${n}`);
    this.len = n;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.release();
  }

  /** Frees the cache's memory (called once). */
  protected abstract release(): void;
}
