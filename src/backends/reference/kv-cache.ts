/**
 * The reference backend's KV cache: per layer, keys and values of every past position as
 * [position, kv_heads * head_dim] rows, plus which positions were padding. Storage grows by
 * doubling up to the capacity, so a long context costs memory only as it fills.
 *
 * kvType 'f16' and 'q8_0' store the same rows rounded through that type, so their effect on
 * the logits can be measured against f32 with the reference backend.
 */
import { InputError } from '../../errors.js';
import type { KvCache, KvType } from '../backend.js';

function roundThroughF16(x: number): number {
  // Math.fround to f32 then to the nearest f16 (round to nearest even) via a DataView trick.
  const f = Math.fround(x);
  if (!Number.isFinite(f) || f === 0) return f;
  const a = Math.abs(f);
  if (a >= 65520) return Math.sign(f) * Infinity;
  const e = Math.max(Math.floor(Math.log2(a)), -14);
  const ulp = 2 ** (e - 10);
  let q = a / ulp;
  const r = Math.floor(q);
  const frac = q - r;
  q = frac > 0.5 || (frac === 0.5 && r % 2 === 1) ? r + 1 : r;
  return Math.sign(f) * q * ulp;
}

/** Rounds one row of values through q8_0 blocks (32 values, scale amax/127 stored as f16). */
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
