/**
 * Bounded JSON numbers decided with plain numbers (prefixes of up to 15 integer digits and 15
 * decimals, a sign alone, bounds whose whole parts are safe integers) must agree with the exact
 * fixed-point bigint decision on every prefix: random bounds, biased towards ±2^53, negative and
 * exclusive bounds, bounds with decimals (short, long, and ones binary floats only approximate)
 * and multipleOf, and prefixes from both signs that end near the bounds' digits, before and
 * after a dot. Each prefix the plain path can decide exactly must be decided by it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type NumBounds,
  numBounds,
  numFeasible,
  numInBounds,
  plainNumFeasible,
  plainNumInBounds,
} from '../src/server/constrain/numeric.js';

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
const FRACTIONS = [0.5, 0.25, 0.999, 0.001, 0.1, 0.3, 1e-15, 2e-15, 1e-14, 0.999999999999999, 0.123456789012345];

/** A bound's digits as written without exponent: whole part, and up to 15 decimals when it has them. */
function digitsOf(v: number): { int: string; frac: string } {
  const [int = '0', frac = ''] = Math.abs(v).toFixed(15).split('.');
  return { int, frac: frac.replace(/0+$/, '') };
}

test('plain-number decisions on bounded numbers equal the exact bigint decisions', () => {
  const r = rng(53);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)]!;
  const digitString = (n: number) => Array.from({ length: n }, () => String(Math.floor(r() * 10))).join('');
  const bound = (integer: boolean): number => {
    const base = r() < 0.5 ? pick(EDGES) + Math.floor(r() * 5) - 2 : Math.floor(r() * 10 ** Math.floor(r() * 17));
    const p = integer ? 0.2 : 0.6;
    const frac = r() < p ? (r() < 0.5 ? pick(FRACTIONS) : Number(`0.${digitString(1 + Math.floor(r() * 15))}`)) : 0;
    return (r() < 0.4 ? -1 : 1) * (base + frac);
  };
  const counts = { schemas: 0, digits: 0, sign: 0, frac: 0, fracInBounds: 0 };
  for (let i = 0; i < 800; i++) {
    const integer = r() < 0.45;
    const opt = (p: number) => (r() < p ? bound(integer) : undefined);
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
    counts.schemas++;
    const exact: NumBounds = { ...bd, plain: null };
    const where = JSON.stringify({ integer, min, max, exclusive, multipleOf });
    // Prefixes: digits of the bounds cut anywhere and perturbed, and random digit strings, with
    // decimals for numbers: the bounds' own (cut, perturbed) or random ones.
    const seeds = [min, max].filter((v) => v !== undefined).map((v) => digitsOf(v!));
    const check = (txt: string) => {
      const body = txt.replace('-', '');
      const [int = '', frac] = body.split('.');
      const want = numFeasible(exact, txt);
      assert.equal(numFeasible(bd, txt), want, `feasible ${txt} in ${where}`);
      assert.equal(numInBounds(bd, txt), numInBounds(exact, txt), `in bounds ${txt} in ${where}`);
      // Where the plain path is exact it must be the one deciding.
      if (!bd.plain || int.length > 15 || (frac !== undefined && (integer || int === ''))) return;
      assert.equal(plainNumFeasible(bd, txt), want, `plain feasible ${txt} in ${where}`);
      if (int === '') counts.sign++;
      else if (frac === undefined) counts.digits++;
      else {
        counts.frac++;
        assert.equal(plainNumInBounds(bd, txt), numInBounds(exact, txt), `plain in bounds ${txt} in ${where}`);
        if (want) counts.fracInBounds++;
      }
    };
    check('-');
    check('');
    for (let j = 0; j < 40; j++) {
      const seed = seeds.length && r() < 0.7 ? pick(seeds) : null;
      let digits = seed ? seed.int : String(Math.floor(r() * 10 ** (1 + Math.floor(r() * 16))));
      const whole = !integer && r() < 0.5;
      if (!whole) digits = digits.slice(0, 1 + Math.floor(r() * digits.length));
      if (r() < 0.3) digits = digits.slice(0, -1) + String(Math.floor(r() * 10));
      if (digits === '') digits = '0';
      let txt = digits;
      if (!integer && r() < 0.6) {
        // A dot, then up to 15 decimals: the bound's, cut anywhere, maybe with its last one changed.
        let frac = seed?.frac && r() < 0.7 ? seed.frac : digitString(Math.floor(r() * 16));
        frac = frac.slice(0, Math.floor(r() * (frac.length + 1)));
        if (frac && r() < 0.3) frac = frac.slice(0, -1) + String(Math.floor(r() * 10));
        txt = `${digits}.${frac}`;
      }
      check(txt);
      check(`-${txt}`);
    }
  }
  // The plain path must have decided most of them, each kind of prefix, not fallen back to bigints.
  assert.ok(
    counts.schemas >= 400 && counts.digits >= 10000 && counts.sign >= 500 && counts.frac >= 5000,
    JSON.stringify(counts),
  );
  assert.ok(counts.fracInBounds >= 500, JSON.stringify(counts));
});
