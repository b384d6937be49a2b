/**
 * The one interface every compute backend implements (reference TypeScript, wasm, WebGPU).
 *
 * A backend owns the weights in whatever layout suits it (f32 arrays, quantized blocks in wasm
 * memories sharded across workers, GPU buffers) and the KV caches of the sequences it serves.
 * The runtime above it only sees sequences: each has its own KV cache, so a batch may mix
 * sequences of different lengths (continuous batching) and a sequence can join or leave between
 * calls. Left-padded batches, as Hugging Face builds them, are expressed with a pad mask per
 * sequence.
 */
import type { SampleRequest } from './sampling/sampler.js';
import type { MptConfig } from '../model/config.js';
import type { KvType } from '../model/memory-plan.js';
import type { TensorSource } from '../formats/tensor-source.js';

/** Storage type of a KV cache (defined with the memory planner, which sizes each kind). */
export type { KvType };

export interface KvCacheOptions {
  /** Maximum number of positions the cache will hold (context length). */
  capacity: number;
  kvType?: KvType;
}

/** Per-sequence attention state. Created by the runner that will use it. */
export interface KvCache {
  /** Positions already processed (past length). */
  readonly length: number;
  readonly capacity: number;
  readonly kvType: KvType;
  /** Drops every position >= n (for re-prefill or rollback). */
  truncate(n: number): void;
  /** Frees the memory now; the cache must not be used afterwards. */
  dispose(): void;
}

export interface SequenceInput {
  cache: KvCache;
  /** New token ids to append to this sequence. */
  tokens: ArrayLike<number>;
  /**
   * 1 = real token, 0 = padding, one entry per new token (default: all 1). Padding positions are
   * hidden from every query as MosaicML's attention_mask does.
   */
  padMask?: ArrayLike<number>;
  /**
   * Which logits to return for this sequence, instead of `ForwardOptions.logits`: a server reads
   * one sequence's prompt with every position's logits (prompt log probabilities) in the same
   * call as other sequences' decode steps. `ForwardOptions.sample` applies only where this
   * sequence's choice is 'last'.
   */
  logits?: 'all' | 'last' | 'none';
  /**
   * Also return this sequence's final hidden states, the rows after norm_f (what the LM head
   * reads), one per new token, in `SequenceOutput.finalHidden`: a server's embeddings read them
   * in the same call as other sequences' decode steps. Wasm backend (the reference backend
   * gives every layer's states through `ForwardOptions.outputHiddenStates` instead).
   */
  finalHidden?: boolean;
}

export interface ForwardOptions {
  /** Which logits to return: every new position, only the last, or none (prefill only). */
  logits: 'all' | 'last' | 'none';
  /** Also return hidden states (n_layers + 1 entries, the last after norm_f), reference backend only. */
  outputHiddenStates?: boolean;
  /** Also return attention probabilities [n_layers][n_heads, T_new, T_total], reference backend only. */
  outputAttentions?: boolean;
  /**
   * Let the runner return the logits as views of a buffer it reuses: they stay valid only until
   * the next forward call on this runner. A decode loop that reads each step's logits at once
   * (continuous batching) saves an allocation and a copy of vocab_size floats per sequence per
   * step. Backends may ignore it and return fresh arrays.
   */
  reuseLogits?: boolean;
  /**
   * Per sequence (by index in the batch), with `logits: 'last'`: a request to choose its next
   * token from its row (src/backends/sampling/sampler.ts). A backend that can sample where the
   * logits are (the wasm backend's worker threads, several rows in parallel) sets
   * `SequenceOutput.token` to exactly `chooseToken(row, request)`; one that cannot, or a row where
   * no token can be chosen, leaves it undefined and the caller chooses from the logits.
   */
  sample?: ReadonlyArray<SampleRequest | null | undefined>;
}

export interface SequenceOutput {
  /** Row-major [rows, vocab_size]: rows = new tokens ('all'), 1 ('last') or 0 ('none'). */
  logits: Float32Array;
  /** The token chosen for `ForwardOptions.sample`, when the backend chose it. */
  token?: number;
  hiddenStates?: Float32Array[];
  /** Row-major [new tokens, d_model]: the rows after norm_f, where `SequenceInput.finalHidden` asked. */
  finalHidden?: Float32Array;
  attentions?: Float32Array[];
}

/**
 * A copy of a KV cache's contents, independent of the backend that made it (prompt cache files,
 * moving a sequence between runners). Rows are [position, kv_heads * head_dim] float32 values
 * exactly as the cache stores them: an f16 or q8_0 cache gives values already rounded through
 * its type, so encoding them back into that type is lossless.
 */
export interface KvSnapshot {
  kvType: KvType;
  /** Positions held. */
  length: number;
  nLayers: number;
  /** kv_heads * head_dim. */
  kvDim: number;
  /** 1 = real token, 0 = padding, one entry per position. */
  padMask: Uint8Array;
  /** Keys and values of one layer, [length, kvDim] rows each; may be produced on demand. */
  layer(l: number): { keys: Float32Array; values: Float32Array };
}

export interface ModelRunner {
  readonly config: MptConfig;
  readonly backendName: string;
  /** True where `forward` honours `SequenceInput.finalHidden` (others ignore it). */
  readonly finalHidden?: boolean;
  createCache(options: KvCacheOptions): KvCache;
  /** Runs the new tokens of every sequence through the model, appending to their caches. */
  forward(batch: SequenceInput[], options: ForwardOptions): Promise<SequenceOutput[]>;
  dispose(): Promise<void>;
  /**
   * Optional (prompt cache): a snapshot of a cache of this runner. The snapshot must be read
   * before the cache changes again.
   */
  saveCache?(cache: KvCache): KvSnapshot;
  /**
   * Optional (prompt cache): a new cache of this runner holding a snapshot's positions.
   * `options.capacity` must be >= snapshot.length; `options.kvType` defaults to the snapshot's.
   */
  restoreCache?(snapshot: KvSnapshot, options: KvCacheOptions): KvCache;
  /**
   * Optional: a new cache of this runner, of `capacity` positions and the same storage type,
   * holding what `from` holds now, copied where the caches live (a GPU copies on the GPU). Callers
   * that copy caches (the server's n > 1 choices and prefix cache) prefer it to save + restore.
   */
  copyCache?(from: KvCache, capacity: number): KvCache;
}

export interface LoadRunnerOptions {
  /**
   * Worker threads for backends that use them (default: all cores). The wasm backend starts this
   * many and gives a pass with little work fewer of them (backends/wasm/pass-threads.ts).
   */
  threads?: number;
  /** Progress callback for weight loading (bytes done / total). */
  onProgress?: (done: number, total: number) => void;
  /**
   * The KV caches the caller means to create. Backends that keep each layer's cache beside its
   * weights (wasm: in the same 4 GiB memory) leave room for them, or refuse at load with a
   * message saying what would fit.
   */
  kvReserve?: { ctx: number; kvType: KvType; sequences?: number };
}

export interface Backend {
  readonly name: string;
  /** Loads weights from a tensor source (canonical MosaicML names) and returns a runner. */
  load(config: MptConfig, tensors: TensorSource, options?: LoadRunnerOptions): Promise<ModelRunner>;
}
