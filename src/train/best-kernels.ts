/**
 * Picks the trainer's kernels: the wasm SIMD ones on worker threads when the kernel module is
 * built, else plain JS. Its own file so that kernels.ts (the interface and the JS kernels) and
 * kernels-wasm.ts (which implements that interface) do not import each other.
 */
import { jsKernels, type Kernels } from './kernels.js';

/**
 * The fastest kernels available: wasm SIMD on `threads` threads when the wasm kernels are built,
 * else plain JS.
 */
export async function bestKernels(threads?: number): Promise<Kernels> {
  try {
    const { wasmKernels } = await import('./kernels-wasm.js');
    return wasmKernels(threads);
  } catch (e) {
    if (process.env['MPT_DEBUG'])
      process.stderr.write(`wasm training kernels unavailable (${(e as Error).message}); using plain JS\n`);
    return jsKernels();
  }
}
