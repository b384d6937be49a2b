/**
 * The contract between the formats layer and everything above it: a checkpoint is a set of
 * named tensors that can be listed cheaply and read one at a time, so that a 13 GB file is
 * never held twice in memory (or in one Buffer).
 */

/** Storage types a tensor may have on disk. Quantized types use ggml's block layouts. */
export type DType =
  | 'f32'
  | 'f16'
  | 'bf16'
  | 'q8_0'
  | 'q4_0'
  | 'q4_1'
  | 'q5_0'
  | 'q5_1'
  | 'q2_k'
  | 'q3_k'
  | 'q4_k'
  | 'q5_k'
  | 'q6_k';

export interface TensorInfo {
  /** Canonical name (MosaicML's state-dict names, e.g. `transformer.blocks.0.attn.Wqkv.weight`). */
  name: string;
  dtype: DType;
  /** PyTorch order: a Linear weight is [out_features, in_features]; rows are contiguous. */
  shape: number[];
  /** Bytes the stored tensor occupies. */
  byteLength: number;
}

export interface TensorSource {
  /** Every tensor in the checkpoint, without reading any tensor data. */
  list(): TensorInfo[];
  /** Looks up one tensor's info; undefined when absent. */
  info(name: string): TensorInfo | undefined;
  /** Reads one tensor's raw stored bytes (little-endian, dtype as in `info`). */
  read(name: string): Promise<Uint8Array>;
  /**
   * Optional fast path: reads `dest.length` bytes of one tensor's stored bytes, starting `start`
   * bytes into the tensor, straight into `dest` (a view of wasm memory, say) with positioned
   * reads, so that loading makes no intermediate copy. Several calls may be in flight at once.
   */
  readInto?(name: string, dest: Uint8Array, start?: number): Promise<void>;
  /** Releases file handles. */
  close(): Promise<void>;
}
