/**
 * The model side of constrained decoding: the bytes of every token id (from the tokenizer, once
 * per model) arranged as a trie, plus the ids that end a sequence.
 */
import type { MptTokenizer } from '../../runtime/tokenizer.js';
import type { ConstraintVocabulary } from './json-constraint.js';
import { TokenTrie } from './token-trie.js';

const encoder = new TextEncoder();

/**
 * Bytes of each id in [0, vocabSize): special tokens, unknown ids (the padding rows of MPT's
 * 50,432-row embedding) and, for non-byte-level tokenizers, ids that do not decode to whole
 * UTF-8 characters on their own are null, so constrained text never contains them.
 */
export function tokenBytesOf(tokenizer: MptTokenizer, vocabSize: number): (Uint8Array | null)[] {
  const out: (Uint8Array | null)[] = new Array(vocabSize).fill(null);
  for (let id = 0; id < vocabSize; id++) {
    if (!tokenizer.isKnown(id) || tokenizer.isSpecial(id)) continue;
    if (tokenizer.isByteLevel) {
      const b = tokenizer.tokenBytes(id);
      out[id] = b.length ? b : null;
    } else {
      const s = tokenizer.decode([id]);
      out[id] = s.length && !s.includes('\uFFFD') ? encoder.encode(s) : null;
    }
  }
  return out;
}

/** The trie of the first `vocabSize` ids' bytes: a pass over the vocabulary, done off the event loop (the prompt worker). */
export function constraintTrie(tokenizer: MptTokenizer, vocabSize: number): TokenTrie {
  return TokenTrie.build(tokenBytesOf(tokenizer, vocabSize));
}

export function vocabularyOf(trie: TokenTrie, vocabSize: number, eosIds: readonly number[]): ConstraintVocabulary {
  return { trie, vocabSize, eosIds: [...eosIds], maxTokenBytes: trie.longestToken };
}

/** The whole vocabulary built in place (tests; a server builds the trie in its prompt worker). */
export function buildConstraintVocabulary(
  tokenizer: MptTokenizer,
  vocabSize: number,
  eosIds: readonly number[],
): ConstraintVocabulary {
  return vocabularyOf(constraintTrie(tokenizer, vocabSize), vocabSize, eosIds);
}
