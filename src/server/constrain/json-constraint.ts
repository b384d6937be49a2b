/**
 * Constrained decoding of JSON: at each step, every token whose bytes cannot extend the output
 * towards a value valid under the schema gets its logit set to -Infinity; EOS is allowed only
 * once the value is complete, and generation ends as soon as nothing more can follow.
 *
 * A `JsonGrammar` is one compiled schema plus a cache of masks by automaton state (the same state
 * recurs constantly: inside a free string, after a comma, …), shared by every sequence that uses
 * the schema. A `JsonConstraint` is one sequence's progress through it.
 *
 * A new state's mask is a walk over the vocabulary's trie: up to hundreds of ms for a 50k
 * vocabulary on a busy machine, except where only string text may follow: there the plain-text
 * tokens are taken by their character count and the walk covers the others only
 * (plain-text-tokens.ts; 1-2 ms instead of ~90, bench json-mask), and inside a pattern string
 * the walk follows the pattern's DFA with integers rather than parse stacks (`patternMask`; ~1 ms
 * instead of 10-40). Listed keys and enum values prune the walk at their first bytes (well under
 * 1 ms); numbers still walk the digit tokens (well under 1 ms, bounded ones too: numeric.ts
 * checks each prefix with plain numbers where that is exact). A server must not spend that on its event loop, so a grammar may be given a
 * `MaskWorker` that computes masks on another thread (`JsonConstraint.ready`): the scheduler runs
 * the sequence's forward meanwhile and only its sampling waits, while the others go on.
 */
import {
  feedStacks,
  JsonAutomatonState,
  patternByte,
  patternPosition,
  type PatternPosition,
  plainTextRoom,
  type Stack,
} from './json-automaton.js';
import { PlainTextTokens } from './plain-text-tokens.js';
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

/**
 * Computes, elsewhere (another thread), the mask of the state that the schema's automaton reaches
 * after `output`, the bytes of the value so far. The same grammar's masks, so the same answer as
 * `maskFor` of that state.
 */
export type MaskWorker = (output: Uint8Array) => Promise<TokenMask>;

export class JsonGrammar {
  readonly root: SchemaNode;
  /** Bytes of the shortest value the schema allows (finite: a schema with none is refused). */
  readonly minBytes: number;
  private readonly masks = new Map<string, TokenMask>();
  /** Masks being computed by the worker, by state key (the choices of one request share them). */
  private readonly computing = new Map<string, Promise<TokenMask>>();

  constructor(
    schema: unknown,
    readonly vocab: ConstraintVocabulary,
    private readonly worker: MaskWorker | null = null,
  ) {
    this.root = compileJsonSchema(schema);
    this.minBytes = shortestValueBytes(this.root);
  }

  start(): JsonConstraint {
    return new JsonConstraint(this, JsonAutomatonState.initial(this.root));
  }

  /** The mask of a state when it is cached (refreshed as most recently used), else undefined. */
  private cached(state: JsonAutomatonState): TokenMask | undefined {
    const key = state.key;
    const hit = this.masks.get(key);
    if (hit) {
      // Refresh its place in the insertion-ordered map (LRU).
      this.masks.delete(key);
      this.masks.set(key, hit);
    }
    return hit;
  }

  /**
   * Null when the mask of `state` is cached, or when this grammar has no worker (`maskFor`
   * computes it in place); else the mask as the worker computes it (and caches it here; rejects
   * when the worker fails). `output` gives the bytes that led to `state`.
   */
  prepare(state: JsonAutomatonState, output: () => Uint8Array): Promise<TokenMask> | null {
    if (!this.worker || this.masks.has(state.key)) return null;
    const key = state.key;
    let p = this.computing.get(key);
    if (!p) {
      p = this.worker(output()).finally(() => this.computing.delete(key));
      p.then((mask) => this.remember(key, mask)).catch(() => {});
      this.computing.set(key, p);
    }
    return p;
  }

  /** The allowed tokens in a state (cached by the state's key; computed here on a miss). */
  maskFor(state: JsonAutomatonState): TokenMask {
    const hit = this.cached(state);
    if (hit) return hit;
    const mask = computeMask(this.vocab, state);
    this.remember(state.key, mask);
    return mask;
  }

  private remember(key: string, mask: TokenMask): void {
    this.masks.set(key, mask);
    if (this.masks.size > MASK_CACHE_ENTRIES) this.masks.delete(this.masks.keys().next().value!);
  }
}

/**
 * The allowed tokens in a state, worked out: inside a pattern string, a walk that follows the
 * pattern with integers (`patternMask`); where only plain string text may follow (see
 * `PlainTextTokens`), the plain-text tokens that fit plus a walk over the others; else a walk
 * over the whole vocabulary.
 */
export function computeMask(vocab: ConstraintVocabulary, state: JsonAutomatonState): TokenMask {
  const pattern = patternPosition(state);
  if (pattern) return patternMask(vocab, state, pattern);
  const room = plainTextRoom(state);
  if (room === null) return walkMask(vocab, state, vocab.trie);
  const plain = PlainTextTokens.of(vocab.trie);
  const mask = walkMask(vocab, state, plain.rest);
  plain.addUpTo(mask, room, vocab.vocabSize);
  return mask;
}

/** The parse stacks after a byte, or null when none accepts it. */
function stepStacks(stacks: readonly Stack[], b: number): readonly Stack[] | null {
  const next = feedStacks(stacks, b);
  return next.length ? next : null;
}

/** The tokens of `trie` that the state accepts (each edge's byte fed to the automaton), plus EOS when it accepts. */
export function walkMask(vocab: ConstraintVocabulary, state: JsonAutomatonState, trie: TokenTrie): TokenMask {
  return walkFrom(vocab, state, trie, state.stacks, stepStacks);
}

/**
 * The mask of a state inside a pattern string: the trie walked with the pattern's DFA state and
 * length as one number (ls + len * states) while the bytes stay in the string, and with parse
 * stacks again from a closing quote on. The same tokens as `walkMask`, without building a stack
 * per trie node inside the string (where a pattern of letters keeps ~10k tokens alive).
 */
export function patternMask(vocab: ConstraintVocabulary, state: JsonAutomatonState, at: PatternPosition): TokenMask {
  const { lang, closed } = at;
  const size = lang.dfa.size;
  const step = (s: number | readonly Stack[], b: number): number | readonly Stack[] | null => {
    if (typeof s !== 'number') return stepStacks(s, b);
    const ls = s % size;
    const len = (s - ls) / size;
    if (b === 0x22) return closed.length && lang.accepts(ls, len) ? closed : null;
    const next = patternByte(lang, ls, len, b);
    return next < 0 ? null : next + (len + 1) * size;
  };
  return walkFrom<number | readonly Stack[]>(vocab, state, vocab.trie, at.ls + at.len * size, step);
}

function walkFrom<S>(
  vocab: ConstraintVocabulary,
  state: JsonAutomatonState,
  trie: TokenTrie,
  start: S,
  step: (s: S, b: number) => S | null,
): TokenMask {
  const { vocabSize, eosIds } = vocab;
  const mask = new Uint32Array((vocabSize + 31) >>> 5);
  trie.walk(start, step, (id) => {
    if (id < vocabSize) mask[id >>> 5]! |= 1 << (id & 31);
  });
  if (state.accepting) for (const id of eosIds) mask[id >>> 5]! |= 1 << (id & 31);
  return mask;
}

export class JsonConstraint {
  /** The bytes of the value so far: output[0, length). */
  private output = new Uint8Array(64);
  private length = 0;
  /** The current state's mask or failure as the grammar's worker gave it (see `ready`). */
  private prepared: { state: JsonAutomatonState; mask: TokenMask | null; error?: unknown } | null = null;

  constructor(
    readonly grammar: JsonGrammar,
    private state: JsonAutomatonState,
  ) {}

  /**
   * Null when the tokens allowed next are known (or are worked out in place by `mask()`); else a
   * promise that settles (never rejects) once the grammar's worker has worked them out.
   */
  ready(): Promise<void> | null {
    const state = this.state;
    if (this.prepared?.state === state) return null;
    const p = this.grammar.prepare(state, () => this.output.slice(0, this.length));
    if (!p) return null;
    return p.then(
      (mask) => {
        this.prepared = { state, mask };
      },
      (error: unknown) => {
        this.prepared = { state, mask: null, error };
      },
    );
  }

  /** Tokens allowed next (computed in place when neither cached nor prepared by `ready`). */
  mask(): TokenMask {
    const prepared = this.prepared;
    if (prepared?.state === this.state) {
      if (!prepared.mask) throw prepared.error;
      return prepared.mask;
    }
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
    if (this.length + bytes.length > this.output.length) {
      const grown = new Uint8Array(Math.max(this.output.length * 2, this.length + bytes.length));
      grown.set(this.output.subarray(0, this.length));
      this.output = grown;
    }
    this.output.set(bytes, this.length);
    this.length += bytes.length;
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
