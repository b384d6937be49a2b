/**
 * The WGSL kernels of the WebGPU backend other than the products (matvec.ts), one entry point
 * `main` each, and `kernelSource`, every kernel by name. Arithmetic is f32; what they read is
 * stored as it is on the GPU: the embedding rows in the weights' own type (layout.ts
 * elementReader), the KV cache as f32 or f16 (KvStore, two values to a u32 word). Semantics follow the reference
 * backend (src/backends/reference/forward.ts): masked attention scores are float32's lowest value,
 * not -inf, so a row with every key masked averages all of them as MosaicML's code does.
 */
import { elementReader, type GpuWeightType } from './layout.js';
import { matmulShader } from './matmul.js';
import { matvecShader } from './matvec.js';
import { PARAMS, SUM64 } from './wgsl.js';

/**
 * x[t, :] = wte[id_t] (+ wpe[pos_t]): token ids at ids[t], positions at ids[posAt + t].
 * a = (T, d, hasWpe, posAt); b = (wte stride, wte scaleAt, wpe stride, wpe scaleAt).
 */
export function embedShader(wte: GpuWeightType, wpe: GpuWeightType): string {
  return (
    PARAMS +
    elementReader('wte', 2, wte) +
    elementReader('wpe', 3, wpe) +
    /* wgsl */ `
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let T = p.a.x; let d = p.a.y; let i = g.x; let t = g.y;
  if (i >= d || t >= T) { return; }
  var v = wte_at(ids[t] * p.b.x + i, p.b.y);
  if (p.a.z != 0u) { v += wpe_at(ids[p.a.w + t] * p.b.z + i, p.b.w); }
  x[t * d + i] = v;
}
`
  );
}

/** How a KV cache stores its rows (f16: two values to a u32 word, low half first). */
export type KvStore = 'f32' | 'f16';

/** Cache bindings `kc`, `vc` (read-write) at 2 and 3; k_at, v_at read them, rnd rounds as they store. */
function cacheAccess(kv: KvStore, kb: number, vb: number): string {
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

/**
 * Causal attention of T new query rows over the cache (positions 0 .. past+T-1), one workgroup per
 * (row, head): keys in tiles of 64 (one per thread), softmax kept online (running max and sum),
 * each thread owning up to 4 of the head's dimensions (head_dim <= 256).
 *
 * With flag 1, the new rows' keys and values are read from the projection's output (`src`, rows
 * of ldn values, keys from kOff, values from vOff), rounded as the cache rounds them, and the
 * first workgroup of each K/V head (row 0) stores them in the cache: no dispatch of its own, and no
 * workgroup reads a position another one writes. Without it (qk_ln) they are in the cache already.
 *
 * a = (T, past, hd, kvd); b = (ldq, qOffset, query heads per K/V head, flags); c = (softmax scale,
 * ldn, kOff, vOff); d = (ldc, cOffset, -, -). valid[j] = 0 hides key j (padding); slopes[h] is head
 * h's ALiBi slope (0 without ALiBi).
 */
export function attentionShader(kv: KvStore): string {
  const f16 = kv === 'f16';
  const store = f16
    ? `let q0 = (go + 1u) / 2u; let np = (go + hd + 1u) / 2u - q0;
    for (var i = lid; i < T * np; i += 64u) {
      let tt = i / np; let e = 2u * (q0 + i % np);
      let o = ((past + tt) * kvd + e) >> 1u; let s = tt * ldn + e;
      kc[o] = pk(src[ko + s], src[ko + s + 1u]);
      vc[o] = pk(src[vo + s], src[vo + s + 1u]);
    }`
    : `for (var i = lid; i < T * hd; i += 64u) {
      let tt = i / hd; let e = go + i % hd;
      let o = (past + tt) * kvd + e; let s = tt * ldn + e;
      kc[o] = src[ko + s];
      vc[o] = src[vo + s];
    }`;
  return (
    PARAMS +
    cacheAccess(kv, 2, 3) +
    /* wgsl */ `
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> valid: array<u32>;
@group(0) @binding(5) var<storage, read> slopes: array<f32>;
@group(0) @binding(6) var<storage, read_write> ctx: array<f32>;
@group(0) @binding(7) var<storage, read> src: array<f32>;
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let t = wg.x; let h = wg.y; let lid = l.x;
  let T = p.a.x; let past = p.a.y; let hd = p.a.z; let kvd = p.a.w;
  let K = past + T; let qi = past + t; let go = (h / p.b.z) * hd;
  let scr = (p.b.w & 1u) != 0u;
  let ldn = p.c.y; let ko = p.c.z; let vo = p.c.w;
  if (scr && t == 0u && h % p.b.z == 0u) {
    ${store}
  }
  let lowest = bitcast<f32>(0xff7fffffu);
  for (var e = lid; e < hd; e += 64u) { qs[e] = q[p.b.y + t * p.b.x + h * hd + e]; }
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
    if (j < K && j <= qi && valid[j] != 0u) {
      var dot = 0.0;
      if (scr && j >= past) {
        let o = ko + (j - past) * ldn + go;
        for (var e = 0u; e < hd; e++) { dot += qs[e] * rnd(src[o + e]); }
      } else {
        let o = j * kvd + go;
        for (var e = 0u; e < hd; e++) { dot += qs[e] * k_at(o + e); }
      }
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
      if (scr && jj >= past) {
        let o = vo + (jj - past) * ldn + go;
        if (lid < hd) { v.x = rnd(src[o + lid]); }
        if (lid + 64u < hd) { v.y = rnd(src[o + lid + 64u]); }
        if (lid + 128u < hd) { v.z = rnd(src[o + lid + 128u]); }
        if (lid + 192u < hd) { v.w = rnd(src[o + lid + 192u]); }
      } else {
        let o = jj * kvd + go;
        if (lid < hd) { v.x = v_at(o + lid); }
        if (lid + 64u < hd) { v.y = v_at(o + lid + 64u); }
        if (lid + 128u < hd) { v.z = v_at(o + lid + 128u); }
        if (lid + 192u < hd) { v.w = v_at(o + lid + 192u); }
      }
      acc += w * v;
    }
    sum = sum * corr + ts;
    m = tm;
    workgroupBarrier();
  }
  let o = p.d.y + t * p.d.x + h * hd;
  if (lid < hd) { ctx[o + lid] = acc.x / sum; }
  if (lid + 64u < hd) { ctx[o + lid + 64u] = acc.y / sum; }
  if (lid + 128u < hd) { ctx[o + lid + 128u] = acc.z / sum; }
  if (lid + 192u < hd) { ctx[o + lid + 192u] = acc.w / sum; }
}
`
  );
}

/**
 * qk_ln: the new rows' q and k normalized across all heads (LayerNorm or RMSNorm), q into `qn`
 * (rows of d), k and v into the cache at past + t; one workgroup per row.
 * a = (T, past, d, kvd); b = (ldn, srcOffset, qnOffset, flags: 1 q weight, 2 q bias, 4 k weight,
 * 8 k bias, 16 rms); c.x = eps.
 */
export function qkNormShader(kv: KvStore): string {
  const f16 = kv === 'f16';
  return (
    PARAMS +
    SUM64 +
    cacheAccess(kv, 7, 8) +
    /* wgsl */ `
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> qw: array<f32>;
@group(0) @binding(3) var<storage, read> qb: array<f32>;
@group(0) @binding(4) var<storage, read> kw: array<f32>;
@group(0) @binding(5) var<storage, read> kb: array<f32>;
@group(0) @binding(6) var<storage, read_write> qn: array<f32>;
// (mean, 1 / sqrt(var + eps)) of src[o .. o+n), as the reference's layerNorm / rmsNorm.
fn stats(o: u32, n: u32, lid: u32) -> vec2<f32> {
  let eps = bitcast<f32>(p.c.x);
  if ((p.b.w & 16u) != 0u) {
    var ss = 0.0;
    for (var i = lid; i < n; i += 64u) { let v = src[o + i]; ss += v * v; }
    return vec2<f32>(0.0, 1.0 / sqrt(sum64(ss, lid) / f32(n) + eps));
  }
  var s = 0.0;
  for (var i = lid; i < n; i += 64u) { s += src[o + i]; }
  let mean = sum64(s, lid) / f32(n);
  var vv = 0.0;
  for (var i = lid; i < n; i += 64u) { let dx = src[o + i] - mean; vv += dx * dx; }
  return vec2<f32>(mean, 1.0 / sqrt(sum64(vv, lid) / f32(n) + eps));
}
fn kn(o: u32, i: u32, st: vec2<f32>) -> f32 {
  var z = (src[o + i] - st.x) * st.y;
  if ((p.b.w & 4u) != 0u) { z *= kw[i]; }
  if ((p.b.w & 8u) != 0u) { z += kb[i]; }
  return z;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let t = wg.x; let lid = l.x;
  let past = p.a.y; let d = p.a.z; let kvd = p.a.w;
  let o = p.b.y + t * p.b.x;
  let sq = stats(o, d, lid);
  for (var i = lid; i < d; i += 64u) {
    var z = (src[o + i] - sq.x) * sq.y;
    if ((p.b.w & 1u) != 0u) { z *= qw[i]; }
    if ((p.b.w & 2u) != 0u) { z += qb[i]; }
    qn[p.b.z + t * d + i] = z;
  }
  let ok = o + d; let ov = o + d + kvd;
  let sk = stats(ok, kvd, lid);
  let c = (past + t) * kvd;
  ${
    f16
      ? `for (var i = 2u * lid; i < kvd; i += 128u) {
    kc[(c + i) >> 1u] = pk(kn(ok, i, sk), kn(ok, i + 1u, sk));
    vc[(c + i) >> 1u] = pk(src[ov + i], src[ov + i + 1u]);
  }`
      : `for (var i = lid; i < kvd; i += 64u) {
    kc[c + i] = kn(ok, i, sk);
    vc[c + i] = src[ov + i];
  }`
  }
}
`
  );
}

/** What a kernel's source depends on beyond its name. */
export interface KernelFeatures {
  /** The device has the `subgroups` feature and the products use it. */
  subgroups: boolean;
}

/**
 * Every kernel by name: `mv.q4_0.8` (products: weight type, rows), `mm.q4_0` (tiled products),
 * `embed.bf16.f32`,
 * `attention.f16`, `qkNorm.f32`.
 */
export function kernelSource(name: string, features: KernelFeatures): string {
  const [kernel, a, b] = name.split('.') as [string, string | undefined, string | undefined];
  switch (kernel) {
    case 'mv':
      return matvecShader(a as GpuWeightType, Number(b), features.subgroups);
    case 'mm':
      return matmulShader(a as GpuWeightType);
    case 'embed':
      return embedShader(a as GpuWeightType, b as GpuWeightType);
    case 'attention':
      return attentionShader(a as KvStore);
    case 'qkNorm':
      return qkNormShader(a as KvStore);
  }
  throw new Error(`internal: no kernel ${name}`);
}
