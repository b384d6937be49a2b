// The WebGPU backend's fused products (src/backends/webgpu/matvec.ts) alone, for every stored weight
// type, against the reference backend's float64 math on ggml's dequantized weights: one row, rows
// gathered through an index list with LayerNorm, GELU and a scale, more rows than one workgroup
// takes with RMSNorm, clip and +=, GLU; long rows; with and without subgroup operations. Every row
// count of the mat-vec kernel (1 to 8: the kernels built for 1, 2, 4 and 8 rows, the rows past the
// last idle) on f32 at 8, 16 and 64 threads a column. Also: a row's result does not depend on the
// rows computed beside it (batched decode gives the bits of single-sequence decode). And the WGSL
// erf and GELU against CPython's math.erf. Runs on lavapipe where there is no GPU; skipped where
// WebGPU has no adapter.
//
// Each kernel built (weight type x rows x subgroups) is a pipeline that lavapipe compiles for 1 to
// 20 s the first time: the per-type cases use the kernels for 1 and 2 rows and the tiled product
// (the type's decoding is the same code in each); the kernels for 4 and 8 rows, whose code is the
// same for every type, are checked on f32, whose kernels the runner tests compile anyway.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { gelu, layerNorm, linear, rmsNorm, silu } from '../src/backends/reference/math.js';
import { openGpu, type GpuBuffer } from '../src/backends/webgpu/gpu.js';
import { matrixLayout, packMatrix, type GpuWeightType, type MatrixLayout } from '../src/backends/webgpu/layout.js';
import { productDispatch, type ProductSpec } from '../src/backends/webgpu/matvec.js';
import { ACTIVATION } from '../src/backends/webgpu/wgsl.js';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import { fixturePath } from './helpers/goldens.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { KernelHarness, probeWebGpu, random } from './helpers/webgpu-harness.js';

const probe = await probeWebGpu();
const hasSubgroups = probe.subgroups;
const skip = skipUnlessPresent(probe.why);

const TYPES: GpuWeightType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'];
const ACT_GELU = 1,
  ACT_SILU = 3;

interface Bindings {
  X: GpuBuffer;
  W: GpuBuffer;
  Y: GpuBuffer;
  bias?: GpuBuffer;
  nw?: GpuBuffer;
  nb?: GpuBuffer;
  ids?: GpuBuffer;
  G?: GpuBuffer;
}

/** Runs one product; returns Y (yWords values). */
async function product(h: KernelHarness, spec: ProductSpec, b: Bindings, yWords: number): Promise<Float32Array> {
  const d = h.dummy;
  const p = productDispatch(spec);
  const buffers = [b.X, b.W, b.bias ?? d, b.Y, b.nw ?? d, b.nb ?? d, b.ids ?? d, b.G ?? d];
  const [y] = await h.run(p.kernel, buffers, p.params, p.groups, [{ buf: b.Y, bytes: yWords * 4 }]);
  return new Float32Array(y!);
}

/** A random N × K matrix stored as `type`: its GPU layout and buffer, and ggml's dequantized values. */
interface Matrix {
  L: MatrixLayout;
  buf: GpuBuffer;
  w: Float32Array;
}

function matrix(h: KernelHarness, type: GpuWeightType, N: number, K: number, seed: number): Matrix {
  const bytes = quantize(type, random(N * K, seed, (1 / Math.sqrt(K)) * 2));
  const L = matrixLayout(type, N, K);
  const packed = new Uint8Array(L.bytes);
  packMatrix(L, bytes, packed);
  return { L, buf: h.buffer(packed), w: dequantize(type, bytes, N * K) };
}

interface Case {
  label: string;
  rows: number;
  /** X's rows read, in order (default 0 .. rows-1). */
  gather?: number[];
  norm?: 'layer' | 'rms';
  bias?: boolean;
  act?: number;
  scale?: number;
  clip?: number;
  glu?: boolean;
  accumulate?: boolean;
}

/** What the product computes, in float64 on the dequantized weights (the reference backend's math). */
interface Vectors {
  bias: Float32Array;
  nw: Float32Array;
  nb: Float32Array;
  G: Float32Array;
  Y0: Float32Array;
}

/** Random bias, norm weights, GLU gates and += values for N outputs of rows of K, up to 70 rows. */
function vectors(N: number, K: number, seed: number): Vectors {
  return {
    bias: random(N, seed, 0.1),
    nw: random(K, seed + 1).map((x) => 1 + 0.3 * x),
    nb: random(K, seed + 3, 0.2),
    G: random(70 * N, seed + 4, 2),
    Y0: random(70 * N, seed + 5),
  };
}

function expected(
  c: Case,
  w: Float32Array,
  N: number,
  K: number,
  X: Float32Array,
  v: Vectors,
): { y: Float64Array; mag: Float64Array } {
  const rowsX = c.gather ?? Array.from({ length: c.rows }, (_, i) => i);
  let x: Float64Array = new Float64Array(c.rows * K);
  rowsX.forEach((r, i) => {
    x.set(X.subarray(r * K, (r + 1) * K), i * K);
  });
  if (c.norm === 'layer') x = layerNorm(x, c.rows, K, v.nw, v.nb, 1e-5);
  if (c.norm === 'rms') x = rmsNorm(x, c.rows, K, v.nw, 1e-5);
  const y = linear(x, c.rows, w, K, N, c.bias ? v.bias : undefined);
  const mag = linear(x.map(Math.abs), c.rows, w.map(Math.abs), K, N);
  const act = (z: number) => (c.act === ACT_GELU ? gelu(z) : c.act === ACT_SILU ? silu(z) : z);
  for (let i = 0; i < y.length; i++) {
    let z = y[i]! * (c.scale ?? 1);
    if (!c.glu) z = act(z);
    if (c.clip !== undefined) z = Math.min(c.clip, Math.max(-c.clip, z));
    if (c.glu) {
      z *= act(v.G[i]!);
      mag[i]! *= Math.abs(act(v.G[i]!));
    }
    if (c.accumulate) z += v.Y0[i]!;
    y[i] = z;
  }
  return { y, mag };
}

async function run(h: KernelHarness, c: Case, m: Matrix, X: GpuBuffer, v: Vectors): Promise<Float32Array> {
  const N = m.L.rows,
    K = m.L.cols;
  const ids = c.gather ? h.buffer(Uint32Array.from([0, 0, 0, ...c.gather])) : undefined;
  const spec: ProductSpec = {
    W: m.L,
    rows: c.rows,
    ldx: K,
    ldy: N,
    bias: c.bias,
    act: c.act,
    scale: c.scale,
    clip: c.clip,
    glu: c.glu,
    accumulate: c.accumulate,
    gather: c.gather ? 3 : undefined,
    norm: c.norm ? { weight: true, bias: c.norm === 'layer', rms: c.norm === 'rms', eps: 1e-5 } : undefined,
  };
  const Y = h.buffer(c.accumulate ? v.Y0 : new Float32Array(c.rows * N));
  const [bias, nw, nb, G] = [v.bias, v.nw, v.nb, v.G].map((a) => h.buffer(a));
  return product(h, spec, { X, W: m.buf, Y, bias, nw, nb, ids, G }, c.rows * N);
}

const CASES: Case[] = [
  { label: 'one row with bias', rows: 1, bias: true },
  {
    label: 'two rows gathered, LayerNorm, GELU, scale',
    rows: 2,
    gather: [4, 2],
    norm: 'layer',
    act: ACT_GELU,
    scale: 0.5,
  },
  { label: 'eleven rows (the tiled product), RMSNorm, clip, +=', rows: 11, norm: 'rms', clip: 0.3, accumulate: true },
  {
    label: 'seventy rows gathered (two tiles of the tiled product), LayerNorm, GELU, scale',
    rows: 70,
    gather: Array.from({ length: 70 }, (_, i) => (i * 7) % 11),
    norm: 'layer',
    act: ACT_GELU,
    scale: 0.5,
    bias: true,
  },
  { label: 'two rows, GLU with SiLU', rows: 2, bias: true, act: ACT_SILU, glu: true },
];

for (const subgroups of hasSubgroups ? [true, false] : [false]) {
  const title = `webgpu products (every stored type) vs float64 on ggml's dequantized weights, subgroups: ${subgroups}`;
  describe(title, { skip }, () => {
    let h: KernelHarness;
    before(async () => {
      h = new KernelHarness(await openGpu({ subgroups }));
    });
    after(() => h?.gpu.device.destroy());

    for (const type of TYPES) {
      it(type, async () => {
        // 37 outputs: not a whole number of workgroups. f32/f16/bf16 rows of 100 are padded to 104.
        const N = 37,
          K = ['f32', 'f16', 'bf16'].includes(type) ? 100 : 512;
        const m = matrix(h, type, N, K, 7);
        const Xv = random(11 * K, 3, 2);
        for (let i = 0; i < K; i++) Xv[i] = Xv[i]! + 3; // a row with a large mean (LayerNorm's two passes)
        const X = h.buffer(Xv);
        const v = vectors(N, K, 5);
        for (const c of CASES) {
          const got = await run(h, c, m, X, v);
          const { y, mag } = expected(c, m.w, N, K, Xv, v);
          for (let i = 0; i < y.length; i++) {
            const tol = 3e-6 * (mag[i]! + 1) + (c.accumulate ? 1e-7 * Math.abs(v.Y0[i]!) : 0);
            const at = `${type}, ${c.label}: element ${i}`;
            assert.ok(Math.abs(got[i]! - y[i]!) <= tol, `${at}: ${got[i]} vs ${y[i]} (within ${tol})`);
          }
          if (c.gather && c.rows <= 8) {
            // the same bits whatever the rows beside it: each gathered row alone
            for (let r = 0; r < c.rows; r++) {
              const one = await run(h, { ...c, rows: 1, gather: [c.gather[r]!] }, m, X, v);
              assert.deepEqual(one, got.subarray(r * N, (r + 1) * N), `${type}: row ${r} alone`);
            }
          }
        }
      });
    }

    it('long rows (K 4096: several chunks a thread; 128 tiled steps), bf16 and q4_k, 2 and 12 rows', async () => {
      for (const type of ['bf16', 'q4_k'] as const) {
        for (const rows of [2, 12]) {
          const N = 9,
            K = 4096;
          const m = matrix(h, type, N, K, 11);
          const Xv = random(rows * K, 12, 2);
          const v: Vectors = {
            bias: new Float32Array(N),
            nw: random(K, 13).map((x) => 1 + 0.3 * x),
            nb: random(K, 14, 0.2),
            G: new Float32Array(rows * N),
            Y0: new Float32Array(rows * N),
          };
          const c: Case = { label: 'long', rows, norm: 'layer' };
          const got = await run(h, c, m, h.buffer(Xv), v);
          const { y, mag } = expected(c, m.w, N, K, Xv, v);
          for (let i = 0; i < y.length; i++) {
            const at = `${type}, ${rows} rows, element ${i}`;
            assert.ok(Math.abs(got[i]! - y[i]!) <= 3e-6 * (mag[i]! + 1), `${at}: ${got[i]} vs ${y[i]}`);
          }
        }
      }
    });

    it('every row count of the mat-vec kernel (1 to 8 rows), f32 at 8, 16 and 64 threads a column; each row alone gives its bits', async () => {
      // K 40, 100, 512: 5, 13 and 64 chunks of 8, so 8, 16 and 64 threads a column (matvecThreads)
      for (const K of [40, 100, 512]) {
        const N = 37;
        const m = matrix(h, 'f32', N, K, K);
        const Xv = random(8 * K, K + 1, 2);
        const X = h.buffer(Xv);
        const v = vectors(N, K, K + 2);
        for (let rows = 1; rows <= 8; rows++) {
          const c: Case = { label: `${rows} rows`, rows, norm: 'layer', bias: true, act: ACT_GELU };
          const got = await run(h, c, m, X, v);
          const { y, mag } = expected(c, m.w, N, K, Xv, v);
          for (let i = 0; i < y.length; i++) {
            const at = `K ${K}, ${rows} rows, element ${i}`;
            assert.ok(Math.abs(got[i]! - y[i]!) <= 3e-6 * (mag[i]! + 1), `${at}: ${got[i]} vs ${y[i]}`);
          }
          for (let r = 0; r < rows; r++) {
            const one = await run(h, { ...c, rows: 1, gather: [r] }, m, X, v);
            assert.deepEqual(one, got.subarray(r * N, (r + 1) * N), `K ${K}, ${rows} rows: row ${r} alone`);
          }
        }
      }
    });
  });
}

describe('webgpu products with f16 math (shader-f16) vs float64, within f16 rounding', { skip }, () => {
  let h: KernelHarness;
  before(async () => {
    h = new KernelHarness(await openGpu({ f16: true }));
  });
  after(() => h?.gpu.device.destroy());

  for (const type of ['bf16', 'q8_0', 'q4_k'] as const) {
    it(`${type}: mat-vec and tiled`, (t) => {
      if (!h.gpu.f16) return t.skip(`this adapter has no shader-f16 (${h.gpu.adapterName})`);
      return (async () => {
        const N = 37,
          K = 512;
        const m = matrix(h, type, N, K, 21);
        const Xv = random(70 * K, 22, 2);
        const v = vectors(N, K, 23);
        let worst = 0;
        for (const c of [CASES[0]!, CASES[3]!]) {
          const got = await run(h, c, m, h.buffer(Xv), v);
          const { y, mag } = expected(c, m.w, N, K, Xv, v);
          for (let i = 0; i < y.length; i++) {
            // f16 keeps 11 bits: each product and each 8- or 32-term sum rounds by up to 2^-11 of its size
            const err = Math.abs(got[i]! - y[i]!) / (mag[i]! + 1e-3);
            worst = Math.max(worst, err);
            assert.ok(err <= 4e-3, `${type}, ${c.label}: element ${i}: ${got[i]} vs ${y[i]}`);
          }
        }
        // and it is f16: further from float64 than the f32 products' 3e-6
        assert.ok(worst > 1e-5, `largest relative error ${worst}: were the products computed in f16?`);
      })();
    });
  }
});

describe("WGSL erf and GELU (wgsl.ts) against CPython's math.erf (test/fixtures/erf-table.json)", { skip }, () => {
  let h: KernelHarness;
  before(async () => {
    h = new KernelHarness(await openGpu());
  });
  after(() => h?.gpu.device.destroy());

  it('erf_f32 within its fit error, activate(GELU) within float32 rounding, on the whole table', async () => {
    const rows = (JSON.parse(readFileSync(fixturePath('erf-table.json'), 'utf8')) as { rows: [number, number][] }).rows;
    assert.ok(rows.length > 200);
    // y[2i] = erf(t), y[2i + 1] = GELU(√2·t) = √2·t · (1 + erf(t)) / 2, as the wasm kernels' test reads the table.
    const t = Float32Array.from(rows, ([x]) => x);
    const x = Float32Array.from(rows, ([v]) => v * Math.SQRT2);
    const body = 'y[2u * i] = erf_f32(x[i]); y[2u * i + 1u] = activate(x[i] * 1.41421356237309505, 1u);';
    const y = await h.elementwise(ACTIVATION, body, t, 2);
    let worst = 0;
    rows.forEach(([tv, e], i) => {
      const got = y[2 * i]!;
      worst = Math.max(worst, Math.abs(got - e));
      // Absolute error: the fit's 1.2e-7 plus a few float32 ulps of 1 (WGSL lets exp err by 3 + 2|x| ulps,
      // and 1 - erfc rounds once more); lavapipe measures 2.2e-7. Near 0 that is no relative bound:
      // erf_f32(±1e-8) is 0, which GELU, multiplying by x, does not notice.
      assert.ok(Math.abs(got - e) <= 4e-7, `erf_f32(${tv}) = ${got}, math.erf ${e}`);
      const want = 0.5 * x[i]! * (1 + e);
      const g = y[2 * i + 1]!;
      assert.ok(Math.abs(g - want) <= 1e-6 + 3e-7 * Math.abs(want), `gelu(${x[i]}) (erf ${tv}): ${g} vs ${want}`);
    });
    console.log(`# WGSL erf_f32: largest error against math.erf ${worst.toExponential(2)} on ${h.gpu.adapterName}`);
  });
});
