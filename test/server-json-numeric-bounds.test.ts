/**
 * A bounded JSON number is allowed exactly as a client reads it: the text, parsed to a double
 * (JSON.parse), must lie within the schema's bounds as doubles compare, and an inclusive bound
 * that can be written (no exponent, at most 15 decimals) must itself be allowed. Random bounds
 * with decimals (short ones whose double lies below or above them), large ones past 2^53, and
 * exclusive ones; candidate texts at the bound, a step of the last decimal either side, and the
 * 15th decimal either side.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type NumBounds, numBounds, numFeasible, numInBounds } from '../src/server/constrain/numeric.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** The automaton's verdict on a whole number text: every prefix can still reach the bounds, and the text is within them. */
function allowed(bd: NumBounds, txt: string): boolean {
  for (let i = 1; i <= txt.length; i++) if (!numFeasible(bd, txt.slice(0, i))) return false;
  return numInBounds(bd, txt);
}

/** Plain decimal text of `digits`·10^-scale (scale ≤ 15), as a number written in JSON. */
function decimal(digits: bigint, scale: number): string {
  const neg = digits < 0n;
  const s = (neg ? -digits : digits).toString().padStart(scale + 1, '0');
  const body = scale ? `${s.slice(0, -scale)}.${s.slice(-scale)}` : s;
  return neg ? `-${body}` : body;
}

/**
 * `x` as written by String(x) (from 2^53 on, where doubles are integers, its exact value) split
 * into an integer of digits and a decimal scale, or null (exponent form).
 */
function digitsOf(x: number): { digits: bigint; scale: number } | null {
  if (Math.abs(x) >= 2 ** 53) return { digits: BigInt(x), scale: 0 };
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(x));
  if (!m) return null;
  const frac = m[3] ?? '';
  return { digits: BigInt(`${m[1]}${m[2]}${frac}`), scale: frac.length };
}

test('bounded numbers are allowed as their parsed values compare, and an inclusive bound allows itself', () => {
  const r = rng(7);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const counts = { schemas: 0, boundsAllowed: 0, allowed: 0, refused: 0 };
  for (let i = 0; i < 1500; i++) {
    const integer = r() < 0.3;
    const bound = (): number => {
      const k = r();
      if (k < 0.5) {
        // A short decimal: up to 6 digits each side.
        const whole = Math.floor(r() * 10 ** Math.floor(r() * 7));
        const dec = Math.floor(r() * 10 ** Math.floor(r() * 7)) / 10 ** Math.floor(1 + r() * 6);
        return (r() < 0.4 ? -1 : 1) * Number((whole + dec).toPrecision(12));
      }
      if (k < 0.7) return (r() < 0.4 ? -1 : 1) * (2 ** 53 + Math.floor(r() * 64) - 32) * pick([1, 1, 4, 16]);
      if (k < 0.85) return (r() < 0.4 ? -1 : 1) * pick([100, 10, 1, 0.1, 0.3, 1e6, 123456.789, 1e15 + 0.5]);
      return (r() < 0.4 ? -1 : 1) * r() * 10 ** Math.floor(r() * 16);
    };
    const [a, b] = [bound(), bound()];
    const [lo, hi] = a <= b ? [a, b] : [b, a];
    const exLo = r() < 0.4;
    const exHi = r() < 0.4;
    let bd: NumBounds | null;
    try {
      bd = numBounds(
        integer,
        exLo ? undefined : lo,
        exHi ? undefined : hi,
        exLo ? lo : undefined,
        exHi ? hi : undefined,
      );
    } catch {
      continue;
    }
    if (!bd) continue;
    counts.schemas++;
    const within = (v: number) =>
      (exLo ? v > lo : v >= lo) && (exHi ? v < hi : v <= hi) && (!integer || Number.isInteger(v));
    const where = JSON.stringify({ integer, lo, hi, exLo, exHi });
    for (const [x, exclusive] of [
      [lo, exLo],
      [hi, exHi],
    ] as const) {
      const d = digitsOf(x);
      if (!d || d.scale > 15 || (integer && d.scale > 0)) continue;
      const texts = [decimal(d.digits, d.scale)];
      // A step of the bound's last decimal, and of the 15th, either side.
      const to15 = d.digits * 10n ** BigInt(15 - d.scale);
      for (const delta of [-1n, 1n]) {
        texts.push(decimal(d.digits + delta, d.scale));
        if (!integer) texts.push(decimal(to15 + delta, 15));
      }
      for (const t of texts) {
        if (t.replace(/^-/, '').split('.')[0]!.length > 17) continue;
        const ok = allowed(bd, t);
        if (ok) {
          counts.allowed++;
          assert.ok(within(JSON.parse(t) as number), `${t} allowed but outside ${where}`);
        } else counts.refused++;
      }
      // The bound itself, where it is inclusive and writable.
      if (!exclusive && texts[0]!.replace(/^-/, '').split('.')[0]!.length <= 17) {
        assert.ok(allowed(bd, texts[0]!), `the bound ${texts[0]} itself refused in ${where}`);
        counts.boundsAllowed++;
      }
    }
  }
  assert.ok(counts.schemas >= 1000 && counts.boundsAllowed >= 800 && counts.refused >= 1000, JSON.stringify(counts));
});
