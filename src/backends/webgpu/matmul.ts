/**
 * The tiled product, for prompts (more than 8 rows): the same Y = epilogue(norm(X) · Wᵀ) as
 * matvec.ts, one 64 × 64 tile of Y per workgroup of 256 threads (4 × 4 outputs each). K is
 * walked 32 at a time: 64 rows of normalized X and 64 columns of weights, each weight decoded once
 * per workgroup by the element readers (layout.ts), are staged in workgroup memory and each used
 * by the 64 columns / rows of the tile. Parameters as matvec.ts (d.w unused). With `f16` (the
 * `shader-f16` feature, an option) the products and their sums within a step of K are f16.
 */
import { elementReader, type GpuWeightType } from './layout.js';
import { MV, PRODUCT_IO } from './matvec.js';
import { ACTIVATION, PARAMS } from './wgsl.js';

export function matmulShader(type: GpuWeightType, f16: boolean): string {
  // f16 math: the products of each 32-value step of K summed in f16, the steps in f32.
  const inner = f16
    ? `// initialized explicitly: lavapipe did not zero a loop-scoped var declared without a value each iteration
    var part = array<vec4<f16>, 4>(vec4<f16>(0.0h), vec4<f16>(0.0h), vec4<f16>(0.0h), vec4<f16>(0.0h));
    for (var kk = 0u; kk < 32u; kk++) {
      let xa = kk * 64u + 4u * ty; let wa = kk * 64u + 4u * tx;
      let a = vec4<f16>(vec4<f32>(xs[xa], xs[xa + 1u], xs[xa + 2u], xs[xa + 3u]));
      let b = vec4<f16>(vec4<f32>(ws[wa], ws[wa + 1u], ws[wa + 2u], ws[wa + 3u]));
      part[0] += a.x * b; part[1] += a.y * b; part[2] += a.z * b; part[3] += a.w * b;
    }
    for (var i = 0u; i < 4u; i++) { acc[i] += vec4<f32>(part[i]); }`
    : `for (var kk = 0u; kk < 32u; kk++) {
      let xa = kk * 64u + 4u * ty; let wa = kk * 64u + 4u * tx;
      let a = vec4<f32>(xs[xa], xs[xa + 1u], xs[xa + 2u], xs[xa + 3u]);
      let b = vec4<f32>(ws[wa], ws[wa + 1u], ws[wa + 2u], ws[wa + 3u]);
      acc[0] += a.x * b; acc[1] += a.y * b; acc[2] += a.z * b; acc[3] += a.w * b;
    }`;
  return (
    (f16 ? 'enable f16;\n' : '') +
    PARAMS +
    ACTIVATION +
    elementReader('W', 2, type) +
    PRODUCT_IO +
    /* wgsl */ `
// [k][row] and [k][column] of the current 32 values of K (also the norm statistics' scratch).
var<workgroup> xs: array<f32, 2048>;
var<workgroup> ws: array<f32, 2048>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) l: vec3u) {
  let t = l.x; let tx = t % 16u; let ty = t / 16u;
  let rows = p.a.x; let N = p.a.y; let K = p.a.z; let f = p.b.w;
  let r0 = wg.y * 64u; let n0 = (wg.x + wg.z * 32768u) * 64u;
  // This thread stages 8 values a step of row r0 + lr and of column n0 + lr, from k0 + lk.
  let lr = t / 4u; let lk = (t % 4u) * 8u;
  let row = min(r0 + lr, rows - 1u);
  let xo = p.b.x + select(row, ids[p.d.z + row], (f & ${MV.gather}u) != 0u) * p.a.w;
  let wo = min(n0 + lr, N - 1u) * p.d.x;
  let norm = (f & ${MV.norm}u) != 0u;
  var mean = 0.0;
  var inv = 1.0;
  if (norm) {
    // The staged row's statistics, by its 4 threads (as the reference: mean, then variance).
    if ((f & ${MV.rms}u) == 0u) {
      var s = 0.0;
      for (var k = t % 4u; k < K; k += 4u) { s += X[xo + k]; }
      xs[t] = s;
      workgroupBarrier();
      mean = (xs[4u * lr] + xs[4u * lr + 1u] + xs[4u * lr + 2u] + xs[4u * lr + 3u]) / f32(K);
      workgroupBarrier();
    }
    var v = 0.0;
    for (var k = t % 4u; k < K; k += 4u) { let dx = X[xo + k] - mean; v += dx * dx; }
    xs[t] = v;
    workgroupBarrier();
    let vv = xs[4u * lr] + xs[4u * lr + 1u] + xs[4u * lr + 2u] + xs[4u * lr + 3u];
    inv = 1.0 / sqrt(vv / f32(K) + bitcast<f32>(p.c.w));
    workgroupBarrier();
  }
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < K; k0 += 32u) {
    for (var i = 0u; i < 8u; i++) {
      let k = k0 + lk + i;
      var x = 0.0;
      var w = 0.0;
      if (k < K) {
        x = X[xo + k];
        if (norm) {
          x = (x - mean) * inv;
          if ((f & ${MV.normWeight}u) != 0u) { x *= nw[k]; }
          if ((f & ${MV.normBias}u) != 0u) { x += nb[k]; }
        }
        w = W_at(wo + k, p.d.y);
      }
      xs[(lk + i) * 64u + lr] = x;
      ws[(lk + i) * 64u + lr] = w;
    }
    workgroupBarrier();
    ${inner}
    workgroupBarrier();
  }
  for (var i = 0u; i < 4u; i++) {
    let r = r0 + 4u * ty + i;
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + 4u * tx + j;
      if (r < rows && n < N) { store(acc[i][j], r, n); }
    }
  }
}
`
  );
}
