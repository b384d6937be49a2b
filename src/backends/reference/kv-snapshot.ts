/**
 * KV snapshots of the reference backend's caches (see `KvSnapshot` in ../backend.ts): what the
 * prompt cache saves to a file and restores. The reference cache already keeps rows as
 * [position, kvDim] float32 values, so a snapshot is a copy of the filled part of each layer.
 */
import { InputError } from '../../errors.js';
import type { KvCacheOptions, KvSnapshot } from '../backend.js';
import { ReferenceKvCache } from './kv-cache.js';

/** Copies the filled positions of a reference cache. */
export function snapshotReferenceCache(cache: ReferenceKvCache): KvSnapshot {
  const n = cache.length,
    kvd = cache.kvDim;
  const keys = cache.keys.map((k) => k.slice(0, n * kvd));
  const values = cache.values.map((v) => v.slice(0, n * kvd));
  return {
    kvType: cache.kvType,
    length: n,
    nLayers: cache.nLayers,
    kvDim: kvd,
    padMask: cache.padMask.slice(0, n),
    layer: (l) => {
      if (!Number.isInteger(l) || l < 0 || l >= cache.nLayers)
        throw new InputError(`no layer ${l} in a ${cache.nLayers}-layer snapshot`);
      return { keys: keys[l]!, values: values[l]! };
    },
  };
}

/**
 * A new reference cache holding a snapshot. A snapshot of another KV type is rounded through
 * the new cache's type, as if its positions had been computed with it.
 */
export function restoreReferenceCache(
  nLayers: number,
  kvDim: number,
  snap: KvSnapshot,
  options: KvCacheOptions,
): ReferenceKvCache {
  if (snap.nLayers !== nLayers || snap.kvDim !== kvDim) {
    throw new InputError(
      `KV snapshot of ${snap.nLayers} layers x ${snap.kvDim} does not fit this model (${nLayers} layers x ${kvDim})`,
    );
  }
  if (options.capacity < snap.length)
    throw new InputError(
      `KV snapshot of ${snap.length} positions does not fit a cache of capacity ${options.capacity}`,
    );
  const kvType = options.kvType ?? snap.kvType;
  const cache = new ReferenceKvCache(nLayers, kvDim, options.capacity, kvType);
  const n = snap.length;
  if (n === 0) return cache;
  cache.reserve(n);
  cache.padMask.set(snap.padMask.subarray(0, n));
  for (let l = 0; l < nLayers; l++) {
    const { keys, values } = snap.layer(l);
    if (keys.length < n * kvDim || values.length < n * kvDim)
      throw new InputError(`KV snapshot layer ${l} holds fewer than ${n} positions`);
    if (kvType === snap.kvType) {
      cache.keys[l]!.set(keys.subarray(0, n * kvDim));
      cache.values[l]!.set(values.subarray(0, n * kvDim));
    } else {
      const k64 = Float64Array.from(keys.subarray(0, n * kvDim));
      const v64 = Float64Array.from(values.subarray(0, n * kvDim));
      for (let p = 0; p < n; p++) cache.write(l, p, k64, p * kvDim, v64, p * kvDim);
    }
  }
  cache.commit(n);
  return cache;
}
