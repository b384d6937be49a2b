/**
 * Random weights written straight into the arenas by the kernels (fast PRNG, quantized types as
 * random quants with plausible block scales). For benchmarks: no checkpoint, no JS copies.
 */
import { WTYPE } from './kernels.js';
import type { Arenas } from './arenas.js';
import type { MatrixRef, ModelLayout, NormRef } from './layout.js';
import { mptFacts } from '../../model/facts.js';
import { repackInArena } from './load-weights.js';

export function fillRandomWeights(arenas: Arenas, L: ModelLayout, seed: number): void {
  let s = seed;
  const mat = (m: MatrixRef) => {
    const k = arenas.kernels[m.arena]!;
    // rows of about unit-variance inputs give outputs of about unit variance
    k.fill_random_weights(WTYPE[m.type], m.ptr, m.rows * m.cols, s++, Math.sqrt(3 / m.cols));
    if (m.packed) repackInArena(arenas, L, m, 0, m.rows);
    if (m.bias) k.fill_f32(m.bias, m.rows, 0);
  };
  const norm = (a: number, n: number, p: NormRef) => {
    const k = arenas.kernels[a]!;
    if (p.w) k.fill_f32(p.w, n, 1);
    if (p.b) k.fill_f32(p.b, n, 0);
  };
  const c = L.config,
    d = c.dModel;
  const h = L.head;
  mat(h.wte);
  if (h.lm !== h.wte && h.lm.ptr !== h.wte.ptr) mat(h.lm);
  if (h.wpe) arenas.kernels[h.arena]!.fill_random_weights(0, h.wpe, c.maxSeqLen * d, s++, 0.02);
  norm(h.arena, d, h.normF);
  for (const ly of L.layers) {
    norm(ly.arena, d, ly.norm1);
    norm(ly.arena, d, ly.norm2);
    if (ly.qLn) norm(ly.arena, d, ly.qLn);
    if (ly.kLn) norm(ly.arena, mptFacts(c).kvDim, ly.kLn);
    mat(ly.qkv);
    mat(ly.out);
    mat(ly.up);
    if (ly.gate) mat(ly.gate);
    mat(ly.down);
  }
}
