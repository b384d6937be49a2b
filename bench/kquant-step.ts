/**
 * A 7B-shaped q4_K decode step on one thread, without the model: L layers of the 7B products
 * (qkv 12288 × 4096, out_proj 4096 × 4096, up 16384 × 4096, down 4096 × 16384; 113 MB each), one set
 * kept plain and run through gemm_k, one repacked (q4_Kx4) and run through gemm_q4_kx4, both in one
 * wasm memory; whole steps of each set alternated, CPU time per step. Unlike decode-ab (one matrix
 * cycled through copies) every step streams L × 113 MB of distinct weights, as a 7B step streams
 * 3.7 GB: what the page tables and the memory system do over a stream that size shows here.
 *
 *   node dist/bench/run.js kquant-step [--layers 12] [--reps 10] [--wasm dist/wasm/kernels.wasm]
 */
import { readFileSync } from 'node:fs';
import { bumpAllocator } from './bump.js';
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { WTYPE, actQ8KBytes, instantiateKernelsAndTables } from '../src/backends/wasm/kernels.js';

const argv = process.argv.slice(2);
const opt = (name: string, dflt: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : dflt;
};
const layers = Number(opt('layers', '12')),
  reps = Number(opt('reps', '10')),
  file = opt('wasm', new URL('../wasm/kernels.wasm', import.meta.url).pathname);
kernelModule('shared'); // engine flags before compiling
const memory = new WebAssembly.Memory({ initial: 8, maximum: 65536, shared: true });
const k = instantiateKernelsAndTables(new WebAssembly.Module(readFileSync(file)), memory);
if (typeof k.gemm_q4_kx4 !== 'function') throw new Error(`${file} has no gemm_q4_kx4`);
type Quantize = (X: number, n: number, Q: number, S: number) => void;
const kq = k as unknown as { kquant_scratch_bytes(): number; quantize_q4_k: Quantize };
const take = bumpAllocator(memory, 4096);
const SHAPES = [
  [12288, 4096],
  [4096, 4096],
  [16384, 4096],
  [4096, 16384],
] as const;
const KMAX = 16384;
const X = take(KMAX * 4),
  Y = take(KMAX * 4),
  tmp = take((4 * KMAX * 144) / 256),
  src = take(16 * KMAX * 4),
  scratch = take(kq.kquant_scratch_bytes());
k.fill_random_weights(0, X, KMAX, 13, 1);
const acts = new Map<number, number>();
for (const K of [4096, 16384]) {
  const a = take(actQ8KBytes(1, K));
  k.quantize_act_q8k(X, K, 0, 1, K, a);
  acts.set(K, a);
}
interface Mat {
  W: number;
  N: number;
  K: number;
}
const sets: Record<'plain' | 'x4', Mat[]> = { plain: [], x4: [] };
for (const set of ['plain', 'x4'] as const)
  for (let l = 0; l < layers; l++)
    for (const [N, K] of SHAPES) {
      // 16 quantized rows of random values, copied over the matrix
      const rb = (K / 256) * 144,
        W = take(N * rb);
      k.fill_random_weights(0, src, 16 * K, 7 + l, 0.05);
      kq.quantize_q4_k(src, 16 * K, W, scratch);
      const u8 = new Uint8Array(memory.buffer);
      for (let r = 16; r < N; r += 16) u8.copyWithin(W + r * rb, W, W + 16 * rb);
      if (set === 'x4') k.repack_q4_kx4(W, N, K, tmp);
      sets[set].push({ W, N, K });
    }
const step = (set: 'plain' | 'x4') => {
  for (const m of sets[set]) {
    const a = acts.get(m.K)!;
    if (set === 'x4') k.gemm_q4_kx4(a, m.W, Y, m.N, 1, m.N, 0, m.N, m.K, 0);
    else k.gemm_k(WTYPE.q4_k, a, m.W, Y, m.N, 1, 0, m.N, m.K, 0);
  }
};
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const cpu: Record<'plain' | 'x4', number[]> = { plain: [], x4: [] },
  wall: Record<'plain' | 'x4', number[]> = { plain: [], x4: [] };
step('plain');
step('x4');
for (let r = 0; r < reps; r++)
  for (const set of r & 1 ? (['plain', 'x4'] as const) : (['x4', 'plain'] as const)) {
    const c0 = cpuMs(),
      w0 = performance.now();
    step(set);
    cpu[set].push(cpuMs() - c0);
    wall[set].push(performance.now() - w0);
  }
const at = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * p)]!;
const stats = (set: 'plain' | 'x4') => ({
  cpu_min_ms: +at(cpu[set], 0).toFixed(1),
  cpu_p25_ms: +at(cpu[set], 0.25).toFixed(1),
  cpu_median_ms: +at(cpu[set], 0.5).toFixed(1),
  wall_min_ms: +at(wall[set], 0).toFixed(1),
});
const gb = sets.plain.reduce((s, m) => s + (m.N * m.K * 144) / 256, 0) / 1e9;
console.log(
  JSON.stringify(
    {
      wasm: file,
      layers,
      reps,
      gb_per_step: +gb.toFixed(2),
      plain: stats('plain'),
      x4: stats('x4'),
      x4_vs_plain_cpu_p25: +(at(cpu.plain, 0.25) / at(cpu.x4, 0.25)).toFixed(3),
    },
    null,
    1,
  ),
);
