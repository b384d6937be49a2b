/**
 * Bounds on a JSON number (minimum, maximum, their exclusive forms, multipleOf for integers),
 * enforced digit by digit: a prefix such as "-1" or "12.3" is allowed only while some number it
 * can still grow into lies within the bounds, and the number may end only on a value that does.
 *
 * Values are exact: fixed point with SCALE decimals in a bigint. A bounded number is written
 * without an exponent, with at most MAX_BOUNDED_INT_DIGITS integer digits (enough for every
 * safe integer) and MAX_FRAC_DIGITS decimals. A mask asks about thousands of prefixes, so where
 * plain numbers decide a prefix exactly (its digits and the bounds' whole parts are safe
 * integers), they do, and bigints only elsewhere.
 */

export const MAX_BOUNDED_INT_DIGITS = 17;
export const MAX_FRAC_DIGITS = 15;
const SCALE = 16;
const ONE = 10n ** BigInt(SCALE);
/** The finest step a generated number has (10^-MAX_FRAC_DIGITS), in fixed point. */
const FINEST = 10n ** BigInt(SCALE - MAX_FRAC_DIGITS);

export interface NumBounds {
  integer: boolean;
  /** Inclusive bounds in fixed point; null when unbounded on that side. */
  lo: bigint | null;
  hi: bigint | null;
  /** Generated values are multiples of this (fixed point): 1 (or multipleOf) for integers, FINEST otherwise. */
  step: bigint;
  /** The same bounds as plain numbers for prefixes without a dot, or null when they are not exact. */
  plain: PlainBounds | null;
}

/**
 * Bounds on the magnitude x of a number written with one sign (x ≥ 0), as whole numbers: a value
 * with integer part x can reach the bounds when reachLo ≤ x ≤ hi (for numbers reachLo is the
 * bound rounded down, as x.5 may lie above it), and x itself is in bounds when inLo ≤ x ≤ hi.
 * Each is a safe integer or ±Infinity (unbounded). For numbers with decimals, the bounds rounded
 * inwards to the finest step are reachLo + loFrac·10^-15 and hi + hiFrac·10^-15 (0 ≤ frac < 10^15;
 * 0 when unbounded or for integers).
 */
interface SideBounds {
  reachLo: number;
  inLo: number;
  hi: number;
  loFrac: number;
  hiFrac: number;
}

/** Whole-number bounds for positive and negative numbers, and the multiple integers must be of. */
interface PlainBounds {
  pos: SideBounds;
  neg: SideBounds;
  multiple: number;
}

/**
 * A schema's inclusive bound as fixed point, rounded up (`up`, a lower bound) or down, or null
 * when it lies beyond every number that can be written. Below 2^53 that is the shortest decimal
 * that reads back as the bound (String(x)): a client parses "3.14159" to the very double of
 * `maximum: 3.14159`, whose exact binary value lies below 3.14159 (x.toFixed(16) gives
 * 3.1415899999999999, which refused the bound itself); every decimal up to it parses to at most
 * the bound, so values stay within it as parsed. Integers below 2^53 compare the same either way.
 * From 2^53 on a double is an integer, taken exactly: a client that reads integers exactly (not
 * as doubles) then agrees too.
 */
function fixed(x: number, up: boolean): bigint | null {
  if (Math.abs(x) >= 1e20) return null;
  if (Math.abs(x) >= 2 ** 53) return BigInt(x) * ONE;
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(x))!;
  const [, sign, int, frac = '', exp = '0'] = m;
  // |x| = digits · 10^(exp - frac digits); to SCALE decimals, the remainder rounded away or not.
  const shift = Number(exp) - frac.length + SCALE;
  const digits = BigInt(int! + frac);
  let q = digits;
  let inexact = false;
  if (shift >= 0) q = digits * 10n ** BigInt(shift);
  else {
    const d = 10n ** BigInt(-shift);
    q = digits / d;
    inexact = digits % d !== 0n;
  }
  if (sign) return inexact && !up ? -q - 1n : -q;
  return inexact && up ? q + 1n : q;
}

/** The next double above (dir 1) or below (dir -1) x. */
function nextDouble(x: number, dir: 1 | -1): number {
  if (x === 0) return dir * Number.MIN_VALUE;
  const f = new Float64Array([x]);
  const bits = new BigInt64Array(f.buffer);
  bits[0]! += x > 0 === dir > 0 ? 1n : -1n;
  return f[0]!;
}

const LIMIT = 10n ** BigInt(MAX_BOUNDED_INT_DIGITS) * ONE;

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

/** The bounds of a schema, or null when it has none; throws a string (the problem) when no value fits. */
export function numBounds(
  integer: boolean,
  min?: number,
  max?: number,
  exMin?: number,
  exMax?: number,
  multipleOf?: number,
): NumBounds | null {
  if (
    min === undefined &&
    max === undefined &&
    exMin === undefined &&
    exMax === undefined &&
    multipleOf === undefined
  ) {
    return null;
  }
  let step = integer ? ONE : FINEST;
  if (multipleOf !== undefined) step = ONE * BigInt(multipleOf);
  let lo: bigint | null = -LIMIT;
  let hi: bigint | null = LIMIT;
  const raise = (v: bigint | null) => {
    if (v !== null && v > lo!) lo = v;
  };
  const lower = (v: bigint | null) => {
    if (v !== null && v < hi!) hi = v;
  };
  // An exclusive bound is the inclusive one at the next double: a value that parses above (below)
  // it parses above (below) the bound, and an exact decimal or integer lies past it too.
  if (exMin !== undefined) min = min === undefined ? nextDouble(exMin, 1) : Math.max(min, nextDouble(exMin, 1));
  if (exMax !== undefined) max = max === undefined ? nextDouble(exMax, -1) : Math.min(max, nextDouble(exMax, -1));
  if (min !== undefined) {
    const v = fixed(min, true);
    if (v === null && min > 0) lo = LIMIT + 1n;
    else raise(v);
  }
  if (max !== undefined) {
    const v = fixed(max, false);
    if (v === null && max < 0) hi = -LIMIT - 1n;
    else lower(v);
  }
  const b: NumBounds = { integer, lo, hi, step, plain: null };
  b.plain = plainBounds(b);
  if (!hasMultiple(b, lo!, hi!)) throw 'no number within its bounds (minimum/maximum/multipleOf) can be written';
  return b;
}

/** A whole number as a plain number, or null when it is not a safe integer. */
function safe(v: bigint): number | null {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : null;
}

/** Bounds on magnitudes in [lo, hi] (fixed point; ±LIMIT is unbounded) as whole numbers, or null when not exact. */
function sideBounds(bd: NumBounds, lo: bigint, hi: bigint): SideBounds | null {
  // Round inwards to the values that can be written (FINEST for numbers, whole for integers).
  const grid = bd.integer ? ONE : FINEST;
  const gLo = -floorDiv(-lo, grid) * grid;
  const gHi = floorDiv(hi, grid) * grid;
  const loInt = floorDiv(gLo, ONE);
  const hiInt = floorDiv(gHi, ONE);
  const reachLo = lo <= -LIMIT ? -Infinity : safe(loInt);
  const inLo = lo <= -LIMIT ? -Infinity : safe(-floorDiv(-gLo, ONE));
  const top = hi >= LIMIT ? Infinity : safe(hiInt);
  if (reachLo === null || inLo === null || top === null) return null;
  // Below 10^15 (the fraction of a whole number in FINEST steps): exact.
  const loFrac = lo <= -LIMIT ? 0 : Number((gLo - loInt * ONE) / FINEST);
  const hiFrac = hi >= LIMIT ? 0 : Number((gHi - hiInt * ONE) / FINEST);
  return { reachLo, inLo, hi: top, loFrac, hiFrac };
}

function plainBounds(bd: NumBounds): PlainBounds | null {
  const pos = sideBounds(bd, bd.lo!, bd.hi!);
  const neg = sideBounds(bd, -bd.hi!, -bd.lo!);
  if (!pos || !neg) return null;
  const multiple = bd.step % ONE === 0n ? safe(bd.step / ONE) : 1;
  if (multiple === null) return null;
  // With a multiple above 1 every bound must be finite, so that interval ends stay exact.
  if (multiple > 1 && ![pos.reachLo, pos.hi, neg.reachLo, neg.hi].every(Number.isFinite)) return null;
  return { pos, neg, multiple };
}

/** Some multiple of the step lies in [a, b] and within the bounds. */
function hasMultiple(bd: NumBounds, a: bigint, b: bigint): boolean {
  if (bd.lo !== null && a < bd.lo) a = bd.lo;
  if (bd.hi !== null && b > bd.hi) b = bd.hi;
  if (a > b) return false;
  return floorDiv(b, bd.step) * bd.step >= a;
}

/** The parts of a number prefix written without exponent: "-12.30" → neg, "12", "30", dot. */
function parts(txt: string): { neg: boolean; int: string; frac: string; dot: boolean } {
  const neg = txt.startsWith('-');
  const body = neg ? txt.slice(1) : txt;
  const dot = body.indexOf('.');
  return dot < 0
    ? { neg, int: body, frac: '', dot: false }
    : { neg, int: body.slice(0, dot), frac: body.slice(dot + 1), dot: true };
}

/** Magnitude intervals (fixed point, inclusive) of every number the prefix can still become. */
function reach(bd: NumBounds, txt: string): Array<[bigint, bigint]> {
  const { int, frac, dot } = parts(txt);
  if (int === '') return [[0n, LIMIT]];
  const D = BigInt(int);
  if (dot) {
    const f = frac.length;
    const unitF = 10n ** BigInt(SCALE - f);
    const v = D * ONE + (f ? BigInt(frac) * unitF : 0n);
    return [[v, v + unitF - FINEST]];
  }
  const out: Array<[bigint, bigint]> = [];
  // The integer itself, or with decimals.
  out.push([D * ONE, bd.integer ? D * ONE : (D + 1n) * ONE - FINEST]);
  if (int !== '0') {
    for (let k = 1; k <= MAX_BOUNDED_INT_DIGITS - int.length; k++) {
      const p = 10n ** BigInt(k);
      out.push([D * p * ONE, (D + 1n) * p * ONE - (bd.integer ? ONE : FINEST)]);
    }
  }
  return out;
}

/** Integer prefixes this long are exact plain numbers, and so is each number they grow into below 2^53. */
const MAX_PLAIN_DIGITS = 15;
/** Powers of ten as literals (exact up to 1e22; Math.pow need not be). */
const TENS = [1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17];

/**
 * numFeasible for a magnitude written as digits only, in plain numbers: the magnitudes it can
 * grow into are D, D·10 … D·10+9, and so on; the reach of k more digits is [D·10^k, (D+1)·10^k)
 * (of whole parts), and those ranges grow with k. Products are rounded, but rounding is
 * monotonic and the bounds are safe integers, so each comparison with a bound is exact; with a
 * multiple above 1 the bounds are finite, and the interval ends compared are then exact too.
 */
function plainFeasible(side: SideBounds, multiple: number, int: string): boolean {
  const d = Number(int);
  const last = int === '0' ? 0 : MAX_BOUNDED_INT_DIGITS - int.length;
  for (let k = 0; k <= last; k++) {
    const a = d * TENS[k]!;
    if (a > side.hi) return false;
    const n = (d + 1) * TENS[k]!;
    if (side.reachLo >= n) continue;
    if (multiple === 1) return true;
    const from = Math.max(a, side.reachLo);
    const to = n > side.hi ? side.hi : n - 1;
    if (to - (((to % multiple) + multiple) % multiple) >= from) return true;
  }
  return false;
}

/**
 * numFeasible for a sign alone ("-", or nothing yet): some value of that sign is within the
 * bounds iff the side's upper bound is not below 0. If it is not, either the bounds hold 0 (a
 * multiple of everything) or they lie wholly on this side, and they hold a value (numBounds
 * checks that), a multiple for integers.
 */
function plainSignFeasible(side: SideBounds): boolean {
  return side.hi >= 0;
}

/** 10^-15 steps in the decimals `frac` (at most 15 digits): exact, as the product is below 10^15. */
function fracSteps(frac: string): number {
  return frac === '' ? 0 : Number(frac) * TENS[MAX_FRAC_DIGITS - frac.length]!;
}

/**
 * numFeasible for "D.F" (a number's magnitude with a dot and f ≤ 15 decimals): it can become the
 * values D + [F·10^-f, (F+1)·10^-f) on the 10^-15 grid, and those reach the side's bounds iff the
 * first is ≤ the upper bound and the last ≥ the lower one. Each is compared as (whole part, 10^-15
 * steps): safe integers, so exact.
 */
function plainFracFeasible(side: SideBounds, d: number, frac: string): boolean {
  const first = fracSteps(frac);
  const last = first + TENS[MAX_FRAC_DIGITS - frac.length]! - 1;
  return (
    (d < side.hi || (d === side.hi && first <= side.hiFrac)) &&
    (d > side.reachLo || (d === side.reachLo && last >= side.loFrac))
  );
}

/**
 * The exact decision of numFeasible with plain numbers, or undefined where it is not exact (bounds
 * past 2^53, prefixes of more than 15 integer digits): the magnitude's side, then a sign alone,
 * digits only, or digits with a dot and decimals.
 */
export function plainNumFeasible(bd: NumBounds, txt: string): boolean | undefined {
  const p = bd.plain;
  if (!p) return undefined;
  const neg = txt.charCodeAt(0) === 0x2d;
  const side = neg ? p.neg : p.pos;
  const from = neg ? 1 : 0;
  const dot = txt.indexOf('.');
  if (dot < 0) {
    if (txt.length === from) return plainSignFeasible(side);
    if (txt.length - from > MAX_PLAIN_DIGITS) return undefined;
    return plainFeasible(side, p.multiple, from ? txt.slice(from) : txt);
  }
  if (bd.integer || dot === from || dot - from > MAX_PLAIN_DIGITS || txt.length - dot - 1 > MAX_FRAC_DIGITS)
    return undefined;
  return plainFracFeasible(side, Number(txt.slice(from, dot)), txt.slice(dot + 1));
}

/** The prefix can still grow into a number within the bounds. */
export function numFeasible(bd: NumBounds, txt: string): boolean {
  const plain = plainNumFeasible(bd, txt);
  if (plain !== undefined) return plain;
  const neg = txt.startsWith('-');
  for (const [a, b] of reach(bd, txt)) {
    if (neg ? hasMultiple(bd, -b, -a) : hasMultiple(bd, a, b)) return true;
  }
  return false;
}

/** The exact decision of numInBounds with plain numbers, or undefined where it is not exact. */
export function plainNumInBounds(bd: NumBounds, txt: string): boolean | undefined {
  const p = bd.plain;
  if (!p) return undefined;
  const { neg, int, frac, dot } = parts(txt);
  if (int === '') return false;
  if (int.length > MAX_PLAIN_DIGITS || frac.length > MAX_FRAC_DIGITS) return undefined;
  const side = neg ? p.neg : p.pos;
  const d = Number(int);
  if (!dot) return d >= side.inLo && d <= side.hi && d % p.multiple === 0;
  if (bd.integer) return undefined;
  // D.F is on the 10^-15 grid: within the bounds iff within them rounded inwards to that grid.
  const f = fracSteps(frac);
  return (
    (d > side.reachLo || (d === side.reachLo && f >= side.loFrac)) &&
    (d < side.hi || (d === side.hi && f <= side.hiFrac))
  );
}

/** The prefix, as a whole number, is within the bounds. */
export function numInBounds(bd: NumBounds, txt: string): boolean {
  const plain = plainNumInBounds(bd, txt);
  if (plain !== undefined) return plain;
  const { neg, int, frac } = parts(txt);
  if (int === '') return false;
  let v = BigInt(int) * ONE + (frac ? BigInt(frac) * 10n ** BigInt(SCALE - frac.length) : 0n);
  if (neg) v = -v;
  return hasMultiple(bd, v, v);
}

/** Bytes of the shortest number within the bounds (at least 1). */
export function shortestNumber(bd: NumBounds): number {
  // Zero, else the bound nearest zero rounded outwards to a step; exact enough for a lower bound.
  if (hasMultiple(bd, 0n, 0n)) return 1;
  for (let len = 1; len <= MAX_BOUNDED_INT_DIGITS + 1; len++) {
    const p = 10n ** BigInt(len) * ONE;
    if (hasMultiple(bd, -p + 1n, p - 1n)) return len;
  }
  return MAX_BOUNDED_INT_DIGITS;
}
