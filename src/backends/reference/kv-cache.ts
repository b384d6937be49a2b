/**
 * The reference backend's KV cache: per layer, keys and values of every past position as
 * [position, kv_heads * head_dim] rows, plus which positions were padding. Storage grows by
 * doubling up to the capacity, so a long context costs memory only as it fills.
 *
 * kvType 'f16' and 'q8_0' store the same rows rounded through that type, so their effect on
 * the logits can be measured against f32 with the reference backend.
 */
import { InputError } from '../../errors.js';
import { f16ToF32, f32ToF16 } from '../../formats/dtypes.js';
import type { KvCache, KvType } from '../backend.js';

/** x rounded to float32, then to the nearest f16 (ties to even), widened back. */
function roundThroughF16(x: number): number {
  return f16ToF32(f32ToF16(x));
}

/**
 * Rounds one row of values through q8_0 blocks (32 values, scale amax/127 stored as f16) by the
 * KV caches' own rule: scale in float64, q = round(x/d) with ties up. The wasm kernels' cache
 * (`store_kv_row`, `round_kv`) rounds the same way, so both backends' caches hold equal values.
 * Weights and prompt cache files use ggml's rounding instead (`encodeQ8_0`, formats/ggml-quants.ts);
 * a value this rule produced goes through that codec unchanged.
 */
function roundRowThroughQ8(row: Float32Array, start: number, n: number): void {
  for (let b = 0; b < n; b += 32) {
    const end = Math.min(b + 32, n);
    let amax = 0;
    for (let i = b; i < end; i++) amax = Math.max(amax, Math.abs(row[start + i]!));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    const dh = roundThroughF16(d);
    for (let i = b; i < end; i++) {
      const q = Math.round(row[start + i]! * id);
      row[start + i] = q * dh;
    }
  }
}

export class ReferenceKvCache implements KvCache {
  readonly capacity: number;
  readonly kvType: KvType;
  readonly kvDim: number;
  readonly nLayers: number;
  keys: Float32Array[];
  values: Float32Array[];
  /** 1 for a real token, 0 for padding, per position. */
  padMask: Uint8Array;
  private len = 0;
  private allocated: number;
  private disposed = false;

  constructor(nLayers: number, kvDim: number, capacity: number, kvType: KvType = 'f32') {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new InputError(`KV cache capacity must be a positive integer, got ${capacity}`);
    this.capacity = capacity;
    this.kvType = kvType;
    this.kvDim = kvDim;
    this.nLayers = nLayers;
    this.allocated = Math.min(capacity, 64);
    this.keys = Array.from({ length: nLayers }, () => new Float32Array(this.allocated * kvDim));
    this.values = Array.from({ length: nLayers }, () => new Float32Array(this.allocated * kvDim));
    this.padMask = new Uint8Array(this.allocated);
  }

  get length(): number {
    return this.len;
  }

  /** Makes room for n more positions, growing storage geometrically. */
  reserve(n: number): void {
    this.checkAlive();
    const need = this.len + n;
    if (need > this.capacity) {
      throw new InputError(`context full: ${this.len} positions cached + ${n} new > capacity ${this.capacity}`);
    }
    if (need <= this.allocated) return;
    let size = this.allocated;
    while (size < need) size *= 2;
    size = Math.min(size, this.capacity);
    const grow = (a: Float32Array) => {
      const b = new Float32Array(size * this.kvDim);
      b.set(a);
      return b;
    };
    this.keys = this.keys.map(grow);
    this.values = this.values.map(grow);
    const m = new Uint8Array(size);
    m.set(this.padMask);
    this.padMask = m;
    this.allocated = size;
  }

  /** Stores one position's key and value rows of one layer (rounded through kvType). */
  write(layer: number, pos: number, k: Float64Array, kOff: number, v: Float64Array, vOff: number): void {
    const K = this.keys[layer]!;
    const V = this.values[layer]!;
    const o = pos * this.kvDim;
    for (let i = 0; i < this.kvDim; i++) {
      K[o + i] = k[kOff + i]!;
      V[o + i] = v[vOff + i]!;
    }
    if (this.kvType === 'f16') {
      for (let i = 0; i < this.kvDim; i++) {
        K[o + i] = roundThroughF16(K[o + i]!);
        V[o + i] = roundThroughF16(V[o + i]!);
      }
    } else if (this.kvType === 'q8_0') {
      roundRowThroughQ8(K, o, this.kvDim);
      roundRowThroughQ8(V, o, this.kvDim);
    }
  }

  /** Marks n new positions as appended. */
  commit(n: number): void {
    this.len += n;
  }

  truncate(n: number): void {
    this.checkAlive();
    if (n < 0 || n > this.len) throw new InputError(`cannot truncate a cache of length ${this.len} to ${n}`);
    this.len = n;
  }

  dispose(): void {
    this.disposed = true;
    this.keys = [];
    this.values = [];
  }

  private checkAlive(): void {
    if (this.disposed) throw new InputError('this KV cache was disposed');
  }
}
