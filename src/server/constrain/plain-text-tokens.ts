/**
 * The vocabulary's plain-text tokens: string content with no quote, backslash or control byte,
 * made of whole UTF-8 characters (most of a BPE vocabulary). Inside a free string or a free
 * object key the automaton accepts such a token iff its character count fits the room left
 * (`plainTextRoom`), so a mask there is these tokens up to that count plus a trie walk over the
 * other tokens only: the walk over every token fed each byte of ~50k tokens to the automaton.
 *
 * Worked out once per trie (per thread), on the first mask that uses it: the automaton decides
 * which tokens are plain, so the rule lives in one place.
 */
import { freeStringState, plainTextRoom } from './json-automaton.js';
import { TokenTrie } from './token-trie.js';

export class PlainTextTokens {
  /** Plain-text token ids, by character count (ascending). */
  private readonly ids: Int32Array;
  /** Character count of each entry of `ids`. */
  private readonly chars: Int32Array;
  /** Every other token, as a trie of its own. */
  readonly rest: TokenTrie;

  private constructor(trie: TokenTrie) {
    const inString = freeStringState();
    const plain: { id: number; chars: number }[] = [];
    const restBytes: (Uint8Array | null)[] = [];
    for (let id = 0; id < trie.tokenCount; id++) {
      const b = trie.tokenBytes(id);
      restBytes.push(b);
      if (!b || b.includes(0x22) || b.includes(0x5c)) continue;
      const after = inString.feedBytes(b);
      if (!after || plainTextRoom(after) === null) continue;
      // Whole, valid UTF-8 characters (the automaton checked): one lead byte per character.
      let chars = 0;
      for (const x of b) if ((x & 0xc0) !== 0x80) chars++;
      plain.push({ id, chars });
      restBytes[id] = null;
    }
    plain.sort((a, b) => a.chars - b.chars || a.id - b.id);
    this.ids = Int32Array.from(plain, (p) => p.id);
    this.chars = Int32Array.from(plain, (p) => p.chars);
    this.rest = TokenTrie.build(restBytes);
  }

  /** Sets in `mask` the plain-text tokens of at most `room` characters (ids below `vocabSize`). */
  addUpTo(mask: Uint32Array, room: number, vocabSize: number): void {
    const { ids, chars } = this;
    for (let i = 0; i < ids.length && chars[i]! <= room; i++) {
      const id = ids[i]!;
      if (id < vocabSize) mask[id >>> 5]! |= 1 << (id & 31);
    }
  }

  private static readonly byTrie = new WeakMap<TokenTrie, PlainTextTokens>();

  static of(trie: TokenTrie): PlainTextTokens {
    let p = PlainTextTokens.byTrie.get(trie);
    if (!p) {
      p = new PlainTextTokens(trie);
      PlainTextTokens.byTrie.set(trie, p);
    }
    return p;
  }
}
