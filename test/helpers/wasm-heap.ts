/** A wasm memory (shared, as the backend uses) with the kernels instantiated and a bump allocator. */
import { kernelModule, type KernelVariant } from '../../src/backends/wasm/module-loader.js';
import { TABLES_END, instantiateKernelsAndTables, type Kernels } from '../../src/backends/wasm/kernels.js';

/** What a kernel build is, for test names. */
export function buildName(variant: KernelVariant): string {
  return { shared: 'relaxed SIMD', 'shared-base': 'plain SIMD', 'shared-dot': 'relaxed dot-add' }[variant];
}

/** Every build of the kernels, for tests that run each. */
export const BUILDS: readonly KernelVariant[] = ['shared', 'shared-base', 'shared-dot'];

export class Heap {
  readonly memory = new WebAssembly.Memory({ initial: 64, maximum: 65536, shared: true });
  readonly k: Kernels;
  private top = TABLES_END;
  constructor(variant: KernelVariant = 'shared') {
    this.k = instantiateKernelsAndTables(kernelModule(variant), this.memory);
  }
  alloc(bytes: number): number {
    const p = this.top;
    this.top = (this.top + bytes + 63) & ~63;
    if (this.top > this.memory.buffer.byteLength)
      this.memory.grow(Math.ceil((this.top - this.memory.buffer.byteLength) / 65536));
    return p;
  }
  f32(p: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, p, n);
  }
  i8(p: number, n: number): Int8Array {
    return new Int8Array(this.memory.buffer, p, n);
  }
  u8(p: number, n: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, p, n);
  }
  putF32(a: Float32Array): number {
    const p = this.alloc(a.length * 4);
    this.f32(p, a.length).set(a);
    return p;
  }
  putU8(a: Uint8Array): number {
    const p = this.alloc(a.length);
    this.u8(p, a.length).set(a);
    return p;
  }
  putU16(a: Uint16Array): number {
    const p = this.alloc(a.length * 2);
    new Uint16Array(this.memory.buffer, p, a.length).set(a);
    return p;
  }
}

/** n values uniform in [-scale, scale), from a xorshift32 seeded with `seed`. */
export function rand(n: number, seed: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    a[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return a;
}
