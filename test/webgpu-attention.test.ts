// The WebGPU backend's attention kernels (src/backends/webgpu/attention.ts) alone, against float64
// attention: the one-row kernel (decode) and the block kernel (16 query rows sharing each key tile,
// for prompts), over f32 and f16 caches, head_dim 64, 80, 128 and 256 (every tile size), chunks not
// a multiple of the block, keys already cached (past > 0), GQA and MQA, ALiBi, padding (rows whose
// every key is masked included), the new keys read from the projection's output or from the cache
// (qk_ln), the cache at an offset in its buffers (a KV pool). Also: the new keys and values are stored
// in the cache, rounded as the cache rounds.
// Runs on lavapipe where there is no GPU; skipped where WebGPU has no adapter.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ATTENTION_BLOCK, type KvStore } from '../src/backends/webgpu/attention.js';
import { openGpu } from '../src/backends/webgpu/gpu.js';
import { f32bits } from '../src/backends/webgpu/matvec.js';
import { f16ToF32, f32ToF16 } from '../src/formats/dtypes.js';
import { alibiSlopes } from '../src/model/alibi.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { KernelHarness, probeWebGpu, random } from './helpers/webgpu-harness.js';

const skip = skipUnlessPresent((await probeWebGpu()).why);

/** float32's lowest value: MosaicML's masked score. */
const LOWEST = -3.4028234663852886e38;

interface Case {
  label: string;
  hd: number;
  heads: number;
  kvHeads: number;
  /** New rows, keys already in the cache. */
  T: number;
  past: number;
  kv: KvStore;
  /** New keys and values read from the projection's output (else already in the cache: qk_ln). */
  fromQkv: boolean;
  /** Positions that are padding. */
  pads?: number[];
  alibi?: boolean;
}

const CASES: Case[] = [
  {
    label: 'hd 64, 37 rows (3 blocks, the last partial), ALiBi',
    hd: 64,
    heads: 4,
    kvHeads: 4,
    T: 37,
    past: 0,
    kv: 'f32',
    fromQkv: true,
    alibi: true,
  },
  {
    label: 'hd 80, GQA (2 query heads a K/V head), 21 rows after 13, f16, left padding',
    hd: 80,
    heads: 4,
    kvHeads: 2,
    T: 21,
    past: 13,
    kv: 'f16',
    fromQkv: true,
    pads: [0, 1, 2, 3, 4],
    alibi: true,
  },
  {
    label: 'hd 64, 19 rows, the first 6 padding (every key of their rows masked), f16',
    hd: 64,
    heads: 2,
    kvHeads: 2,
    T: 19,
    past: 0,
    kv: 'f16',
    fromQkv: true,
    pads: [0, 1, 2, 3, 4, 5],
  },
  {
    label: 'hd 128, MQA, 33 rows after 40, keys in the cache (qk_ln), padding inside',
    hd: 128,
    heads: 3,
    kvHeads: 1,
    T: 33,
    past: 40,
    kv: 'f32',
    fromQkv: false,
    pads: [7, 41, 50],
    alibi: true,
  },
  {
    label: 'hd 256 (tiles of 8 keys), 17 rows after 5, f16',
    hd: 256,
    heads: 2,
    kvHeads: 2,
    T: 17,
    past: 5,
    kv: 'f16',
    fromQkv: true,
    alibi: true,
  },
  {
    label: 'hd 64, one row after 30 (a decode step)',
    hd: 64,
    heads: 2,
    kvHeads: 1,
    T: 1,
    past: 30,
    kv: 'f32',
    fromQkv: true,
    pads: [3],
  },
];

const roundF16 = (x: number) => f16ToF32(f32ToF16(x));

/** The inputs of a case: the QKV output rows (at row `base`), the cache before, the pad flags. */
function inputs(c: Case) {
  const d = c.heads * c.hd,
    kvd = c.kvHeads * c.hd,
    qn = d + 2 * kvd,
    K = c.past + c.T,
    base = 3;
  const qkv = random((base + c.T) * qn, c.hd + c.T, 1.5);
  const keep = c.kv === 'f16' ? roundF16 : (x: number) => x;
  // the cache's values as the kernels read them (f16: rounded); new rows too when not from the QKV output
  const keys = new Float32Array(K * kvd),
    values = new Float32Array(K * kvd);
  const oldK = random(c.past * kvd, 5, 1.5),
    oldV = random(c.past * kvd, 6);
  for (let j = 0; j < K; j++) {
    for (let e = 0; e < kvd; e++) {
      const src = (base + j - c.past) * qn + d + e;
      keys[j * kvd + e] = keep(j < c.past ? oldK[j * kvd + e]! : qkv[src]!);
      values[j * kvd + e] = keep(j < c.past ? oldV[j * kvd + e]! : qkv[src + kvd]!);
    }
  }
  const valid = Uint32Array.from({ length: K }, (_, j) => (c.pads?.includes(j) ? 0 : 1));
  const slopes = c.alibi ? alibiSlopes(c.heads, 8) : new Float32Array(c.heads);
  return { d, kvd, qn, K, base, qkv, keys, values, valid, slopes };
}

/** Float64 attention of every new row and head (the reference backend's semantics). */
function expected(c: Case, x: ReturnType<typeof inputs>, scale: number) {
  const { d, kvd, qn, K, base, qkv, keys, values, valid, slopes } = x;
  const out = new Float64Array(c.T * d),
    mag = new Float64Array(c.T * d);
  for (let t = 0; t < c.T; t++) {
    for (let h = 0; h < c.heads; h++) {
      const go = Math.floor(h / (c.heads / c.kvHeads)) * c.hd;
      const s = new Float64Array(K);
      for (let j = 0; j < K; j++) {
        if (j > c.past + t || !valid[j]) {
          s[j] = LOWEST;
          continue;
        }
        let dot = 0;
        for (let e = 0; e < c.hd; e++) dot += qkv[(base + t) * qn + h * c.hd + e]! * keys[j * kvd + go + e]!;
        s[j] = dot * scale - slopes[h]! * (K - 1 - j);
      }
      const m = Math.max(...s);
      const w = s.map((v) => Math.exp(v - m));
      const sum = w.reduce((a, b) => a + b, 0);
      for (let e = 0; e < c.hd; e++) {
        let acc = 0,
          abs = 0;
        for (let j = 0; j < K; j++) {
          const v = values[j * kvd + go + e]!;
          acc += w[j]! * v;
          abs += w[j]! * Math.abs(v);
        }
        out[t * d + h * c.hd + e] = acc / sum;
        mag[t * d + h * c.hd + e] = abs / sum;
      }
    }
  }
  return { out, mag };
}

/** The cache buffer's contents for rows of kvd values: f32, or f16 two to a word. */
function cacheBytes(kv: KvStore, values: Float32Array): Float32Array | Uint16Array {
  return kv === 'f32' ? values : Uint16Array.from(values, f32ToF16);
}

/** Where the case's cache starts in the pool's buffers, and where the one-row kernel's table starts. */
const OFFSET = 5,
  TABLE_AT = 4;

async function run(h: KernelHarness, c: Case, x: ReturnType<typeof inputs>, kernel: 'attention' | 'attentionBlock') {
  const { d, kvd, qn, K, base } = x;
  // before the call: old rows only (the kernel stores the new ones), or all of them (qk_ln)
  const upto = c.fromQkv ? c.past : K;
  const cached = (a: Float32Array) => {
    const v = new Float32Array((OFFSET + K) * kvd);
    v.set(a.subarray(0, upto * kvd), OFFSET * kvd);
    return h.buffer(cacheBytes(c.kv, v));
  };
  const qkv = h.buffer(x.qkv),
    kc = cached(x.keys),
    vc = cached(x.values);
  const valid = h.buffer(Uint32Array.from([...new Uint32Array(OFFSET), ...x.valid]));
  const ctx = h.buffer(new Float32Array((base + c.T) * d));
  const scale = 1 / Math.sqrt(c.hd);
  const seq = [c.T, c.past, c.hd, kvd, qn, base, c.heads / c.kvHeads, c.fromQkv ? 1 : 0];
  const params = [...seq, f32bits(scale), qn, d, d + kvd, d, OFFSET, TABLE_AT];
  const buffers = [qkv, kc, vc, valid, h.buffer(x.slopes), ctx, qkv];
  if (kernel === 'attention') {
    // the one-row kernel's table: (cache offset, past, T << 16 | t, base) a row
    const table = new Uint32Array(TABLE_AT + 4 * c.T);
    for (let t = 0; t < c.T; t++) table.set([OFFSET, c.past, (c.T << 16) | t, base], TABLE_AT + 4 * t);
    buffers.push(h.buffer(table));
  }
  const groups = [kernel === 'attention' ? c.T : Math.ceil(c.T / ATTENTION_BLOCK), c.heads];
  const cacheBytesLen = (OFFSET + K) * kvd * (c.kv === 'f16' ? 2 : 4);
  const [y, ko, vo] = await h.run(`${kernel}.${c.kv}`, buffers, params, groups, [
    { buf: ctx, bytes: (base + c.T) * d * 4 },
    { buf: kc, bytes: cacheBytesLen },
    { buf: vc, bytes: cacheBytesLen },
  ]);
  for (const b of buffers) b.destroy();
  const asCache = (b: ArrayBuffer) =>
    c.kv === 'f32' ? new Float32Array(b, OFFSET * kvd * 4) : new Uint16Array(b, OFFSET * kvd * 2);
  return { ctx: new Float32Array(y!).subarray(base * d), keys: asCache(ko!), values: asCache(vo!), scale };
}

describe('webgpu attention kernels vs float64 attention', { skip }, () => {
  let h: KernelHarness;
  before(async () => {
    h = new KernelHarness(await openGpu());
  });
  after(() => h?.gpu.device.destroy());

  for (const c of CASES) {
    it(c.label, async () => {
      const x = inputs(c);
      for (const kernel of ['attention', 'attentionBlock'] as const) {
        const got = await run(h, c, x, kernel);
        const { out, mag } = expected(c, x, got.scale);
        for (let i = 0; i < out.length; i++) {
          const tol = 2e-6 * (mag[i]! + 1);
          const at = `${kernel}: row ${Math.floor(i / x.d)}, element ${i % x.d}`;
          assert.ok(Math.abs(got.ctx[i]! - out[i]!) <= tol, `${at}: ${got.ctx[i]} vs ${out[i]} (within ${tol})`);
        }
        // the cache holds every row afterwards, the new ones rounded as the cache rounds
        assert.deepEqual(got.keys, cacheBytes(c.kv, x.keys), `${kernel}: keys in the cache`);
        assert.deepEqual(got.values, cacheBytes(c.kv, x.values), `${kernel}: values in the cache`);
      }
    });
  }
});
