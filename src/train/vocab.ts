/**
 * Compact vocabulary: a model trained from scratch on a corpus that uses U of the V token ids can
 * keep every unused row of the tied embedding equal to one shared row u. Those rows get identical
 * gradients (they are never inputs and their logits are all h·u), so identical updates, and stay
 * equal: training the model with V rows is then *exactly* training U + 1 rows where the softmax
 * counts the last row m = V − U times. That makes the 50432-row LM head of the GPT-NeoX vocabulary
 * cost U + 1 rows. `CompactVocab` holds the mapping; `expandEmbedding` writes the V rows back.
 */
import { InputError } from '../errors.js';

/** Token-id → embedding-row map of a compact vocabulary (see the file comment). */
export interface CompactVocab {
  /** Full vocabulary size V. */
  fullSize: number;
  /** Row of each full id (length V). */
  rowOf: Int32Array;
  /** Full id of each row, the shared row last (its id is the first unused id). */
  idOf: Int32Array;
  /** Number of full ids the last row stands for (0: no shared row, every row is one id). */
  shared: number;
}

/** The identity vocabulary (no compaction). */
export function fullVocab(size: number): CompactVocab {
  const rowOf = new Int32Array(size),
    idOf = new Int32Array(size);
  for (let i = 0; i < size; i++) {
    rowOf[i] = i;
    idOf[i] = i;
  }
  return { fullSize: size, rowOf, idOf, shared: 0 };
}

/** A compact vocabulary keeping `used` ids (plus `always`) and one shared row for all others. */
export function compactVocab(size: number, used: Iterable<number>): CompactVocab {
  const keep = new Uint8Array(size);
  for (const t of used) {
    if (t < 0 || t >= size) throw new InputError(`token id ${t} is outside the vocabulary (${size})`);
    keep[t] = 1;
  }
  const ids: number[] = [];
  let firstUnused = -1;
  for (let i = 0; i < size; i++) {
    if (keep[i]) ids.push(i);
    else if (firstUnused < 0) firstUnused = i;
  }
  if (firstUnused < 0) return fullVocab(size);
  const shared = size - ids.length;
  const idOf = Int32Array.from([...ids, firstUnused]);
  const rowOf = new Int32Array(size).fill(ids.length);
  ids.forEach((id, r) => {
    rowOf[id] = r;
  });
  return { fullSize: size, rowOf, idOf, shared };
}

/** Writes the full [V, d] embedding of a compact one. */
export function expandEmbedding(vocab: CompactVocab, compact: Float32Array, d: number): Float32Array {
  if (vocab.shared === 0 && vocab.idOf.every((id, r) => id === r)) return compact;
  const full = new Float32Array(vocab.fullSize * d);
  for (let id = 0; id < vocab.fullSize; id++)
    full.set(compact.subarray(vocab.rowOf[id]! * d, vocab.rowOf[id]! * d + d), id * d);
  return full;
}
