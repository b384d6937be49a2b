/**
 * The wasm memories of a model (shared, so that every worker can run kernels on them) and the
 * allocator of the space after each arena's weights and scratch, where KV caches live. Main
 * thread only: workers never allocate.
 */
import { MemoryPlanError } from '../../errors.js';
import { instantiateKernelsAndTables, type Kernels } from './kernels.js';
import type { ModelLayout } from './layout.js';
import { kernelModule, MAX_PAGES, PAGE } from './module-loader.js';

interface Block {
  off: number;
  size: number;
}

class RegionAllocator {
  private free: Block[] = [];
  constructor(
    private end: number,
    private readonly memory: WebAssembly.Memory,
  ) {}

  alloc(size: number): number {
    size = Math.ceil(size / 64) * 64;
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i]!;
      if (b.size >= size) {
        const off = b.off;
        if (b.size === size) this.free.splice(i, 1);
        else {
          b.off += size;
          b.size -= size;
        }
        return off;
      }
    }
    const off = this.end;
    const need = off + size;
    const have = this.memory.buffer.byteLength;
    if (need > have) {
      const pages = Math.ceil((need - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) {
        throw new MemoryPlanError(
          `KV cache does not fit in a wasm memory (4 GiB each): ${(need / 2 ** 30).toFixed(2)} GiB needed; use a smaller capacity`,
        );
      }
      this.memory.grow(pages);
    }
    this.end = need;
    return off;
  }

  release(off: number, size: number): void {
    size = Math.ceil(size / 64) * 64;
    this.free.push({ off, size });
    this.free.sort((a, b) => a.off - b.off);
    const merged: Block[] = [];
    for (const b of this.free) {
      const last = merged[merged.length - 1];
      if (last && last.off + last.size === b.off) last.size += b.size;
      else merged.push({ ...b });
    }
    // give the tail back to the bump pointer
    const tail = merged[merged.length - 1];
    if (tail && tail.off + tail.size === this.end) {
      this.end = tail.off;
      merged.pop();
    }
    this.free = merged;
  }
}

export class Arenas {
  readonly memories: WebAssembly.Memory[];
  /** Kernel instances on the main thread (loading, random weights). */
  readonly kernels: Kernels[];
  private readonly allocators: RegionAllocator[];

  constructor(readonly layout: ModelLayout) {
    this.memories = layout.arenas.map((a) => {
      try {
        return new WebAssembly.Memory({ initial: a.initialBytes / PAGE, maximum: MAX_PAGES, shared: true });
      } catch (e) {
        throw new MemoryPlanError(
          `cannot allocate a wasm memory of ${(a.initialBytes / 2 ** 30).toFixed(2)} GiB: ${(e as Error).message}`,
        );
      }
    });
    const module = kernelModule('shared');
    this.kernels = this.memories.map((m) => instantiateKernelsAndTables(module, m));
    this.allocators = this.memories.map((m, i) => new RegionAllocator(layout.arenas[i]!.initialBytes, m));
  }

  u8(a: number): Uint8Array {
    return new Uint8Array(this.memories[a]!.buffer);
  }

  f32(a: number): Float32Array {
    return new Float32Array(this.memories[a]!.buffer);
  }

  alloc(a: number, size: number): number {
    return this.allocators[a]!.alloc(size);
  }

  release(a: number, off: number, size: number): void {
    this.allocators[a]!.release(off, size);
  }

  /** Bytes currently reserved by all memories. */
  reservedBytes(): number {
    return this.memories.reduce((s, m) => s + m.buffer.byteLength, 0);
  }
}
