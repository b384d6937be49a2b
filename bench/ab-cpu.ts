/**
 * What the kernel A/B programs share (decode-ab, kprompt-ab): one build's kernels in a memory of
 * their own with a bump allocator, and the alternation and CPU-time statistics:
 * two variants called alternately (A B B A …) so that a shared host's drifts fall on both alike,
 * each call timed in CPU time of the process (`process.cpuUsage`, which leaves out the time it
 * waits for a core) as well as wall time.
 */
import { readFileSync } from 'node:fs';
import { instantiateKernelsAndTables } from '../src/backends/wasm/kernels.js';
import { bumpAllocator } from './bump.js';

/**
 * The kernels of the build in `file` instantiated over a fresh shared memory, and a bump allocator
 * (`take`: 64-byte aligned blocks after the tables) that grows the memory as it goes.
 */
export function kernelsWithHeap(file: string) {
  const memory = new WebAssembly.Memory({ initial: 8, maximum: 65536, shared: true });
  const k = instantiateKernelsAndTables(new WebAssembly.Module(readFileSync(file)), memory);
  const take = bumpAllocator(memory, 64);
  return { memory, k, take };
}

/** CPU time (user + system) of this process so far, ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** reps calls of run(0) and of run(1), alternated; per variant its CPU and wall times per call, ms. */
export function alternate(reps: number, run: (i: number) => void): { cpu: number[][]; wall: number[][] } {
  const cpu: number[][] = [[], []],
    wall: number[][] = [[], []];
  for (let r = 0; r < reps; r++) {
    for (const i of r & 1 ? [0, 1] : [1, 0]) {
      const w0 = performance.now(),
        c0 = cpuMs();
      run(i);
      cpu[i]!.push(cpuMs() - c0);
      wall[i]!.push(performance.now() - w0);
    }
  }
  return { cpu, wall };
}

/** Minimum, first quartile and median of the CPU times, minimum of the wall times (ms, 3 decimals). */
export function cpuStats(cpu: number[], wall: number[]) {
  const s = [...cpu].sort((a, b) => a - b);
  return {
    cpu_min_ms: +s[0]!.toFixed(3),
    cpu_p25_ms: +s[Math.floor(s.length / 4)]!.toFixed(3),
    cpu_median_ms: +s[Math.floor(s.length / 2)]!.toFixed(3),
    wall_min_ms: +Math.min(...wall).toFixed(3),
  };
}

/**
 * One case of an A/B: whether the two variants' outputs (out(0), out(1)) have the same bits, then
 * reps alternated calls of each: their CPU-time statistics and the B/A ratios.
 */
export function abCase(reps: number, out: (i: number) => Float32Array, run: (i: number) => void) {
  const a0 = out(0),
    b0 = out(1);
  const sameBits = a0.length === b0.length && a0.every((x, i) => Object.is(x, b0[i]));
  const { cpu, wall } = alternate(reps, run);
  const A = cpuStats(cpu[0]!, wall[0]!),
    B = cpuStats(cpu[1]!, wall[1]!);
  return {
    same_bits: sameBits,
    A,
    B,
    B_vs_A_cpu_min: +(A.cpu_min_ms / B.cpu_min_ms).toFixed(3),
    B_vs_A_cpu_p25: +(A.cpu_p25_ms / B.cpu_p25_ms).toFixed(3),
    B_vs_A_cpu_median: +(A.cpu_median_ms / B.cpu_median_ms).toFixed(3),
  };
}
