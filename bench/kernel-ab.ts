/**
 * A/B of two builds of the wasm kernels in one process: the same inputs through each build,
 * calls alternated (A B B A ...) so that the shared host's drifts, which move single timings by
 * ±30 % over minutes, fall on both alike. Checks that the two builds give the same bits, then
 * prints per build the best and mean time of each case. This is how the decode attention tile and
 * the packed bf16 tiles were measured: build the old kernels (`git stash; node
 * scripts/build-wasm.mjs; cp dist/wasm/kernels.wasm /tmp/old.wasm; git stash pop`), rebuild, then
 *
 *   node dist/bench/run.js kernel-ab /tmp/old.wasm dist/wasm/kernels.wasm [--reps 40]
 *
 * Cases: bf16 products with the default model's output matrix (50,432 × 256) for 1 and 8 rows,
 * a layer-sized one (256 rows of weights, 8 rows), attention of one query row (head_dim 64)
 * over 45 and 2,000 keys, and the 1B shape's q4_0 / q8_0 products (K 2048): a decode row
 * against up_proj (8192 rows) and a 128-token prompt chunk against out_proj (2048 rows); q4_K
 * products of 1, 3, 4 and 8 rows against 8192 × 2048 and a 128-token chunk against 2048 × 2048, and
 * a q6_K decode row against 8192 × 2048.
 * `--only q4` runs the cases whose name contains "q4" (any substring).
 *
 * A build that exports the x4 products (gemm_q4_0x4, repack.ts's row-interleaved layout) gets its
 * q4_0 / q8_0 weights repacked in place after they are filled and runs them through the x4
 * kernels; against an older build, the decode rows (lanes = weight rows instead of blocks) then
 * differ in their last bits and `same_bits` is false there. The prompt chunk runs once more
 * through gemm_q4_0x4_prompt / gemm_q8_0x4_prompt (assembly/gemm-q-prompt.ts) where a build has it ("prompt tiles"
 * cases, q4_0 and q8_0; builds without them run their own product there). Likewise a build that
 * exports gemm_q4_kx4 gets its q4_K weights repacked (q4_Kx4) and runs the q4_K cases through it
 * (same bits as gemm_k on the plain matrix, so same_bits holds against an older build).
 */
import { readFileSync } from 'node:fs';
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import {
  HALF_PANEL_BYTES,
  TABLES_END,
  WTYPE,
  actQ8Bytes,
  actQ8KBytes,
  instantiateKernelsAndTables,
  type Kernels,
} from '../src/backends/wasm/kernels.js';

interface Case {
  name: string;
  run: (k: Kernels, m: Memory) => void;
  out: (m: Memory) => Float32Array;
  work: number;
  unit: string;
}
interface Memory {
  memory: WebAssembly.Memory;
  W: number;
  X: number;
  Y: number;
  P: number;
  att: { Q: number; K: number; V: number; valid: number; O: number; S: number };
  /** 1B-shaped quantized products: q4_0 and q8_0 weights [QN][QK], f32 rows, their q8 activations, output. */
  q: { W4: number; W8: number; X: number; A: number; Y: number; WK: number; WK6: number; AK: number };
  /** The build has the x4 products: the q4_0 / q8_0 weights are repacked. */
  x4: boolean;
}

const argv = process.argv.slice(2);
const flagValue = (flag: string) => (argv.includes(flag) ? argv[argv.indexOf(flag) + 1] : undefined);
const files = argv.filter((a, i) => !a.startsWith('--') && !['--reps', '--only'].includes(argv[i - 1]!));
const reps = Number(flagValue('--reps') ?? 40) || 40;
const only = flagValue('--only');
if (files.length !== 2) {
  console.error('usage: kernel-ab A.wasm B.wasm [--reps N] [--only SUBSTRING]');
  process.exit(2);
}
kernelModule('shared'); // sets the engine flags (TurboFan up front, relaxed SIMD) before compiling

const N = 50432,
  K = 256,
  CAP = 2048,
  HD = 64,
  QN = 8192,
  QK = 2048,
  QM = 128;
function setup(file: string): { k: Kernels; m: Memory } {
  const memory = new WebAssembly.Memory({ initial: 8, maximum: 65536, shared: true });
  const k = instantiateKernelsAndTables(new WebAssembly.Module(readFileSync(file)), memory);
  let p = TABLES_END;
  const take = (n: number) => {
    const q = p;
    p += Math.ceil(n / 64) * 64;
    return q;
  };
  const W = take(N * K * 2),
    X = take(16 * K * 4),
    Y = take(16 * N * 4),
    P = take(HALF_PANEL_BYTES);
  const att = {
    Q: take(HD * 4),
    K: take(CAP * HD * 4),
    V: take(CAP * HD * 4),
    valid: take(CAP),
    O: take(HD * 4),
    S: take((4 * 32 + 4 * HD) * 4),
  };
  const q = {
    W4: take((QN * QK * 18) / 32),
    W8: take((QN * QK * 34) / 32),
    X: take(QM * QK * 4),
    A: take(actQ8Bytes(QM, QK)),
    Y: take(QM * QN * 4),
    WK: take((QN * QK * 144) / 256),
    WK6: take((QN * QK * 210) / 256),
    AK: take(actQ8KBytes(QM, QK)),
  };
  type Quantize = (X: number, n: number, Q: number, S: number) => void;
  const kq = k as unknown as { kquant_scratch_bytes(): number; quantize_q4_k: Quantize; quantize_q6_k: Quantize };
  const kscratch = take(kq.kquant_scratch_bytes());
  const tmp = take(4 * (QK / 32) * 34);
  memory.grow(Math.ceil((p - memory.buffer.byteLength) / 65536) + 1);
  k.fill_random_weights(WTYPE.q4_0, q.W4, QN * QK, 11, 0.04);
  k.fill_random_weights(WTYPE.q8_0, q.W8, QN * QK, 12, 0.04);
  const x4 = typeof k.gemm_q4_0x4 === 'function';
  if (x4) {
    k.repack_x4(1, q.W4, QN, QK, tmp, 0);
    k.repack_x4(0, q.W8, QN, QK, tmp, 0);
  }
  k.fill_random_weights(0, q.X, QM * QK, 13, 1);
  k.quantize_act_q8(q.X, QK, 0, QM, QK, q.A);
  k.quantize_act_q8k(q.X, QK, 0, QM, QK, q.AK);
  // q4_K weights: the QM rows of X quantized again and again (QN / QM times)
  for (let r = 0; r < QN; r += QM) {
    kq.quantize_q4_k(q.X, QM * QK, q.WK + (r * QK * 144) / 256, kscratch);
    kq.quantize_q6_k(q.X, QM * QK, q.WK6 + (r * QK * 210) / 256, kscratch);
  }
  if (typeof k.gemm_q4_kx4 === 'function') k.repack_q4_kx4(q.WK, QN, QK, tmp); // tmp holds 4 q8_0 rows: more than 4 q4_K rows
  k.fill_random_weights(WTYPE.bf16, W, N * K, 3, 0.05);
  k.fill_random_weights(0, X, 16 * K, 7, 1);
  k.fill_random_weights(0, att.Q, HD, 1, 1);
  k.fill_random_weights(0, att.K, CAP * HD * 2, 2, 1); // K then V
  new Uint8Array(memory.buffer, att.valid, CAP).fill(1);
  return { k, m: { memory, W, X, Y, P, att, q, x4 } };
}

const gemm = (M: number, rows: number): Case => ({
  name: `bf16 ${M} x ${rows} x ${K}`,
  work: 2 * M * rows * K,
  unit: 'GFLOP/s',
  run: (k, m) => k.gemm_bf16(m.X, K, m.W, K, m.Y, rows, M, 0, rows, K, 0, m.P),
  out: (m) => new Float32Array(m.memory.buffer, m.Y, M * rows).slice(),
});
const attention = (keys: number): Case => ({
  name: `attention 1 row x ${keys} keys`,
  work: 4 * keys * HD,
  unit: 'GFLOP/s',
  run: (k, m) =>
    k.attention_kv(
      0,
      m.att.Q,
      HD,
      1,
      keys - 1,
      m.att.K,
      m.att.V,
      HD * 4,
      0,
      m.att.valid,
      keys,
      HD,
      0.125,
      -0.25,
      m.att.O,
      HD,
      m.att.S,
    ),
  out: (m) => new Float32Array(m.memory.buffer, m.att.O, HD).slice(),
});
const quant = (type: 'q4_0' | 'q8_0', M: number, rows: number): Case => ({
  name: `${type} ${M} x ${rows} x ${QK}`,
  work: 2 * M * rows * QK,
  unit: 'GFLOP/s',
  run: (k, m) => {
    if (m.x4 && type === 'q4_0') k.gemm_q4_0x4(m.q.A, m.q.W4, m.q.Y, rows, M, rows, 0, rows, QK, 0);
    else if (m.x4) k.gemm_q8_0x4(m.q.A, m.q.W8, m.q.Y, rows, M, rows, 0, rows, QK, 0);
    else if (type === 'q4_0') k.gemm_q4_0(m.q.A, m.q.W4, m.q.Y, rows, M, 0, rows, QK, 0);
    else k.gemm_q8_0(m.q.A, m.q.W8, m.q.Y, rows, M, 0, rows, QK, 0);
  },
  out: (m) => new Float32Array(m.memory.buffer, m.q.Y, M * rows).slice(),
});
const kquant = (type: 'q4_k' | 'q6_k', M: number, rows: number): Case => ({
  name: `${type} ${M} x ${rows} x ${QK}`,
  work: 2 * M * rows * QK,
  unit: 'GFLOP/s',
  run: (k, m) => {
    if (type === 'q4_k' && typeof k.gemm_q4_kx4 === 'function')
      k.gemm_q4_kx4(m.q.AK, m.q.WK, m.q.Y, rows, M, rows, 0, rows, QK, 0);
    else k.gemm_k(WTYPE[type], m.q.AK, type === 'q4_k' ? m.q.WK : m.q.WK6, m.q.Y, rows, M, 0, rows, QK, 0);
  },
  out: (m) => new Float32Array(m.memory.buffer, m.q.Y, M * rows).slice(),
});
/** The prompt chunk through the register-blocked prompt tiles where the build has them. */
const quantPrompt = (type: 'q4_0' | 'q8_0', M: number, rows: number): Case => ({
  name: `${type} ${M} x ${rows} x ${QK} prompt tiles`,
  work: 2 * M * rows * QK,
  unit: 'GFLOP/s',
  run: (k, m) => {
    const tile = type === 'q4_0' ? k.gemm_q4_0x4_prompt : k.gemm_q8_0x4_prompt;
    if (typeof tile === 'function')
      tile.call(k, m.q.A, type === 'q4_0' ? m.q.W4 : m.q.W8, m.q.Y, rows, M, rows, 0, rows, QK, 0);
    else quant(type, M, rows).run(k, m);
  },
  out: (m) => new Float32Array(m.memory.buffer, m.q.Y, M * rows).slice(),
});
/** The GELU (erf) epilogue over a 128-token chunk's 128 × 1024 up_proj outputs (the shipped model's shape), from a fresh copy each call. */
const geluEpilogue = (M: number, rows: number): Case => ({
  name: `gelu epilogue ${M} x ${rows}`,
  work: M * rows,
  unit: 'Gelem/s',
  run: (k, m) => {
    new Uint8Array(m.memory.buffer).copyWithin(m.q.Y, m.q.X, m.q.X + M * rows * 4);
    k.epilogue(m.q.Y, rows, M, 0, rows, 0, 1, 1);
  },
  out: (m) => new Float32Array(m.memory.buffer, m.q.Y, M * rows).slice(),
});
const cases = [
  gemm(1, N),
  gemm(8, N),
  gemm(8, 256),
  attention(45),
  attention(2000),
  quant('q4_0', 1, QN),
  quant('q4_0', 3, QN),
  quant('q4_0', 8, QN),
  quant('q4_0', QM, QK),
  quantPrompt('q4_0', QM, QK),
  quant('q8_0', 1, QN),
  quant('q8_0', 3, QN),
  quant('q8_0', QM, QK),
  kquant('q4_k', 1, QN),
  kquant('q4_k', 3, QN),
  kquant('q4_k', 4, QN),
  kquant('q4_k', 8, QN),
  kquant('q4_k', QM, QK),
  kquant('q6_k', 1, QN),
  quantPrompt('q8_0', QM, QK),
  geluEpilogue(QM, 1024),
].filter((c) => !only || c.name.includes(only));

const builds = files.map((f) => ({ file: f, ...setup(f) }));
const results = cases.map((c) => {
  const outs = builds.map((b) => {
    c.run(b.k, b.m);
    return c.out(b.m);
  });
  const sameBits = outs[0]!.every((x, i) => Object.is(x, outs[1]![i]));
  // Small cases repeat inside one timing so that the clock's resolution does not matter.
  const t0 = performance.now();
  c.run(builds[0]!.k, builds[0]!.m);
  const inner = Math.max(1, Math.ceil(0.5 / Math.max(1e-4, performance.now() - t0)));
  const best = [Infinity, Infinity],
    sum = [0, 0];
  for (let r = 0; r < reps; r++) {
    for (const i of r & 1 ? [0, 1] : [1, 0]) {
      const b = builds[i]!;
      const s = performance.now();
      for (let j = 0; j < inner; j++) c.run(b.k, b.m);
      const t = (performance.now() - s) / inner;
      best[i] = Math.min(best[i]!, t);
      sum[i]! += t;
    }
  }
  return {
    case: c.name,
    same_bits: sameBits,
    ...Object.fromEntries(
      builds.flatMap((_, i) => [
        [`${i ? 'B' : 'A'}_best_ms`, +best[i]!.toFixed(4)],
        [`${i ? 'B' : 'A'}_mean_ms`, +(sum[i]! / reps).toFixed(4)],
        [`${i ? 'B' : 'A'}_${c.unit.replace('/', '_per_')}`, +(c.work / (best[i]! / 1000) / 1e9).toFixed(1)],
      ]),
    ),
    B_vs_A_best: +(best[0]! / best[1]!).toFixed(2),
  };
});
console.log(JSON.stringify({ A: files[0], B: files[1], reps, results }, null, 1));
