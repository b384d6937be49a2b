/**
 * The fused product of the WebGPU backend: Y[r, n] = epilogue(norm(X[r, :]) · W[n, :]), for up to
 * R rows at once (R = 1, 2, 4 or 8; more rows: the tiled product, matmul.ts), W in its stored type.
 *
 * A workgroup of 64 threads takes C = 4 columns (output n) per group of `tpc` threads (threads per
 * column: 64 / tpc groups a workgroup). Each thread walks its columns' rows a chunk at a time
 * (layout.ts: 8 to 64 weights, loaded whole in 16-byte words), decodes each 8-weight part once and
 * uses it for all R rows, so every weight byte is read once per step for every sequence of the
 * batch. The C·R partial sums are then reduced across the group: with the `subgroups` feature by
 * a butterfly of subgroupShuffleXor, then workgroup memory across subgroups; without it, by a tree
 * in workgroup memory.
 *
 * Fused around the product (flags, MV):
 * - before: the LayerNorm / RMSNorm of X's rows (statistics computed by each workgroup, the
 *   normalized value formed as the product reads it: (x − mean) · inv · w + b); rows gathered
 *   through an index list (the logit rows of a round);
 * - after: bias, · scale, activation, clamp (clip_qkv), GLU (act(G) · y), += into Y (residual).
 *
 * Parameters: a = (rows, N, K, ldx); b = (xOffset, ldy, yOffset, flags); c = (act, scale, clip,
 * eps); d = (W stride, W scaleAt, gather list offset in ids, tpc).
 */
import { chunkOf, chunkReader, type GpuWeightType, type MatrixLayout } from './layout.js';
import { ACTIVATION, PARAMS } from './wgsl.js';

/** Flags of a product (p.b.w). */
export const MV = {
  bias: 1,
  accumulate: 2,
  clip: 4,
  glu: 8,
  gather: 16,
  norm: 32,
  normWeight: 64,
  normBias: 128,
  rms: 256,
} as const;
/** Columns a group of threads computes. */
export const MV_COLUMNS = 4;
/** The most rows this kernel takes (more: the tiled product). */
export const MV_MAX_ROWS = 8;
/** Rows and columns of a tile of the tiled product (matmul.ts). */
export const MM_TILE = 64;

/** The row count the kernel for `rows` rows is built for. */
export function matvecRows(rows: number): number {
  return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
}

/** Threads per column for rows of `stride` weights: enough for every chunk, at most 64. */
export function matvecThreads(type: GpuWeightType, stride: number): number {
  const chunks = stride / chunkOf(type).chunk;
  let t = 1;
  while (t < chunks && t < 64) t *= 2;
  return t;
}

/**
 * The bindings of a product besides W (binding 2) and `store`, its epilogue: Y[row, n] from the
 * sum y (bias, · scale, activation, clamp, GLU, +=). Shared with the tiled product (matmul.ts).
 */
export const PRODUCT_IO = /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read> nw: array<f32>;
@group(0) @binding(6) var<storage, read> nb: array<f32>;
@group(0) @binding(7) var<storage, read> ids: array<u32>;
@group(0) @binding(8) var<storage, read> G: array<f32>;
fn store(sum: f32, row: u32, n: u32) {
  let f = p.b.w;
  var y = sum;
  if ((f & ${MV.bias}u) != 0u) { y += bias[n]; }
  y *= bitcast<f32>(p.c.y);
  if ((f & ${MV.glu}u) == 0u) { y = activate(y, p.c.x); }
  if ((f & ${MV.clip}u) != 0u) { let m = bitcast<f32>(p.c.z); y = clamp(y, -m, m); }
  let yi = p.b.z + row * p.b.y + n;
  if ((f & ${MV.glu}u) != 0u) { y = activate(G[yi], p.c.x) * y; }
  if ((f & ${MV.accumulate}u) != 0u) { y = Y[yi] + y; }
  Y[yi] = y;
}
`;

/** One product: its matrix, its rows and what is fused around it. */
export interface ProductSpec {
  W: MatrixLayout;
  /** Output rows (rows of X read, through `gather` when given). */
  rows: number;
  /** Values from one row of X (and Y) to the next. */
  ldx: number;
  ldy: number;
  bias?: boolean;
  /** LayerNorm (or RMSNorm) of X's rows, with or without weight and bias. */
  norm?: { weight: boolean; bias: boolean; rms: boolean; eps: number };
  /** The list of X's rows at this word of `ids`. */
  gather?: number;
  act?: number;
  scale?: number;
  clip?: number | null;
  /** y = act(G) · y (GLU). */
  glu?: boolean;
  /** Y += y (residual). */
  accumulate?: boolean;
}

/**
 * The kernel, parameters and workgroup counts of a product: up to 8 rows this file's kernel, more
 * the tiled one (matmul.ts).
 */
export function productDispatch(s: ProductSpec): { kernel: string; params: number[]; groups: number[] } {
  const L = s.W,
    R = matvecRows(s.rows),
    tiled = s.rows > MV_MAX_ROWS;
  const tpc = tiled ? 0 : matvecThreads(L.type, L.stride);
  const blocks = tiled ? Math.ceil(L.rows / MM_TILE) : Math.ceil(L.rows / ((MV_COLUMNS * 64) / tpc));
  const n = s.norm;
  const flags =
    (s.bias ? MV.bias : 0) |
    (s.accumulate ? MV.accumulate : 0) |
    (s.clip != null ? MV.clip : 0) |
    (s.glu ? MV.glu : 0) |
    (s.gather !== undefined ? MV.gather : 0) |
    (n ? MV.norm | (n.weight ? MV.normWeight : 0) | (n.bias ? MV.normBias : 0) | (n.rms ? MV.rms : 0) : 0);
  return {
    kernel: tiled ? `mm.${L.type}` : `mv.${L.type}.${R}`,
    params: [
      s.rows,
      L.rows,
      L.cols,
      s.ldx,
      0,
      s.ldy,
      0,
      flags,
      s.act ?? 0,
      f32bits(s.scale ?? 1),
      f32bits(s.clip ?? 0),
      f32bits(n?.eps ?? 0),
      L.stride,
      L.scaleAt,
      s.gather ?? 0,
      tpc,
    ],
    groups: [Math.min(blocks, 32768), Math.ceil(s.rows / (tiled ? MM_TILE : R)), Math.ceil(blocks / 32768)],
  };
}

export function f32bits(x: number): number {
  return new Uint32Array(Float32Array.of(x).buffer)[0]!;
}

/**
 * The reduction of `count` values of the private array `arr` across aligned groups of `gs`
 * threads (a power of two); afterwards `total(v, g0, gs)` gives value v's sum for the group whose
 * first thread is g0, to every thread, until the next workgroupBarrier.
 */
function reduce(arr: string, count: string, gs: string, subgroups: boolean): string {
  if (subgroups) {
    return `{
    let m = min(${gs}, sgs);
    for (var k = 1u; k < m; k <<= 1u) {
      for (var v = 0u; v < ${count}; v++) { ${arr}[v] += subgroupShuffleXor(${arr}[v], k); }
    }
    if ((lid % m) == 0u) { for (var v = 0u; v < ${count}; v++) { red[v * 64u + lid / m] = ${arr}[v]; } }
    workgroupBarrier();
  }`;
  }
  return `{
    for (var v = 0u; v < ${count}; v++) { red[v * 64u + lid] = ${arr}[v]; }
    workgroupBarrier();
    for (var s = ${gs} >> 1u; s > 0u; s >>= 1u) {
      if ((lid % ${gs}) < s) { for (var v = 0u; v < ${count}; v++) { red[v * 64u + lid] += red[v * 64u + lid + s]; } }
      workgroupBarrier();
    }
  }`;
}

function totalFn(subgroups: boolean): string {
  return subgroups
    ? `fn total(v: u32, g0: u32, gs: u32) -> f32 {
  let m = min(gs, sgs);
  var s = 0.0;
  for (var i = 0u; i < gs / m; i++) { s += red[v * 64u + g0 / m + i]; }
  return s;
}`
    : 'fn total(v: u32, g0: u32, gs: u32) -> f32 { return red[v * 64u + g0]; }';
}

export function matvecShader(type: GpuWeightType, R: number, subgroups: boolean, f16 = false): string {
  const { chunk, parts } = chunkOf(type);
  const C = MV_COLUMNS,
    NV = C * R;
  const cols = Array.from({ length: C }, (_, c) => c);
  // subgroupShuffleXor runs where every thread of the workgroup runs (after the chunk loop); the
  // analysis cannot see that the subgroup size kept in a private variable is uniform.
  const enable =
    (f16 ? 'enable f16;\n' : '') + (subgroups ? 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n' : '');
  // f16 math (the shader-f16 feature, an option): each 8-weight part's products and their sum in f16.
  const part = f16
    ? 'f32(dot(vec4<f16>(q.lo), vec4<f16>(xl[r])) + dot(vec4<f16>(q.hi), vec4<f16>(xh[r])))'
    : 'dot(q.lo, xl[r]) + dot(q.hi, xh[r])';
  return (
    enable +
    PARAMS +
    ACTIVATION +
    /* wgsl */ `
struct Part { lo: vec4<f32>, hi: vec4<f32> }
${chunkReader(type)}
${PRODUCT_IO}
const R = ${R}u;
const C = ${C}u;
const NV = ${NV}u;
var<workgroup> red: array<f32, ${NV * 64}>;
var<private> lid: u32;
var<private> sgs: u32;
var<private> acc: array<f32, ${NV}>;
var<private> st: array<f32, ${R}>;
var<private> xo: array<u32, ${R}>;
var<private> mu: array<f32, ${R}>;
var<private> iv: array<f32, ${R}>;
${totalFn(subgroups)}

// Row r of X at columns k .. k+3, normalized when asked; 0 past column K (padded rows).
fn xv(r: u32, k: u32) -> vec4<f32> {
  let o = xo[r] + k;
  var v = vec4<f32>(X[o], X[o + 1u], X[o + 2u], X[o + 3u]);
  let f = p.b.w;
  if ((f & ${MV.norm}u) != 0u) {
    v = (v - mu[r]) * iv[r];
    if ((f & ${MV.normWeight}u) != 0u) { v *= vec4<f32>(nw[k], nw[k + 1u], nw[k + 2u], nw[k + 3u]); }
    if ((f & ${MV.normBias}u) != 0u) { v += vec4<f32>(nb[k], nb[k + 1u], nb[k + 2u], nb[k + 3u]); }
  }
  return select(vec4<f32>(0.0), v, vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.a.z));
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u
    ${subgroups ? ', @builtin(subgroup_size) sg: u32' : ''}) {
  lid = l.x;
  ${subgroups ? 'sgs = sg;' : ''}
  let rows = p.a.x; let N = p.a.y; let K = p.a.z; let f = p.b.w; let tpc = p.d.w;
  let lane = lid % tpc; let g0 = lid - lane;
  let r0 = wg.y * R; let nr = min(R, rows - r0);
  let n0 = ((wg.x + wg.z * 32768u) * (64u / tpc) + lid / tpc) * C;
  // Rows past the last compute a copy of it (never written): every row runs the same code.
  for (var r = 0u; r < R; r++) {
    let row = r0 + min(r, nr - 1u);
    xo[r] = p.b.x + select(row, ids[p.d.z + row], (f & ${MV.gather}u) != 0u) * p.a.w;
  }
  if ((f & ${MV.norm}u) != 0u) {
    if ((f & ${MV.rms}u) == 0u) {
      for (var k = lid; k < K; k += 64u) { for (var r = 0u; r < R; r++) { st[r] += X[xo[r] + k]; } }
      ${reduce('st', 'R', '64u', subgroups)}
      for (var r = 0u; r < R; r++) { mu[r] = total(r, 0u, 64u) / f32(K); st[r] = 0.0; }
      workgroupBarrier();
    }
    for (var k = lid; k < K; k += 64u) {
      for (var r = 0u; r < R; r++) { let dx = X[xo[r] + k] - mu[r]; st[r] += dx * dx; }
    }
    ${reduce('st', 'R', '64u', subgroups)}
    for (var r = 0u; r < R; r++) { iv[r] = 1.0 / sqrt(total(r, 0u, 64u) / f32(K) + bitcast<f32>(p.c.w)); }
    workgroupBarrier();
  }
  let nch = p.d.x / ${chunk}u;
${cols.map((c) => `  let c${c} = min(n0 + ${c}u, N - 1u);`).join('\n')}
  for (var ch = lane; ch < nch; ch += tpc) {
${cols.map((c) => `    let w${c} = w_raw(c${c}, ch);`).join('\n')}
    for (var i = 0u; i < ${parts}u; i++) {
      let ko = w_koff(ch, i);
      var xl: array<vec4<f32>, ${R}>;
      var xh: array<vec4<f32>, ${R}>;
      for (var r = 0u; r < R; r++) { xl[r] = xv(r, ko.x); xh[r] = xv(r, ko.y); }
${cols
  .map(
    (c) => `      { let q = w_part(w${c}, i);
        for (var r = 0u; r < R; r++) { acc[${c * R}u + r] += ${part}; } }`,
  )
  .join('\n')}
    }
  }
  ${reduce('acc', 'NV', 'tpc', subgroups)}
  for (var v = lane; v < NV; v += tpc) {
    let n = n0 + v / R; let r = v % R;
    if (n < N && r < nr) { store(total(v, g0, tpc), r0 + r, n); }
  }
}
`
  );
}
