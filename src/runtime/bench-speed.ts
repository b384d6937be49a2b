/**
 * How `mpt bench` measures speed, as llama-bench does, in one place for the command and for the
 * bench page of `mpt web` (src/web/bench.js, in a browser tab): pp = one forward of N prompt
 * tokens into an empty cache; tg = N single-token forwards from an empty cache, each computing the
 * last row's logits and feeding the next of a fixed pseudo-random token sequence, as llama-bench's
 * test_gen does (it reads no logits; choosing tokens is generation's cost, not the model's). One
 * untimed warm-up repetition first. Nothing of Node here.
 */
import type { ModelRunner } from '../backends/backend.js';

export function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Deterministic pseudo-random prompt ids. */
function prompt(n: number, vocab: number): number[] {
  let s = 12345;
  return Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return 1 + (s % (vocab - 1));
  });
}

export interface BenchOptions {
  pp: number;
  tg: number;
  reps: number;
  /** Called before each repetition: -1 for the warm-up, then 0 .. reps-1. */
  onRep?: (rep: number) => void;
}

/** Runs pp/tg measurements on a loaded runner. Returns tokens/s per repetition. */
export async function measure(runner: ModelRunner, o: BenchOptions): Promise<{ pp: number[]; tg: number[] }> {
  const V = runner.config.vocabSize;
  const ids = prompt(Math.max(o.pp, o.tg, 1), V);
  const pp: number[] = [],
    tg: number[] = [];
  for (let r = -1; r < o.reps; r++) {
    o.onRep?.(r);
    if (o.pp > 0) {
      const cache = runner.createCache({ capacity: o.pp });
      const t0 = performance.now();
      await runner.forward([{ cache, tokens: ids.slice(0, o.pp) }], { logits: 'last' });
      const s = (performance.now() - t0) / 1000;
      cache.dispose();
      if (r >= 0) pp.push(o.pp / s);
    }
    if (o.tg > 0) {
      const cache = runner.createCache({ capacity: o.tg });
      const t0 = performance.now();
      for (let i = 0; i < o.tg; i++)
        await runner.forward([{ cache, tokens: [ids[i]!] }], { logits: 'last', reuseLogits: true });
      const s = (performance.now() - t0) / 1000;
      cache.dispose();
      if (r >= 0) tg.push(o.tg / s);
    }
  }
  return { pp, tg };
}
