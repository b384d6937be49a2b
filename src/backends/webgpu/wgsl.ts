/**
 * WGSL shared by the kernels: the parameter block (binding 0: sixteen u32, f32 values bit-cast;
 * the comment above each kernel says which slot holds what) and the activation functions.
 */

export const PARAMS = /* wgsl */ `
struct P { a: vec4<u32>, b: vec4<u32>, c: vec4<u32>, d: vec4<u32> }
@group(0) @binding(0) var<uniform> p: P;
`;

/** Activation codes (ACT in runner.ts). */
export const ACTIVATION = /* wgsl */ `
// erf within 4e-7 absolute of CPython's math.erf (test/webgpu-kernels.test.ts; 2.2e-7 on lavapipe):
// Numerical Recipes' erfc Chebyshev fit (1.2e-7) plus float32 rounding of 1 - erfc, enough for f32
// GELU, which multiplies it by x. Absolute, not relative: below |x| of about 1e-7 it returns 0.
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

/** Sum of one value per thread of a 64-thread workgroup, to every thread (`red`: 64 f32). */
export const SUM64 = /* wgsl */ `
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
`;
