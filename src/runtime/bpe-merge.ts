/**
 * Byte-pair merging of one pre-token in O(n log n) time and O(n) memory, for pre-tokens long
 * enough that tokenizers.js's own merge loop is too slow (tokenizer.ts installs it through
 * `adoptPairMerger`).
 *
 * The rule is the standard one, and tokenizers.js's: while some adjacent pair of symbols has a
 * merge, merge the pair with the lowest merge rank, the leftmost one among equal ranks. A merge
 * keeps its left symbol's position, so "leftmost" compares the position of a pair's left symbol
 * in the original word. The symbols are the word's code points (`Array.from`); a merge's rank
 * is its index in `model.merges`, the last one when a pair is listed twice (tokenizers.js builds
 * its rank map in order, so later entries overwrite earlier ones).
 *
 * Symbols live in arrays indexed by their position, linked to their neighbours; a min-heap holds
 * one entry per adjacent pair that has a merge, keyed by (rank, left position). An entry records
 * the versions of its two symbols when it was pushed; a merge changes the left symbol's version
 * and retires the right one, so an entry whose symbols changed is recognised as stale when it is
 * popped and dropped. Each merge pushes at most two new entries, so a word of n symbols pushes at
 * most 3n and pops as many: O(n log n).
 */

/** The merge table of a BPE model, with symbol strings interned to small integers. */
export class PairMerger {
  /** Interned symbol strings: every merge's parts and result. */
  private readonly idOf = new Map<string, number>();
  private readonly names: string[] = [];
  /** Pair key (left × span + right) → index into ranks/results. */
  private readonly pairIndex = new Map<number, number>();
  private readonly ranks: number[] = [];
  private readonly results: number[] = [];
  private readonly span: number;

  /** `merges` as tokenizers.js holds them (`model.merges`): pairs `[left, right]`, in rank order. */
  constructor(merges: readonly (readonly unknown[])[]) {
    const usable: [string, string, number][] = [];
    merges.forEach((m, rank) => {
      if (m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') usable.push([m[0], m[1], rank]);
    });
    for (const [a, b] of usable) {
      this.intern(a);
      this.intern(b);
      this.intern(a + b);
    }
    this.span = this.names.length;
    for (const [a, b, rank] of usable) {
      const key = this.idOf.get(a)! * this.span + this.idOf.get(b)!;
      let at = this.pairIndex.get(key);
      if (at === undefined) {
        at = this.ranks.length;
        this.pairIndex.set(key, at);
        this.ranks.push(rank);
        this.results.push(this.idOf.get(a + b)!);
      } else {
        this.ranks[at] = rank;
      }
    }
  }

  private intern(s: string): void {
    if (!this.idOf.has(s)) {
      this.idOf.set(s, this.names.length);
      this.names.push(s);
    }
  }

  /** The pair's index into ranks/results, or -1 when the two symbols do not merge. */
  private pairOf(left: number, right: number): number {
    if (left < 0 || right < 0) return -1;
    return this.pairIndex.get(left * this.span + right) ?? -1;
  }

  /** The symbols `word` ends as once every merge that applies is done. */
  merge(word: string): string[] {
    const chars = Array.from(word);
    const n = chars.length;
    if (n <= 1) return chars;
    // Symbol at each position: an interned id, or -1 for a code point no merge mentions (kept as chars[i]).
    const sym = new Int32Array(n);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      sym[i] = this.idOf.get(chars[i]!) ?? -1;
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap(3 * n);
    const push = (left: number): void => {
      const right = next[left]!;
      const pair = this.pairOf(sym[left]!, sym[right]!);
      if (pair >= 0) heap.push(this.ranks[pair]!, left, pair, version[left]!, version[right]!);
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    while (heap.size > 0) {
      const e = heap.pop();
      const left = heap.left[e]!;
      const right = next[left]!;
      // Stale: the left symbol was merged or retired since, or its right neighbour was.
      if (version[left] !== heap.leftVersion[e] || right < 0 || version[right] !== heap.rightVersion[e]) continue;
      sym[left] = this.results[heap.pair[e]!]!;
      version[left] = version[left]! + 1;
      version[right] = version[right]! + 1;
      const after = next[right]!;
      next[left] = after;
      if (after >= 0) prev[after] = left;
      const before = prev[left]!;
      if (before >= 0) push(before);
      if (after >= 0) push(left);
    }
    const out: string[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(sym[i]! >= 0 ? this.names[sym[i]!]! : chars[i]!);
    return out;
  }
}

/**
 * A binary min-heap of pair entries ordered by (rank, left position). Entries are written once
 * into typed arrays; the heap orders their indices.
 */
class PairHeap {
  size = 0;
  private count = 0;
  private readonly order: Int32Array;
  readonly rank: Int32Array;
  readonly left: Int32Array;
  readonly pair: Int32Array;
  readonly leftVersion: Uint32Array;
  readonly rightVersion: Uint32Array;

  constructor(capacity: number) {
    this.order = new Int32Array(capacity);
    this.rank = new Int32Array(capacity);
    this.left = new Int32Array(capacity);
    this.pair = new Int32Array(capacity);
    this.leftVersion = new Uint32Array(capacity);
    this.rightVersion = new Uint32Array(capacity);
  }

  /** Whether entry a comes before entry b. */
  private before(a: number, b: number): boolean {
    const ra = this.rank[a]!;
    const rb = this.rank[b]!;
    return ra < rb || (ra === rb && this.left[a]! < this.left[b]!);
  }

  push(rank: number, left: number, pair: number, leftVersion: number, rightVersion: number): void {
    const e = this.count++;
    this.rank[e] = rank;
    this.left[e] = left;
    this.pair[e] = pair;
    this.leftVersion[e] = leftVersion;
    this.rightVersion[e] = rightVersion;
    const order = this.order;
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = order[parent]!;
      if (!this.before(e, p)) break;
      order[i] = p;
      i = parent;
    }
    order[i] = e;
  }

  /** Removes the first entry and returns its index (read its fields from the arrays). */
  pop(): number {
    const order = this.order;
    const top = order[0]!;
    const last = --this.size;
    if (last > 0) {
      const e = order[last]!;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= last) break;
        const r = l + 1;
        const child = r < last && this.before(order[r]!, order[l]!) ? r : l;
        const c = order[child]!;
        if (!this.before(c, e)) break;
        order[i] = c;
        i = child;
      }
      order[i] = e;
    }
    return top;
  }
}

/**
 * Pre-tokens of at least this many UTF-16 units are merged by PairMerger; shorter ones by
 * tokenizers.js, whose cache of recent words (those under 256 units) makes repeated words of
 * ordinary text cheap.
 */
export const LONG_PRE_TOKEN = 256;

/** Merge tables up to this many entries: interned ids stay below 2^26, so pair keys are exact integers. */
const MAX_MERGES = 2 ** 24;

/** The part of a tokenizers.js BPE model (its class `BPE`) read and replaced here. */
interface BpeModel {
  merges: unknown;
  bpe_ranks: unknown;
  bpe: (token: string) => string[];
  end_of_word_suffix?: unknown;
  continuing_subword_suffix?: unknown;
}

/** tokenizers.js models are callable objects (functions with a prototype), not plain objects. */
function isBpeModel(model: unknown): model is BpeModel {
  if (typeof model !== 'function' && (typeof model !== 'object' || model === null)) return false;
  const m = model as Partial<BpeModel>;
  return typeof m.bpe === 'function' && m.bpe_ranks instanceof Map;
}

/**
 * Makes the tokenizers.js tokenizer `hf` merge pre-tokens of `minLength` or more UTF-16 units
 * with PairMerger, when its model is a BPE model this file can stand in for (no end-of-word or
 * continuing-subword suffix). Returns whether it did.
 */
export function adoptPairMerger(hf: { model: unknown }, minLength = LONG_PRE_TOKEN): boolean {
  const model = hf.model;
  if (!isBpeModel(model) || model.end_of_word_suffix || model.continuing_subword_suffix) return false;
  const merges = model.merges;
  if (!Array.isArray(merges) || merges.length > MAX_MERGES || !merges.every((m) => Array.isArray(m))) return false;
  const merger = new PairMerger(merges as unknown[][]);
  const library = model.bpe;
  model.bpe = (token: string): string[] =>
    token.length >= minLength ? merger.merge(token) : library.call(model, token);
  return true;
}
