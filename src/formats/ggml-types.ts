/**
 * ggml's storage types: ids, names and block geometry (elements per block, bytes per block), the
 * one table every byte count in the engine is derived from. Kept apart from the block codecs
 * (ggml-quants.ts, kquant-quantize.ts) so that they and everything else can import it without a
 * cycle.
 */
import { FormatError, UnsupportedError } from '../errors.js';
import type { DType } from './tensor-source.js';

/** One storage type: its ggml id, how many elements a block holds and how many bytes it takes. */
export interface GgmlTypeInfo {
  /** ggml's own name (`ggml_type_name`), e.g. "Q4_K". */
  name: string;
  /** `enum ggml_type` value, as stored in GGUF tensor infos. */
  id: number;
  /** Elements per block (1 for float types). */
  blockSize: number;
  /** Bytes per block. */
  typeSize: number;
}

/** Every DType this engine reads, with ggml's ids and block geometry (ggml.c `type_traits`). */
export const GGML_TYPES: Readonly<Record<DType, GgmlTypeInfo>> = Object.freeze({
  f32: { name: 'F32', id: 0, blockSize: 1, typeSize: 4 },
  f16: { name: 'F16', id: 1, blockSize: 1, typeSize: 2 },
  q4_0: { name: 'Q4_0', id: 2, blockSize: 32, typeSize: 18 },
  q4_1: { name: 'Q4_1', id: 3, blockSize: 32, typeSize: 20 },
  q5_0: { name: 'Q5_0', id: 6, blockSize: 32, typeSize: 22 },
  q5_1: { name: 'Q5_1', id: 7, blockSize: 32, typeSize: 24 },
  q8_0: { name: 'Q8_0', id: 8, blockSize: 32, typeSize: 34 },
  q2_k: { name: 'Q2_K', id: 10, blockSize: 256, typeSize: 84 },
  q3_k: { name: 'Q3_K', id: 11, blockSize: 256, typeSize: 110 },
  q4_k: { name: 'Q4_K', id: 12, blockSize: 256, typeSize: 144 },
  q5_k: { name: 'Q5_K', id: 13, blockSize: 256, typeSize: 176 },
  q6_k: { name: 'Q6_K', id: 14, blockSize: 256, typeSize: 210 },
  bf16: { name: 'BF16', id: 30, blockSize: 1, typeSize: 2 },
});

/** ggml type ids this engine does not implement, by name, so errors can say what the file holds. */
const OTHER_GGML_TYPE_NAMES: Record<number, string> = {
  4: 'Q4_2 (removed from ggml)',
  5: 'Q4_3 (removed from ggml)',
  9: 'Q8_1',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
  31: 'Q4_0_4_4',
  32: 'Q4_0_4_8',
  33: 'Q4_0_8_8',
  34: 'TQ1_0',
  35: 'TQ2_0',
  36: 'IQ4_NL_4_4',
  37: 'IQ4_NL_4_8',
  38: 'IQ4_NL_8_8',
  39: 'MXFP4',
};

const BY_ID = new Map<number, DType>(
  (Object.entries(GGML_TYPES) as [DType, GgmlTypeInfo][]).map(([k, v]) => [v.id, k]),
);

/** The DType of a ggml type id, or undefined for ids this engine does not implement. */
export function dtypeOfGgmlType(id: number): DType | undefined {
  return BY_ID.get(id);
}

/** A readable name for any ggml type id (for error messages). */
export function ggmlTypeName(id: number): string {
  const d = BY_ID.get(id);
  if (d !== undefined) return GGML_TYPES[d].name;
  return OTHER_GGML_TYPE_NAMES[id] ?? `unknown type ${id}`;
}

/** Bytes that `count` elements of `dtype` occupy; count must be a whole number of blocks. */
export function byteLengthOf(dtype: DType, count: number): number {
  const t = GGML_TYPES[dtype];
  if (t === undefined) throw new UnsupportedError(`unknown tensor dtype "${String(dtype)}"`);
  if (!Number.isSafeInteger(count) || count < 0) throw new FormatError(`invalid element count ${count}`);
  if (count % t.blockSize !== 0) {
    throw new FormatError(
      `${t.name} stores blocks of ${t.blockSize} values; ${count} values is not a whole number of blocks`,
    );
  }
  return (count / t.blockSize) * t.typeSize;
}

/**
 * Bytes of `count` values of `dtype` in whole blocks, the last one padded to a full block (the
 * KV caches' q8_0 rows, whose length need not be a multiple of 32).
 */
export function paddedByteLengthOf(dtype: DType, count: number): number {
  const t = GGML_TYPES[dtype];
  return Math.ceil(count / t.blockSize) * t.typeSize;
}
