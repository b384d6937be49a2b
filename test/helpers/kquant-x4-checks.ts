/**
 * The checks the q4_Kx4 tiles share (decode `gemm_q4_kx4`, prompt `gemm_q4_kx4_prompt`): a
 * product against gemm_k's bits and float64, the product added onto Y with its weight rows split
 * inside a group, and rows of Y wider than N.
 */
import assert from 'node:assert/strict';
import { type Heap, rand } from './wasm-heap.js';

/** gemm_k's code for q4_K. */
export const Q4K = 5;

/** A q4_Kx4 tile's signature: (activations, packed weights, Y, ldy, M, N, first row, end row, K, add onto Y). */
export type X4Product = (
  pa: number,
  pp: number,
  py: number,
  ldy: number,
  M: number,
  N: number,
  from: number,
  to: number,
  K: number,
  add: number,
) => void;

/**
 * M activation rows through `product` (packed weights at pp) and through gemm_k on the plain matrix
 * (pw; its type `kind`, default q4_K): every value must have gemm_k's bits and lie within 1e-5
 * (relative) of `ref64(m)`, the float64 sums of llama.cpp's per-super-block values for activation
 * row m, plus 2^-21 of `mag64(m)` where given: a bound on Σ |d·d_x·sumi| + |dmin·d_x·summ| over the
 * super-blocks, the size of the f32 terms that cancel (q5_K's, up to 31·63 a weight, cancel to a
 * value far below them when every activation is the same). Returns the product's values.
 */
export function checkBitsAndFloat64(
  h: Heap,
  product: X4Product,
  o: { pa: number; pw: number; pp: number; got: number; M: number; N: number; K: number; tag: string; kind?: number },
  ref64: (m: number) => Float64Array | Float32Array | number[],
  mag64?: (m: number) => ArrayLike<number>,
): Float32Array {
  const { pa, pw, pp, got, M, N, K, tag } = o;
  const want = h.alloc(M * N * 4);
  h.k.gemm_k(o.kind ?? Q4K, pa, pw, want, N, M, 0, N, K, 0);
  product(pa, pp, got, N, M, N, 0, N, K, 0);
  const y = h.f32(got, M * N).slice(),
    ref = h.f32(want, M * N);
  for (let i = 0; i < M * N; i++)
    if (!Object.is(y[i], ref[i]))
      assert.fail(`${tag} M=${M} [${Math.floor(i / N)},${i % N}]: ${y[i]} vs gemm_k ${ref[i]}`);
  for (let m = 0; m < M; m++) {
    const r = ref64(m),
      mag = mag64?.(m);
    for (let n = 0; n < N; n++)
      assert.ok(
        Math.abs(y[m * N + n]! - r[n]!) <= 1e-5 * (1 + Math.abs(r[n]!)) + 2 ** -21 * (mag?.[n] ?? 0),
        `${tag} M=${M} [${m},${n}] ${y[m * N + n]} vs float64 ${r[n]}`,
      );
  }
  return y;
}

/** Added onto a random base, rows [cut, N) then [0, cut): each value is f32(base + y), y the whole product. */
export function checkSplitAdds(
  h: Heap,
  product: X4Product,
  o: {
    pa: number;
    pp: number;
    got: number;
    y: Float32Array;
    M: number;
    N: number;
    K: number;
    seed: number;
    tag: string;
  },
): void {
  const { pa, pp, got, y, M, N, K, tag } = o;
  const base = rand(M * N, o.seed);
  h.f32(got, M * N).set(base);
  const cut = Math.min(N, 1 + (N >> 1));
  product(pa, pp, got, N, M, N, cut, N, K, 1);
  product(pa, pp, got, N, M, N, 0, cut, K, 1);
  const y2 = h.f32(got, M * N);
  for (let i = 0; i < M * N; i++)
    if (!Object.is(y2[i], Math.fround(base[i]! + y[i]!))) assert.fail(`${tag} M=${M} split at ${cut} [${i}]`);
}

/**
 * Rows of Y wider than N (ldy = N + 3), rows 1 to N of M activation rows at `pa`: the same bits as
 * `plain` (gemm_k on the unpacked matrix) writes, and nothing outside them touched.
 */
export function checkWideY(
  h: Heap,
  product: X4Product,
  plain: (pa: number, py: number, ldy: number, M: number, from: number, to: number) => void,
  o: { pa: number; pp: number; M: number; N: number; K: number; tag: string },
): void {
  const { pa, pp, M, N, K, tag } = o;
  const ldy = N + 3,
    py = h.alloc(M * ldy * 4),
    pz = h.alloc(M * ldy * 4);
  h.f32(py, M * ldy).fill(-1);
  h.f32(pz, M * ldy).fill(-1);
  plain(pa, pz, ldy, M, 1, N);
  product(pa, pp, py, ldy, M, N, 1, N, K, 0);
  const a = h.f32(py, M * ldy),
    b = h.f32(pz, M * ldy);
  for (let i = 0; i < M * ldy; i++) if (!Object.is(a[i], b[i])) assert.fail(`${tag} ldy [${i}]: ${a[i]} vs ${b[i]}`);
}
