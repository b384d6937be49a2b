/** A bump allocator over a wasm memory from TABLES_END, growing the memory as it goes (blocks aligned to `align` bytes). */
import { TABLES_END } from '../src/backends/wasm/kernels.js';

export function bumpAllocator(memory: WebAssembly.Memory, align: number): (bytes: number) => number {
  let top = TABLES_END;
  return (bytes: number) => {
    const at = top;
    top += Math.ceil(bytes / align) * align;
    const short = top - memory.buffer.byteLength;
    if (short > 0) memory.grow(Math.ceil(short / 65536));
    return at;
  };
}
