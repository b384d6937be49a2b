/**
 * Finds and compiles the AssemblyScript kernel modules that `scripts/build-wasm.mjs` writes to
 * dist/wasm/, three builds of the same kernels:
 *   'shared'      shared memory, relaxed SIMD when the engine has it, else 'shared-base'
 *   'shared-base' shared memory, plain SIMD128 (also the synchronous helpers such as f32-ops)
 * Relaxed SIMD (pmaddubsw-style 8-bit dot products) is on by default from V8 11.4; Node 20
 * (V8 11.3) has it behind --experimental-wasm-relaxed-simd, which we set before compiling.
 * MPT_WASM_RELAXED=0 forces the plain build.
 */
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { fileURLToPath } from 'node:url';
import { MptError } from '../../errors.js';

export type KernelVariant = 'shared' | 'shared-base';

/** Where the compiled kernels live: dist/src/backends/wasm/x.js → dist/wasm/. */
export function kernelUrl(variant: KernelVariant | 'shared-relaxed'): URL {
  const file = { shared: 'kernels.wasm', 'shared-relaxed': 'kernels.wasm', 'shared-base': 'kernels-base.wasm' }[variant];
  return new URL(`../../../wasm/${file}`, import.meta.url);
}

const compiled = new Map<KernelVariant, WebAssembly.Module>();
let flagsSet = false;

/**
 * V8 first compiles wasm with its baseline compiler (Liftoff) and swaps in optimized code only
 * when a function is called again; our kernels run long loops per call, so they would spend much
 * of their time in baseline code (measured: 2-3x slower). Compile with TurboFan from the start.
 */
function setEngineFlags(): void {
  if (flagsSet) return;
  flagsSet = true;
  try {
    setFlagsFromString('--no-liftoff');
    if (process.env['MPT_WASM_RELAXED'] !== '0') setFlagsFromString('--experimental-wasm-relaxed-simd');
  } catch {
    // Not fatal: slower code, or the plain-SIMD build.
  }
}

function readKernel(url: URL): Uint8Array<ArrayBuffer> {
  try {
    return new Uint8Array(readFileSync(fileURLToPath(url)));
  } catch (e) {
    throw new MptError(`wasm kernels not found at ${fileURLToPath(url)}: run \`npm run build\` first`, { cause: e });
  }
}

/** Whether the relaxed-SIMD build is in use for 'shared'. */
export function usingRelaxedSimd(): boolean {
  kernelModule('shared');
  return relaxedInUse;
}
let relaxedInUse = false;

/** Compiles (once per process) and returns the kernel module. */
export function kernelModule(variant: KernelVariant): WebAssembly.Module {
  let m = compiled.get(variant);
  if (!m) {
    setEngineFlags();
    if (variant === 'shared') {
      const relaxed = process.env['MPT_WASM_RELAXED'] !== '0' ? readKernel(kernelUrl('shared-relaxed')) : null;
      if (relaxed && WebAssembly.validate(relaxed)) {
        m = new WebAssembly.Module(relaxed);
        relaxedInUse = true;
      } else m = kernelModule('shared-base');
    } else {
      m = new WebAssembly.Module(readKernel(kernelUrl(variant)));
    }
    compiled.set(variant, m);
  }
  return m;
}

/** Bytes per wasm page. */
export const PAGE = 65536;
/** A wasm32 memory holds at most 65536 pages (4 GiB). */
export const MAX_PAGES = 65536;
