/**
 * The small set of numeric kernels the trainer's math is written against, so that the same
 * forward/backward code runs on plain JS or on the SIMD wasm kernels split over threads.
 *
 * matmul(out, a, b, M, N, K, opts): out[M, N] (+)= op(a) · op(b), with op(a) [M, K] and op(b) [K, N];
 * `transA` means a is stored [K, M], `transB` means b is stored [N, K] (PyTorch Linear weights
 * [out, in] are used with transB). `accumulate` adds to out instead of overwriting it.
 * gemmNT / transpose are the strided primitives (offsets and leading dimensions in elements) that
 * attention uses on per-head slices.
 */
import { gemmNTJs, transposeJs } from './matmul-js.js';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  accumulate?: boolean;
}

export interface Kernels {
  readonly name: string;
  readonly threads: number;
  matmul(
    out: Float32Array,
    a: Float32Array,
    b: Float32Array,
    M: number,
    N: number,
    K: number,
    opts?: MatmulOptions,
  ): void;
  /** y[m·ldy + n] (+)= Σ_k x[m·ldx + k] · w[n·ldw + k]. */
  gemmNT(
    y: Float32Array,
    yOff: number,
    ldy: number,
    x: Float32Array,
    xOff: number,
    ldx: number,
    w: Float32Array,
    wOff: number,
    ldw: number,
    M: number,
    N: number,
    K: number,
    acc: boolean,
  ): void;
  /** dst[c·ldd + r] = src[r·lds + c] for an R×C block. */
  transpose(
    dst: Float32Array,
    dOff: number,
    ldd: number,
    src: Float32Array,
    sOff: number,
    lds: number,
    R: number,
    C: number,
  ): void;
  /** A zeroed f32 array that these kernels handle without copies (and every thread can see). */
  alloc(n: number): Float32Array;
  /** Stops worker threads (the kernels must not be used afterwards). */
  close(): void;
}

/** Reusable scratch for transposed operands. */
export class Scratch {
  private buf: Float32Array;
  constructor(private readonly make: (n: number) => Float32Array) {
    this.buf = make(0);
  }
  get(n: number): Float32Array {
    if (this.buf.length < n) this.buf = this.make(Math.max(n, Math.ceil(this.buf.length * 1.5)));
    return this.buf.subarray(0, n);
  }
}

/** Reduces any matmul layout to gemmNT by transposing the operands that need it. */
export function matmulViaNT(
  k: Pick<Kernels, 'gemmNT' | 'transpose'>,
  sA: Scratch,
  sB: Scratch,
  out: Float32Array,
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  opts: MatmulOptions | undefined,
): void {
  const acc = opts?.accumulate ?? false;
  if (M === 0 || N === 0) return;
  if (K === 0) {
    if (!acc) out.fill(0, 0, M * N);
    return;
  }
  let A = a,
    B = b;
  if (opts?.transA) {
    A = sA.get(M * K);
    k.transpose(A, 0, K, a, 0, M, K, M);
  }
  if (!opts?.transB) {
    B = sB.get(N * K);
    k.transpose(B, 0, K, b, 0, N, K, N);
  }
  k.gemmNT(out, 0, N, A, 0, K, B, 0, K, M, N, K, acc);
}

/** Single-threaded plain-JS kernels. */
export function jsKernels(): Kernels {
  const make = (n: number) => new Float32Array(n);
  const sA = new Scratch(make),
    sB = new Scratch(make);
  const k: Kernels = {
    name: 'js',
    threads: 1,
    matmul(out, a, b, M, N, K, opts) {
      matmulViaNT(k, sA, sB, out, a, b, M, N, K, opts);
    },
    gemmNT: gemmNTJs,
    transpose: transposeJs,
    alloc: make,
    close() {},
  };
  return k;
}
