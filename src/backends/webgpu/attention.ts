/**
 * The attention kernels, f32 arithmetic over f32 or f16 KV caches: one query row per workgroup
 * (decode) and a block of query rows per workgroup sharing each key/value tile (prompts). Semantics
 * follow the reference backend (src/backends/reference/forward.ts): masked scores are float32's
 * lowest value, not -inf, so a row with every key masked averages all of them as MosaicML's code does.
 *
 * Parameters of both: a = (T, past, hd, kvd); b = (ldq, base, query heads per K/V head, flags);
 * c = (softmax scale, ldn, kOff, vOff); d = (ldc, cache offset, table word, -). The new rows' queries
 * are rows base .. base+T-1 of q (ldq values a row), their outputs the same rows of ctx (ldc); the
 * cache's positions start at its offset in the pool's buffers (kv-pool.ts). valid[off + j] = 0 hides
 * key j (padding); slopes[h] is head h's ALiBi slope (0 without ALiBi). The one-row kernel reads
 * T, past, base and the offset from a table instead, an entry per workgroup: several sequences in
 * one dispatch.
 *
 * With flag 1, the new rows' keys and values are read from the projection's output (`src`: rows
 * base .. of ldn values, keys at kOff, values at vOff), rounded as the cache rounds them, and the
 * first workgroup of each K/V head stores them in the cache: no dispatch of its own, and no
 * workgroup reads a position another one writes. Without it (qk_ln) they are in the cache already.
 */
import { PARAMS } from './wgsl.js';

/** How a KV cache stores its rows (f16: two values to a u32 word, low half first). */
export type KvStore = 'f32' | 'f16';

/** Query rows per workgroup of the block kernel. */
export const ATTENTION_BLOCK = 16;

/** Cache bindings `kc`, `vc` (read-write) at 2 and 3; k_at, v_at read them, rnd rounds as they store. */
export function cacheAccess(kv: KvStore, kb: number, vb: number): string {
  if (kv === 'f32') {
    return `
@group(0) @binding(${kb}) var<storage, read_write> kc: array<f32>;
@group(0) @binding(${vb}) var<storage, read_write> vc: array<f32>;
fn k_at(i: u32) -> f32 { return kc[i]; }
fn v_at(i: u32) -> f32 { return vc[i]; }
fn rnd(x: f32) -> f32 { return x; }
`;
  }
  return `
@group(0) @binding(${kb}) var<storage, read_write> kc: array<u32>;
@group(0) @binding(${vb}) var<storage, read_write> vc: array<u32>;
fn k_at(i: u32) -> f32 { return unpack2x16float(kc[i >> 1u] >> ((i & 1u) * 16u)).x; }
fn v_at(i: u32) -> f32 { return unpack2x16float(vc[i >> 1u] >> ((i & 1u) * 16u)).x; }
// x rounded to the nearest f16 (ties to even), as the reference rounds cached values, in integer
// arithmetic: drivers differ in how pack2x16float rounds, and some fold unpack(pack(x)) into x.
fn rnd(x: f32) -> f32 {
  let u = bitcast<u32>(x); let a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) { return x; }
  if (a < 0x38800000u) { return round(x * 16777216.0) / 16777216.0; }
  let r = (a + 0xfffu + ((a >> 13u) & 1u)) & 0xffffe000u;
  return bitcast<f32>((u & 0x80000000u) | select(r, 0x7f800000u, r >= 0x47800000u));
}
// Two values stored as f16: rounded first, so the conversion itself is exact.
fn pk(a: f32, b: f32) -> u32 { return pack2x16float(vec2<f32>(rnd(a), rnd(b))); }
`;
}

/** Bindings and helpers of both kernels: key(j, e) and value(j, e) of this K/V head, from the new rows or the cache. */
function attentionIo(kv: KvStore): string {
  return (
    PARAMS +
    cacheAccess(kv, 2, 3) +
    /* wgsl */ `
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> valid: array<u32>;
@group(0) @binding(5) var<storage, read> slopes: array<f32>;
@group(0) @binding(6) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(7) var<storage, read> src: array<f32>;
// One sequence's chunk: its cache's offset in the pool, positions cached before it, its rows, its first row.
struct Seq { off: u32, past: u32, T: u32, base: u32 }
// Element i of key j (i counted from the K/V head's start): the new rows (j >= past) from src when flag 1.
fn key(s: Seq, j: u32, i: u32) -> f32 {
  if ((p.b.w & 1u) != 0u && j >= s.past) { return rnd(src[(s.base + j - s.past) * p.c.y + p.c.z + i]); }
  return k_at((s.off + j) * p.a.w + i);
}
fn value(s: Seq, j: u32, i: u32) -> f32 {
  if ((p.b.w & 1u) != 0u && j >= s.past) { return rnd(src[(s.base + j - s.past) * p.c.y + p.c.w + i]); }
  return v_at((s.off + j) * p.a.w + i);
}
`
  );
}

/** WGSL storing the new rows' keys and values of K/V head `go` in the cache, `threads` threads (index lid). */
function storeNewRows(kv: KvStore, threads: number): string {
  return kv === 'f16'
    ? `let q0 = (go + 1u) / 2u; let np = (go + hd + 1u) / 2u - q0;
    for (var i = lid; i < sq.T * np; i += ${threads}u) {
      let tt = i / np; let e = 2u * (q0 + i % np);
      let o = ((sq.off + sq.past + tt) * kvd + e) >> 1u; let s = (sq.base + tt) * p.c.y + e;
      kc[o] = pk(src[p.c.z + s], src[p.c.z + s + 1u]);
      vc[o] = pk(src[p.c.w + s], src[p.c.w + s + 1u]);
    }`
    : `for (var i = lid; i < sq.T * hd; i += ${threads}u) {
      let tt = i / hd; let e = go + i % hd;
      let o = (sq.off + sq.past + tt) * kvd + e; let s = (sq.base + tt) * p.c.y + e;
      kc[o] = src[p.c.z + s];
      vc[o] = src[p.c.w + s];
    }`;
}

/**
 * Causal attention of T new query rows over the cache (positions 0 .. past+T-1), one workgroup per
 * (row, head): keys in tiles of 64 (one per thread), softmax kept online (running max and sum),
 * each thread owning up to 4 of the head's dimensions (head_dim <= 256). For decode steps: the
 * workgroup's row (and its sequence) from the table, entry wg.x at word p.d.z (4 words: cache
 * offset, past, T << 16 | row, base), so one dispatch serves a step's every sequence.
 */
export function attentionShader(kv: KvStore): string {
  return (
    attentionIo(kv) +
    /* wgsl */ `
@group(0) @binding(8) var<storage, read> table: array<u32>;
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let h = wg.y; let lid = l.x;
  let te = p.d.z + 4u * wg.x;
  let sq = Seq(table[te], table[te + 1u], table[te + 2u] >> 16u, table[te + 3u]);
  let t = table[te + 2u] & 0xffffu;
  let hd = p.a.z; let kvd = p.a.w;
  let K = sq.past + sq.T; let qi = sq.past + t; let go = (h / p.b.z) * hd;
  if ((p.b.w & 1u) != 0u && t == 0u && h % p.b.z == 0u) {
    ${storeNewRows(kv, 64)}
  }
  let lowest = bitcast<f32>(0xff7fffffu);
  for (var e = lid; e < hd; e += 64u) { qs[e] = q[(sq.base + t) * p.b.x + h * hd + e]; }
  workgroupBarrier();
  let scale = bitcast<f32>(p.c.x);
  let slope = slopes[h];
  var m = lowest;
  var sum = 0.0;
  var acc = vec4<f32>(0.0);
  for (var j0 = 0u; j0 < K; j0 += 64u) {
    let j = j0 + lid;
    let cnt = min(64u, K - j0);
    var s = lowest;
    if (j < K && j <= qi && valid[sq.off + j] != 0u) {
      var dot = 0.0;
      for (var e = 0u; e < hd; e++) { dot += qs[e] * key(sq, j, go + e); }
      // ALiBi: MosaicML's bias for key j is -slope * (K - 1 - j), the same for every row.
      s = dot * scale + slope * f32(i32(j) - i32(K - 1u));
    }
    sc[lid] = s;
    workgroupBarrier();
    var tm = m;
    for (var i = 0u; i < cnt; i++) { tm = max(tm, sc[i]); }
    workgroupBarrier();
    var pv = 0.0;
    if (lid < cnt) { pv = exp(s - tm); }
    sc[lid] = pv;
    workgroupBarrier();
    let corr = exp(m - tm);
    acc *= corr;
    var ts = 0.0;
    for (var i = 0u; i < cnt; i++) {
      let w = sc[i];
      ts += w;
      let jj = j0 + i;
      var v = vec4<f32>(0.0);
      if (lid < hd) { v.x = value(sq, jj, go + lid); }
      if (lid + 64u < hd) { v.y = value(sq, jj, go + lid + 64u); }
      if (lid + 128u < hd) { v.z = value(sq, jj, go + lid + 128u); }
      if (lid + 192u < hd) { v.w = value(sq, jj, go + lid + 192u); }
      acc += w * v;
    }
    sum = sum * corr + ts;
    m = tm;
    workgroupBarrier();
  }
  let o = (sq.base + t) * p.d.x + h * hd;
  if (lid < hd) { ctx[o + lid] = acc.x / sum; }
  if (lid + 64u < hd) { ctx[o + lid + 64u] = acc.y / sum; }
  if (lid + 128u < hd) { ctx[o + lid + 128u] = acc.z / sum; }
  if (lid + 192u < hd) { ctx[o + lid + 192u] = acc.w / sum; }
}
`
  );
}

/**
 * Causal attention of T new query rows, ATTENTION_BLOCK (16) rows of one head per workgroup of 256
 * threads (flash-attention style): each tile of keys, then of values, is loaded once into workgroup
 * memory and used by all the block's rows; softmax kept online per row. Tiles hold 32 keys for
 * head_dim < 96, 16 below 192, 8 up to 256 (rows padded by one value against bank conflicts), so
 * that tile and scores fit in 14 KiB of WebGPU's default 16 KiB of workgroup memory.
 *
 * Thread (r, c) = (lid / 16, lid % 16) computes the scores of row r against keys c, c + 16, and
 * accumulates dimensions c, c + 16, ... of row r's output (up to 16 each). Key tiles stop at the
 * block's last row; a row whose every key so far is masked then also averages the keys after it,
 * as MosaicML's softmax over equal lowest scores does.
 */
export function attentionBlockShader(kv: KvStore): string {
  return (
    attentionIo(kv) +
    /* wgsl */ `
const BQ = ${ATTENTION_BLOCK}u;
var<workgroup> tile: array<f32, 3072>;
var<workgroup> sc: array<f32, ${ATTENTION_BLOCK * 32}>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let h = wg.y; let lid = l.x;
  let sq = Seq(p.d.y, p.a.y, p.a.x, p.b.y);
  let T = sq.T; let past = sq.past; let hd = p.a.z; let kvd = p.a.w;
  let K = past + T; let go = (h / p.b.z) * hd;
  if ((p.b.w & 1u) != 0u && wg.x == 0u && h % p.b.z == 0u) {
    ${storeNewRows(kv, 256)}
  }
  let hs = hd + 1u;
  let bk = select(select(8u, 16u, 16u * hs <= 3072u), 32u, 32u * hs <= 3072u);
  let r = lid / 16u; let c = lid % 16u;
  let t = wg.x * BQ + r; let qi = past + t;
  let live = t < T;
  let qo = (sq.base + t) * p.b.x + h * hd;
  let lowest = bitcast<f32>(0xff7fffffu);
  let scale = bitcast<f32>(p.c.x);
  let slope = slopes[h];
  // the keys the block's rows see: up to its last row's position
  let kEnd = past + min(T, wg.x * BQ + BQ);
  var m = lowest;
  var sum = 0.0;
  var acc: array<f32, 16>;
  for (var j0 = 0u; j0 < kEnd; j0 += bk) {
    let cnt = min(bk, kEnd - j0);
    for (var i = lid; i < cnt * hd; i += 256u) { let kk = i / hd; let e = i % hd; tile[kk * hs + e] = key(sq, j0 + kk, go + e); }
    workgroupBarrier();
    for (var k = c; k < cnt; k += 16u) {
      let j = j0 + k;
      var s = lowest;
      if (live && j <= qi && valid[sq.off + j] != 0u) {
        var dot = 0.0;
        for (var e = 0u; e < hd; e++) { dot += q[qo + e] * tile[k * hs + e]; }
        // ALiBi: MosaicML's bias for key j is -slope * (K - 1 - j), the same for every row.
        s = dot * scale + slope * f32(i32(j) - i32(K - 1u));
      }
      sc[r * 32u + k] = s;
    }
    workgroupBarrier();
    for (var i = lid; i < cnt * hd; i += 256u) { let kk = i / hd; let e = i % hd; tile[kk * hs + e] = value(sq, j0 + kk, go + e); }
    workgroupBarrier();
    var tm = m;
    for (var k = 0u; k < cnt; k++) { tm = max(tm, sc[r * 32u + k]); }
    let corr = exp(m - tm);
    for (var i = 0u; i < 16u; i++) { acc[i] *= corr; }
    var ts = 0.0;
    for (var k = 0u; k < cnt; k++) {
      let w = exp(sc[r * 32u + k] - tm);
      ts += w;
      for (var i = 0u; i < 16u; i++) {
        let e = c + 16u * i;
        if (e < hd) { acc[i] += w * tile[k * hs + e]; }
      }
    }
    sum = sum * corr + ts;
    m = tm;
    workgroupBarrier();
  }
  if (!live) { return; }
  if (m == lowest) {
    // every key up to this row masked: all K keys weigh the same, the later ones too
    for (var j = kEnd; j < K; j++) {
      sum += 1.0;
      for (var i = 0u; i < 16u; i++) {
        let e = c + 16u * i;
        if (e < hd) { acc[i] += value(sq, j, go + e); }
      }
    }
  }
  let o = (sq.base + t) * p.d.x + h * hd;
  for (var i = 0u; i < 16u; i++) {
    let e = c + 16u * i;
    if (e < hd) { ctx[o + e] = acc[i] / sum; }
  }
}
`
  );
}
