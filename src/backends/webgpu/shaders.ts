/**
 * WGSL kernels of the WebGPU backend, f32 throughout, one entry point `main` each. Every kernel
 * reads its sizes from a uniform block of sixteen u32 (f32 values bit-cast), binding 0; the
 * comment above each kernel says which slot holds what. Semantics follow the reference backend
 * (src/backends/reference/forward.ts): masked attention scores are float32's lowest value, not
 * -inf, so a row with every key masked averages all of them as MosaicML's code does.
 */

const PARAMS = /* wgsl */ `
struct P { a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, d: vec4<u32> }
@group(0) @binding(0) var<uniform> p: P;
`;

/** Activation codes shared by matmul and glu (ACT in runner.ts). */
const ACTIVATION = /* wgsl */ `
// erf to about 1.2e-7 (Numerical Recipes' erfc Chebyshev fit), enough for f32 GELU.
fn erf_f32(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.5 * z);
  let r = t * exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return select(r - 1.0, 1.0 - r, x >= 0.0);
}
fn activate(x: f32, code: u32) -> f32 {
  switch code {
    case 1u: { return 0.5 * x * (1.0 + erf_f32(x * 0.70710678118654752)); }
    case 2u: { return 0.5 * x * (1.0 + tanh(0.79788456080286536 * (x + 0.044715 * x * x * x))); }
    case 3u: { return x / (1.0 + exp(-x)); }
    case 4u: { return max(x, 0.0); }
    default: { return x; }
  }
}
`;

/** How a matrix is stored (webgpu/weights.ts GpuWeightType). */
export type WeightType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k';

/**
 * A read-only matrix binding `name` and `fn name_at(i) -> f32`, element i of the matrix in f32:
 * - f32 as is; f16 and bf16 two to a u32 word, element i in the low half when i is even
 *   (little-endian), widened exactly;
 * - ggml's q8_0 blocks (32 weights: an f16 scale, then 32 int8) and q4_0 blocks (an f16 scale,
 *   then 16 bytes: weight j < 16 in the low nibble of byte j, weight j + 16 in its high nibble,
 *   both minus 8), read byte by byte from the u32 words: q · scale, as ggml dequantizes them;
 * - ggml's k-quant super-blocks of 256 weights, element by element in the order and with the
 *   operations of ggml's dequantize_row_q4_K / q5_K / q6_K: q4_K (f16 d and dmin, 12 bytes of
 *   6-bit scales and mins for 8 sub-blocks, 128 bytes of nibbles: (d·sc)·q − dmin·m), q5_K (the
 *   same with a fifth bit per weight in 32 bytes before the nibbles), q6_K (128 bytes of low
 *   nibbles, 64 of 2-bit highs, 16 int8 scales, f16 d last: (d·sc)·(q − 32)).
 */
function weightReader(name: string, binding: number, type: WeightType): string {
  const decl = `@group(0) @binding(${binding}) var<storage, read> ${name}: array<${type === 'f32' ? 'f32' : 'u32'}>;`;
  const bytes = `
fn ${name}_byte(o: u32) -> u32 { return (${name}[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu; }
fn ${name}_scale(o: u32) -> f32 { let w = ${name}[o >> 2u]; return unpack2x16float(select(w & 0xffffu, w >> 16u, (o & 2u) != 0u)).x; }`;
  switch (type) {
    case 'f32': return `${decl}\nfn ${name}_at(i: u32) -> f32 { return ${name}[i]; }\n`;
    case 'f16': return `${decl}\nfn ${name}_at(i: u32) -> f32 { let v = unpack2x16float(${name}[i >> 1u]); return select(v.x, v.y, (i & 1u) == 1u); }\n`;
    case 'bf16': return `${decl}\nfn ${name}_at(i: u32) -> f32 { let u = ${name}[i >> 1u]; return bitcast<f32>(select(u << 16u, u & 0xffff0000u, (i & 1u) == 1u)); }\n`;
    case 'q8_0': return `${decl}${bytes}
fn ${name}_at(i: u32) -> f32 {
  let o = (i >> 5u) * 34u;
  let q = bitcast<i32>(${name}_byte(o + 2u + (i & 31u)) << 24u) >> 24u;
  return f32(q) * ${name}_scale(o);
}
`;
    case 'q4_0': return `${decl}${bytes}
fn ${name}_at(i: u32) -> f32 {
  let o = (i >> 5u) * 18u;
  let j = i & 31u;
  let b = ${name}_byte(o + 2u + (j & 15u));
  return (f32(select(b & 15u, b >> 4u, j >= 16u)) - 8.0) * ${name}_scale(o);
}
`;
    case 'q4_k': case 'q5_k': {
      const q5 = type === 'q5_k';
      return `${decl}${bytes}${scaleMinK4(name)}
fn ${name}_at(i: u32) -> f32 {
  let o = (i >> 8u) * ${q5 ? 176 : 144}u;
  let r = i & 255u; let j = r >> 6u; let hi = (r >> 5u) & 1u; let l = r & 31u;
  let sm = ${name}_scale_min(o + 4u, 2u * j + hi);
  let qb = ${name}_byte(o + ${q5 ? 48 : 16}u + 32u * j + l);
  var q = select(qb & 15u, qb >> 4u, hi == 1u);
  ${q5 ? `if ((${name}_byte(o + 16u + l) & (1u << (2u * j + hi))) != 0u) { q += 16u; }` : ''}
  return (${name}_scale(o) * sm.x) * f32(q) - ${name}_scale(o + 2u) * sm.y;
}
`;
    }
    case 'q6_k': return `${decl}${bytes}
fn ${name}_at(i: u32) -> f32 {
  let o = (i >> 8u) * 210u;
  let r = i & 255u; let n = r >> 7u; let qd = (r >> 5u) & 3u; let l = r & 31u;
  let lb = ${name}_byte(o + 64u * n + l + 32u * (qd & 1u));
  let low = select(lb & 15u, lb >> 4u, qd >= 2u);
  let hb = (${name}_byte(o + 128u + 32u * n + l) >> (2u * qd)) & 3u;
  let q = i32(low | (hb << 4u)) - 32;
  let sc = bitcast<i32>(${name}_byte(o + 192u + 8u * n + (l >> 4u) + 2u * qd) << 24u) >> 24u;
  return (${name}_scale(o + 208u) * f32(sc)) * f32(q);
}
`;
  }
}

/** get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 scale bytes at byte o. */
function scaleMinK4(name: string): string {
  return `
fn ${name}_scale_min(o: u32, j: u32) -> vec2<f32> {
  if (j < 4u) { return vec2<f32>(f32(${name}_byte(o + j) & 63u), f32(${name}_byte(o + j + 4u) & 63u)); }
  let a = ${name}_byte(o + j + 4u);
  return vec2<f32>(f32((a & 15u) | ((${name}_byte(o + j - 4u) >> 6u) << 4u)), f32((a >> 4u) | ((${name}_byte(o + j) >> 6u) << 4u)));
}`;
}

/** x[t, :] = wte[id_t] (+ wpe[pos_t]). ids from word o: T token ids then T positions. a = (T, d, hasWpe, o). */
export function embedShader(wte: WeightType, wpe: WeightType): string {
  return PARAMS + weightReader('wte', 2, wte) + weightReader('wpe', 3, wpe) + /* wgsl */ `
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let T = p.a.x; let d = p.a.y; let i = g.x; let t = g.y;
  if (i >= d || t >= T) { return; }
  let o = p.a.w;
  var v = wte_at(ids[o + t] * d + i);
  if (p.a.z != 0u) { v += wpe_at(ids[o + T + t] * d + i); }
  x[t * d + i] = v;
}
`;
}

/**
 * LayerNorm (biased variance) or RMSNorm of rows of n values, one workgroup a row.
 * a = (rows, n, ldx, xOffset); b = (ldy, yOffset, flags: 1 weight, 2 bias, 4 rms, -); c.x = eps.
 */
export const NORM = PARAMS + /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
var<workgroup> red: array<f32, 64>;
fn sum64(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let row = wg.x; let lid = l.x; let n = p.a.y;
  let xo = p.a.w + row * p.a.z; let yo = p.b.y + row * p.b.x;
  let flags = p.b.z; let eps = bitcast<f32>(p.c.x);
  var mean = 0.0;
  var inv = 0.0;
  if ((flags & 4u) != 0u) {
    var ss = 0.0;
    for (var i = lid; i < n; i += 64u) { let v = x[xo + i]; ss += v * v; }
    inv = 1.0 / sqrt(sum64(ss, lid) / f32(n) + eps);
  } else {
    var s = 0.0;
    for (var i = lid; i < n; i += 64u) { s += x[xo + i]; }
    mean = sum64(s, lid) / f32(n);
    var vv = 0.0;
    for (var i = lid; i < n; i += 64u) { let dx = x[xo + i] - mean; vv += dx * dx; }
    inv = 1.0 / sqrt(sum64(vv, lid) / f32(n) + eps);
  }
  for (var i = lid; i < n; i += 64u) {
    var z = (x[xo + i] - mean) * inv;
    if ((flags & 1u) != 0u) { z *= w[i]; }
    if ((flags & 2u) != 0u) { z += b[i]; }
    y[yo + i] = z;
  }
}
`;

/**
 * Y[r, n] (= or +=) act((X[r, :] · W[n, :] + bias[n]) · scale): one workgroup per output column
 * n and 4 rows, its 64 threads splitting K (consecutive threads read consecutive weights).
 * a = (rows, N, K, ldx); b = (xOffset, ldy, yOffset, flags: 1 bias, 2 accumulate); c = (act, scale, -, -).
 * Columns beyond 32768 come from the z dimension of the dispatch.
 */
export function matmulShader(w: WeightType): string {
  return PARAMS + ACTIVATION + weightReader('W', 2, w) + /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
var<workgroup> part: array<vec4<f32>, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let n = wg.x + wg.z * 32768u; let r0 = wg.y * 4u; let lid = l.x;
  let rows = p.a.x; let N = p.a.y; let K = p.a.z; let ldx = p.a.w;
  if (n >= N) { return; }
  let nr = min(4u, rows - r0);
  let wo = n * K;
  let xo = p.b.x + r0 * ldx;
  var acc = vec4<f32>(0.0);
  for (var k = lid; k < K; k += 64u) {
    let wv = W_at(wo + k);
    acc.x += X[xo + k] * wv;
    if (nr > 1u) { acc.y += X[xo + ldx + k] * wv; }
    if (nr > 2u) { acc.z += X[xo + 2u * ldx + k] * wv; }
    if (nr > 3u) { acc.w += X[xo + 3u * ldx + k] * wv; }
  }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = 32u; s > 0u; s = s >> 1u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
  if (lid < nr) {
    var v = part[0][lid];
    if ((p.b.w & 1u) != 0u) { v += bias[n]; }
    v = activate(v * bitcast<f32>(p.c.y), p.c.x);
    let yi = p.b.z + (r0 + lid) * p.b.y + n;
    if ((p.b.w & 2u) != 0u) { Y[yi] += v; } else { Y[yi] = v; }
  }
}
`;
}

/** hid[i] = act(gate[i]) · hid[i] for i < count (grid-stride). a = (count, act, -, -). */
export const GLU = PARAMS + ACTIVATION + /* wgsl */ `
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read_write> hid: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  for (var i = g.x; i < p.a.x; i += nw.x * 256u) { hid[i] = activate(gate[i], p.a.y) * hid[i]; }
}
`;

/** x[i] = clamp(x[i], -c, c) for i < count (clip_qkv). a = (count, c, -, -). */
export const CLIP = PARAMS + /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let c = bitcast<f32>(p.a.y);
  for (var i = g.x; i < p.a.x; i += nw.x * 256u) { x[i] = clamp(x[i], -c, c); }
}
`;

/** How a KV cache stores its rows (f16: two values to a u32 word, as weightReader reads them). */
export type KvStore = 'f32' | 'f16';

/**
 * Appends T rows of keys and values to one layer's cache at position `past` (f16 caches: one
 * thread per pair of values, kvd even). a = (T, kvd, past, -); b = (ldk, kOffset, ldv, vOffset).
 */
export function storeKvShader(kv: KvStore): string {
  const f16 = kv === 'f16';
  return PARAMS + /* wgsl */ `
@group(0) @binding(1) var<storage, read> ksrc: array<f32>;
@group(0) @binding(2) var<storage, read> vsrc: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<${f16 ? 'u32' : 'f32'}>;
@group(0) @binding(4) var<storage, read_write> vc: array<${f16 ? 'u32' : 'f32'}>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3u) {
  let T = p.a.x; let kvd = p.a.y; let i = g.x${f16 ? ' * 2u' : ''}; let t = g.y;
  if (i >= kvd || t >= T) { return; }
  let o = (p.a.z + t) * kvd + i;
  let ks = p.b.y + t * p.b.x + i;
  let vs = p.b.w + t * p.b.z + i;
  ${f16 ? `kc[o >> 1u] = pack2x16float(vec2<f32>(ksrc[ks], ksrc[ks + 1u]));
  vc[o >> 1u] = pack2x16float(vec2<f32>(vsrc[vs], vsrc[vs + 1u]));` : `kc[o] = ksrc[ks];
  vc[o] = vsrc[vs];`}
}
`;
}

/**
 * Causal attention of T new query rows over the cache (positions 0 .. past+T-1), one workgroup per
 * (row, head): keys in tiles of 64 (one per thread), softmax kept online (running max and sum),
 * each thread owning up to 4 of the head's dimensions (head_dim <= 256).
 * a = (T, past, hd, kvd); b = (ldq, qOffset, query heads per K/V head, d_model); c.x = softmax scale.
 * valid[j] = 0 hides key j (padding); slopes[h] is head h's ALiBi slope (0 without ALiBi).
 */
export function attentionShader(kv: KvStore): string {
  return PARAMS + weightReader('kc', 2, kv) + weightReader('vc', 3, kv) + /* wgsl */ `
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(4) var<storage, read> valid: array<u32>;
@group(0) @binding(5) var<storage, read> slopes: array<f32>;
@group(0) @binding(6) var<storage, read_write> ctx: array<f32>;
var<workgroup> qs: array<f32, 256>;
var<workgroup> sc: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let t = wg.x; let h = wg.y; let lid = l.x;
  let T = p.a.x; let past = p.a.y; let hd = p.a.z; let kvd = p.a.w;
  let K = past + T; let qi = past + t; let g = h / p.b.z; let d = p.b.w;
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
      let ko = j * kvd + g * hd;
      for (var e = 0u; e < hd; e++) { dot += qs[e] * kc_at(ko + e); }
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
      let vo = (j0 + i) * kvd + g * hd;
      if (lid < hd) { acc.x += w * vc_at(vo + lid); }
      if (lid + 64u < hd) { acc.y += w * vc_at(vo + lid + 64u); }
      if (lid + 128u < hd) { acc.z += w * vc_at(vo + lid + 128u); }
      if (lid + 192u < hd) { acc.w += w * vc_at(vo + lid + 192u); }
    }
    sum = sum * corr + ts;
    m = tm;
    workgroupBarrier();
  }
  let o = t * d + h * hd;
  if (lid < hd) { ctx[o + lid] = acc.x / sum; }
  if (lid + 64u < hd) { ctx[o + lid + 64u] = acc.y / sum; }
  if (lid + 128u < hd) { ctx[o + lid + 128u] = acc.z / sum; }
  if (lid + 192u < hd) { ctx[o + lid + 192u] = acc.w / sum; }
}
`;
}

/** Every kernel by name; `embed.bf16.f32`, `matmul.f16`: the weight-reading kernels per stored type. */
export function kernelSource(name: string): string {
  const [kernel, t1, t2] = name.split('.') as [string, WeightType | undefined, WeightType | undefined];
  switch (kernel) {
    case 'embed': return embedShader(t1 ?? 'f32', t2 ?? 'f32');
    case 'matmul': return matmulShader(t1 ?? 'f32');
    case 'norm': return NORM;
    case 'glu': return GLU;
    case 'clip': return CLIP;
    case 'storeKv': return storeKvShader((t1 ?? 'f32') as KvStore);
    case 'attention': return attentionShader((t1 ?? 'f32') as KvStore);
  }
  throw new Error(`internal: no kernel ${name}`);
}
