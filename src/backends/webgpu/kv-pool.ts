/**
 * KV cache memory of the WebGPU backend: the caches of one storage type share, per layer, one key
 * buffer and one value buffer (and one buffer of pad flags), each cache a range of positions in
 * them. One attention dispatch then serves every sequence of a decode step, whatever cache each
 * one has (attention.ts reads a table of (cache offset, past, rows, base) per query row).
 *
 * A pool grows when a new cache fits in none of its free ranges: new buffers of the summed size,
 * the old contents copied on the GPU (queued, so after any submitted work that writes them), the
 * old buffers destroyed. Offsets stay valid. A pool that holds no cache gives its memory back.
 */
import { STORAGE, type GpuBuffer, type GpuDevice } from './gpu.js';

/** Positions are handed out in multiples of this (pad flags are written from 4-aligned starts). */
const GRAIN = 16;

export class KvPool {
  /** Per layer: the keys and values of every cache in the pool (`positions` rows of `rowBytes`). */
  keys: GpuBuffer[] = [];
  values: GpuBuffer[] = [];
  /** Pad flags, one u32 a position (1 = real token). */
  valid: GpuBuffer | null = null;
  /** Positions the buffers hold. */
  positions = 0;
  /** Ranges in use, [start, start + size), by start. */
  private readonly used: { start: number; size: number }[] = [];

  constructor(
    private readonly device: GpuDevice,
    private readonly layers: number,
    /** Bytes of one position's keys (or values) in one layer. */
    readonly rowBytes: number,
    /** The most positions one buffer may hold (the device's binding limit). */
    readonly maxPositions: number,
  ) {}

  /** The first position of `n` free ones (the pool grown if need be), or null when it cannot hold them. */
  allocate(n: number): number | null {
    const size = Math.ceil(n / GRAIN) * GRAIN;
    let at = 0,
      i = 0;
    for (; i < this.used.length; i++) {
      const r = this.used[i]!;
      if (r.start - at >= size) break;
      at = r.start + r.size;
    }
    if (at + size > this.maxPositions) return null;
    if (at + size > this.positions) this.grow(at + size);
    this.used.splice(i, 0, { start: at, size });
    return at;
  }

  /** Gives back the range starting at `start`. */
  free(start: number): void {
    const i = this.used.findIndex((r) => r.start === start);
    if (i >= 0) this.used.splice(i, 1);
    if (this.used.length === 0) this.release();
  }

  private grow(positions: number): void {
    const make = (bytes: number, label: string) =>
      this.device.createBuffer({ size: Math.max(16, bytes), usage: STORAGE, label });
    const keys = Array.from({ length: this.layers }, () => make(positions * this.rowBytes, 'keys'));
    const values = Array.from({ length: this.layers }, () => make(positions * this.rowBytes, 'values'));
    const valid = make(positions * 4, 'pad flags');
    if (this.positions > 0) {
      const enc = this.device.createCommandEncoder();
      const bytes = this.positions * this.rowBytes;
      for (let l = 0; l < this.layers; l++) {
        enc.copyBufferToBuffer(this.keys[l]!, 0, keys[l]!, 0, bytes);
        enc.copyBufferToBuffer(this.values[l]!, 0, values[l]!, 0, bytes);
      }
      enc.copyBufferToBuffer(this.valid!, 0, valid, 0, this.positions * 4);
      this.device.queue.submit([enc.finish()]);
    }
    this.release();
    this.keys = keys;
    this.values = values;
    this.valid = valid;
    this.positions = positions;
  }

  private release(): void {
    for (const b of [...this.keys, ...this.values]) b.destroy();
    this.valid?.destroy();
    this.keys = [];
    this.values = [];
    this.valid = null;
    this.positions = 0;
  }
}
