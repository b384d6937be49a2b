/**
 * The WGSL kernels of the WebGPU backend other than the products (matvec.ts, matmul.ts) and attention
 * (attention.ts), one entry point `main` each, and `kernelSource`, every kernel by name. Arithmetic
 * is f32 (the products' `f16Math` option aside); what they read is stored as it is on the GPU: the
 * embedding rows in the weights' own type (layout.ts elementReader), the KV cache as f32 or f16.
 */
import { attentionBlockShader, attentionShader, cacheAccess, type KvStore } from './attention.js';
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

/**
 * qk_ln: the new rows' q and k normalized across all heads (LayerNorm or RMSNorm), q into `qn`
 * (rows of d), k and v into the cache at past + t; one workgroup per row.
 * a = (T, past, d, kvd); b = (ldn, srcOffset, qnOffset, flags: 1 q weight, 2 q bias, 4 k weight,
 * 8 k bias, 16 rms); c = (eps, the cache's offset in the pool).
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
  let c = (p.c.y + past + t) * kvd;
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
  /** The products multiply in f16 (the device has `shader-f16`, and the runner was asked to). */
  f16?: boolean;
}

/**
 * Every kernel by name: `mv.q4_0.8` (products: weight type, rows), `mm.q4_0` (tiled products),
 * `embed.bf16.f32`,
 * `attention.f16` (a query row a workgroup), `attentionBlock.f16` (16 rows), `qkNorm.f32`.
 */
export function kernelSource(name: string, features: KernelFeatures): string {
  const [kernel, a, b] = name.split('.') as [string, string | undefined, string | undefined];
  switch (kernel) {
    case 'mv':
      return matvecShader(a as GpuWeightType, Number(b), features.subgroups, !!features.f16);
    case 'mm':
      return matmulShader(a as GpuWeightType, !!features.f16);
    case 'embed':
      return embedShader(a as GpuWeightType, b as GpuWeightType);
    case 'attention':
      return attentionShader(a as KvStore);
    case 'attentionBlock':
      return attentionBlockShader(a as KvStore);
    case 'qkNorm':
      return qkNormShader(a as KvStore);
  }
  throw new Error(`internal: no kernel ${name}`);
}
