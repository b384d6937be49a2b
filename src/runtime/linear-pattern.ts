/**
 * A regular-expression matcher whose running time is linear in the text searched, for the
 * patterns that tokenizer.json files carry (Split pre-tokenizers, Replace normalizers).
 *
 * A tokenizer file is input: a pattern such as `(a+)+$` makes JavaScript's backtracking engine
 * take exponential time on a 36-character text, and no static rule finds every such shape. So
 * these patterns run here instead, as a Pike VM (Thompson's NFA simulation with threads kept in
 * priority order): every NFA state is visited at most once per text position, so one search
 * costs O(text × pattern), and the match found is the one JavaScript's leftmost-first
 * backtracking would find (greedy and lazy quantifiers, ordered alternation, and ECMAScript's
 * rule that an optional iteration must not match the empty string). Iterating over all matches
 * (match, matchAll, split, replace) skips states earlier searches of the text proved dead, so it
 * stays linear too, where RE2 and Rust's regex crate are quadratic in the worst case.
 *
 * The syntax is JavaScript's with the `u` flag (tokenizers.js has already rewritten Oniguruma's
 * syntax into it), parsed by pattern-syntax.ts: one-code-point atoms (literals, `.`, escapes,
 * `\p{…}`, classes) are tested by a JavaScript RegExp of that atom alone, which cannot
 * backtrack, so their meaning is exactly JavaScript's. Lookahead and lookbehind are zero-width tests at one position; they are run here
 * when their body matches at most LOOK_MAX_WIDTH code points (as in `\s+(?!\S)`, and the
 * lookarounds tokenizers.js writes for `^`, `$`, `\b`, `\A`, `\z`), which keeps the whole search
 * linear. Backreferences (which no linear matcher can run) and unbounded lookarounds are refused,
 * as are patterns that compile to more than MAX_INSTRUCTIONS states.
 *
 * A different engine from JSON Schema's (server/constrain/regex.ts, which shares the parser)
 * because the jobs differ: this one searches a text for JavaScript's leftmost-first matches over
 * all of Unicode, lookarounds included, while that one must step a deterministic automaton over
 * the generated ASCII one character at a time, intersect several patterns and know the shortest
 * completion from any state, which a search over a finished text never needs.
 */
import { FormatError } from '../errors.js';
import {
  EDGE_END,
  EDGE_START,
  EDGE_WORD,
  PatternParser,
  type PatternAtom,
  type PatternNode as Node,
} from './pattern-syntax.js';

/** Most NFA states a pattern may compile to (counted repetitions are expanded). */
export const MAX_INSTRUCTIONS = 10_000;
/** Most code points a lookahead or lookbehind body may match. */
export const LOOK_MAX_WIDTH = 16;
const CHAR = 0,
  SPLIT = 1,
  EDGE = 2,
  LOOK = 3,
  MATCH = 4,
  BEGIN = 5,
  CHECK = 6;

/** A set of code points: one atom of the pattern, decided by JavaScript's own RegExp. */
class CharSet {
  /** Answers for the BMP, filled as code points are met: 0 unknown, 1 no, 2 yes. */
  private readonly bmp: Uint8Array | undefined;
  private readonly astral = new Map<number, boolean>();
  private readonly re: RegExp | undefined;
  /** `only` >= 0: the set is that one code point (a literal). */
  private readonly only: number;
  constructor(atom: PatternAtom) {
    this.only = atom.only;
    if (atom.re) {
      this.re = atom.re;
      this.bmp = new Uint8Array(0x10000);
    }
  }
  test(cp: number): boolean {
    if (this.only >= 0) return cp === this.only;
    if (cp < 0x10000) {
      const k = this.bmp![cp]!;
      if (k !== 0) return k === 2;
      const yes = this.re!.test(String.fromCharCode(cp));
      this.bmp![cp] = yes ? 2 : 1;
      return yes;
    }
    let yes = this.astral.get(cp);
    if (yes === undefined) {
      yes = this.re!.test(String.fromCodePoint(cp));
      this.astral.set(cp, yes);
    }
    return yes;
  }
}

/** Fewest and most code points a node can match. */
function width(n: Node): [number, number] {
  switch (n.t) {
    case 'char':
      return [1, 1];
    case 'edge':
    case 'look':
      return [0, 0];
    case 'seq': {
      let lo = 0,
        hi = 0;
      for (const item of n.items) {
        const [a, b] = width(item);
        lo += a;
        hi += b;
      }
      return [lo, hi];
    }
    case 'alt': {
      const ws = n.alts.map(width);
      return [Math.min(...ws.map((w) => w[0])), Math.max(...ws.map((w) => w[1]))];
    }
    case 'rep': {
      const [a, b] = width(n.body);
      return [a * n.min, b === 0 ? 0 : b * n.max];
    }
  }
}

/** Instructions a node compiles to (Infinity when a count is absurd). */
function size(n: Node): number {
  switch (n.t) {
    case 'char':
    case 'edge':
      return 1;
    case 'look':
      return 1 + size(n.body) + 1;
    case 'seq':
      return n.items.reduce((a, item) => a + size(item), 0);
    case 'alt':
      return n.alts.reduce((a, alt) => a + size(alt) + 1, 0);
    case 'rep': {
      const copies = n.max === Infinity ? n.min + 1 : n.max;
      return (size(n.body) + 2) * copies + (n.max === Infinity ? 1 : n.max - n.min);
    }
  }
}

function isWordChar(text: string, i: number): boolean {
  if (i < 0 || i >= text.length) return false;
  const c = text.charCodeAt(i);
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}

/** A compiled NFA (the pattern, or a lookaround body) with its scratch space. */
class Program {
  readonly op: Uint8Array;
  readonly arg: Int32Array;
  readonly x: Int32Array;
  readonly y: Int32Array;
  /** Marks of (state, taint) pairs reached at the current position; see add(). */
  private readonly visited: Int32Array;
  /** Marks of CHAR and MATCH states already in the list being built. */
  private readonly listed: Int32Array;
  private mark = 0;
  private readonly stack: Int32Array;
  private readonly listA: Int32Array;
  private readonly startsA: Int32Array;
  private readonly listB: Int32Array;
  private readonly startsB: Int32Array;
  private dead: Set<number> | undefined;
  private deadMax = -1;

  constructor(
    ops: number[][],
    readonly entry: number,
    readonly sets: CharSet[],
    readonly looks: Look[],
    private readonly levels: number,
  ) {
    const n = ops.length;
    this.op = Uint8Array.from(ops, (o) => o[0]!);
    this.arg = Int32Array.from(ops, (o) => o[1]!);
    this.x = Int32Array.from(ops, (o) => o[2]!);
    this.y = Int32Array.from(ops, (o) => o[3]!);
    this.visited = new Int32Array(n * levels);
    this.listed = new Int32Array(n);
    this.stack = new Int32Array(4 * n * levels + 4);
    this.listA = new Int32Array(n);
    this.startsA = new Int32Array(n);
    this.listB = new Int32Array(n);
    this.startsB = new Int32Array(n);
  }

  private nextMark(): number {
    if (this.mark === 0x7fffffff) {
      this.visited.fill(0);
      this.listed.fill(0);
      this.mark = 0;
    }
    return ++this.mark;
  }

  /**
   * Adds the thread at `pc` and everything reachable from it without consuming a character
   * (in priority order, each state once per position) to a thread list; returns its new length.
   *
   * The taint carried along is JavaScript's rule that an optional iteration of a quantifier
   * must not match the empty string: 0, or 1 + the nesting level of the outermost optional
   * iteration entered (BEGIN) at this position without consuming a character since. Its CHECK
   * rejects the path, and the search goes on with the next alternative, as backtracking would.
   * States are visited once per (state, taint), so a rejected path does not hide a later one.
   */
  private add(
    list: Int32Array,
    starts: Int32Array,
    n: number,
    pc0: number,
    text: string,
    pos: number,
    start: number,
    mark: number,
  ): number {
    const { op, arg, x, y, visited, listed, stack, levels } = this;
    let sp = 0;
    stack[sp++] = pc0;
    stack[sp++] = 0;
    while (sp > 0) {
      const taint = stack[--sp]!;
      const pc = stack[--sp]!;
      const o = op[pc]!;
      if (o === CHAR || o === MATCH) {
        if (listed[pc] === mark) continue;
        listed[pc] = mark;
        if (this.deadMax >= pos && this.dead!.has(pos * op.length + pc)) continue;
        list[n] = pc;
        starts[n] = start;
        n++;
        continue;
      }
      const key = pc * levels + taint;
      if (visited[key] === mark) continue;
      visited[key] = mark;
      let to = x[pc]!,
        toTaint = taint;
      if (o === SPLIT) {
        stack[sp++] = y[pc]!;
        stack[sp++] = taint;
      } else if (o === EDGE) {
        if (!edgeHolds(arg[pc]!, text, pos)) continue;
      } else if (o === LOOK) {
        if (!this.looks[arg[pc]!]!.holds(text, pos)) continue;
      } else if (o === BEGIN) toTaint = taint === 0 ? arg[pc]! + 1 : Math.min(taint, arg[pc]! + 1);
      else if (taint !== 0 && taint <= arg[pc]! + 1) continue; // CHECK: the iteration was empty
      stack[sp++] = to;
      stack[sp++] = toTaint;
    }
    return n;
  }

  /**
   * The leftmost-first match that starts at or after `from` (JavaScript's choice among the
   * matches), as [start, end]; or null. With `anchorEnd` >= 0, only whether some match runs
   * from `from` to exactly `anchorEnd` (lookbehind); with `anchored`, only from `from`.
   *
   * `dead` carries what earlier searches of the same text learnt: states (position × NFA state)
   * from which no match can be reached. Threads that outrank the match found and run on past it
   * (`a*b|a` on "aaaa…") all die, so their states are dead; skipping them in later searches
   * keeps iterating over every match linear, where it is otherwise quadratic.
   */
  search(text: string, from: number, anchored = false, anchorEnd = -1, dead?: DeadStates): [number, number] | null {
    const len = text.length,
      nStates = this.op.length;
    let clist = this.listA,
      cstarts = this.startsA,
      nlist = this.listB,
      nstarts = this.startsB;
    let cn = 0;
    let mark = this.nextMark();
    let matchStart = -1,
      matchEnd = -1;
    const outranking: number[] = [];
    if (dead && dead.maxPos < from) {
      dead.keys.clear();
      dead.maxPos = -1;
    }
    this.dead = dead?.keys;
    this.deadMax = dead && dead.keys.size > 0 ? dead.maxPos : -1;
    for (let pos = from; ; ) {
      if (matchStart < 0 && (!anchored || pos === from)) {
        cn = this.add(clist, cstarts, cn, this.entry, text, pos, pos, mark);
      }
      if (cn === 0 && (anchored || matchStart >= 0)) break;
      const atEnd = pos >= len;
      const cp = atEnd ? -1 : text.codePointAt(pos)!;
      const next = pos + (cp > 0xffff ? 2 : 1);
      const nmark = this.nextMark();
      const matchedBefore = matchStart >= 0;
      let nn = 0;
      for (let t = 0; t < cn; t++) {
        const pc = clist[t]!;
        if (this.op[pc] === MATCH) {
          if (anchorEnd >= 0 && pos !== anchorEnd) continue;
          matchStart = cstarts[t]!;
          matchEnd = pos;
          // What outranks this match is dead unless it matches later (then it replaces it).
          outranking.length = 0;
          for (let u = 0; u < t; u++) outranking.push(pos * nStates + clist[u]!);
          break;
        }
        if (matchedBefore) outranking.push(pos * nStates + pc);
        if (!atEnd && (anchorEnd < 0 || next <= anchorEnd) && this.sets[this.arg[pc]!]!.test(cp)) {
          nn = this.add(nlist, nstarts, nn, this.x[pc]!, text, next, cstarts[t]!, nmark);
        }
      }
      if (atEnd || (nn === 0 && matchStart >= 0)) break;
      [clist, nlist] = [nlist, clist];
      [cstarts, nstarts] = [nstarts, cstarts];
      cn = nn;
      pos = next;
      mark = nmark;
    }
    this.dead = undefined;
    this.deadMax = -1;
    if (dead && outranking.length > 0) {
      for (const key of outranking) dead.keys.add(key);
      dead.maxPos = Math.max(dead.maxPos, Math.floor(outranking[outranking.length - 1]! / nStates));
    }
    return matchStart < 0 ? null : [matchStart, matchEnd];
  }
}

/** States known to lead to no match, for the searches of one text (see Program.search). */
interface DeadStates {
  keys: Set<number>;
  /** Highest position among `keys` (-1 when empty). */
  maxPos: number;
}

function edgeHolds(kind: number, text: string, pos: number): boolean {
  if (kind === EDGE_START) return pos === 0;
  if (kind === EDGE_END) return pos === text.length;
  const boundary = isWordChar(text, pos - 1) !== isWordChar(text, pos);
  return kind === EDGE_WORD ? boundary : !boundary;
}

/** A lookahead or lookbehind: its body as its own program, tried at one position. */
class Look {
  constructor(
    readonly program: Program,
    readonly behind: boolean,
    readonly negate: boolean,
    readonly minWidth: number,
    readonly maxWidth: number,
  ) {}

  holds(text: string, pos: number): boolean {
    let found = false;
    if (!this.behind) found = this.program.search(text, pos, true) !== null;
    else {
      // Every start within maxWidth code points before pos whose match ends exactly at pos.
      let s = pos;
      for (let k = 0; k <= this.maxWidth && !found; k++) {
        if (k >= this.minWidth) found = this.program.search(text, s, true, pos) !== null;
        if (s === 0) break;
        const lo = text.charCodeAt(s - 1);
        s -= s >= 2 && lo >= 0xdc00 && lo <= 0xdfff && (text.charCodeAt(s - 2) & 0xfc00) === 0xd800 ? 2 : 1;
      }
    }
    return found !== this.negate;
  }
}

/** Compiles a parsed node into a Program (with MATCH at its end). */
function compile(root: Node, sets: CharSet[]): Program {
  const ops: number[][] = [];
  const looks: Look[] = [];
  let maxLevel = -1;
  const emit = (o: number, arg: number, x: number, y = -1): number => {
    ops.push([o, arg, x, y]);
    return ops.length - 1;
  };
  /** `level`: how many optional iterations that must not be empty enclose n. */
  const gen = (n: Node, next: number, level: number): number => {
    switch (n.t) {
      case 'char':
        return emit(CHAR, n.set, next);
      case 'edge':
        return emit(EDGE, n.kind, next);
      case 'look': {
        const [minW, maxW] = width(n.body);
        looks.push(new Look(compile(n.body, sets), n.behind, n.negate, minW, maxW));
        return emit(LOOK, looks.length - 1, next);
      }
      case 'seq': {
        let pc = next;
        for (let k = n.items.length - 1; k >= 0; k--) pc = gen(n.items[k]!, pc, level);
        return pc;
      }
      case 'alt': {
        const starts = n.alts.map((a) => gen(a, next, level));
        let pc = starts[starts.length - 1]!;
        for (let k = starts.length - 2; k >= 0; k--) pc = emit(SPLIT, 0, starts[k]!, pc);
        return pc;
      }
      case 'rep': {
        // Iterations past the minimum must not be empty (ECMAScript's RepeatMatcher); a body
        // that cannot match the empty string needs no check.
        const check = width(n.body)[0] === 0;
        if (check) maxLevel = Math.max(maxLevel, level);
        const optional = (after: number): number => {
          if (!check) return gen(n.body, after, level);
          return emit(BEGIN, level, gen(n.body, emit(CHECK, level, after), level + 1));
        };
        let pc = next;
        if (n.max === Infinity) {
          const loop = emit(SPLIT, 0, -1, -1);
          const body = optional(loop);
          ops[loop]![2] = n.greedy ? body : next;
          ops[loop]![3] = n.greedy ? next : body;
          pc = loop;
        } else {
          for (let k = n.min; k < n.max; k++) {
            const body = optional(pc);
            pc = n.greedy ? emit(SPLIT, 0, body, next) : emit(SPLIT, 0, next, body);
          }
        }
        for (let k = 0; k < n.min; k++) pc = gen(n.body, pc, level);
        return pc;
      }
    }
  };
  const match = emit(MATCH, 0, -1);
  const entry = gen(root, match, 0);
  return new Program(ops, entry, sets, looks, maxLevel + 2);
}

/**
 * A compiled pattern with the parts of RegExp's protocol that string methods use (`match`,
 * `matchAll`, `replace`/`replaceAll`, `split`), always global. A string replacement is inserted
 * literally (as the Rust tokenizers library does), not with JavaScript's `$` substitutions.
 */
export class LinearPattern {
  readonly global = true;
  readonly unicode = true;
  readonly flags = 'gu';
  lastIndex = 0;

  constructor(
    readonly source: string,
    private readonly program: Program,
  ) {}

  /** The first match at or after `from`, as [start, end], or null. */
  find(text: string, from = 0): [number, number] | null {
    return from > text.length ? null : this.program.search(text, from);
  }

  /** Every match, left to right (after an empty match the search moves on one code point). */
  *matches(text: string): Generator<[number, number]> {
    const dead: DeadStates = { keys: new Set(), maxPos: -1 };
    for (let from = 0; from <= text.length; ) {
      const m = this.program.search(text, from, false, -1, dead);
      if (!m) return;
      yield m;
      from = m[1] > m[0] ? m[1] : advance(text, m[1]);
    }
  }

  exec(text: string): RegExpExecArray | null {
    const m = this.find(text, this.lastIndex);
    this.lastIndex = m ? m[1] : 0;
    return m ? execArray(text, m) : null;
  }

  test(text: string): boolean {
    return this.exec(text) !== null;
  }

  [Symbol.match](text: string): string[] | null {
    const out: string[] = [];
    for (const [a, b] of this.matches(String(text))) out.push(text.slice(a, b));
    return out.length > 0 ? out : null;
  }

  *[Symbol.matchAll](text: string): IterableIterator<RegExpExecArray> {
    const s = String(text);
    for (const m of this.matches(s)) yield execArray(s, m);
  }

  [Symbol.replace](text: string, replacement: string | ((match: string, ...rest: unknown[]) => string)): string {
    const s = String(text);
    let out = '',
      prev = 0;
    for (const [a, b] of this.matches(s)) {
      const r = typeof replacement === 'function' ? replacement(s.slice(a, b), a, s) : String(replacement);
      out += s.slice(prev, a) + r;
      prev = b;
    }
    return out + s.slice(prev);
  }

  /** String.prototype.split's steps for a regex (capture groups are not spliced in). */
  [Symbol.split](text: string, limit?: number): string[] {
    const s = String(text),
      n = s.length;
    const max = limit === undefined ? Infinity : limit >>> 0;
    if (max === 0) return [];
    if (n === 0) return this.program.search(s, 0, true) ? [] : [s];
    const out: string[] = [];
    const dead: DeadStates = { keys: new Set(), maxPos: -1 };
    let p = 0;
    for (let q = 0; q < n; ) {
      const m = this.program.search(s, q, false, -1, dead);
      if (!m || m[0] >= n) break;
      q = m[0];
      const e = Math.min(m[1], n);
      if (e === p) {
        q = advance(s, q);
        continue;
      }
      out.push(s.slice(p, q));
      if (out.length === max) return out;
      p = q = e;
    }
    out.push(s.slice(p));
    return out;
  }
}

function advance(text: string, i: number): number {
  const c = text.charCodeAt(i);
  const pair = c >= 0xd800 && c <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
  return pair ? i + 2 : i + 1;
}

function execArray(text: string, [a, b]: [number, number]): RegExpExecArray {
  const arr = [text.slice(a, b)] as unknown as RegExpExecArray;
  arr.index = a;
  arr.input = text;
  return arr;
}

/**
 * Compiles a JavaScript (`u` flag) pattern for the linear matcher. `what` names the pattern
 * for errors (file, component, pattern); a pattern that cannot run in linear time, or that is
 * too large, is a FormatError saying why.
 */
export function compileLinearPattern(source: string, flags: string, what: string): LinearPattern {
  const fail = (reason: string): never => {
    throw new FormatError(`${what} ${reason}`);
  };
  if (!flags.includes('u') || /[^gu]/.test(flags)) fail(`has the regex flags "${flags}"; only "gu" is supported`);
  const parser = new PatternParser(source, fail, MAX_INSTRUCTIONS);
  const root = parser.parse();
  checkLookarounds(root, source, fail);
  const n = size(root);
  if (!(n <= MAX_INSTRUCTIONS)) {
    const states = Number.isFinite(n) ? n : 'unboundedly many';
    fail(`is too large: it expands to ${states} matcher states (at most ${MAX_INSTRUCTIONS})`);
  }
  return new LinearPattern(
    source,
    compile(
      root,
      parser.atoms.map((a) => new CharSet(a)),
    ),
  );
}

/** Refuses a lookahead or lookbehind whose body can match more than LOOK_MAX_WIDTH code points. */
function checkLookarounds(n: Node, source: string, fail: (reason: string) => never): void {
  switch (n.t) {
    case 'seq':
      for (const item of n.items) checkLookarounds(item, source, fail);
      return;
    case 'alt':
      for (const alt of n.alts) checkLookarounds(alt, source, fail);
      return;
    case 'rep':
      checkLookarounds(n.body, source, fail);
      return;
    case 'look': {
      checkLookarounds(n.body, source, fail);
      const [, maxWidth] = width(n.body);
      if (maxWidth > LOOK_MAX_WIDTH) {
        const kind = n.behind ? 'lookbehind' : 'lookahead';
        fail(
          `has a ${kind} that can match ${maxWidth === Infinity ? 'unboundedly many' : maxWidth} characters ` +
            `(at most ${LOOK_MAX_WIDTH} can be checked in linear time) at index ${n.at}`,
        );
      }
      return;
    }
    default:
      return;
  }
}
