/**
 * Seeded mutation fuzzing for the readers of hostile input (model files, configs, tokenizers,
 * request bodies). Every case is reproducible from its seed: a failure names the seed and the
 * mutations, so the case can be rerun alone (`caseOf(seed)`) and turned into a plain test.
 *
 * A case passes when the code under test either succeeds or fails with one of the typed errors
 * (`MptError` subclasses), within a time bound. Anything else — a TypeError, a RangeError from a
 * blown stack or an impossible allocation, an out-of-memory, a hang — fails the test.
 */
import { MptError } from '../../src/errors.js';
import { bytesSource, type ByteSource, checkRange } from '../../src/formats/byte-source.js';

/** mulberry32: a small, fast, seedable PRNG (deterministic across platforms). */
export class Rand {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  u32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 0 ? 0 : this.u32() % n;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }
}

/**
 * The seeds a fuzz test runs: `n` of them from 1, or, for a longer search than the suite's,
 * FUZZ_SCALE times as many starting after FUZZ_SEED_BASE (e.g. FUZZ_SCALE=20 FUZZ_SEED_BASE=1000).
 */
export function fuzzSeeds(n: number): number[] {
  const scale = Number(process.env['FUZZ_SCALE'] ?? 1);
  const base = Number(process.env['FUZZ_SEED_BASE'] ?? 0);
  return Array.from({ length: Math.max(1, Math.round(n * scale)) }, (_, i) => base + i + 1);
}

/** Values that tend to sit on boundaries: sizes, signs, 2^31, 2^32, 2^53, 2^63, 2^64. */
export const INTERESTING_U64: readonly bigint[] = [
  0n,
  1n,
  2n,
  3n,
  4n,
  7n,
  8n,
  16n,
  31n,
  32n,
  63n,
  64n,
  255n,
  256n,
  0x7fffn,
  0x8000n,
  0xffffn,
  0x10000n,
  0x7fffffffn,
  0x80000000n,
  0xffffffffn,
  0x100000000n,
  2n ** 40n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 53n + 1n,
  2n ** 63n - 1n,
  2n ** 63n,
  2n ** 64n - 1n,
];

/** Where a numeric field sits in a binary file, so mutations can aim at it. */
export interface Field {
  at: number;
  size: 1 | 2 | 4 | 8;
}

/** Writes `v` (truncated to the field's width) little-endian at `at`, if it fits in `b`. */
export function writeLE(b: Uint8Array, at: number, size: number, v: bigint): void {
  for (let i = 0; i < size && at + i < b.length; i++) b[at + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}

/**
 * 1 to `max` random mutations of `src` (a new array): bit flips, random bytes, boundary values
 * written over a known field (or anywhere), a run of bytes zeroed, cut out, duplicated or the
 * file truncated. `describe` collects what was done, for the failure message.
 */
export function mutateBytes(
  src: Uint8Array,
  r: Rand,
  options: { fields?: readonly Field[]; max?: number; describe?: string[] } = {},
): Uint8Array {
  let b = src.slice();
  const log = options.describe ?? [];
  const n = 1 + r.below(options.max ?? 3);
  for (let k = 0; k < n && b.length > 0; k++) {
    const kind = r.below(options.fields?.length ? 8 : 6);
    const at = r.below(b.length);
    switch (kind) {
      case 0:
        b[at] = b[at]! ^ (1 << r.below(8));
        log.push(`flip bit at ${at}`);
        break;
      case 1:
        b[at] = r.below(256);
        log.push(`byte ${b[at]} at ${at}`);
        break;
      case 2: {
        const size = r.pick([1, 2, 4, 8]);
        const v = r.pick(INTERESTING_U64);
        writeLE(b, at, size, v);
        log.push(`u${size * 8} ${v} at ${at}`);
        break;
      }
      case 3: {
        const len = 1 + r.below(Math.min(64, b.length - at));
        const out = new Uint8Array(b.length - len);
        out.set(b.subarray(0, at));
        out.set(b.subarray(at + len), at);
        b = out;
        log.push(`cut ${len} bytes at ${at}`);
        break;
      }
      case 4: {
        const len = 1 + r.below(Math.min(64, b.length - at));
        const to = r.below(b.length);
        const out = new Uint8Array(b.length + len);
        out.set(b.subarray(0, to));
        out.set(b.subarray(at, at + len), to);
        out.set(b.subarray(to), to + len);
        b = out;
        log.push(`copy ${len} bytes from ${at} to ${to}`);
        break;
      }
      case 5:
        b = b.slice(0, at);
        log.push(`truncate to ${at}`);
        break;
      default: {
        // Aimed at a known field: a boundary value, or the field's value ± 1.
        const f = r.pick(options.fields!);
        if (f.at + f.size > b.length) break;
        let v = r.pick(INTERESTING_U64);
        if (r.chance(0.3)) {
          let old = 0n;
          for (let i = f.size - 1; i >= 0; i--) old = (old << 8n) | BigInt(b[f.at + i]!);
          v = r.chance(0.5) ? old + 1n : old - 1n;
        }
        writeLE(b, f.at, f.size, v & ((1n << BigInt(8 * f.size)) - 1n));
        log.push(`field u${f.size * 8} at ${f.at} := ${v}`);
      }
    }
  }
  return b;
}

/** JSON text standing for a hostile value (some are not what JSON.stringify would write). */
export const HOSTILE_JSON_VALUES: readonly string[] = [
  'null',
  'true',
  'false',
  '0',
  '-1',
  '1.5',
  '-0',
  '1e400',
  '-1e400',
  '9007199254740993',
  '4294967296',
  '2147483648',
  '1e21',
  '""',
  '"x"',
  '"\\ud800"',
  '[]',
  '[1]',
  '{}',
  '{"__proto__": {"x": 1}}',
  `"${'x'.repeat(100_000)}"`,
  `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
  `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`,
  `[${Array.from({ length: 10_000 }, () => '0').join(',')}]`,
];

type JsonPath = (string | number)[];

/** Every path into a parsed JSON value (objects and arrays), the root included. */
function jsonPaths(v: unknown, path: JsonPath = [], out: JsonPath[] = [], limit = 5000): JsonPath[] {
  if (out.length >= limit) return out;
  out.push(path);
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) jsonPaths(v[i], [...path, i], out, limit);
  } else if (v !== null && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) jsonPaths(x, [...path, k], out, limit);
  return out;
}

const MARK = '\u0000fuzz\u0000';
/** The mark as JSON.stringify writes it, where the hostile text goes. */
const PLACEHOLDER = JSON.stringify(MARK);

/**
 * A mutation of the JSON text `text`: one value somewhere in it (chosen among all its paths)
 * replaced with a hostile value, removed, or renamed; or the text cut short. Returns new JSON
 * text (not necessarily valid: the cut and some hostile values are not).
 */
export function mutateJson(text: string, r: Rand, describe: string[] = []): string {
  const root = JSON.parse(text) as unknown;
  if (r.chance(0.05)) {
    const at = r.below(text.length);
    describe.push(`cut at ${at}`);
    return text.slice(0, at);
  }
  const paths = jsonPaths(root);
  const path = r.pick(paths);
  const hostile = r.pick(HOSTILE_JSON_VALUES);
  describe.push(`${JSON.stringify(path)} := ${hostile.length > 40 ? `${hostile.slice(0, 40)}…` : hostile}`);
  if (path.length === 0) return hostile;
  const parentPath = path.slice(0, -1);
  let parent = root as Record<string | number, unknown>;
  for (const p of parentPath) parent = parent[p] as Record<string | number, unknown>;
  const key = path[path.length - 1]!;
  if (r.chance(0.1) && !Array.isArray(parent)) {
    delete parent[key];
    describe.push('(removed instead)');
    return JSON.stringify(root);
  }
  parent[key] = MARK;
  return JSON.stringify(root).replace(PLACEHOLDER, () => hostile);
}

export interface CaseOptions {
  /** Longest a case may take, in ms (a hang or a quadratic blow-up exceeds it). */
  ms?: number;
  /** Errors that count as typed failures besides MptError (e.g. the server's ApiError). */
  typed?: (e: unknown) => boolean;
}

/** The longest refusal message a case may give: hostile values are quoted bounded (quoteValue). */
export const MAX_MESSAGE_CHARS = 1000;

/**
 * Why a refusal's message does not help its reader, or null: too long (a hostile value repeated
 * at full length), or a JavaScript engine's message about our own code's values rather than a
 * statement of which field is wrong and what was expected.
 */
export function unhelpfulMessage(message: string): string | null {
  if (message.length > MAX_MESSAGE_CHARS) return `${message.length} characters, over ${MAX_MESSAGE_CHARS}`;
  const engine =
    /Cannot read propert|Cannot set propert|is not a function|is not iterable|Cannot convert|Invalid array length|Maximum call stack/.exec(
      message,
    );
  return engine ? `the engine's "${engine[0]}"` : null;
}

/** What happened in one case. */
export type Outcome = 'ok' | 'typed-error';

/**
 * Runs one case: `run` must resolve, or reject with an MptError (or what `typed` accepts), within
 * `ms`. Throws an Error naming `label` (seed and mutations) otherwise.
 */
export async function runCase(label: string, run: () => Promise<unknown>, options: CaseOptions = {}): Promise<Outcome> {
  const ms = options.ms ?? 5000;
  // A case that kills the process (out of memory) cannot report itself: FUZZ_TRACE=1 names each first.
  if (process.env['FUZZ_TRACE']) process.stderr.write(`fuzz case: ${label}\n`);
  const t0 = performance.now();
  let outcome: Outcome;
  try {
    await run();
    outcome = 'ok';
  } catch (e) {
    if (!(e instanceof MptError) && !options.typed?.(e)) {
      const what = e instanceof Error ? `${e.constructor.name}: ${e.message.slice(0, 300)}` : String(e);
      throw new Error(`${label}: threw ${what}`, { cause: e });
    }
    const message = e instanceof Error ? e.message : String(e);
    const unhelpful = unhelpfulMessage(message);
    // FUZZ_MESSAGES=1 lists every refusal instead (to survey them over a long run).
    if (process.env['FUZZ_MESSAGES']) {
      process.stderr.write(
        `fuzz message${unhelpful ? ' UNHELPFUL' : ''}: ${message.slice(0, 300).replace(/\n/g, ' ')}\n`,
      );
    } else if (unhelpful)
      throw new Error(`${label}: refused with an unhelpful message (${unhelpful}): ${message.slice(0, 300)}`);
    outcome = 'typed-error';
  }
  const took = performance.now() - t0;
  if (took > ms) throw new Error(`${label}: took ${Math.round(took)} ms (bound ${ms} ms)`);
  return outcome;
}

/** Counts of outcomes over a run, to check that a fuzz run reached past the first check. */
export class Tally {
  ok = 0;
  typed = 0;
  add(o: Outcome): void {
    if (o === 'ok') this.ok++;
    else this.typed++;
  }
  get total(): number {
    return this.ok + this.typed;
  }
}

/**
 * A byte source of `head` followed by `rest` (not copied): a big file with its first bytes
 * mutated, without copying the whole file for every case.
 */
export function splicedSource(head: Uint8Array, rest: Uint8Array, name: string): ByteSource {
  const a = bytesSource(head, name);
  const b = bytesSource(rest, name);
  return {
    name,
    size: head.length + rest.length,
    async read(offset, length, what = 'data') {
      checkRange(this, offset, length, what);
      const out = new Uint8Array(length);
      await this.readInto!(offset, out, what);
      return out;
    },
    async readInto(offset, dest, what = 'data') {
      checkRange(this, offset, dest.length, what);
      const inHead = Math.max(0, Math.min(dest.length, head.length - offset));
      if (inHead > 0) await a.readInto!(offset, dest.subarray(0, inHead), what);
      if (inHead < dest.length) await b.readInto!(offset + inHead - head.length, dest.subarray(inHead), what);
    },
    close: async () => {},
  };
}

/**
 * Runs `seeds` cases (see fuzzSeeds): `makeCase` mutates with its Rand, logs what it did, and
 * returns the run; each run is checked by runCase. Prints and returns the tally of outcomes.
 */
export async function fuzz(
  label: string,
  seeds: number,
  makeCase: (r: Rand, log: string[]) => () => Promise<unknown>,
  options: CaseOptions = {},
): Promise<Tally> {
  const tally = new Tally();
  for (const seed of fuzzSeeds(seeds)) {
    const r = new Rand(seed);
    const log: string[] = [];
    const run = makeCase(r, log);
    tally.add(await runCase(`${label} seed ${seed} (${log.join('; ')})`, run, { ms: 10_000, ...options }));
  }
  console.log(`# ${label}: ${tally.ok} succeeded, ${tally.typed} refused with a typed error`);
  return tally;
}

/**
 * Asserts that a fuzz run reached the input's checks and got past them: some cases succeed, and
 * at least a tenth are refused.
 */
export function assertReached(tally: Tally, label: string): void {
  if (tally.ok < 1 || tally.typed < tally.total / 10)
    throw new Error(`${label}: ${tally.ok} succeeded, ${tally.typed} refused: the mutations miss the input's checks`);
}
