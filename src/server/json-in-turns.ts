/**
 * JSON.parse of a large text a slice per turn of the event loop. One JSON.parse of a megabyte
 * body costs the loop 1-10 ms on a quiet machine and 20-80 ms on a busy one (250,000 token ids or
 * 100,000 object entries are the slow shapes); a parse in a worker thread does not help, as
 * handing the parsed value back (a structured clone) costs the loop as much again.
 *
 * So the text is first scanned for its structure (a pass in slices of its own: strings skipped
 * with a search, runs of numbers with a regular expression), cutting every array or object longer
 * than `slice` characters at commas of its own level about `slice` characters apart; then each
 * piece between cuts goes to JSON.parse wrapped in its brackets, in turns of about `turn`
 * characters each, and the pieces are joined. A value parsed this way is the one JSON.parse gives
 * for the whole text: the same elements, the same keys in the same order, the last of duplicate
 * keys, `__proto__` as an own key. Any text the pieces cannot show to be valid JSON is reported
 * as MalformedJson (the caller gets JSON.parse's own message for it elsewhere).
 */

/** Thrown for a text that is not one valid JSON value. */
export class MalformedJson extends Error {}

/** Thrown when the text nests arrays or objects deeper than allowed (jsonNestsDeeperThan's count). */
export class NestsTooDeep extends Error {}

export interface InTurnsOptions {
  /** Most nesting of arrays and objects (counted as jsonNestsDeeperThan counts). */
  maxDepth: number;
  /** Arrays and objects longer than this many characters are cut in pieces of about this size. Default 32 Ki. */
  slice?: number;
  /** Characters scanned or parsed per turn of the event loop. Default 64 Ki. */
  turn?: number;
  /** Waits for the next turn (tests count them). Default setImmediate. */
  nextTurn?: () => Promise<void>;
}

/** An array or object of the text, as the scan leaves it. */
interface Container {
  object: boolean;
  open: number;
  close: number;
  /** Commas of its own level where it is cut (ascending). */
  cuts: number[];
  /** Children longer than `slice`, parsed as containers of their own. */
  big: Container[];
  /** The last comma of its own level so far (its opening bracket before the first). */
  lastSep: number;
  /** The last string of its own level so far: an object's child follows its key. */
  lastString: [number, number];
  /** Where the text after its last child or string begins. */
  lastEnd: number;
  /** Of a child: its parent's lastSep and lastString when it opened. */
  sepBefore: number;
  key: [number, number];
}

const STRUCTURE = /["[\]{}]/g;
const WHITE = /^[ \t\n\r]*$/;
const COLON = /^[ \t\n\r]*:[ \t\n\r]*$/;

const nextImmediate = () => new Promise<void>((r) => setImmediate(r));

/** The value of the JSON text `text`, parsed in turns (see the file's comment). */
export async function parseJsonInTurns(text: string, options: InTurnsOptions): Promise<unknown> {
  const slice = options.slice ?? 32 * 1024;
  const turn = options.turn ?? 64 * 1024;
  const nextTurn = options.nextTurn ?? nextImmediate;
  const root = await scan(text, slice, turn, options.maxDepth, nextTurn);
  if (root === null) {
    // A string, a number or a literal: one JSON.parse (a string's is a copy, not a walk).
    return parsePiece(text);
  }
  if (!WHITE.test(text.slice(0, root.open)) || !WHITE.test(text.slice(root.close + 1))) throw new MalformedJson();
  const budget = { left: turn, nextTurn, turn };
  return parseContainer(text, root, budget);
}

/**
 * The structure of `text`: its outermost array or object with its cuts and large children, or
 * null when the text has no array or object at all. Throws NestsTooDeep, or MalformedJson where
 * the brackets do not match or a string does not end.
 */
async function scan(
  text: string,
  slice: number,
  turn: number,
  maxDepth: number,
  nextTurn: () => Promise<void>,
): Promise<Container | null> {
  const stack: Container[] = [];
  let root: Container | null = null;
  let depth = 0;
  let malformed = false;
  let budgetEnd = turn;
  const re = new RegExp(STRUCTURE.source, 'g');
  for (let events = 0; ; events++) {
    // A turn's share: characters passed, and events (each string or bracket) at 16 characters each.
    if (re.lastIndex + events * 16 > budgetEnd) {
      await nextTurn();
      budgetEnd = re.lastIndex + events * 16 + turn;
    }
    const m = re.exec(text);
    if (m === null) break;
    const b = m.index;
    const top = stack.length ? stack[stack.length - 1]! : null;
    if (top) {
      const gapStart = top.lastEnd;
      cutGap(text, top, gapStart, b, slice);
      for (let k = b - 1; k >= gapStart; k--) {
        if (text.charCodeAt(k) === 0x2c) {
          top.lastSep = k;
          break;
        }
      }
    }
    const c = text.charCodeAt(b);
    if (c === 0x22) {
      // A string: to its closing quote, one not escaped by an odd run of backslashes before it.
      let q = b;
      for (;;) {
        q = text.indexOf('"', q + 1);
        if (q < 0) throw new MalformedJson();
        let slashes = 0;
        while (text.charCodeAt(q - 1 - slashes) === 0x5c) slashes++;
        if (slashes % 2 === 0) break;
      }
      if (top) {
        top.lastString = [b, q];
        top.lastEnd = q + 1;
      } else if (root) malformed = true;
      re.lastIndex = q + 1;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) throw new NestsTooDeep();
      if (!top && root) malformed = true;
      stack.push({
        object: c === 0x7b,
        open: b,
        close: -1,
        cuts: [],
        big: [],
        lastSep: b,
        lastString: [-1, -1],
        lastEnd: b + 1,
        sepBefore: top ? top.lastSep : -1,
        key: top ? top.lastString : [-1, -1],
      });
    } else {
      // The depth falls at a closing bracket whatever it closes (jsonNestsDeeperThan's count).
      depth--;
      const x = stack.pop();
      if (!x || x.object !== (c === 0x7d)) {
        malformed = true;
        continue;
      }
      x.close = b;
      const parent = stack.length ? stack[stack.length - 1]! : null;
      if (parent) {
        parent.lastEnd = b + 1;
        // A small child is part of its parent's pieces; what the scan noted of it is dropped.
        if (b - x.open + 1 > slice) parent.big.push(x);
      } else if (root) malformed = true;
      else root = x;
    }
  }
  if (malformed || stack.length > 0) throw new MalformedJson();
  return root;
}

/**
 * Cuts `top` at commas in its own text between `gapStart` and `b` (no string or bracket lies
 * between), each about `slice` characters past the last cut.
 */
function cutGap(text: string, top: Container, gapStart: number, b: number, slice: number): void {
  for (;;) {
    const last = top.cuts.length ? top.cuts[top.cuts.length - 1]! : top.open;
    const target = last + slice;
    if (b <= target) return;
    const lo = Math.max(gapStart, last + 1);
    let c = target >= lo ? text.lastIndexOf(',', target) : -1;
    if (c < lo) {
      c = text.indexOf(',', lo);
      if (c < 0 || c >= b) return;
    }
    top.cuts.push(c);
  }
}

interface Budget {
  left: number;
  turn: number;
  nextTurn: () => Promise<void>;
}

/** Spends `chars` of the turn's budget, waiting for the next turn first when it is spent. */
async function spend(budget: Budget, chars: number): Promise<void> {
  if (budget.left <= 0) {
    await budget.nextTurn();
    budget.left = budget.turn;
  }
  budget.left -= chars;
}

function parsePiece(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new MalformedJson();
  }
}

/** The first character after `at` that is not JSON whitespace. */
function skipWhite(text: string, at: number): number {
  let i = at;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return i;
    i++;
  }
}

/** Sets `key` as JSON.parse sets it: `__proto__` too is an own key, not the prototype. */
function setKey(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__')
    Object.defineProperty(out, key, { value, writable: true, enumerable: true, configurable: true });
  else out[key] = value;
}

async function parseContainer(text: string, x: Container, budget: Budget): Promise<unknown> {
  // Each large child stands between the separator before it and the one after it.
  const bounds = new Set<number>([x.open, ...x.cuts, x.close]);
  const after = new Map<number, Container>();
  for (const child of x.big) {
    const end = skipWhite(text, child.close + 1);
    if (end !== x.close && text.charCodeAt(end) !== 0x2c) throw new MalformedJson();
    bounds.add(child.sepBefore);
    bounds.add(end);
    after.set(child.sepBefore, child);
  }
  const cuts = [...bounds].sort((a, b) => a - b);
  const out: unknown[] | Record<string, unknown> = x.object ? {} : [];
  for (let k = 0; k + 1 < cuts.length; k++) {
    const s = cuts[k]!;
    const e = cuts[k + 1]!;
    const child = after.get(s);
    if (child && skipWhite(text, child.close + 1) === e) {
      await spend(budget, 64);
      let key = '';
      if (x.object) {
        const [ks, ke] = child.key;
        if (ks <= s || ke >= child.open || !WHITE.test(text.slice(s + 1, ks))) throw new MalformedJson();
        if (!COLON.test(text.slice(ke + 1, child.open))) throw new MalformedJson();
        key = parsePiece(text.slice(ks, ke + 1)) as string;
      } else if (!WHITE.test(text.slice(s + 1, child.open))) throw new MalformedJson();
      const value = await parseContainer(text, child, budget);
      if (x.object) setKey(out as Record<string, unknown>, key, value);
      else (out as unknown[]).push(value);
      continue;
    }
    const piece = text.slice(s + 1, e);
    // An empty piece is a missing element ([1,,2]), except in an empty container.
    if (WHITE.test(piece)) {
      if (cuts.length === 2) break;
      throw new MalformedJson();
    }
    await spend(budget, piece.length);
    const parsed = parsePiece(x.object ? `{${piece}}` : `[${piece}]`);
    if (x.object) {
      const o = parsed as Record<string, unknown>;
      for (const key of Object.keys(o)) setKey(out as Record<string, unknown>, key, o[key]);
    } else {
      const list = out as unknown[];
      for (const v of parsed as unknown[]) list.push(v);
    }
  }
  return out;
}

/** JSON.parse's message for `text`, or null when it parses. */
export function parseError(text: string): string | null {
  try {
    JSON.parse(text);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}
