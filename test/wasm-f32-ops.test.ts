import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matmul } from '../src/backends/wasm/f32-ops.js';

/** Deterministic values in [-1, 1). */
function rand(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 31 - 1;
  }
  return a;
}

/** Plain float64 triple loop on the logical matrices. */
function naive(
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
): Float64Array {
  const out = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) {
        const av = transA ? a[k * M + m]! : a[m * K + k]!;
        const bv = transB ? b[n * K + k]! : b[k * N + n]!;
        s += av * bv;
      }
      out[m * N + n] = s;
    }
  }
  return out;
}

test('matmul matches a float64 triple loop on ragged sizes, every transpose combination', () => {
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [3, 5, 7],
    [4, 2, 4],
    [5, 9, 13],
    [17, 31, 67],
    [8, 130, 33],
    [2, 3, 301],
  ];
  for (const [M, N, K] of shapes) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = rand(M * K, M * 7 + K),
          b = rand(K * N, N * 13 + K);
        const out = new Float32Array(M * N);
        matmul(out, a, b, M, N, K, { transA, transB });
        const ref = naive(a, b, M, N, K, transA, transB);
        for (let i = 0; i < M * N; i++) {
          assert.ok(
            Math.abs(out[i]! - ref[i]!) <= 1e-5 * Math.sqrt(K) + 1e-6,
            `M${M} N${N} K${K} tA${transA} tB${transB} [${i}] ${out[i]} vs ${ref[i]}`,
          );
        }
      }
    }
  }
});

test('matmul accumulate adds into out; K = 0 and empty shapes are handled', () => {
  const M = 6,
    N = 5,
    K = 11;
  const a = rand(M * K, 1),
    b = rand(K * N, 2);
  const base = rand(M * N, 3);
  const out = base.slice();
  matmul(out, a, b, M, N, K, { accumulate: true });
  const ref = naive(a, b, M, N, K, false, false);
  for (let i = 0; i < M * N; i++) assert.ok(Math.abs(out[i]! - (base[i]! + ref[i]!)) < 1e-5);
  const z = base.slice();
  matmul(z, a, b, M, N, 0);
  assert.ok(z.subarray(0, M * N).every((v) => v === 0));
  matmul(new Float32Array(0), a, b, 0, N, K);
  assert.throws(() => matmul(new Float32Array(1), a, b, M, N, K));
});
