/**
 * The vocabulary as a byte trie, built once per model: every token's bytes are a path from the
 * root. A constrained step walks the trie depth-first, feeding each edge's byte to the automaton
 * state of its parent node; a subtree is skipped as soon as the automaton rejects its prefix, so
 * one walk decides every token. Stored as flat typed arrays (children of a node are contiguous).
 */

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

  /** @param tokenBytes bytes of each token id; null for ids that never appear in constrained text (special tokens, unused ids). */
  constructor(readonly tokenBytes: readonly (Uint8Array | null)[]) {
    // Build with maps, then flatten breadth-first so every node's children are contiguous.
    interface Tmp {
      children: Map<number, Tmp>;
      tokens: number[];
      id: number;
    }
    const root: Tmp = { children: new Map(), tokens: [], id: 0 };
    let count = 1;
    for (let id = 0; id < tokenBytes.length; id++) {
      const bytes = tokenBytes[id];
      if (!bytes || bytes.length === 0) continue;
      let n = root;
      for (const b of bytes) {
        let c = n.children.get(b);
        if (!c) {
          c = { children: new Map(), tokens: [], id: 0 };
          n.children.set(b, c);
          count++;
        }
        n = c;
      }
      n.tokens.push(id);
    }
    this.nodeCount = count;
    this.childStart = new Int32Array(count);
    this.childCount = new Int32Array(count);
    this.edgeByte = new Uint8Array(count);
    this.edgeNode = new Int32Array(count);
    this.tokenStart = new Int32Array(count + 1);
    const order: Tmp[] = [root];
    let nextId = 1;
    let edge = 0;
    for (let i = 0; i < order.length; i++) {
      const n = order[i]!;
      this.childStart[n.id] = edge;
      this.childCount[n.id] = n.children.size;
      for (const [b, c] of [...n.children].sort((x, y) => x[0] - y[0])) {
        c.id = nextId++;
        this.edgeByte[edge] = b;
        this.edgeNode[edge] = c.id;
        edge++;
        order.push(c);
      }
    }
    let total = 0;
    for (const n of order) total += n.tokens.length;
    this.tokenIds = new Int32Array(total);
    const byId = new Array<Tmp>(count);
    for (const n of order) byId[n.id] = n;
    let t = 0;
    for (let id = 0; id < count; id++) {
      this.tokenStart[id] = t;
      for (const tok of byId[id]!.tokens) this.tokenIds[t++] = tok;
    }
    this.tokenStart[count] = t;
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
