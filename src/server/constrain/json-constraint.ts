/**
 * Constrained decoding of JSON: at each step, every token whose bytes cannot extend the output
 * towards a value valid under the schema gets its logit set to -Infinity; EOS is allowed only
 * once the value is complete, and generation ends as soon as nothing more can follow.
 *
 * A `JsonGrammar` is one compiled schema plus a cache of masks by automaton state (the same state
 * recurs constantly: inside a free string, after a comma, …), shared by every sequence that uses
 * the schema. A `JsonConstraint` is one sequence's progress through it.
 */
import { JsonAutomatonState } from './json-automaton.js';
import { compileJsonSchema, type SchemaNode } from './schema.js';
import { shortestValueBytes } from './shortest.js';
import type { TokenTrie } from './token-trie.js';

/** What a model contributes: its vocabulary as a trie and its end-of-sequence ids. */
export interface ConstraintVocabulary {
  trie: TokenTrie;
  vocabSize: number;
  eosIds: readonly number[];
  /** The most bytes one token adds to the output. */
  maxTokenBytes: number;
}

/** A bitset over token ids. */
export type TokenMask = Uint32Array;

export function maskHas(mask: TokenMask, id: number): boolean {
  return (mask[id >>> 5]! & (1 << (id & 31))) !== 0;
}

const MASK_CACHE_ENTRIES = 512;

export class JsonGrammar {
  readonly root: SchemaNode;
  /** Bytes of the shortest value the schema allows (finite: a schema with none is refused). */
  readonly minBytes: number;
  private readonly masks = new Map<string, TokenMask>();

  constructor(
    schema: unknown,
    readonly vocab: ConstraintVocabulary,
  ) {
    this.root = compileJsonSchema(schema);
    this.minBytes = shortestValueBytes(this.root);
  }

  start(): JsonConstraint {
    return new JsonConstraint(this, JsonAutomatonState.initial(this.root));
  }

  /** The allowed tokens in a state (cached by the state's key). */
  maskFor(state: JsonAutomatonState): TokenMask {
    const key = state.key;
    const hit = this.masks.get(key);
    if (hit) {
      // Refresh its place in the insertion-ordered map (LRU).
      this.masks.delete(key);
      this.masks.set(key, hit);
      return hit;
    }
    const { trie, vocabSize, eosIds } = this.vocab;
    const mask = new Uint32Array((vocabSize + 31) >>> 5);
    trie.walk(
      state,
      (s, b) => s.feed(b),
      (id) => {
        if (id < vocabSize) mask[id >>> 5]! |= 1 << (id & 31);
      },
    );
    if (state.accepting) for (const id of eosIds) mask[id >>> 5]! |= 1 << (id & 31);
    this.masks.set(key, mask);
    if (this.masks.size > MASK_CACHE_ENTRIES) this.masks.delete(this.masks.keys().next().value!);
    return mask;
  }
}

export class JsonConstraint {
  constructor(
    readonly grammar: JsonGrammar,
    private state: JsonAutomatonState,
  ) {}

  /** Tokens allowed next. */
  mask(): TokenMask {
    return this.grammar.maskFor(this.state);
  }

  /** Sets the logits of disallowed tokens to -Infinity, in place. Returns how many stay allowed. */
  apply(logits: Float32Array): number {
    const m = this.mask();
    let allowed = 0;
    for (let id = 0; id < logits.length; id++) {
      if (maskHas(m, id)) allowed++;
      else logits[id] = -Infinity;
    }
    return allowed;
  }

  /**
   * Advances by a sampled token. Returns false if the token was not allowed (the state is then
   * unchanged); EOS ids are accepted when the value is complete.
   */
  accept(tokenId: number): boolean {
    if (this.grammar.vocab.eosIds.includes(tokenId)) return this.state.accepting;
    const bytes = this.grammar.vocab.trie.tokenBytes(tokenId);
    if (!bytes) return false;
    const next = this.state.feedBytes(bytes);
    if (!next) return false;
    this.state = next;
    return true;
  }

  /** The value is complete and cannot be extended: stop generating. */
  get finished(): boolean {
    return this.state.finished;
  }

  get accepting(): boolean {
    return this.state.accepting;
  }
}
