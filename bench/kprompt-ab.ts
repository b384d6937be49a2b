/**
 * q4_K (q5_K, q6_K) prompt products of two kernel builds in one process, calls alternated (A B B A …), timed in
 * CPU time of the process (`process.cpuUsage`, which leaves out the time it waits for a core on a
 * shared host) as well as wall time; checks that both builds give the same bits. Shapes: a
 * 128-token chunk against the 1B model's 2048 × 2048 and a 64-token chunk against the 7B model's
 * 4096 × 4096, and fewer tokens (4, 8, 16, 32) against both, where the executor picks between the
 * prompt tiles and the small-batch kernels.
 *
 *   node dist/bench/kprompt-ab.js OLD.wasm NEW.wasm [--reps 30] [--only SUBSTRING] [--path P] [--type q5_k|q6_k]
 *
 * Paths (`--path P` for both builds, `--path-a` / `--path-b` for one; all give gemm_k's bits):
 *   (none)  what the backend runs on repacked weights (the default; MPT_WASM_Q4K_X4=0 keeps plain
 *           rows): gemm_q4_kx4_prompt where the build has it, else gemm_q4_kx4, else gemm_k;
 *   x4      gemm_q4_kx4 on repacked weights (the small-batch tile);
 *   plain   what the backend runs on plain rows (MPT_WASM_Q4K_X4=0): gemm_q4_k_prompt where the build
 *           has it, else gemm_k;
 *   gemm_k  gemm_k on plain rows.
 * The same file as A and B with two paths compares the paths of one build. `--type q5_k` / `q6_k`
 * runs plain q5_K / q6_K weights instead (no packed layout: paths plain, the default, and gemm_k; a
 * build without that type's tile runs gemm_k).
 */
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { abCase, kernelsWithHeap } from './ab-cpu.js';
import { WTYPE, actQ8KBytes } from '../src/backends/wasm/kernels.js';

interface Case {
  M: number;
  N: number;
  K: number;
}

const argv = process.argv.slice(2);
const flagValue = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
const valued = ['--reps', '--only', '--path', '--path-a', '--path-b', '--type'];
const files = argv.filter((a, i) => !a.startsWith('--') && !valued.includes(argv[i - 1]!));
const reps = Number(flagValue('--reps') ?? 30) || 30;
const only = flagValue('--only');
const typeFlag = flagValue('--type');
const type = typeFlag === 'q5_k' || typeFlag === 'q6_k' ? typeFlag : 'q4_k';
const blockBytes = { q4_k: 144, q5_k: 176, q6_k: 210 }[type];
const paths = [flagValue('--path-a') ?? flagValue('--path'), flagValue('--path-b') ?? flagValue('--path')];
if (files.length !== 2) {
  console.error(
    'usage: kprompt-ab A.wasm B.wasm [--reps N] [--only SUBSTRING] [--path P] [--path-a P] [--path-b P] (P: x4, plain, gemm_k) [--type q5_k|q6_k]',
  );
  process.exit(2);
}
kernelModule('shared'); // engine flags (TurboFan up front, relaxed SIMD) before compiling

const cases: Case[] = [];
for (const [N, K, Ms] of [
  [2048, 2048, [4, 8, 16, 32, 128]],
  [4096, 4096, [4, 8, 16, 32, 64]],
] as const)
  for (const M of Ms) cases.push({ M, N, K });
const name = (c: Case) => `${type} ${c.M} x ${c.N} x ${c.K}`;
const chosen = cases.filter((c) => !only || name(c).includes(only));

/** One build with its own memory: per (N, K) its weights (plain and, where the build can, repacked), activations and output. */
function setup(file: string, path: string | undefined) {
  const { memory, k, take } = kernelsWithHeap(file);
  type Quantize = (X: number, n: number, Q: number, S: number) => void;
  const kq = k as unknown as {
    kquant_scratch_bytes(): number;
    quantize_q4_k: Quantize;
    quantize_q5_k: Quantize;
    quantize_q6_k: Quantize;
  };
  const onPlain = path === 'plain' || path === 'gemm_k' || type !== 'q4_k';
  const x4 = !onPlain && typeof k.gemm_q4_kx4 === 'function';
  const tile = { q4_k: k.gemm_q4_k_prompt, q5_k: k.gemm_q5_k_prompt, q6_k: k.gemm_q6_k_prompt }[type];
  const kind =
    path !== 'gemm_k' && onPlain && typeof tile === 'function'
      ? `gemm_${type}_prompt`
      : onPlain || !x4
        ? 'gemm_k'
        : path !== 'x4' && typeof k.gemm_q4_kx4_prompt === 'function'
          ? 'gemm_q4_kx4_prompt'
          : 'gemm_q4_kx4';
  const MMAX = Math.max(...chosen.map((c) => c.M));
  const mats = new Map<string, { W: number; A: number; Y: number }>();
  for (const c of chosen) {
    const key = `${c.N} ${c.K}`;
    if (mats.has(key)) continue;
    const X = take(MMAX * c.K * 4),
      scratch = take(kq.kquant_scratch_bytes()),
      tmp = take(4 * (c.K / 256) * 144),
      W = take((c.N * c.K * blockBytes) / 256),
      A = take(actQ8KBytes(MMAX, c.K)),
      Y = take(MMAX * c.N * 4);
    // weights: random rows quantized by ggml's quantizer, MMAX rows at a time
    const quantize = { q4_k: kq.quantize_q4_k, q5_k: kq.quantize_q5_k, q6_k: kq.quantize_q6_k }[type];
    for (let r = 0; r < c.N; r += MMAX) {
      const rows = Math.min(MMAX, c.N - r);
      k.fill_random_weights(0, X, rows * c.K, 100 + r, 1);
      quantize(X, rows * c.K, W + (r * c.K * blockBytes) / 256, scratch);
    }
    if (x4) k.repack_q4_kx4(W, c.N, c.K, tmp);
    k.fill_random_weights(0, X, MMAX * c.K, 13, 1);
    k.quantize_act_q8k(X, c.K, 0, MMAX, c.K, A);
    mats.set(key, { W, A, Y });
  }
  const run = (c: Case) => {
    const m = mats.get(`${c.N} ${c.K}`)!;
    if (kind === 'gemm_q4_kx4_prompt') k.gemm_q4_kx4_prompt(m.A, m.W, m.Y, c.N, c.M, c.N, 0, c.N, c.K, 0);
    else if (kind === 'gemm_q4_kx4') k.gemm_q4_kx4(m.A, m.W, m.Y, c.N, c.M, c.N, 0, c.N, c.K, 0);
    else if (kind === `gemm_${type}_prompt`) tile(m.A, m.W, m.Y, c.N, c.M, 0, c.N, c.K, 0);
    else k.gemm_k(WTYPE[type], m.A, m.W, m.Y, c.N, c.M, 0, c.N, c.K, 0);
  };
  const out = (c: Case) => {
    run(c);
    return new Float32Array(memory.buffer, mats.get(`${c.N} ${c.K}`)!.Y, c.M * c.N).slice();
  };
  return { run, out, path: kind };
}

const builds = files.map((f, i) => setup(f, paths[i]));
const gflops = (c: Case, ms: number) => +((2 * c.M * c.N * c.K) / (ms * 1e6)).toFixed(1);
const results = chosen.map((c) => {
  const r = abCase(
    reps,
    (i) => builds[i]!.out(c),
    (i) => builds[i]!.run(c),
  );
  return { case: name(c), ...r, B_gflops_cpu_p25: gflops(c, r.B.cpu_p25_ms) };
});
console.log(
  JSON.stringify(
    { A: files[0], A_path: builds[0]!.path, B: files[1], B_path: builds[1]!.path, reps, results },
    null,
    1,
  ),
);
