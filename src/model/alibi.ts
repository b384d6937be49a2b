/**
 * ALiBi slopes exactly as MosaicML's `gen_slopes` computes them (float32 arithmetic), for any
 * head count: powers of two directly, other counts by interleaving the slopes of the next power
 * of two (odd entries first, then even ones).
 */
export function alibiSlopes(nHeads: number, alibiBiasMax: number): Float32Array {
  const padded = 2 ** Math.ceil(Math.log2(nHeads));
  const f = Math.fround;
  const step = f(alibiBiasMax / padded);
  const all = new Float32Array(padded);
  for (let i = 0; i < padded; i++) {
    const m = f((i + 1) * step);
    all[i] = f(1 / f(2 ** m));
  }
  if (padded === nHeads) return all;
  const odd: number[] = [];
  const even: number[] = [];
  for (let i = 1; i < padded; i += 2) odd.push(all[i]!);
  for (let i = 0; i < padded; i += 2) even.push(all[i]!);
  return Float32Array.from([...odd, ...even].slice(0, nHeads));
}

/** The most negative float32, which MosaicML uses for masked attention scores. */
export const F32_MIN = -3.4028234663852886e38;
