/**
 * Whether this engine lowers wasm's `i32x4.relaxed_dot_i8x16_i7x16_add_s` to one instruction
 * (x86 `vpdpbusd`, AVX-VNNI: V8 12+ where the CPU has it, e.g. Chromium 156) rather than the
 * three (`vpmaddubsw`, `vpmaddwd`, `vpaddd`) of V8 11.3 (Node 20). No API tells, so it is
 * timed: `dot_probe` (dist/wasm/dot-probe.wasm, a module of its own so that an engine that keeps
 * kernels.wasm never compiles kernels-dot.wasm) runs the same 8 chains of dot-adds fused and spelled out as the
 * three steps, alternated, best of each. Without the fused lowering the fused loop is no faster
 * (Node 20 here: 0.78–0.80× the spelled-out loop); with it, 1.8–2.05× (Chromium 156, AMD EPYC
 * with AVX-VNNI), once 1.40 on the busy machine (docs/cpu-profile.md, "Dot-add tiles"). The
 * threshold sits between, and the best of several alternated rounds keeps a busy machine from
 * deciding: load from other processes slows both loops alike; a wrong "no" costs only the dot-add
 * build's gain. About 8 ms of loops when quiet (33–56 ms on the busy 2-core machine), once per
 * process (module-loader.ts caches the answer).
 */
/** The exports of dot-probe.wasm (assembly/dot-probe.ts). */
export interface DotProbe {
  /** `iters` rounds of 8 relaxed dot-adds over the 2,192 bytes at p, fused (1) or spelled out (0); the number means nothing. */
  dot_probe(p: number, iters: number, fused: number): number;
}

/** Fused / spelled-out time ratio above which the dot-add build is used. */
export const FUSED_SPEEDUP_NEEDED = 1.2;

/** Rounds of the probe, and dot-add rounds per call (0.25–0.6 ms: above a browser's 0.1 ms timer grain). */
const ROUNDS = 8;
const ITERS = 200_000;

/** The imports of one probe instance: a memory of the module's minimum, 1 page. */
export function probeImports(): { env: { memory: WebAssembly.Memory } } {
  return { env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true }) } };
}

/**
 * Best time of the spelled-out loop over the fused one, each over ROUNDS alternated calls, on a
 * probe instantiated with `imports` (probeImports).
 */
export function dotAddSpeedup(k: DotProbe, imports: ReturnType<typeof probeImports>): number {
  const bytes = new Uint8Array(imports.env.memory.buffer, 0, 2192);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 37) & 127;
  const best = [Number.POSITIVE_INFINITY, Number.POSITIVE_INFINITY];
  for (let r = 0; r < ROUNDS; r++) {
    for (const fused of [1, 0]) {
      const t = performance.now();
      k.dot_probe(0, ITERS, fused);
      best[fused] = Math.min(best[fused]!, performance.now() - t);
    }
  }
  return best[0]! / Math.max(best[1]!, 1e-3);
}
