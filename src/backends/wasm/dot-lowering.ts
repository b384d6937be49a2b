/**
 * Whether this engine lowers wasm's `i32x4.relaxed_dot_i8x16_i7x16_add_s` to one instruction
 * (x86 `vpdpbusd`, AVX-VNNI: V8 12+ where the CPU has it, e.g. Chromium 156) rather than the
 * three (`vpmaddubsw`, `vpmaddwd`, `vpaddd`) of V8 11.3 (Node 20). No API tells, so it is
 * timed: the kernels' `dot_probe` runs the same 8 chains of dot-adds fused and spelled out as the
 * three steps, alternated, best of each. Without the fused lowering the fused loop is no faster
 * (Node 20 here: 0.78–0.80× the spelled-out loop); with it, 1.8–2.05× (Chromium 156, AMD EPYC
 * with AVX-VNNI), once 1.40 on the busy machine (docs/cpu-profile.md, "Dot-add tiles"). The
 * threshold sits between, and the best of several alternated rounds keeps a busy machine from
 * deciding: load from other processes slows both loops alike; a wrong "no" costs only the dot-add
 * build's gain. About 20 ms, once per process (module-loader.ts caches the answer).
 */
import type { Kernels } from './kernels.js';

/** Fused / spelled-out time ratio above which the dot-add build is used. */
export const FUSED_SPEEDUP_NEEDED = 1.2;

/** Rounds of the probe, and dot-add rounds per call (~0.5–1 ms: above a browser's 0.1 ms timer grain). */
const ROUNDS = 10;
const ITERS = 400_000;

/** A memory for one probe instance (the module's minimum, 1 page). */
export function probeMemory(): WebAssembly.Memory {
  return new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
}

/**
 * Best time of the spelled-out loop over the fused one, each over ROUNDS alternated calls, on
 * kernels instantiated over `memory` (probeMemory).
 */
export function dotAddSpeedup(k: Kernels, memory: WebAssembly.Memory): number {
  const bytes = new Uint8Array(memory.buffer, 0, 2192);
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
