/**
 * Bounded JSON numbers decided with plain numbers (integer prefixes of up to 15 digits, bounds
 * that are safe integers) must agree with the exact fixed-point bigint decision on every prefix:
 * random bounds, biased towards ±2^53, negative and exclusive bounds, fractional bounds and
 * multipleOf, and prefixes from both signs that end near the bounds' digits.
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

const EDGES = [
  0,
  1,
  9,
  10,
  99,
  100,
  1e6,
  2 ** 31,
  1e15,
  1e15 - 1,
  2 ** 53 - 1,
  2 ** 53 - 2,
  2 ** 53,
  2 ** 53 + 2,
  1e16,
  1e17,
];

test('plain-number decisions on bounded numbers equal the exact bigint decisions', () => {
  const r = rng(53);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const bound = (): number => {
    const base = r() < 0.5 ? pick(EDGES) + Math.floor(r() * 5) - 2 : Math.floor(r() * 10 ** Math.floor(r() * 17));
    const frac = r() < 0.2 ? pick([0.5, 0.25, 0.999, 0.001]) : 0;
    return (r() < 0.4 ? -1 : 1) * (base + frac);
  };
  let plain = 0;
  let schemas = 0;
  for (let i = 0; i < 600; i++) {
    const integer = r() < 0.6;
    const opt = (p: number) => (r() < p ? bound() : undefined);
    const [x, y] = [opt(0.7), opt(0.7)];
    const [min, max] = x !== undefined && y !== undefined && x > y ? [y, x] : [x, y];
    const exclusive = r() < 0.3;
    const multipleOf = integer && r() < 0.3 ? pick([2, 3, 7, 10, 1000, 2 ** 20 + 1]) : undefined;
    let bd: NumBounds | null;
    try {
      bd = exclusive
        ? numBounds(integer, undefined, undefined, min, max, multipleOf)
        : numBounds(integer, min, max, undefined, undefined, multipleOf);
    } catch {
      continue; // No value fits: rejected, nothing to decide.
    }
    if (!bd) continue;
    schemas++;
    const exact: NumBounds = { ...bd, plain: null };
    // Prefixes: digits of the bounds cut anywhere and perturbed, and random digit strings.
    const seeds = [min, max].filter((v) => v !== undefined).map((v) => String(Math.abs(Math.trunc(v!))));
    for (let j = 0; j < 40; j++) {
      let digits = seeds.length && r() < 0.7 ? pick(seeds) : String(Math.floor(r() * 10 ** (1 + Math.floor(r() * 16))));
      digits = digits.slice(0, 1 + Math.floor(r() * digits.length));
      if (r() < 0.3) digits = digits.slice(0, -1) + String(Math.floor(r() * 10));
      if (digits === '') digits = '0';
      for (const txt of [digits, `-${digits}`]) {
        const want = numFeasible(exact, txt);
        assert.equal(
          numFeasible(bd, txt),
          want,
          `feasible ${txt} in ${JSON.stringify({ integer, min, max, exclusive, multipleOf })}`,
        );
        assert.equal(
          numInBounds(bd, txt),
          numInBounds(exact, txt),
          `in bounds ${txt} in ${JSON.stringify({ integer, min, max, exclusive, multipleOf })}`,
        );
        if (bd.plain && digits.length <= 15) plain++;
      }
    }
  }
  // The plain path must have decided most of them, not fallen back to bigints.
  assert.ok(schemas >= 300 && plain >= 10000, `${plain} plain decisions over ${schemas} schemas`);
});
