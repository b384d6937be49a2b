/**
 * The measuring half of bench/dot-ab.ts, for Node and for a browser page alike (nothing of Node
 * here): the relaxed build (kernels.wasm) and the dot-add build (kernels-dot.wasm) over one
 * shared memory, the 1B shape's q4_0 and q8_0 products through each, calls alternated, plus the dot-add
 * probe of dot-lowering.ts on this engine.
 */
import { type DotProbe, dotAddSpeedup, probeImports } from '../src/backends/wasm/dot-lowering.js';
import {
  TABLES_END,
  WTYPE,
  actQ8Bytes,
  instantiateKernelsAndTables,
  type Kernels,
} from '../src/backends/wasm/kernels.js';

export interface AbCase {
  name: string;
  /** Best and mean ms of a call, per build. */
  relaxed: { best_ms: number; mean_ms: number };
  dot: { best_ms: number; mean_ms: number };
  /** Relaxed best / dot best: above 1, the dot-add build is faster. */
  speedup: number;
  same_bits: boolean;
}

export interface AbRun {
  /** The probe's spelled-out / fused dot-add time on this engine (dotAddSpeedup). */
  probe_speedup: number;
  cases: AbCase[];
}

const QK = 2048,
  QN = 8192,
  PROMPT_ROWS = 512,
  PROMPT_M = 128;

export async function abRun(
  relaxedBytes: BufferSource,
  dotBytes: BufferSource,
  probeBytes: BufferSource,
  reps: number,
): Promise<AbRun> {
  const [relaxedModule, dotModule] = await Promise.all([
    WebAssembly.compile(relaxedBytes),
    WebAssembly.compile(dotBytes),
  ]);
  const imports = probeImports();
  const probe = await WebAssembly.instantiate(probeBytes, imports);
  const probe_speedup = dotAddSpeedup(probe.instance.exports as unknown as DotProbe, imports);

  const memory = new WebAssembly.Memory({ initial: 8, maximum: 65536, shared: true });
  const builds = {
    relaxed: instantiateKernelsAndTables(relaxedModule, memory),
    dot: instantiateKernelsAndTables(dotModule, memory),
  };
  let top = TABLES_END;
  const take = (n: number) => {
    const p = top;
    top += Math.ceil(n / 64) * 64;
    return p;
  };
  const W = take((QN * QK * 18) / 32),
    W8 = take((QN * QK * 34) / 32),
    X = take(PROMPT_M * QK * 4),
    A = take(actQ8Bytes(PROMPT_M, QK)),
    R = take(actQ8Bytes(1, QK)),
    Y = take(PROMPT_M * QN * 4),
    tmp = take(4 * (QK / 32) * 34);
  memory.grow(Math.ceil((top - memory.buffer.byteLength) / 65536) + 1);
  const k = builds.relaxed;
  k.fill_random_weights(WTYPE.q4_0, W, QN * QK, 11, 0.04);
  k.repack_x4(1, W, QN, QK, tmp, 0);
  k.fill_random_weights(WTYPE.q8_0, W8, QN * QK, 17, 0.04);
  k.repack_x4(0, W8, QN, QK, tmp, 0);
  k.fill_random_weights(0, X, PROMPT_M * QK, 13, 1);
  k.quantize_act_q8(X, QK, 0, PROMPT_M, QK, A);
  k.quantize_act_q8_row(X, QK, R);

  const cases: Array<{ name: string; run: (k: Kernels) => void; outputs: number }> = [
    {
      name: `q4_0 prompt ${PROMPT_M} x ${PROMPT_ROWS} x ${QK} (gemm_q4_0x4_prompt)`,
      run: (k) => k.gemm_q4_0x4_prompt(A, W, Y, PROMPT_ROWS, PROMPT_M, PROMPT_ROWS, 0, PROMPT_ROWS, QK, 0),
      outputs: PROMPT_M * PROMPT_ROWS,
    },
    {
      name: `q4_0 decode 1 x ${QN} x ${QK} (gemv_q4_0x4)`,
      run: (k) => k.gemv_q4_0x4(R, W, Y, QN, 0, QN, QK, 0),
      outputs: QN,
    },
    {
      name: `q4_0 4 rows x ${QN} x ${QK} (gemm_q4_0x4)`,
      run: (k) => k.gemm_q4_0x4(A, W, Y, QN, 4, QN, 0, QN, QK, 0),
      outputs: 4 * QN,
    },
    {
      name: `q8_0 prompt ${PROMPT_M} x ${PROMPT_ROWS} x ${QK} (gemm_q8_0x4_prompt)`,
      run: (k) => k.gemm_q8_0x4_prompt(A, W8, Y, PROMPT_ROWS, PROMPT_M, PROMPT_ROWS, 0, PROMPT_ROWS, QK, 0),
      outputs: PROMPT_M * PROMPT_ROWS,
    },
    {
      name: `q8_0 decode 1 x ${QN} x ${QK} (gemm_q8_0x4, one row)`,
      run: (k) => k.gemm_q8_0x4(A, W8, Y, QN, 1, QN, 0, QN, QK, 0),
      outputs: QN,
    },
  ];
  const out: AbCase[] = [];
  for (const c of cases) {
    const results: Record<'relaxed' | 'dot', Float32Array> = { relaxed: new Float32Array(0), dot: new Float32Array(0) };
    const times: Record<'relaxed' | 'dot', number[]> = { relaxed: [], dot: [] };
    for (let r = 0; r < reps; r++) {
      // A B B A: neither build always runs second.
      const order = r % 2 === 0 ? (['relaxed', 'dot'] as const) : (['dot', 'relaxed'] as const);
      for (const b of order) {
        const t = performance.now();
        c.run(builds[b]);
        times[b].push(performance.now() - t);
        if (r === 0) results[b] = new Float32Array(memory.buffer, Y, c.outputs).slice();
      }
    }
    const stat = (xs: number[]) => ({
      best_ms: Math.min(...xs),
      mean_ms: xs.reduce((a, b) => a + b, 0) / xs.length,
    });
    const same = results.relaxed.every((v, i) => Object.is(v, results.dot[i]));
    out.push({
      name: c.name,
      relaxed: stat(times.relaxed),
      dot: stat(times.dot),
      speedup: Math.min(...times.relaxed) / Math.min(...times.dot),
      same_bits: same,
    });
  }
  return { probe_speedup, cases: out };
}

(globalThis as { mptDotAb?: unknown }).mptDotAb = abRun;
