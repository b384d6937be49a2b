/**
 * Single-thread kernel micro-benchmarks: matrix-vector (decode) and matrix-matrix (prefill)
 * products for every weight type, attention, activation quantization. Reports wall time and
 * CPU time (the machine is shared; CPU time says what one idle core would do), as GB/s of
 * weights streamed and GFLOP/s.
 */
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import {
  HALF_PANEL_BYTES,
  TABLES_END,
  WTYPE,
  actQ8Bytes,
  instantiateKernelsAndTables,
  rowBytes,
  type WeightType,
} from '../src/backends/wasm/kernels.js';

export interface KernelResult {
  kernel: string;
  type?: string;
  M: number;
  N: number;
  K: number;
  ms_wall: number;
  ms_cpu: number;
  gbps_cpu?: number;
  gflops_cpu: number;
}

function time(fn: () => void, minMs = 300): { wall: number; cpu: number } {
  fn();
  let reps = 0;
  const c0 = process.cpuUsage(),
    t0 = performance.now();
  do {
    fn();
    reps++;
  } while (performance.now() - t0 < minMs);
  const wall = (performance.now() - t0) / reps;
  const cu = process.cpuUsage(c0);
  return { wall, cpu: (cu.user + cu.system) / 1000 / reps };
}

export function runKernelBench(
  opts: { types?: WeightType[]; K?: number; N?: number; M?: number } = {},
): KernelResult[] {
  const K = opts.K ?? 4096,
    N = opts.N ?? 4096,
    Mp = opts.M ?? 64;
  const memory = new WebAssembly.Memory({ initial: 8, maximum: 65536, shared: true });
  const k = instantiateKernelsAndTables(kernelModule('shared'), memory);
  const types = opts.types ?? ['q4_0', 'q8_0', 'f16', 'bf16', 'f32'];
  const wBytes = Math.max(...types.map((t) => N * rowBytes(t, K)));
  const need = TABLES_END + wBytes + Mp * K * 4 * 3 + Mp * N * 4 + (8 << 20);
  memory.grow(Math.ceil(need / 65536));
  let p = TABLES_END;
  const take = (n: number) => {
    const q = p;
    p += Math.ceil(n / 64) * 64;
    return q;
  };
  const W = take(wBytes),
    X = take(Mp * K * 4),
    Y = take(Mp * N * 4),
    A = take(actQ8Bytes(Mp, K)),
    P = take(HALF_PANEL_BYTES);
  k.fill_random_weights(0, X, Mp * K, 7, 1);
  const out: KernelResult[] = [];
  for (const t of types) {
    k.fill_random_weights(WTYPE[t], W, N * K, 3, 0.05);
    for (const M of [1, Mp]) {
      const run = () => {
        if (t === 'q4_0' || t === 'q8_0') {
          k.quantize_act_q8(X, K, 0, M, K, A);
          (t === 'q4_0' ? k.gemm_q4_0 : k.gemm_q8_0).call(k, A, W, Y, N, M, 0, N, K, 0);
        } else {
          if (t === 'f32') k.gemm_f32(X, K, W, K, Y, N, M, 0, N, K, 0);
          else if (t === 'f16') k.gemm_f16(X, K, W, K, Y, N, M, 0, N, K, 0, P);
          else k.gemm_bf16(X, K, W, K, Y, N, M, 0, N, K, 0, P);
        }
      };
      const r = time(run);
      out.push({
        kernel: M === 1 ? 'matvec' : 'matmul',
        type: t,
        M,
        N,
        K,
        ms_wall: r.wall,
        ms_cpu: r.cpu,
        gbps_cpu: (N * rowBytes(t, K)) / (r.cpu / 1000) / 1e9,
        gflops_cpu: (2 * M * N * K) / (r.cpu / 1000) / 1e9,
      });
    }
  }
  // attention: one head, 512 queries over 512 keys (prefill) and 1 query over 2048 keys (decode)
  const hd = 128;
  const cap = 2048;
  const Kc = take(cap * hd * 4),
    Vc = take(cap * hd * 4),
    valid = take(cap),
    S = take(8192),
    O = take(512 * hd * 4),
    Q = take(512 * hd * 4);
  k.fill_random_weights(0, Kc, cap * hd, 1, 1);
  k.fill_random_weights(0, Vc, cap * hd, 2, 1);
  k.fill_random_weights(0, Q, 512 * hd, 3, 1);
  new Uint8Array(memory.buffer, valid, cap).fill(1);
  for (const [nq, keys] of [
    [512, 512],
    [1, 2048],
  ] as const) {
    const r = time(() => k.attention(Q, hd, nq, keys - nq, Kc, Vc, hd, valid, keys, hd, 0.088, 0.0625, O, hd, S));
    const pairs = nq === 1 ? keys : (nq * (nq + 1)) / 2;
    out.push({
      kernel: 'attention',
      M: nq,
      N: keys,
      K: hd,
      ms_wall: r.wall,
      ms_cpu: r.cpu,
      gflops_cpu: (4 * pairs * hd) / (r.cpu / 1000) / 1e9,
    });
  }
  // memory bandwidth: one thread streaming 512 MB (the ceiling for decode)
  const bwBytes = 512 * 2 ** 20;
  const base = Math.ceil(p / 65536) * 65536;
  if (memory.buffer.byteLength < base + bwBytes)
    memory.grow(Math.ceil((base + bwBytes - memory.buffer.byteLength) / 65536));
  k.fill_random_bytes(base, bwBytes, 9);
  const r = time(() => k.read_probe(base, bwBytes), 1000);
  out.push({
    kernel: 'read-bandwidth',
    M: 1,
    N: bwBytes,
    K: 1,
    ms_wall: r.wall,
    ms_cpu: r.cpu,
    gbps_cpu: bwBytes / (r.cpu / 1000) / 1e9,
    gflops_cpu: 0,
  });
  return out;
}
