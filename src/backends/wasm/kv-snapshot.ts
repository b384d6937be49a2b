/**
 * KV snapshots of the wasm backend's caches (see `KvSnapshot` in ../backend.ts), for the prompt
 * cache. A wasm cache region keeps one validity byte per position, then per layer the keys and
 * after them the values, stored as the cache's KV type (layout.ts kvGeometry: f32, fp16 or q8_0
 * blocks). A snapshot row is [position, kv_heads * head_dim] f32: the stored values widened
 * exactly (load_kv_row), so storing them again through the same type gives the same bytes and a
 * save / restore round trip is exact; a snapshot restored into a cache of another type is
 * rounded through that type, as the reference backend does.
 */
import { InputError } from '../../errors.js';
import type { MptConfig } from '../../model/config.js';
import { mptFacts } from '../../model/facts.js';
import type { KvCache, KvCacheOptions, KvSnapshot } from '../backend.js';
import type { Arenas } from './arenas.js';
import { type KvCacheOwner, WasmKvCache } from './kv-cache.js';
import { kvGeometry, kvLayerOffset, type KvGeometry, type ModelLayout } from './layout.js';

/** The runner as snapshots see it: its layout, its arenas, and making a cache. */
export interface SnapshotRunner extends KvCacheOwner {
  readonly config: MptConfig;
  readonly layout: ModelLayout;
  readonly arenas: Arenas;
  createCache(options: KvCacheOptions): KvCache;
}

/** Positions converted per kernel round trip through the scratch rows. */
const CHUNK = 256;

interface LayerPlace {
  arena: number;
  keys: number;
  values: number;
  cap: number;
  geo: KvGeometry;
}

function place(runner: SnapshotRunner, cache: WasmKvCache, l: number): LayerPlace {
  const c = runner.config;
  const ly = runner.layout.layers[l]!;
  const geo = kvGeometry(c, cache.kvType);
  const base = cache.regions[ly.arena]! + kvLayerOffset(c, ly.slot, cache.capacity, cache.kvType);
  return { arena: ly.arena, keys: base, values: base + cache.capacity * geo.rowBytes, cap: cache.capacity, geo };
}

function checkCache(runner: SnapshotRunner, cache: unknown): WasmKvCache {
  if (!(cache instanceof WasmKvCache) || cache.runner !== runner)
    throw new InputError('this KV cache was not created by this wasm runner');
  if (cache.disposed) throw new InputError('this KV cache has been disposed');
  return cache;
}

/** Runs fn with `bytes` of temporary space in an arena (main thread; workers never touch it). */
function withScratch<T>(runner: SnapshotRunner, arena: number, bytes: number, fn: (ptr: number) => T): T {
  const ptr = runner.arenas.alloc(arena, bytes);
  try {
    return fn(ptr);
  } finally {
    runner.arenas.release(arena, ptr, bytes);
  }
}

/** Reads the filled positions of a wasm cache (each layer is decoded when asked for). */
export function snapshotWasmCache(runner: SnapshotRunner, cacheIn: unknown): KvSnapshot {
  const cache = checkCache(runner, cacheIn);
  const c = runner.config,
    kvd = mptFacts(c).kvDim;
  const n = cache.length;
  const a0 = cache.regions.findIndex((r) => r !== 0);
  const padMask = runner.arenas.u8(a0).slice(cache.regions[a0]!, cache.regions[a0]! + n);
  const readRows = (p: LayerPlace, part: number): Float32Array => {
    const out = new Float32Array(n * kvd);
    const k = runner.arenas.kernels[p.arena]!;
    withScratch(runner, p.arena, CHUNK * kvd * 4, (tmp) => {
      for (let q0 = 0; q0 < n; q0 += CHUNK) {
        const m = Math.min(CHUNK, n - q0);
        for (let i = 0; i < m; i++) k.load_kv_row(part, kvd, p.geo.seg, p.geo.mode, p.cap, q0 + i, tmp + i * kvd * 4);
        out.set(runner.arenas.f32(p.arena).subarray(tmp / 4, tmp / 4 + m * kvd), q0 * kvd);
      }
    });
    return out;
  };
  return {
    kvType: cache.kvType,
    length: n,
    nLayers: c.nLayers,
    kvDim: kvd,
    padMask,
    layer: (l) => {
      if (!Number.isInteger(l) || l < 0 || l >= c.nLayers)
        throw new InputError(`no layer ${l} in a ${c.nLayers}-layer snapshot`);
      if (cache.disposed || cache.length !== n)
        throw new InputError('the KV cache changed after the snapshot was taken');
      const p = place(runner, cache, l);
      return { keys: readRows(p, p.keys), values: readRows(p, p.values) };
    },
  };
}

/** A new wasm cache holding a snapshot's positions (stored through the cache's KV type). */
export function restoreWasmCache(runner: SnapshotRunner, snap: KvSnapshot, options: KvCacheOptions): WasmKvCache {
  const c = runner.config,
    kvd = mptFacts(c).kvDim;
  if (snap.nLayers !== c.nLayers || snap.kvDim !== kvd) {
    throw new InputError(
      `KV snapshot of ${snap.nLayers} layers x ${snap.kvDim} does not fit this model (${c.nLayers} layers x ${kvd})`,
    );
  }
  const n = snap.length;
  if (options.capacity < n)
    throw new InputError(`KV snapshot of ${n} positions does not fit a cache of capacity ${options.capacity}`);
  const cache = checkCache(
    runner,
    runner.createCache({ capacity: options.capacity, kvType: options.kvType ?? snap.kvType }),
  );
  try {
    cache.regions.forEach((r, a) => {
      if (r) runner.arenas.u8(a).set(snap.padMask.subarray(0, n), r);
    });
    for (let l = 0; l < c.nLayers; l++) {
      const { keys, values } = snap.layer(l);
      if (keys.length < n * kvd || values.length < n * kvd)
        throw new InputError(`KV snapshot layer ${l} holds fewer than ${n} positions`);
      const p = place(runner, cache, l);
      const k = runner.arenas.kernels[p.arena]!;
      withScratch(runner, p.arena, CHUNK * kvd * 4, (tmp) => {
        for (const [rows, part] of [
          [keys, p.keys],
          [values, p.values],
        ] as const) {
          for (let q0 = 0; q0 < n; q0 += CHUNK) {
            const m = Math.min(CHUNK, n - q0);
            runner.arenas.f32(p.arena).set(rows.subarray(q0 * kvd, (q0 + m) * kvd), tmp / 4);
            for (let i = 0; i < m; i++)
              k.store_kv_row(tmp + i * kvd * 4, kvd, p.geo.seg, p.geo.mode, part, p.cap, q0 + i);
          }
        }
      });
    }
    cache.len = n;
    return cache;
  } catch (e) {
    cache.dispose();
    throw e;
  }
}
