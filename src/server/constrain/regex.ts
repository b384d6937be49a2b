/**
 * JSON Schema `pattern` and `format` as automata over the characters of a string. A pattern is
 * compiled from a safe subset of ECMAScript regular expressions (literals, classes, `.`, groups,
 * alternation, greedy or lazy quantifiers, `^` at the start and `$` at the end) into a DFA;
 * lookaround, backreferences, word boundaries and non-ASCII characters are refused by name.
 *
 * Generated strings use only printable ASCII other than `"` and `\` (nothing that JSON would
 * escape), so a class like `.` or `[^a]` is enforced as its part in that alphabet: every string
 * produced matches, some that would match are never produced. A string with several patterns
 * (a `format` and a `pattern`) walks the product of their DFAs, so it satisfies all of them.
 */

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
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isWord = (c: number) => isDigit(c) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f;
const isSpace = (c: number) => c === 0x20 || (c >= 0x09 && c <= 0x0d);
const CLASS_ESCAPES: Record<string, (c: number) => boolean> = {
  d: isDigit,
  D: (c) => !isDigit(c),
  w: isWord,
  W: (c) => !isWord(c),
  s: isSpace,
  S: (c) => !isSpace(c),
};
const CONTROL_ESCAPES: Record<string, number> = { n: 10, t: 9, r: 13, f: 12, v: 11, '0': 0 };

class Parser {
  private i = 0;
  anchoredStart = false;
  anchoredEnd = false;

  constructor(private readonly src: string) {}

  private fail(why: string): never {
    throw new PatternError(`pattern ${JSON.stringify(this.src)}: ${why} (at offset ${this.i})`);
  }

  parse(): Ast {
    if (this.src.startsWith('^')) {
      this.anchoredStart = true;
      this.i = 1;
    }
    const ast = this.alt();
    if (this.i < this.src.length) this.fail(`unbalanced ")"`);
    return ast;
  }

  private peek(): string | undefined {
    return this.src[this.i];
  }

  private alt(): Ast {
    const xs = [this.cat()];
    while (this.peek() === '|') {
      this.i++;
      xs.push(this.cat());
    }
    return xs.length === 1 ? xs[0]! : { t: 'alt', xs };
  }

  private cat(): Ast {
    const xs: Ast[] = [];
    for (;;) {
      const c = this.peek();
      if (c === undefined || c === '|' || c === ')') break;
      if (c === '$') {
        this.i++;
        if (this.i !== this.src.length) this.fail('"$" is supported only at the end of the pattern');
        this.anchoredEnd = true;
        break;
      }
      if (c === '^') this.fail('"^" is supported only at the start of the pattern');
      xs.push(this.quantified(this.atom()));
    }
    return { t: 'cat', xs };
  }

  private quantified(x: Ast): Ast {
    for (;;) {
      const c = this.peek();
      let min: number, max: number;
      if (c === '*') {
        min = 0;
        max = Infinity;
        this.i++;
      } else if (c === '+') {
        min = 1;
        max = Infinity;
        this.i++;
      } else if (c === '?') {
        min = 0;
        max = 1;
        this.i++;
      } else if (c === '{') {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(this.i));
        if (!m) return x; // a literal "{", as ECMAScript reads it outside unicode mode
        min = Number(m[1]);
        max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
        if (min > max) this.fail('quantifier {n,m} with n > m');
        if (min > 1000 || (max !== Infinity && max > 1000)) this.fail('quantifier counts above 1000');
        this.i += m[0].length;
      } else return x;
      if (this.peek() === '?') this.i++; // lazy: the same language
      x = { t: 'rep', x, min, max };
    }
  }

  private atom(): Ast {
    const c = this.src[this.i++]!;
    if (c === '(') {
      if (this.src.startsWith('?:', this.i)) this.i += 2;
      else if (
        this.src.startsWith('?=', this.i) ||
        this.src.startsWith('?!', this.i) ||
        this.src.startsWith('?<=', this.i) ||
        this.src.startsWith('?<!', this.i)
      ) {
        this.fail('lookaround assertions are not supported');
      } else if (this.src.startsWith('?<', this.i)) {
        const end = this.src.indexOf('>', this.i);
        if (end < 0) this.fail('unterminated group name');
        this.i = end + 1;
      } else if (this.peek() === '?') this.fail('unsupported group syntax "(?"');
      const x = this.alt();
      if (this.src[this.i++] !== ')') this.fail('missing ")"');
      return x;
    }
    if (c === '[') return { t: 'set', set: this.charClass() };
    if (c === '.') return { t: 'set', set: setOf((x) => x !== 10 && x !== 13) };
    if (c === '\\') return { t: 'set', set: this.escape(false) };
    if (c === '*' || c === '+' || c === '?') this.fail(`nothing to repeat before "${c}"`);
    if (c === ')') this.fail('unbalanced ")"');
    return { t: 'set', set: this.literal(c) };
  }

  private literal(c: string): CharSet {
    const code = c.codePointAt(0)!;
    if (code >= 128) this.fail(`non-ASCII character ${JSON.stringify(c)} is not supported`);
    return setOf((x) => x === code);
  }

  /** After a backslash. */
  private escape(inClass: boolean): CharSet {
    const c = this.src[this.i++];
    if (c === undefined) this.fail('pattern ends with "\\"');
    const cls = CLASS_ESCAPES[c];
    if (cls) return setOf(cls);
    if (c in CONTROL_ESCAPES) return setOf((x) => x === CONTROL_ESCAPES[c]);
    if (c === 'b' && inClass) return setOf((x) => x === 8);
    if (c === 'b' || c === 'B') this.fail('word boundaries (\\b, \\B) are not supported');
    if (/[1-9]/.test(c) || c === 'k') this.fail('backreferences are not supported');
    if (c === 'x' || c === 'u') {
      const n = c === 'x' ? 2 : 4;
      const hex = this.src.slice(this.i, this.i + n);
      if (!new RegExp(`^[0-9a-fA-F]{${n}}$`).test(hex)) this.fail(`malformed \\${c} escape`);
      this.i += n;
      const code = parseInt(hex, 16);
      if (code >= 128) this.fail(`non-ASCII character \\${c}${hex} is not supported`);
      return setOf((x) => x === code);
    }
    if (/[A-Za-z]/.test(c)) this.fail(`unsupported escape "\\${c}"`);
    return this.literal(c);
  }

  private charClass(): CharSet {
    const out = new Uint8Array(128);
    let negate = false;
    if (this.peek() === '^') {
      negate = true;
      this.i++;
    }
    let first = true;
    for (;;) {
      const c = this.src[this.i++];
      if (c === undefined) this.fail('unterminated character class');
      if (c === ']' && !first) break;
      first = false;
      let lo: CharSet | number;
      if (c === '\\') {
        const s = this.escape(true);
        const members = [...s.keys()].filter((k) => s[k]);
        lo = members.length === 1 ? members[0]! : s;
      } else {
        if (c.codePointAt(0)! >= 128) this.fail(`non-ASCII character ${JSON.stringify(c)} is not supported`);
        lo = c.charCodeAt(0);
      }
      if (
        typeof lo === 'number' &&
        this.peek() === '-' &&
        this.src[this.i + 1] !== ']' &&
        this.src[this.i + 1] !== undefined
      ) {
        this.i++;
        let hiCh = this.src[this.i++]!;
        let hi: number;
        if (hiCh === '\\') {
          const s = this.escape(true);
          const members = [...s.keys()].filter((k) => s[k]);
          if (members.length !== 1) this.fail('a class escape cannot end a range');
          hi = members[0]!;
        } else {
          if (hiCh.codePointAt(0)! >= 128) this.fail(`non-ASCII character ${JSON.stringify(hiCh)} is not supported`);
          hi = hiCh.charCodeAt(0);
        }
        if (hi < lo) this.fail('range out of order in character class');
        for (let x = lo; x <= hi; x++) out[x] = 1;
        hiCh = '';
      } else if (typeof lo === 'number') out[lo] = 1;
      else for (let x = 0; x < 128; x++) if (lo[x]) out[x] = 1;
    }
    if (negate) for (let x = 0; x < 128; x++) out[x] = out[x] ? 0 : 1;
    return out;
  }
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
  const p = new Parser(src);
  let ast = p.parse();
  const any: Ast = { t: 'rep', x: { t: 'set', set: setOf(() => true) }, min: 0, max: Infinity };
  ast = { t: 'cat', xs: [...(p.anchoredStart ? [] : [any]), ast, ...(p.anchoredEnd ? [] : [any])] };
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
