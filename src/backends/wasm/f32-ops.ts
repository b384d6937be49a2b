/**
 * Synchronous f32 matrix product on Float32Arrays, through the wasm SIMD kernels (one thread).
 * For training code and anything else that wants a fast GEMM without the worker pool. Operands
 * are copied into a private wasm memory (the copies are O(M·K + K·N + M·N), small next to the
 * O(M·N·K) product).
 */
import { InputError } from '../../errors.js';
import type { Kernels as WasmKernels } from './kernels.js';
import { kernelModule, PAGE } from './module-loader.js';

export interface MatmulOptions {
  /** `a` is stored K×M (its transpose is used). */
  transA?: boolean;
  /** `b` is stored N×K (its transpose is used). */
  transB?: boolean;
  /** Add the product into `out` instead of overwriting it. */
  accumulate?: boolean;
}

type Kernels = Pick<WasmKernels, 'gemm_f32' | 'transpose_f32'>;

let memory: WebAssembly.Memory | null = null;
let kernels: Kernels | null = null;

function ensure(bytes: number): Float32Array {
  if (!memory) {
    memory = new WebAssembly.Memory({ initial: 16, maximum: 65536, shared: true });
    const inst = new WebAssembly.Instance(kernelModule('shared-base'), { env: { memory } });
    kernels = inst.exports as unknown as Kernels;
  }
  const have = memory.buffer.byteLength;
  if (bytes > have) memory.grow(Math.ceil((bytes - have) / PAGE));
  return new Float32Array(memory.buffer);
}

/**
 * out[M×N] = op(a)·op(b) (or += with `accumulate`), row-major, where op(a) is M×K and op(b) is
 * K×N. Without flags `a` is stored M×K and `b` K×N; `transA` means `a` is stored K×M, `transB`
 * means `b` is stored N×K (a PyTorch Linear weight: `x @ W^T` is `matmul(out, x, W, M, N, K,
 * {transB: true})`).
 */
export function matmul(
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  options: MatmulOptions = {},
): void {
  if (![M, N, K].every((v) => Number.isInteger(v) && v >= 0))
    throw new InputError(`matmul: bad sizes M=${M} N=${N} K=${K}`);
  if (a.length < M * K || b.length < K * N || out.length < M * N) {
    throw new InputError(
      `matmul: arrays too short for M=${M} N=${N} K=${K} (a ${a.length}, b ${b.length}, out ${out.length})`,
    );
  }
  if (M === 0 || N === 0) return;
  if (K === 0) {
    if (!options.accumulate) out.fill(0, 0, M * N);
    return;
  }
  // Layout (in f32 elements): X [M×K] | W [N×K] | Y [M×N] | T (untransposed staging)
  const xOff = 0,
    wOff = xOff + M * K,
    yOff = wOff + N * K;
  const tOff = yOff + M * N;
  const needT = options.transA || !options.transB ? Math.max(M * K, N * K) : 0;
  let f = ensure((tOff + needT) * 4);
  const k = kernels!;
  if (options.transA) {
    f.set(a.subarray(0, K * M), tOff);
    k.transpose_f32(tOff * 4, M, xOff * 4, K, K, M);
  } else f.set(a.subarray(0, M * K), xOff);
  if (options.transB) f.set(b.subarray(0, N * K), wOff);
  else {
    f.set(b.subarray(0, K * N), tOff);
    k.transpose_f32(tOff * 4, N, wOff * 4, K, K, N);
  }
  if (options.accumulate) f.set(out.subarray(0, M * N), yOff);
  k.gemm_f32(xOff * 4, K, wOff * 4, K, yOff * 4, N, M, 0, N, K, options.accumulate ? 1 : 0);
  f = new Float32Array(memory!.buffer);
  out.set(f.subarray(yOff, yOff + M * N));
}
