/**
 * The wasm backend stores its KV cache in the cache's type (f32, fp16, ggml q8_0 blocks), so a
 * long context takes the memory the planner counts:
 *  - kernels: the bytes store_kv writes are fp16 bits / q8_0 blocks exactly as dtypes.ts and
 *    ggml-quants.ts (independent implementations) encode the row; attention reading the stored
 *    type equals, bit for bit, f32 attention over the rows round_kv rounds (what the backend
 *    computed before it stored the type), for head_dim not a multiple of 32 (heads that start
 *    inside a q8_0 block, short last blocks) and key counts on both sides of the 32-key tiles;
 *  - memory: the bytes a cache takes (its regions, and the growth of the wasm memories) equal
 *    the memory planner's kvCacheBytes plus the validity bytes and alignment;
 *  - the model: f16 / q8_0 caches on the wasm backend follow the reference backend's caches
 *    over 300 tokens (past max_seq_len 128, every tile edge) at 1, 2 and 3 threads;
 *  - snapshots: save / restore reproduces the stored bytes and the following logits exactly.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { KvType, ModelRunner } from '../src/backends/backend.js';
import { runChunks } from './helpers/chunked.js';
import { kvGeometry, kvHeadPlace, kvLayerOffset } from '../src/backends/wasm/layout.js';
import { f16ToF32, f32ToF16 } from '../src/formats/dtypes.js';
import { quantize } from '../src/formats/ggml-quants.js';
import { parseMptConfig, type MptConfig } from '../src/model/config.js';
import { kvCacheBytes } from '../src/model/memory-plan.js';
import { getBackend, loadRunner } from '../src/backends/registry.js';
import { openCheckpoint } from '../src/model/load.js';
import { fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { SHARED_PASSES, withEnv } from './helpers/env.js';

type WasmRunner = import('../src/backends/wasm/runner.js').WasmRunner;
type WasmKvCache = import('../src/backends/wasm/kv-cache.js').WasmKvCache;

const MODE: Record<KvType, number> = { f32: 0, f16: 1, q8_0: 2 };

let wasmAvailable = true;
try {
  await getBackend('wasm');
} catch {
  wasmAvailable = false;
}
const skip = !wasmAvailable && 'wasm backend not built';

function randomIds(n: number, vocab: number, seed: number): number[] {
  let s = seed >>> 0;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % vocab;
  });
}

/** A config with the given attention shape (only the KV-related fields matter here). */
function shape(nHeads: number, headDim: number, kvNHeads = nHeads): MptConfig {
  return parseMptConfig({
    d_model: nHeads * headDim,
    n_heads: nHeads,
    n_layers: 2,
    expansion_ratio: 4,
    max_seq_len: 128,
    vocab_size: 64,
    attn_config: {
      alibi: true,
      attn_impl: 'torch',
      kv_n_heads: kvNHeads,
      attn_type: kvNHeads === nHeads ? 'multihead_attention' : 'grouped_query_attention',
    },
  });
}

describe('KV storage kernels (wasm)', { skip }, async () => {
  if (!wasmAvailable) return;
  const { Heap, rand } = await import('./helpers/wasm-heap.js');
  // [kv heads, head_dim]: whole blocks per head; heads inside shared blocks with a short last
  // block (kvd 40 = 32 + 8); hd 16 / 8 (two / four heads per block); hd 13 (blocks split lanes)
  const shapes: Array<[number, number]> = [
    [2, 64],
    [4, 16],
    [5, 8],
    [2, 20],
    [3, 13],
    [1, 40],
  ];

  it('store_kv writes fp16 bits / q8_0 blocks as dtypes.ts / ggml-quants.ts encode the row; load_kv_row widens them to round_kv values', () => {
    const h = new Heap();
    for (const [kvH, hd] of shapes) {
      const c = shape(kvH, hd),
        kvd = kvH * hd,
        cap = 5,
        pos = 3;
      const row = rand(kvd, kvd * 31 + hd, 3);
      row[1] = 0; // exact zero, and a block scale with a tiny amax below
      if (kvd > 40) for (let i = 32; i < 64; i++) row[i] = row[i]! * 1e-6;
      for (const t of ['f32', 'f16', 'q8_0'] as KvType[]) {
        const geo = kvGeometry(c, t);
        const src = h.putF32(row),
          C = h.alloc(cap * geo.rowBytes),
          out = h.alloc(kvd * 4);
        h.u8(C, cap * geo.rowBytes).fill(0xa5);
        h.k.store_kv_row(src, kvd, geo.seg, geo.mode, C, cap, pos);
        // the stored row, segment by segment, in row order
        const stored: number[] = [];
        for (let s = 0; s < kvd / geo.seg; s++) stored.push(...h.u8(C + (s * cap + pos) * geo.segBytes, geo.segBytes));
        let want: Uint8Array;
        if (t === 'f32') want = new Uint8Array(row.buffer.slice(0));
        else if (t === 'f16') want = new Uint8Array(Uint16Array.from(row, (x) => f32ToF16(x)).buffer);
        else {
          // ggml-quants quantizes whole blocks: a short last block is stored as the block
          // padded with zeros (zeros change no amax), its unused quants 0
          const bytes: number[] = [];
          for (let s = 0; s < kvd / geo.seg; s++) {
            const padded = new Float32Array(Math.ceil(geo.seg / 32) * 32);
            padded.set(row.subarray(s * geo.seg, (s + 1) * geo.seg));
            bytes.push(...quantize('q8_0', padded));
          }
          want = Uint8Array.from(bytes);
        }
        assert.deepEqual(stored, Array.from(want), `${t} kvH ${kvH} hd ${hd}: stored bytes`);
        // other positions untouched
        assert.ok(
          h.u8(C, geo.segBytes).every((b) => b === 0xa5),
          `${t}: wrote outside its position`,
        );
        h.k.load_kv_row(C, kvd, geo.seg, geo.mode, cap, pos, out);
        const rounded = h.putF32(row);
        if (t !== 'f32') h.k.round_kv(rounded, kvd, MODE[t]);
        assert.deepEqual(
          Array.from(h.f32(out, kvd)),
          Array.from(h.f32(rounded, kvd)),
          `${t} kvH ${kvH} hd ${hd}: widened values`,
        );
      }
    }
  });

  it('attention on the stored type equals, bit for bit, f32 attention over round_kv-rounded rows', () => {
    const h = new Heap();
    for (const [kvH, hd] of shapes) {
      const c = shape(kvH, hd),
        kvd = kvH * hd;
      for (const [nq, past] of [
        [1, 0],
        [1, 31],
        [1, 32],
        [3, 62],
        [17, 16],
        [1, 96],
      ] as const) {
        const nKeys = past + nq,
          cap = nKeys + 3;
        const Krows = rand(cap * kvd, nq * 13 + past + hd, 2),
          Vrows = rand(cap * kvd, nq * 17 + past + hd, 1);
        const q = rand(nq * hd, 5 + hd, 1.5);
        const valid = new Uint8Array(cap).fill(1);
        valid[0] = 0; // a padding position
        if (nKeys > 40) valid[37] = 0;
        const pq = h.putF32(q),
          pvalid = h.putU8(valid),
          ps = h.alloc((4 * 32 + 4 * hd) * 4);
        for (const t of ['f16', 'q8_0'] as KvType[]) {
          const geo = kvGeometry(c, t);
          // before: rows rounded in f32, attention over one head's f32 rows [position][kvd]
          const Kr = h.putF32(Krows),
            Vr = h.putF32(Vrows);
          for (let p = 0; p < cap; p++) {
            h.k.round_kv(Kr + p * kvd * 4, kvd, MODE[t]);
            h.k.round_kv(Vr + p * kvd * 4, kvd, MODE[t]);
          }
          // now: stored as the type
          const Kc = h.alloc(cap * geo.rowBytes),
            Vc = h.alloc(cap * geo.rowBytes);
          const pk = h.putF32(Krows),
            pv = h.putF32(Vrows);
          for (let p = 0; p < nKeys; p++)
            h.k.store_kv(pk + p * kvd * 4, pv + p * kvd * 4, kvd, geo.seg, geo.mode, Kc, Vc, cap, p);
          for (let g = 0; g < kvH; g++) {
            const o1 = h.alloc(nq * hd * 4),
              o2 = h.alloc(nq * hd * 4);
            h.k.attention(
              pq,
              hd,
              nq,
              past,
              Kr + g * hd * 4,
              Vr + g * hd * 4,
              kvd,
              pvalid,
              nKeys,
              hd,
              0.3,
              0.125,
              o1,
              hd,
              ps,
            );
            const at = kvHeadPlace(c, geo, g, cap);
            h.k.attention_kv(
              geo.mode,
              pq,
              hd,
              nq,
              past,
              Kc + at.offset,
              Vc + at.offset,
              geo.segBytes,
              at.e0,
              pvalid,
              nKeys,
              hd,
              0.3,
              0.125,
              o2,
              hd,
              ps,
            );
            assert.deepEqual(
              h.f32(o2, nq * hd),
              h.f32(o1, nq * hd),
              `${t} kvH ${kvH} hd ${hd} head ${g} nq ${nq} past ${past}`,
            );
            // one query row at a time (the decode kernel) gives the rows of the multi-row call
            for (let i = 0; nq > 1 && i < nq; i++) {
              const o3 = h.alloc(hd * 4);
              h.k.attention_kv(
                geo.mode,
                pq + i * hd * 4,
                hd,
                1,
                past + i,
                Kc + at.offset,
                Vc + at.offset,
                geo.segBytes,
                at.e0,
                pvalid,
                nKeys,
                hd,
                0.3,
                0.125,
                o3,
                hd,
                ps,
              );
              assert.deepEqual(
                h.f32(o3, hd),
                h.f32(o2 + i * hd * 4, hd),
                `${t} kvH ${kvH} hd ${hd} head ${g} row ${i} of ${nq}`,
              );
            }
          }
        }
      }
    }
  });
});

describe('KV cache memory (wasm) is what the planner counts', { skip }, async () => {
  if (!wasmAvailable) return;
  const { loadRandomModel } = await import('../src/backends/wasm/index.js');
  // kv_heads · head_dim = 256 (whole q8_0 blocks): StoryWriter-like, scaled down
  const config = parseMptConfig({
    d_model: 256,
    n_heads: 4,
    n_layers: 3,
    expansion_ratio: 2,
    max_seq_len: 64,
    vocab_size: 128,
    attn_config: { alibi: true, attn_impl: 'torch', clip_qkv: 6 },
  });

  it('regions and memory growth per cache equal kvCacheBytes within validity bytes and alignment (f32, f16, q8_0)', async () => {
    const cap = 4096;
    for (const t of ['f32', 'f16', 'q8_0'] as KvType[]) {
      const runner = await loadRandomModel(config, { type: 'f32', threads: 1 });
      try {
        const before = runner.arenas.reservedBytes();
        const cache = runner.createCache({ capacity: cap, kvType: t }) as WasmKvCache;
        const regionBytes = cache.sizes.reduce((a, b) => a + b, 0);
        const grown = runner.arenas.reservedBytes() - before;
        const plan = kvCacheBytes(config, cap, t);
        const slack = cap + 64 * (config.nLayers + 1); // validity bytes, alignment
        assert.ok(
          regionBytes >= plan && regionBytes <= plan + slack,
          `${t}: regions ${regionBytes} vs planner ${plan}`,
        );
        // the memory grows by the cache (whole pages), not by an f32-sized one
        assert.ok(grown >= plan && grown <= plan + slack + 65536, `${t}: memory grew ${grown} vs planner ${plan}`);
        cache.dispose();
      } finally {
        await runner.dispose();
      }
    }
  });
});

describe('f16 / q8_0 caches on the wasm backend follow the reference backend over long sequences', {
  skip,
}, async () => {
  if (!wasmAvailable) return;
  const { loadWasmRunner } = await import('../src/backends/wasm/index.js');
  // tiny-storywriter: head_dim 16 (two heads per q8_0 block), max_seq_len 128 (300 tokens
  // extrapolate); tiny-gqa: 2 KV heads of 8, one short q8_0 block of 16 per row
  for (const [name, N] of [
    ['tiny-storywriter', 300],
    ['tiny-gqa', 200],
  ] as const) {
    it(`${name}: ${N} tokens, chunked prefill then decode, 1 / 2 / 3 threads`, async (t) => {
      const path = fixturePath(name);
      const { runner: ref } = await loadRunner(path, { backend: 'reference' });
      const V = ref.config.vocabSize;
      const ids = randomIds(N, V, 11);
      // chunks that end on both sides of the 32-key tiles, then single-token steps
      const chunks = [31, 2, 30, 33, 64, 1, 1, 1, 1];
      chunks.push(N - chunks.reduce((a, b) => a + b, 0) - 3, 1, 1, 1);
      const run = (r: ModelRunner, kvType: KvType) => runChunks(r, ids, chunks, V, kvType);
      const ck = await openCheckpoint(path);
      // Every pass on every thread (light ones too: a small pool would run them on one).
      const runners = await withEnv(SHARED_PASSES, () =>
        Promise.all([1, 2, 3].map((threads) => loadWasmRunner(ck.config, ck.tensors, { threads }))),
      );
      await ck.tensors.close();
      try {
        const f32 = await run(ref, 'f32');
        for (const kvType of ['f16', 'q8_0'] as KvType[]) {
          const want = await run(ref, kvType);
          const effect = maxAbsDiff(want, f32);
          let first: Float32Array | undefined;
          for (const w of runners) {
            const got = await run(w, kvType);
            const d = maxAbsDiff(got, want);
            t.diagnostic(
              `${name} ${kvType} ${w.threads} threads: wasm vs reference ${d.toExponential(2)} (the type moves logits by ${effect.toExponential(2)})`,
            );
            // f32 (wasm) vs f64 (reference) arithmetic before the rounding may move a value
            // across a rounding step; the type's own effect is far larger
            assert.ok(d <= Math.max(effect / 4, 5e-4), `${kvType}: ${d} vs effect ${effect}`);
            // the thread count changes nothing
            if (first) assert.deepEqual(got, first, `${kvType}: ${w.threads} threads differ from 1 thread`);
            else first = got;
          }
        }
      } finally {
        await Promise.all(runners.map((r) => r.dispose()));
        await ref.dispose();
      }
    });
  }
});

/** The bytes layer l of a wasm cache stores for positions [0, n), keys then values. */
function storedBytes(w: WasmRunner, cache: WasmKvCache, l: number, n: number): number[] {
  const c = w.config,
    ly = w.layout.layers[l]!,
    geo = kvGeometry(c, cache.kvType),
    cap = cache.capacity;
  const base = cache.regions[ly.arena]! + kvLayerOffset(c, ly.slot, cap, cache.kvType);
  const mem = w.arenas.u8(ly.arena),
    out: number[] = [];
  for (const part of [base, base + cap * geo.rowBytes]) {
    for (let s = 0; s < geo.rowBytes / geo.segBytes; s++) {
      const at = part + s * cap * geo.segBytes;
      out.push(...mem.subarray(at, at + n * geo.segBytes));
    }
  }
  return out;
}

describe('wasm KV snapshots round-trip the stored bytes', { skip }, async () => {
  if (!wasmAvailable) return;
  for (const name of ['tiny-storywriter', 'tiny-gqa']) {
    it(`${name}: save / restore per KV type gives the same bytes and the same following logits`, async () => {
      const { runner } = await loadRunner(fixturePath(name), { backend: 'wasm', threads: 2 });
      const w = runner as WasmRunner;
      const V = w.config.vocabSize;
      const ids = randomIds(90, V, 3);
      try {
        for (const kvType of ['f32', 'f16', 'q8_0'] as KvType[]) {
          const a = w.createCache({ capacity: 100, kvType }) as WasmKvCache;
          await w.forward(
            [{ cache: a, tokens: ids.slice(0, 70), padMask: ids.slice(0, 70).map((_, i) => (i < 3 ? 0 : 1)) }],
            { logits: 'none' },
          );
          const snap = w.saveCache(a);
          const b = w.restoreCache(snap, { capacity: 100 }) as WasmKvCache;
          assert.equal(b.kvType, kvType);
          const s1 = w.saveCache(b);
          for (let l = 0; l < snap.nLayers; l++) {
            assert.deepEqual(s1.layer(l).keys, snap.layer(l).keys, `${kvType} layer ${l} keys`);
            assert.deepEqual(s1.layer(l).values, snap.layer(l).values, `${kvType} layer ${l} values`);
            assert.deepEqual(storedBytes(w, b, l, 70), storedBytes(w, a, l, 70), `${kvType} layer ${l}: stored bytes`);
          }
          if (kvType === 'f32') {
            // restored into another type, the rows are rounded through it (as the reference does)
            const h = w.restoreCache(snap, { capacity: 80, kvType: 'f16' }) as WasmKvCache;
            const keys = w.saveCache(h).layer(1).keys;
            assert.deepEqual(
              keys,
              snap.layer(1).keys.map((x) => f16ToF32(f32ToF16(x))),
            );
            h.dispose();
          }
          const [oa] = await w.forward([{ cache: a, tokens: ids.slice(70) }], { logits: 'all' });
          const [ob] = await w.forward([{ cache: b, tokens: ids.slice(70) }], { logits: 'all' });
          assert.deepEqual(ob!.logits, oa!.logits, `${kvType}: logits after restore`);
          a.dispose();
          b.dispose();
        }
      } finally {
        await w.dispose();
      }
    });
  }
});
