/**
 * KV snapshots of the wasm backend's caches (see `KvSnapshot` in ../backend.ts), for the prompt
 * cache. A wasm cache region keeps, per layer, keys as [kv_heads][capacity][head_dim] f32 and
 * the values after them in the same layout, plus one validity byte per position at the start of
 * the region (layout.ts); a snapshot row is [position, kv_heads * head_dim].
 */
import { InputError } from '../../errors.js';
import type { KvCacheOptions, KvSnapshot } from '../backend.js';
import { kvLayerOffset } from './layout.js';
import { WasmKvCache, type WasmRunner } from './runner.js';

interface LayerPlace { arena: number; keys: number; values: number; cap: number }

function place(runner: WasmRunner, cache: WasmKvCache, l: number): LayerPlace {
  const c = runner.config;
  const ly = runner.layout.layers[l]!;
  const base = cache.regions[ly.arena]! + kvLayerOffset(c, ly.slot, cache.capacity);
  return { arena: ly.arena, keys: base, values: base + cache.capacity * c.attn.kvNHeads * c.headDim * 4, cap: cache.capacity };
}

function checkCache(runner: WasmRunner, cache: unknown): WasmKvCache {
  if (!(cache instanceof WasmKvCache) || cache.runner !== runner) throw new InputError('this KV cache was not created by this wasm runner');
  if (cache.disposed) throw new InputError('this KV cache has been disposed');
  return cache;
}

/** Reads the filled positions of a wasm cache (each layer is copied out when asked for). */
export function snapshotWasmCache(runner: WasmRunner, cacheIn: unknown): KvSnapshot {
  const cache = checkCache(runner, cacheIn);
  const c = runner.config, kvH = c.attn.kvNHeads, hd = c.headDim, kvd = kvH * hd;
  const n = cache.length;
  const a0 = cache.regions.findIndex((r) => r !== 0);
  const padMask = runner.arenas.u8(a0).slice(cache.regions[a0]!, cache.regions[a0]! + n);
  const readRows = (arena: number, start: number, cap: number): Float32Array => {
    const mem = runner.arenas.f32(arena);
    const out = new Float32Array(n * kvd);
    for (let g = 0; g < kvH; g++) {
      const src = start / 4 + g * cap * hd;
      for (let p = 0; p < n; p++) out.set(mem.subarray(src + p * hd, src + (p + 1) * hd), p * kvd + g * hd);
    }
    return out;
  };
  return {
    kvType: cache.kvType,
    length: n,
    nLayers: c.nLayers,
    kvDim: kvd,
    padMask,
    layer: (l) => {
      if (!Number.isInteger(l) || l < 0 || l >= c.nLayers) throw new InputError(`no layer ${l} in a ${c.nLayers}-layer snapshot`);
      if (cache.disposed || cache.length !== n) throw new InputError('the KV cache changed after the snapshot was taken');
      const p = place(runner, cache, l);
      return { keys: readRows(p.arena, p.keys, p.cap), values: readRows(p.arena, p.values, p.cap) };
    },
  };
}

/** A new wasm cache holding a snapshot's positions. */
export function restoreWasmCache(runner: WasmRunner, snap: KvSnapshot, options: KvCacheOptions): WasmKvCache {
  const c = runner.config, kvH = c.attn.kvNHeads, hd = c.headDim, kvd = kvH * hd;
  if (snap.nLayers !== c.nLayers || snap.kvDim !== kvd) {
    throw new InputError(`KV snapshot of ${snap.nLayers} layers x ${snap.kvDim} does not fit this model (${c.nLayers} layers x ${kvd})`);
  }
  const n = snap.length;
  if (options.capacity < n) throw new InputError(`KV snapshot of ${n} positions does not fit a cache of capacity ${options.capacity}`);
  const cache = checkCache(runner, runner.createCache({ capacity: options.capacity, kvType: options.kvType ?? snap.kvType }));
  try {
    cache.regions.forEach((r, a) => { if (r) runner.arenas.u8(a).set(snap.padMask.subarray(0, n), r); });
    for (let l = 0; l < c.nLayers; l++) {
      const { keys, values } = snap.layer(l);
      if (keys.length < n * kvd || values.length < n * kvd) throw new InputError(`KV snapshot layer ${l} holds fewer than ${n} positions`);
      const p = place(runner, cache, l);
      const mem = runner.arenas.f32(p.arena);
      for (const [rows, start] of [[keys, p.keys], [values, p.values]] as const) {
        for (let g = 0; g < kvH; g++) {
          const dst = start / 4 + g * p.cap * hd;
          for (let q = 0; q < n; q++) mem.set(rows.subarray(q * kvd + g * hd, q * kvd + (g + 1) * hd), dst + q * hd);
        }
      }
    }
    cache.len = n;
    return cache;
  } catch (e) {
    cache.dispose();
    throw e;
  }
}
