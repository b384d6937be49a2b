/**
 * The vocabulary as a byte trie, built once per model: every token's bytes are a path from the
 * root. A constrained step walks the trie depth-first, feeding each edge's byte to the automaton
 * state of its parent node; a subtree is skipped as soon as the automaton rejects its prefix, so
 * one walk decides every token. Stored as flat typed arrays (children of a node are contiguous).
 */

/** A trie's arrays: what a worker thread hands over (transferable, no per-token objects). */
export interface TokenTrieParts {
  childStart: Int32Array;
  childCount: Int32Array;
  edgeByte: Uint8Array;
  edgeNode: Int32Array;
  tokenStart: Int32Array;
  tokenIds: Int32Array;
  /** Token id t's bytes are bytes[byteStart[t] .. byteStart[t + 1]); none (null) when that is empty. */
  bytes: Uint8Array;
  byteStart: Int32Array;
}

export class TokenTrie {
  /** Children of node n are edges childStart[n] .. childStart[n] + childCount[n] - 1. */
  readonly childStart: Int32Array;
  readonly childCount: Int32Array;
  /** Per edge: the byte on it and the node it leads to. */
  readonly edgeByte: Uint8Array;
  readonly edgeNode: Int32Array;
  /** Tokens ending at node n are tokenIds[tokenStart[n] .. tokenStart[n+1]). */
  readonly tokenStart: Int32Array;
  readonly tokenIds: Int32Array;
  readonly nodeCount: number;
  private readonly bytes: Uint8Array;
  private readonly byteStart: Int32Array;

  constructor(readonly parts: TokenTrieParts) {
    this.childStart = parts.childStart;
    this.childCount = parts.childCount;
    this.edgeByte = parts.edgeByte;
    this.edgeNode = parts.edgeNode;
    this.tokenStart = parts.tokenStart;
    this.tokenIds = parts.tokenIds;
    this.nodeCount = parts.childStart.length;
    this.bytes = parts.bytes;
    this.byteStart = parts.byteStart;
  }

  /** Token ids the trie knows: [0, tokenCount). */
  get tokenCount(): number {
    return this.byteStart.length - 1;
  }

  /** The most bytes one token has. */
  get longestToken(): number {
    let most = 0;
    for (let id = 0; id + 1 < this.byteStart.length; id++)
      most = Math.max(most, this.byteStart[id + 1]! - this.byteStart[id]!);
    return most;
  }

  /** The bytes of a token id, or null for one that never appears in constrained text. */
  tokenBytes(id: number): Uint8Array | null {
    if (!(id >= 0 && id < this.byteStart.length - 1)) return null;
    const start = this.byteStart[id]!;
    const end = this.byteStart[id + 1]!;
    return end > start ? this.bytes.subarray(start, end) : null;
  }

  /** @param tokenBytes bytes of each token id; null for ids that never appear in constrained text (special tokens, unused ids). */
  static build(tokenBytes: readonly (Uint8Array | null)[]): TokenTrie {
    // Nodes are first numbered as they are created, with one map from (node, byte) to child for
    // the whole trie (a map per node made this take seconds for a 50k vocabulary), then renumbered
    // breadth-first with each node's children in byte order, so that they are contiguous.
    const childOf = new Map<number, number>();
    let parentOf = new Int32Array(1024);
    let byteOf = new Uint8Array(1024);
    const endOf = new Int32Array(tokenBytes.length).fill(-1);
    const byteStart = new Int32Array(tokenBytes.length + 1);
    let count = 1;
    for (let id = 0; id < tokenBytes.length; id++) {
      const bytes = tokenBytes[id];
      byteStart[id + 1] = byteStart[id]! + (bytes?.length ?? 0);
      if (!bytes || bytes.length === 0) continue;
      let n = 0;
      for (const b of bytes) {
        const key = n * 256 + b;
        let c = childOf.get(key);
        if (c === undefined) {
          if (count === parentOf.length) {
            parentOf = grown(parentOf, new Int32Array(count * 2));
            byteOf = grown(byteOf, new Uint8Array(count * 2));
          }
          c = count++;
          parentOf[c] = n;
          byteOf[c] = b;
          childOf.set(key, c);
        }
        n = c;
      }
      endOf[id] = n;
    }
    const allBytes = new Uint8Array(byteStart[tokenBytes.length]!);
    for (let id = 0; id < tokenBytes.length; id++) {
      const bytes = tokenBytes[id];
      if (bytes) allBytes.set(bytes, byteStart[id]!);
    }
    // Children of each node (creation numbers), grouped by parent and in byte order: a counting
    // sort by byte, then a stable one by parent.
    const byByte = countingSort(
      count - 1,
      256,
      (i) => byteOf[i + 1]!,
      (i) => i + 1,
    );
    const firstChild = new Int32Array(count + 1);
    for (let c = 1; c < count; c++) firstChild[parentOf[c]! + 1]!++;
    for (let n = 0; n < count; n++) firstChild[n + 1]! += firstChild[n]!;
    const children = new Int32Array(Math.max(count - 1, 0));
    const fill = firstChild.slice(0, count);
    for (const c of byByte) children[fill[parentOf[c]!]!++] = c;

    const childStart = new Int32Array(count);
    const childCount = new Int32Array(count);
    const edgeByte = new Uint8Array(count);
    const edgeNode = new Int32Array(count);
    const tokenStart = new Int32Array(count + 1);
    // Breadth-first: `order` holds creation numbers, a node's new number is its place in it.
    const order = new Int32Array(count);
    const newId = new Int32Array(count);
    let queued = 1;
    let edge = 0;
    for (let i = 0; i < count; i++) {
      const n = order[i]!;
      childStart[i] = edge;
      childCount[i] = firstChild[n + 1]! - firstChild[n]!;
      for (let k = firstChild[n]!; k < firstChild[n + 1]!; k++) {
        const c = children[k]!;
        newId[c] = queued;
        order[queued++] = c;
        edgeByte[edge] = byteOf[c]!;
        edgeNode[edge] = newId[c]!;
        edge++;
      }
    }
    // Tokens by the node they end at, in id order within a node.
    const ends: number[] = [];
    for (let id = 0; id < endOf.length; id++) if (endOf[id]! >= 0) ends.push(id);
    for (const id of ends) tokenStart[newId[endOf[id]!]! + 1]!++;
    for (let n = 0; n < count; n++) tokenStart[n + 1]! += tokenStart[n]!;
    const tokenIds = new Int32Array(ends.length);
    const at = tokenStart.slice(0, count);
    for (const id of ends) tokenIds[at[newId[endOf[id]!]!]!++] = id;
    return new TokenTrie({
      childStart,
      childCount,
      edgeByte,
      edgeNode,
      tokenStart,
      tokenIds,
      bytes: allBytes,
      byteStart,
    });
  }

  /**
   * Visits every token whose bytes the `step` function accepts as a chain of states: `step(state,
   * byte)` returns the state after the byte, or null to prune. `accept(tokenId)` is called for
   * each token whose whole path was accepted.
   */
  walk<S>(state: S, step: (s: S, b: number) => S | null, accept: (tokenId: number) => void): void {
    const visit = (node: number, s: S): void => {
      const start = this.childStart[node]!;
      const end = start + this.childCount[node]!;
      for (let e = start; e < end; e++) {
        const next = step(s, this.edgeByte[e]!);
        if (next === null) continue;
        const c = this.edgeNode[e]!;
        for (let i = this.tokenStart[c]!; i < this.tokenStart[c + 1]!; i++) accept(this.tokenIds[i]!);
        if (this.childCount[c]! > 0) visit(c, next);
      }
    };
    visit(0, state);
  }
}

/** `into` holding `from`'s values first. */
function grown<T extends Int32Array | Uint8Array>(from: T, into: T): T {
  into.set(from);
  return into;
}

/** `value(i)` for i in [0, n), ordered by `key(i)` in [0, keys), stably. */
function countingSort(n: number, keys: number, key: (i: number) => number, value: (i: number) => number): Int32Array {
  const start = new Int32Array(keys + 1);
  for (let i = 0; i < n; i++) start[key(i) + 1]!++;
  for (let k = 0; k < keys; k++) start[k + 1]! += start[k]!;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[start[key(i)]!++] = value(i);
  return out;
}
