/**
 * Decode-sized q4_0 / q8_0 products (1–3 activation rows) of two kernel builds in one process,
 * calls alternated (A B B A …), timed in CPU time of the process (`process.cpuUsage`, which leaves
 * out the time it waits for a core on a shared host) as well as wall time. Checks that both builds
 * give the same bits. Shapes: the 1B model's up / down products (8192 × 2048, 2048 × 8192) and
 * the 7B model's (16384 × 4096, 4096 × 16384), weights repacked to x4 as the backend keeps them.
 *
 *   node dist/bench/decode-ab.js OLD.wasm NEW.wasm [--reps 30] [--only q4_0] [--cold] [--m 1,2,3]
 *
 * `--m` picks the activation row counts (default 1,2,3); prompt-sized ones (`--m 64,128 --only
 * prompt`) A/B the prompt tiles at the same shapes.
 * `--cold` cycles through enough copies of each matrix (>= 96 MiB) that every call streams its
 * weights from memory, as a decode step does (without it a 1B matrix stays in the L3 cache and
 * the figure is the kernel's own rate). Paths: "x4" is gemm_q4_0x4 / gemm_q8_0x4 (the decode
 * tiles), for one q4_0 row gemv_q4_0x4 on a row record where a build has it (as the backend
 * runs a decode step); "prompt" the prompt tiles (gemm_q4_0x4_prompt /
 * gemm_q8_0x4_prompt), which also take 1–3 rows.
 */
import { readFileSync } from 'node:fs';
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { TABLES_END, WTYPE, actQ8Bytes, instantiateKernelsAndTables } from '../src/backends/wasm/kernels.js';

type QType = 'q4_0' | 'q8_0';
interface Case {
  type: QType;
  M: number;
  N: number;
  K: number;
  path: 'x4' | 'prompt';
}

const argv = process.argv.slice(2);
const flagValue = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
const files = argv.filter((a, i) => !a.startsWith('--') && !['--reps', '--only', '--m'].includes(argv[i - 1]!));
const reps = Number(flagValue('--reps') ?? 30) || 30;
const only = flagValue('--only');
const cold = argv.includes('--cold');
const rowCounts = (flagValue('--m') ?? '1,2,3').split(',').map(Number);
if (files.length !== 2 || !rowCounts.every((m) => Number.isInteger(m) && m >= 1)) {
  console.error('usage: decode-ab A.wasm B.wasm [--reps N] [--only SUBSTRING] [--cold] [--m 1,2,3]');
  process.exit(2);
}
kernelModule('shared'); // engine flags (TurboFan up front, relaxed SIMD) before compiling

const bytesPer = { q4_0: 18, q8_0: 34 } as const;
const shapes = [
  [8192, 2048],
  [2048, 8192],
  [16384, 4096],
  [4096, 16384],
] as const;
const cases: Case[] = [];
for (const type of ['q4_0', 'q8_0'] as const)
  for (const [N, K] of shapes)
    for (const M of rowCounts) {
      cases.push({ type, M, N, K, path: 'x4' });
      if (M > 1) cases.push({ type, M, N, K, path: 'prompt' });
    }
const name = (c: Case) => `${c.type} ${c.M} x ${c.N} x ${c.K} ${c.path}`;
const chosen = cases.filter((c) => !only || name(c).includes(only));

const COLD_BYTES = 96 * 2 ** 20;
/** One build with its own memory: per (type, N, K) its weight copies, activations and output. */
function setup(file: string) {
  const need = new Map<string, { type: QType; N: number; K: number }>();
  for (const c of chosen) need.set(`${c.type} ${c.N} ${c.K}`, c);
  const memory = new WebAssembly.Memory({ initial: 8, maximum: 65536, shared: true });
  const k = instantiateKernelsAndTables(new WebAssembly.Module(readFileSync(file)), memory);
  // A bump allocator that grows the memory as it goes (64-byte aligned blocks).
  let top = TABLES_END;
  const take = (bytes: number) => {
    const at = top;
    top += Math.ceil(bytes / 64) * 64;
    const short = top - memory.buffer.byteLength;
    if (short > 0) memory.grow(Math.ceil(short / 65536));
    return at;
  };
  const gemv = typeof k.gemv_q4_0x4 === 'function';
  const KMAX = Math.max(...chosen.map((c) => c.K)),
    NMAX = Math.max(...chosen.map((c) => c.N));
  const MMAX = Math.max(...chosen.map((c) => c.M));
  const X = take(MMAX * KMAX * 4),
    Y = take(MMAX * NMAX * 4),
    tmp = take(4 * (KMAX / 32) * 34);
  k.fill_random_weights(0, X, MMAX * KMAX, 13, 1);
  const mats = new Map<string, { copies: number[]; A: number; R: number }>();
  for (const [key, { type, N, K }] of need) {
    const bytes = (N * K * bytesPer[type]) / 32;
    const n = cold ? Math.ceil(COLD_BYTES / bytes) : 1;
    const copies: number[] = [];
    for (let i = 0; i < n; i++) {
      const W = take(bytes);
      k.fill_random_weights(WTYPE[type], W, N * K, 11 + i, 0.04);
      k.repack_x4(type === 'q4_0' ? 1 : 0, W, N, K, tmp);
      copies.push(W);
    }
    const a = take(actQ8Bytes(MMAX, K)),
      row = take(actQ8Bytes(1, K));
    k.quantize_act_q8(X, K, 0, MMAX, K, a);
    if (gemv) k.quantize_act_q8_row(X, K, row);
    mats.set(key, { copies, A: a, R: row });
  }
  let turn = 0;
  const call = (c: Case, copy: number) => {
    const mat = mats.get(`${c.type} ${c.N} ${c.K}`)!;
    const q4 = c.type === 'q4_0';
    if (c.M === 1 && c.path === 'x4' && q4 && gemv) {
      k.gemv_q4_0x4(mat.R, mat.copies[copy % mat.copies.length]!, Y, c.N, 0, c.N, c.K, 0);
      return;
    }
    const f =
      c.path === 'prompt' ? (q4 ? k.gemm_q4_0x4_prompt : k.gemm_q8_0x4_prompt) : q4 ? k.gemm_q4_0x4 : k.gemm_q8_0x4;
    f.call(k, mat.A, mat.copies[copy % mat.copies.length]!, Y, c.N, c.M, c.N, 0, c.N, c.K, 0);
  };
  const run = (c: Case) => call(c, turn++);
  // Every copy holds different weights: the bits compare on the first copy only.
  const out = (c: Case) => {
    call(c, 0);
    return new Float32Array(memory.buffer, Y, c.M * c.N).slice();
  };
  return { run, out };
}

const builds = files.map(setup);
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const results = chosen.map((c) => {
  const outs = builds.map((b) => b.out(c));
  const sameBits = outs[0]!.every((x, i) => Object.is(x, outs[1]![i]));
  const cpu: number[][] = [[], []],
    wall: number[][] = [[], []];
  for (let r = 0; r < reps; r++) {
    for (const i of r & 1 ? [0, 1] : [1, 0]) {
      const b = builds[i]!;
      const w0 = performance.now(),
        c0 = cpuMs();
      b.run(c);
      cpu[i]!.push(cpuMs() - c0);
      wall[i]!.push(performance.now() - w0);
    }
  }
  const stats = (i: number) => {
    const s = [...cpu[i]!].sort((a, b) => a - b);
    return {
      cpu_min_ms: +s[0]!.toFixed(3),
      cpu_p25_ms: +s[Math.floor(s.length / 4)]!.toFixed(3),
      cpu_median_ms: +median(s).toFixed(3),
      wall_min_ms: +Math.min(...wall[i]!).toFixed(3),
    };
  };
  const a = stats(0),
    b = stats(1);
  return {
    case: name(c),
    same_bits: sameBits,
    A: a,
    B: b,
    B_vs_A_cpu_p25: +(a.cpu_p25_ms / b.cpu_p25_ms).toFixed(3),
    B_vs_A_cpu_median: +(a.cpu_median_ms / b.cpu_median_ms).toFixed(3),
  };
});
console.log(JSON.stringify({ A: files[0], B: files[1], reps, cold, results }, null, 1));
