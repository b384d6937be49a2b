/**
 * The syntax of JavaScript regular expressions with the `u` flag, parsed into a tree that both of
 * the project's pattern engines compile: the linear-time matcher of tokenizer patterns
 * (linear-pattern.ts) and the automata of JSON Schema `pattern`s (server/constrain/regex.ts).
 * Each one-code-point atom (a literal, `.`, an escape, `\p{…}`, a class) is kept as its source
 * with a JavaScript RegExp of that atom alone, which cannot backtrack, so what an atom matches is
 * exactly JavaScript's; the engines decide which constructs they run (lookarounds, edges) and
 * refuse the rest.
 */

/** Deepest group nesting accepted. */
const MAX_DEPTH = 200;

export const EDGE_START = 0,
  EDGE_END = 1,
  EDGE_WORD = 2,
  EDGE_NOT_WORD = 3;

/** One atom: one code point (`only` >= 0, a literal) or a set of them that `re` decides. */
export interface PatternAtom {
  readonly source: string;
  readonly only: number;
  /** `^(?:source)$` with the u flag; null for a literal. */
  readonly re: RegExp | null;
}

/** A parsed pattern; `char` nodes index the parser's `atoms`, `look` nodes record where they start. */
export type PatternNode =
  | { t: 'char'; set: number }
  | { t: 'seq'; items: PatternNode[] }
  | { t: 'alt'; alts: PatternNode[] }
  | { t: 'rep'; body: PatternNode; min: number; max: number; greedy: boolean }
  | { t: 'look'; body: PatternNode; behind: boolean; negate: boolean; at: number }
  | { t: 'edge'; kind: number };

const SYNTAX_CHARS = '^$\\.*+?()[]{}|/';

/**
 * Parses one pattern; `fail` receives a reason phrased to follow the pattern's name ("has …",
 * "uses …") and must throw. Counted repetitions above `maxCount` are refused.
 */
export class PatternParser {
  private i = 0;
  private depth = 0;
  readonly atoms: PatternAtom[] = [];
  private readonly atomIds = new Map<string, number>();

  constructor(
    private readonly src: string,
    private readonly fail: (reason: string) => never,
    private readonly maxCount: number,
  ) {}

  parse(): PatternNode {
    const node = this.alternation();
    if (this.i < this.src.length) this.fail(`has an unmatched ")" at index ${this.i}`);
    return node;
  }

  private set(source: string, only = -1): PatternNode {
    const key = only >= 0 ? `#${only}` : source;
    let id = this.atomIds.get(key);
    if (id === undefined) {
      id = this.atoms.length;
      let re: RegExp | null = null;
      if (only < 0) {
        try {
          re = new RegExp(`^(?:${source})$`, 'u');
        } catch {
          this.fail(`has an atom JavaScript cannot compile alone: ${source}`);
        }
      }
      this.atoms.push({ source, only, re });
      this.atomIds.set(key, id);
    }
    return { t: 'char', set: id };
  }

  private alternation(): PatternNode {
    const alts = [this.sequence()];
    while (this.src[this.i] === '|') {
      this.i++;
      alts.push(this.sequence());
    }
    return alts.length === 1 ? alts[0]! : { t: 'alt', alts };
  }

  private sequence(): PatternNode {
    const items: PatternNode[] = [];
    const s = this.src;
    while (this.i < s.length && s[this.i] !== '|' && s[this.i] !== ')') items.push(this.quantified());
    return items.length === 1 ? items[0]! : { t: 'seq', items };
  }

  private quantified(): PatternNode {
    const body = this.atom();
    const s = this.src;
    let min: number, max: number;
    const c = s[this.i];
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
      const m = /^\{(\d+)(?:(,)(\d*))?\}/.exec(s.slice(this.i, this.i + 64));
      if (!m) this.fail(`has a "{" that is not a quantifier at index ${this.i}`);
      min = Number(m[1]);
      max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]);
      if (max < min) this.fail(`has a quantifier {${m[1]},${m[3]}} whose maximum is below its minimum`);
      if (min > this.maxCount || (max !== Infinity && max > this.maxCount)) {
        this.fail(`has a repetition count over ${this.maxCount} (${m[0]})`);
      }
      this.i += m[0].length;
    } else return body;
    let greedy = true;
    if (s[this.i] === '?') {
      greedy = false;
      this.i++;
    }
    return { t: 'rep', body, min, max, greedy };
  }

  private atom(): PatternNode {
    const s = this.src,
      start = this.i,
      c = s[start]!;
    if (c === '(') return this.group();
    if (c === '^') {
      this.i++;
      return { t: 'edge', kind: EDGE_START };
    }
    if (c === '$') {
      this.i++;
      return { t: 'edge', kind: EDGE_END };
    }
    if (c === '.') {
      this.i++;
      return this.set('.');
    }
    if (c === '[') {
      let j = start + 1;
      if (s[j] === '^') j++;
      while (j < s.length && s[j] !== ']') j += s[j] === '\\' ? 2 : 1;
      if (j >= s.length) this.fail(`has an unterminated character class at index ${start}`);
      this.i = j + 1;
      return this.set(s.slice(start, this.i));
    }
    if (c === '\\') return this.escape();
    if ('*+?{'.includes(c)) this.fail(`has a quantifier with nothing to repeat (index ${start})`);
    const cp = s.codePointAt(start)!;
    this.i += cp > 0xffff ? 2 : 1;
    return this.set('', cp);
  }

  private group(): PatternNode {
    const s = this.src,
      start = this.i;
    if (++this.depth > MAX_DEPTH) this.fail(`nests groups more than ${MAX_DEPTH} deep`);
    let look: { behind: boolean; negate: boolean } | undefined;
    if (s.startsWith('(?:', start)) this.i += 3;
    else if (s.startsWith('(?=', start) || s.startsWith('(?!', start)) {
      look = { behind: false, negate: s[start + 2] === '!' };
      this.i += 3;
    } else if (s.startsWith('(?<=', start) || s.startsWith('(?<!', start)) {
      look = { behind: true, negate: s[start + 3] === '!' };
      this.i += 4;
    } else if (s.startsWith('(?<', start)) {
      const end = s.indexOf('>', start);
      if (end < 0) this.fail(`has an unterminated group name at index ${start}`);
      this.i = end + 1;
    } else if (s[start + 1] === '?') this.fail(`uses the unsupported group syntax "${s.slice(start, start + 4)}"`);
    else this.i++;
    const body = this.alternation();
    if (s[this.i] !== ')') this.fail(`has an unclosed group at index ${start}`);
    this.i++;
    this.depth--;
    return look ? { t: 'look', body, ...look, at: start } : body;
  }

  private escape(): PatternNode {
    const s = this.src,
      start = this.i,
      e = s[start + 1];
    if (e === undefined) this.fail('ends with a lone backslash');
    if (e === 'b' || e === 'B') {
      this.i += 2;
      return { t: 'edge', kind: e === 'b' ? EDGE_WORD : EDGE_NOT_WORD };
    }
    if (e === 'k' || (e >= '1' && e <= '9')) {
      const ref = s.slice(start, start + 2);
      this.fail(`uses a backreference (${ref}): backreferences need backtracking, which can take exponential time`);
    }
    let end = start + 2;
    if (e === 'p' || e === 'P' || (e === 'u' && s[start + 2] === '{')) {
      end = s.indexOf('}', start) + 1;
      if (end === 0) this.fail(`has an unterminated escape at index ${start}`);
    } else if (e === 'u') {
      end = start + 6;
      // A surrogate pair written as two escapes is one code point with the u flag.
      const lead = parseInt(s.slice(start + 2, end), 16);
      if (lead >= 0xd800 && lead <= 0xdbff && /^\\u[dD][c-fC-F][0-9a-fA-F]{2}/.test(s.slice(end, end + 6))) end += 6;
    } else if (e === 'x') end = start + 4;
    else if (e === 'c') end = start + 3;
    this.i = end;
    if (SYNTAX_CHARS.includes(e) || e === '-') return this.set('', e.codePointAt(0)!);
    return this.set(s.slice(start, end));
  }
}
