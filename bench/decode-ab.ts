/**
 * Decode-sized q4_0 / q8_0 products (1–3 activation rows) and q4_K / q5_K / q6_K products (1–15 rows:
 * decode and the server's batches; q5_K / q6_K through gemm_k, plain rows) of two kernel builds in one process,
 * calls alternated (A B B A …), timed in CPU time of the process (`process.cpuUsage`, which leaves
 * out the time it waits for a core on a shared host) as well as wall time. Checks that both builds
 * give the same bits. Shapes: the shipped model's LM head (50432 × 256) and up / down (1024 × 256,
 * 256 × 1024), the 1B model's up / down
 * products (8192 × 2048, 2048 × 8192) and the 7B model's (16384 × 4096, 4096 × 16384), weights
 * repacked to x4 as the backend keeps them.
 *
 *   node dist/bench/decode-ab.js OLD.wasm NEW.wasm [--reps 30] [--only q4_0] [--cold] [--m 1,2,3]
 *
 * `--m` picks the activation row counts (default 1,2,3); prompt-sized ones (`--m 64,128 --only
 * prompt`) A/B the prompt tiles at the same shapes.
 * `--threads 2` runs each product on two threads as the backend does (a worker with its own
 * instance of the build on the same memory, row chunks of the executor's size taken from a shared
 * counter, bench/decode-ab-worker.ts); CPU time is then both threads'.
 *
 * `--cold` cycles through enough copies of each matrix (>= 96 MiB, `--cold-mib N`) that every call streams its
 * weights from memory, as a decode step does (without it a 1B matrix stays in the L3 cache and
 * the figure is the kernel's own rate). Paths: "x4" is gemm_q4_0x4 / gemm_q8_0x4 (the decode
 * tiles), for one q4_0 row gemv_q4_0x4 on a row record where a build has it (as the backend
 * runs a decode step); "prompt" the prompt tiles (gemm_q4_0x4_prompt /
 * gemm_q8_0x4_prompt), which also take 1–3 rows. q4_K runs at the 1B and 7B shapes of every
 * product (qkv, out_proj, up, down) through gemm_q4_kx4 on repacked weights where a build has it,
 * otherwise gemm_k on plain rows (path "x4" either way), and q6_K likewise through gemm_q6_kx4: main's build against this one is the
 * plain layout against the x4 one. `--k-paths A,B` picks each build's q4_K path instead: `plain`
 * (gemm_k on plain rows) or `x4` (`--k-paths plain,plain` compares two builds' gemm_k; one file as
 * both A and B with `plain,x4` compares the two layouts in one build).
 */
import { Worker } from 'node:worker_threads';
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { WTYPE, actQ8Bytes, actQ8KBytes } from '../src/backends/wasm/kernels.js';
import { abCase, kernelsWithHeap } from './ab-cpu.js';
import { CTL, type Call, product, type QType, takeChunks, writeCall } from './decode-ab-worker.js';
import { kQuantizers } from './make-gguf.js';

interface Case {
  type: QType;
  M: number;
  N: number;
  K: number;
  path: 'x4' | 'prompt';
}
type KPath = 'x4' | 'plain';
type KType = 'q4_k' | 'q5_k' | 'q6_k';
const isK = (t: QType): t is KType => t === 'q4_k' || t === 'q5_k' || t === 'q6_k';

const argv = process.argv.slice(2);
const flagValue = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
const files = argv.filter(
  (a, i) =>
    !a.startsWith('--') &&
    !['--reps', '--only', '--m', '--threads', '--k-paths', '--cold-mib', '--act-shift'].includes(argv[i - 1]!),
);
const threads = Number(flagValue('--threads') ?? 1) === 2 ? 2 : 1;
const reps = Number(flagValue('--reps') ?? 30) || 30;
const only = flagValue('--only');
const cold = argv.includes('--cold');
const rowCounts = (flagValue('--m') ?? '1,2,3').split(',').map(Number);
const kPaths = (flagValue('--k-paths') ?? 'x4,x4').split(',') as KPath[];
if (
  files.length !== 2 ||
  !rowCounts.every((m) => Number.isInteger(m) && m >= 1) ||
  kPaths.length !== 2 ||
  !kPaths.every((p) => p === 'x4' || p === 'plain')
) {
  console.error(
    'usage: decode-ab A.wasm B.wasm [--reps N] [--only SUBSTRING] [--cold] [--m 1,2,3] [--threads 1|2] [--k-paths x4|plain,x4|plain] [--cold-mib N] [--act-shift N]',
  );
  process.exit(2);
}
kernelModule('shared'); // engine flags (TurboFan up front, relaxed SIMD) before compiling

const bytesPer = { q4_0: 18, q8_0: 34, q4_k: 18, q5_k: 22, q6_k: 26.25 } as const;
const shapes = [
  [50432, 256], // the shipped model's LM head (tied embedding): 8 blocks a row
  [1024, 256], // the shipped model's up_proj
  [256, 1024], // and down_proj
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
const kShapes = [
  [6144, 2048],
  [2048, 2048],
  [8192, 2048],
  [2048, 8192],
  [12288, 4096],
  [4096, 4096],
  [16384, 4096],
  [4096, 16384],
] as const;
const kRowCounts = flagValue('--m') ? rowCounts : [1, 2, 3, 4, 8, 15];
for (const type of ['q4_k', 'q5_k', 'q6_k'] as const)
  for (const [N, K] of kShapes) for (const M of kRowCounts) cases.push({ type, M, N, K, path: 'x4' });
const pathName = (c: Case) =>
  c.type === 'q4_k' || c.type === 'q6_k' ? kPaths.join('/') : c.type === 'q5_k' ? 'plain' : c.path;
const name = (c: Case) => `${c.type} ${c.M} x ${c.N} x ${c.K} ${pathName(c)}`;
const chosen = cases.filter((c) => !only || name(c).includes(only));

/** Bytes of weight copies per matrix under `--cold` (`--cold-mib N`, default 96 MiB). */
/** Bytes skipped before each activation buffer (`--act-shift N`, a multiple of 64): moves its page offset. */
const actShift = Number(flagValue('--act-shift') ?? 0);
const COLD_BYTES = Number(flagValue('--cold-mib') ?? 96) * 2 ** 20;
/** One build with its own memory: per (type, N, K) its weight copies, activations and output. */
function setup(file: string, kPath: KPath) {
  const need = new Map<string, { type: QType; N: number; K: number }>();
  for (const c of chosen) need.set(`${c.type} ${c.N} ${c.K}`, c);
  const { memory, k, take } = kernelsWithHeap(file);
  const gemv = typeof k.gemv_q4_0x4 === 'function';
  const kx4 = kPath === 'x4' && typeof k.gemm_q4_kx4 === 'function';
  const kx6 = kPath === 'x4' && typeof k.gemm_q6_kx4 === 'function';
  const KMAX = Math.max(...chosen.map((c) => c.K)),
    NMAX = Math.max(...chosen.map((c) => c.N)),
    MMAX = Math.max(...chosen.map((c) => c.M));
  const X = take(MMAX * KMAX * 4),
    Y = take(MMAX * NMAX * 4),
    tmp = take(4 * (KMAX / 32) * 34 + 1024);
  k.fill_random_weights(0, X, MMAX * KMAX, 13, 1);
  const kq = kQuantizers(k);
  const kBlock = { q4_k: 144, q5_k: 176, q6_k: 210 } as const;
  /** q4_K / q5_K / q6_K weights [N][K]: 16 rows of random values quantized, copied over the matrix (seed varies the copy). */
  const fillK = (type: KType, W: number, N: number, K: number, seed: number) => {
    const rows = 16,
      rb = (K / 256) * kBlock[type],
      src = take(rows * K * 4),
      scratch = take(kq.kquant_scratch_bytes());
    k.fill_random_weights(0, src, rows * K, seed, 0.05);
    (type === 'q4_k' ? kq.quantize_q4_k : type === 'q5_k' ? kq.quantize_q5_k : kq.quantize_q6_k).call(
      kq,
      src,
      rows * K,
      W,
      scratch,
    );
    const u8 = new Uint8Array(memory.buffer);
    for (let r = rows; r < N; r += rows) u8.copyWithin(W + r * rb, W, W + Math.min(rows, N - r) * rb);
  };
  const mats = new Map<string, { copies: number[]; A: number; R: number }>();
  for (const [key, { type, N, K }] of need) {
    const bytes = (N * K * bytesPer[type]) / 32;
    const n = cold ? Math.ceil(COLD_BYTES / bytes) : 1;
    const copies: number[] = [];
    for (let i = 0; i < n; i++) {
      const W = take(bytes);
      if (isK(type)) {
        fillK(type, W, N, K, 11 + i);
        if (kx4 && type === 'q4_k') k.repack_q4_kx4(W, N, K, tmp);
        if (kx6 && type === 'q6_k') k.repack_q6_kx4(W, N, K, tmp);
      } else {
        k.fill_random_weights(WTYPE[type], W, N * K, 11 + i, 0.04);
        k.repack_x4(type === 'q4_0' ? 1 : 0, W, N, K, tmp, 0);
      }
      copies.push(W);
    }
    const kAct = isK(type);
    if (actShift > 0) take(actShift);
    const a = take(kAct ? actQ8KBytes(MMAX, K) : actQ8Bytes(MMAX, K)),
      row = take(actQ8Bytes(1, K));
    if (kAct) k.quantize_act_q8k(X, K, 0, MMAX, K, a);
    else k.quantize_act_q8(X, K, 0, MMAX, K, a);
    if (gemv && !kAct) k.quantize_act_q8_row(X, K, row);
    mats.set(key, { copies, A: a, R: row });
  }
  let turn = 0;
  const ctl = new Int32Array(new SharedArrayBuffer(CTL.words * 4));
  const worker =
    threads === 2
      ? new Worker(new URL('./decode-ab-worker.js', import.meta.url), {
          workerData: { decodeAb: true, file, memory, ctl },
        })
      : undefined;
  worker?.unref();
  const call = (c: Case, copy: number) => {
    const mat = mats.get(`${c.type} ${c.N} ${c.K}`)!;
    const args: Call = {
      ...c,
      A: mat.A,
      R: mat.R,
      W: mat.copies[copy % mat.copies.length]!,
      Y,
      plainK: c.type === 'q6_k' ? !kx6 : !kx4,
    };
    if (!worker) {
      product(k, args, 0, c.N);
      return;
    }
    // the executor's row chunks for 2 threads (executor.ts chunkRows)
    writeCall(ctl, args, Math.min(256, Math.max(16, Math.ceil(Math.ceil(c.N / 16) / 4) * 4)));
    Atomics.store(ctl, CTL.next, 0);
    Atomics.store(ctl, CTL.done, 0);
    const gen = Atomics.add(ctl, CTL.gen, 1) + 1;
    Atomics.notify(ctl, CTL.gen);
    // both threads start together (on a loaded host the worker's wake-up can take longer than the product)
    for (let r = Atomics.load(ctl, CTL.ready); r !== gen; r = Atomics.load(ctl, CTL.ready))
      Atomics.wait(ctl, CTL.ready, r);
    takeChunks(k, ctl, args);
    for (let d = Atomics.load(ctl, CTL.done); d < 1; d = Atomics.load(ctl, CTL.done)) Atomics.wait(ctl, CTL.done, d);
  };
  const run = (c: Case) => call(c, turn++);
  // Every copy holds different weights: the bits compare on the first copy only.
  const out = (c: Case) => {
    call(c, 0);
    return new Float32Array(memory.buffer, Y, c.M * c.N).slice();
  };
  return { run, out };
}

const builds = files.map((f, i) => setup(f, kPaths[i]!));
const results = chosen.map((c) => ({
  case: name(c),
  ...abCase(
    reps,
    (i) => builds[i]!.out(c),
    (i) => builds[i]!.run(c),
  ),
}));
console.log(JSON.stringify({ A: files[0], B: files[1], kPaths, reps, cold, threads, results }, null, 1));
