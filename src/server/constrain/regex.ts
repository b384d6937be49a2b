/**
 * JSON Schema `pattern` and `format` as automata over the characters of a string. A pattern is
 * parsed as JavaScript with the `u` flag (runtime/pattern-syntax.ts) and compiled from a safe
 * subset (literals, classes, `.`, groups, alternation, greedy or lazy quantifiers, `^` at the
 * start and `$` at the end) into a DFA, each atom's ASCII members decided by JavaScript's own
 * RegExp of that atom; lookaround, backreferences, word boundaries and non-ASCII characters are
 * refused by name.
 *
 * Not the tokenizer's linear matcher (runtime/linear-pattern.ts, same parser) because the jobs
 * differ: constrained generation steps one DFA state per generated character, intersects several
 * patterns and asks from any state for the shortest accepted completion, none of which a
 * leftmost-first search over a finished Unicode text (that engine's job) can answer.
 *
 * Generated strings use only printable ASCII other than `"` and `\` (nothing that JSON would
 * escape), so a class like `.` or `[^a]` is enforced as its part in that alphabet: every string
 * produced matches, some that would match are never produced. A string with several patterns
 * (a `format` and a `pattern`) walks the product of their DFAs, so it satisfies all of them.
 */

import {
  EDGE_END,
  EDGE_START,
  PatternParser,
  type PatternAtom,
  type PatternNode,
} from '../../runtime/pattern-syntax.js';

/** A pattern outside the supported subset, or one too large to compile. */
export class PatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PatternError';
  }
}

/** The characters a constrained string may contain: printable ASCII without `"` and `\`. */
export function inAlphabet(b: number): boolean {
  return b >= 0x20 && b <= 0x7e && b !== 0x22 && b !== 0x5c;
}
const ALPHABET: number[] = [];
for (let b = 0; b < 128; b++) if (inAlphabet(b)) ALPHABET.push(b);

/** Largest count of a counted repetition. */
const MAX_COUNT = 1000;
/** Most NFA states one pattern may expand to (counted repetitions are expanded). */
const MAX_NFA = 4000;
/** Most DFA states of one pattern, or of the product of a string's patterns. */
const MAX_DFA = 4000;

type CharSet = Uint8Array; // 128 flags
type Ast =
  | { t: 'set'; set: CharSet }
  | { t: 'cat'; xs: Ast[] }
  | { t: 'alt'; xs: Ast[] }
  | { t: 'rep'; x: Ast; min: number; max: number };

function setOf(pred: (c: number) => boolean): CharSet {
  const s = new Uint8Array(128);
  for (let c = 0; c < 128; c++) if (pred(c)) s[c] = 1;
  return s;
}

/** `\uXXXX`, `\u{…}` and `\xXX` escapes in an atom's source, as code points. */
const ESCAPED_CODE = /\\(?:u\{([0-9a-fA-F]+)\}|u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2}))/g;

/** An atom as its part in the ASCII table; atoms that name a character outside it are refused. */
function asciiSet(atom: PatternAtom, fail: (why: string) => never): CharSet {
  const { only, source, re } = atom;
  if (only >= 0) {
    if (only >= 128) fail(`non-ASCII character ${JSON.stringify(String.fromCodePoint(only))} is not supported`);
    return setOf((x) => x === only);
  }
  if ([...source].some((ch) => ch.codePointAt(0)! >= 128)) fail(`non-ASCII character in ${source} is not supported`);
  for (const m of source.matchAll(ESCAPED_CODE)) {
    if (parseInt(m[1] ?? m[2] ?? m[3]!, 16) >= 128) fail(`non-ASCII character ${m[0]} is not supported`);
  }
  if (/\\[pPc]/.test(source)) fail(`unsupported escape in ${source}`);
  return setOf((x) => re!.test(String.fromCharCode(x)));
}

/**
 * The pattern's tree as an automaton's: edges only as a leading `^` and a trailing `$` (which
 * `anchors` reports), no lookaround, atoms as ASCII sets.
 */
function toAst(root: PatternNode, atoms: PatternAtom[], fail: (why: string) => never): Ast {
  const items = root.t === 'seq' ? [...root.items] : [root];
  const anchoredStart = items[0]?.t === 'edge' && items[0].kind === EDGE_START;
  if (anchoredStart) items.shift();
  const last = items[items.length - 1];
  const anchoredEnd = last?.t === 'edge' && last.kind === EDGE_END;
  if (anchoredEnd) items.pop();
  const sets = new Map<number, CharSet>();
  const walk = (n: PatternNode): Ast => {
    switch (n.t) {
      case 'char': {
        let set = sets.get(n.set);
        if (!set) {
          set = asciiSet(atoms[n.set]!, fail);
          sets.set(n.set, set);
        }
        return { t: 'set', set };
      }
      case 'seq':
        return { t: 'cat', xs: n.items.map(walk) };
      case 'alt':
        return { t: 'alt', xs: n.alts.map(walk) };
      case 'rep': // lazy or greedy: the same language
        return { t: 'rep', x: walk(n.body), min: n.min, max: n.max };
      case 'look':
        return fail('lookaround assertions are not supported');
      case 'edge':
        if (n.kind === EDGE_START) return fail('"^" is supported only at the start of the pattern');
        if (n.kind === EDGE_END) return fail('"$" is supported only at the end of the pattern');
        return fail('word boundaries (\\b, \\B) are not supported');
    }
  };
  const body: Ast = { t: 'cat', xs: items.map(walk) };
  const any: Ast = { t: 'rep', x: { t: 'set', set: setOf(() => true) }, min: 0, max: Infinity };
  return { t: 'cat', xs: [...(anchoredStart ? [] : [any]), body, ...(anchoredEnd ? [] : [any])] };
}

/** Thompson NFA: state k has epsilon moves eps[k] and, when set[k], a move on those characters to next[k]. */
class Nfa {
  readonly eps: number[][] = [];
  readonly set: (CharSet | null)[] = [];
  readonly next: number[] = [];

  add(): number {
    if (this.eps.length >= MAX_NFA) throw new PatternError(`the pattern is too large (more than ${MAX_NFA} states)`);
    this.eps.push([]);
    this.set.push(null);
    this.next.push(-1);
    return this.eps.length - 1;
  }

  /** Builds `x` between fresh states; returns [start, end]. */
  build(x: Ast): [number, number] {
    switch (x.t) {
      case 'set': {
        const s = this.add(),
          e = this.add();
        this.set[s] = x.set;
        this.next[s] = e;
        return [s, e];
      }
      case 'cat': {
        const s = this.add();
        let end = s;
        for (const y of x.xs) {
          const [a, b] = this.build(y);
          this.eps[end]!.push(a);
          end = b;
        }
        return [s, end];
      }
      case 'alt': {
        const s = this.add(),
          e = this.add();
        for (const y of x.xs) {
          const [a, b] = this.build(y);
          this.eps[s]!.push(a);
          this.eps[b]!.push(e);
        }
        return [s, e];
      }
      case 'rep': {
        const s = this.add();
        let end = s;
        for (let k = 0; k < x.min; k++) {
          const [a, b] = this.build(x.x);
          this.eps[end]!.push(a);
          end = b;
        }
        if (x.max === Infinity) {
          const [a, b] = this.build(x.x);
          const e = this.add();
          this.eps[end]!.push(a, e);
          this.eps[b]!.push(a, e);
          return [s, e];
        }
        const e = this.add();
        for (let k = x.min; k < x.max; k++) {
          const [a, b] = this.build(x.x);
          this.eps[end]!.push(a, e);
          end = b;
        }
        this.eps[end]!.push(e);
        return [s, e];
      }
    }
  }

  closure(states: Iterable<number>): number[] {
    const seen = new Set<number>();
    const stack = [...states];
    while (stack.length) {
      const k = stack.pop()!;
      if (seen.has(k)) continue;
      seen.add(k);
      for (const j of this.eps[k]!) stack.push(j);
    }
    return [...seen].sort((a, b) => a - b);
  }
}

/** A complete DFA over the alphabet: trans[state * 128 + byte] is the next state or -1. */
export interface Dfa {
  readonly start: number;
  readonly trans: Int32Array;
  readonly accept: Uint8Array;
  readonly size: number;
}

function determinize(
  size: number,
  start: number[],
  step: (states: number[], b: number) => number[] | null,
  accepts: (states: number[]) => boolean,
  what: string,
): Dfa {
  const ids = new Map<string, number>();
  const sets: number[][] = [];
  const rows: number[] = [];
  const acc: number[] = [];
  const idOf = (s: number[]) => {
    const key = s.join(',');
    let id = ids.get(key);
    if (id === undefined) {
      if (sets.length >= MAX_DFA)
        throw new PatternError(`${what} is too complex (more than ${MAX_DFA} automaton states)`);
      id = sets.length;
      ids.set(key, id);
      sets.push(s);
      acc.push(accepts(s) ? 1 : 0);
    }
    return id;
  };
  void size;
  idOf(start);
  for (let i = 0; i < sets.length; i++) {
    const row = new Array<number>(128).fill(-1);
    for (const b of ALPHABET) {
      const n = step(sets[i]!, b);
      if (n?.length) row[b] = idOf(n);
    }
    rows.push(...row);
  }
  return { start: 0, trans: Int32Array.from(rows), accept: Uint8Array.from(acc), size: sets.length };
}

/** Compiles a pattern (ECMAScript syntax, JSON Schema's unanchored search semantics). */
export function compilePattern(src: string): Dfa {
  const name = `pattern ${JSON.stringify(src)}`;
  const parser = new PatternParser(
    src,
    (reason) => {
      throw new PatternError(`${name} ${reason}`);
    },
    MAX_COUNT,
  );
  const ast = toAst(parser.parse(), parser.atoms, (why) => {
    throw new PatternError(`${name}: ${why}`);
  });
  const nfa = new Nfa();
  const [s, e] = nfa.build(ast);
  return determinize(
    nfa.eps.length,
    nfa.closure([s]),
    (states, b) => {
      const moved: number[] = [];
      for (const k of states) if (nfa.set[k]?.[b]) moved.push(nfa.next[k]!);
      return moved.length ? nfa.closure(moved) : null;
    },
    (states) => states.includes(e),
    `pattern ${JSON.stringify(src)}`,
  );
}

/**
 * The strings a schema allows: the intersection of some DFAs and a length range. States are ids
 * of the product DFA; `room` says how many more characters the shortest completion needs.
 */
export class StringLanguage {
  readonly dfa: Dfa;
  private readonly need = new Map<number, number>();

  constructor(
    dfas: Dfa[],
    readonly minLength: number,
    readonly maxLength: number,
    readonly label: string,
  ) {
    this.dfa =
      dfas.length === 1
        ? dfas[0]!
        : determinize(
            0,
            dfas.map((d) => d.start),
            (states, b) => {
              const out: number[] = [];
              for (let i = 0; i < dfas.length; i++) {
                const n = dfas[i]!.trans[states[i]! * 128 + b]!;
                if (n < 0) return null;
                out.push(n);
              }
              return out;
            },
            (states) => states.every((s, i) => dfas[i]!.accept[s] === 1),
            label,
          );
  }

  step(state: number, b: number): number {
    return this.dfa.trans[state * 128 + b]!;
  }

  accepts(state: number, len: number): boolean {
    return this.dfa.accept[state] === 1 && len >= this.minLength && len <= this.maxLength;
  }

  /**
   * Fewest characters to add to a string of `len` characters in `state` to reach an accepted
   * string of at least minLength characters (Infinity when none exists); memoized.
   */
  fewestMore(state: number, len: number): number {
    const c = Math.min(len, this.minLength);
    const key = state * (this.minLength + 1) + c;
    const hit = this.need.get(key);
    if (hit !== undefined) return hit;
    // Breadth-first over (state, length so far capped at minLength).
    const seen = new Set<number>([key]);
    let frontier: Array<[number, number]> = [[state, c]];
    let result = Infinity;
    for (let d = 0; frontier.length; d++) {
      if (frontier.some(([s, l]) => this.dfa.accept[s] === 1 && l >= this.minLength)) {
        result = d;
        break;
      }
      const next: Array<[number, number]> = [];
      for (const [s, l] of frontier) {
        const l2 = Math.min(l + 1, this.minLength);
        for (const b of ALPHABET) {
          const n = this.dfa.trans[s * 128 + b]!;
          if (n < 0) continue;
          const k = n * (this.minLength + 1) + l2;
          if (!seen.has(k)) {
            seen.add(k);
            next.push([n, l2]);
          }
        }
      }
      frontier = next;
    }
    this.need.set(key, result);
    return result;
  }

  /** A string in `state` with `len` characters can still become an accepted one. */
  alive(state: number, len: number): boolean {
    return len + this.fewestMore(state, len) <= this.maxLength;
  }
}

/**
 * The `format`s enforced, each as a regular subset of what validators accept (zod's and
 * RFC 3339's patterns among them): dates keep to days 01-28, times to UTC ("Z"), UUIDs to
 * lowercase versions 1-8, email addresses to letters and digits around dots.
 */
export const FORMATS: Record<string, string> = {
  date: '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])$',
  'date-time': '^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\\d|2[0-8])T([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\dZ$',
  time: '^([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\dZ$',
  uuid: '^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$',
  email: '^[A-Za-z0-9]+(\\.[A-Za-z0-9]+)*@([A-Za-z0-9]+\\.)+[A-Za-z]{2,}$',
};
