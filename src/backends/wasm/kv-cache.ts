/**
 * A KV cache of the wasm backend: per arena, a region holding the validity byte of every position
 * and the keys and values of the layers that arena holds (layout.ts kvRegionBytes). The runner
 * that made it frees the regions when it is disposed.
 */
import type { KvCache, KvType } from '../backend.js';
import { KvCacheBase } from '../kv-cache-base.js';

/** What made a cache and takes its regions back (the runner). */
export interface KvCacheOwner {
  releaseCache(cache: WasmKvCache): void;
}

export class WasmKvCache extends KvCacheBase implements KvCache {
  /** @internal */
  constructor(
    readonly runner: KvCacheOwner,
    readonly capacity: number,
    readonly kvType: KvType,
    /** Per arena: byte offset of this cache's region (0 where the arena holds no layer). */
    readonly regions: number[],
    readonly sizes: number[],
  ) {
    super();
  }

  protected release(): void {
    this.runner.releaseCache(this);
  }
}
