/**
 * The k-quant row quantizers compiled to WebAssembly (src/backends/wasm/assembly/quant-k.ts, in
 * the plain-SIMD kernel build): the arithmetic of kquant-quantize.ts with wasm's own float32
 * operations, so the same bytes, several times faster than the JS copy (which rounds every step
 * through Math.fround). One instance per thread, with its own small memory; rows go through it in
 * chunks, so a matrix of any size needs about 300 KB. Null where the kernel file cannot be loaded,
 * or not synchronously (a browser): then the JS copy runs.
 */
import { platform } from '../platform/index.js';
import { GGML_TYPES } from './ggml-types.js';

export type KQuantType = 'q4_k' | 'q5_k' | 'q6_k';

interface Exports {
  quantize_q4_k(X: number, n: number, Q: number, S: number): void;
  quantize_q5_k(X: number, n: number, Q: number, S: number): void;
  quantize_q6_k(X: number, n: number, Q: number, S: number): void;
  kquant_scratch_bytes(): number;
}

const QK_K = 256;
/** Super-blocks per call: 256 KB of input. */
const CHUNK_BLOCKS = 256;

class WasmKQuant {
  private readonly memory = new WebAssembly.Memory({ initial: 8, maximum: 64, shared: true });
  private readonly k: Exports;
  private readonly x = 0;
  private readonly q = CHUNK_BLOCKS * QK_K * 4;
  private readonly s: number;

  constructor(module: WebAssembly.Module) {
    this.k = new WebAssembly.Instance(module, { env: { memory: this.memory } }).exports as unknown as Exports;
    this.s = this.q + CHUNK_BLOCKS * GGML_TYPES.q6_k.typeSize; // the largest of the three block sizes
    const need = this.s + this.k.kquant_scratch_bytes();
    if (need > this.memory.buffer.byteLength)
      this.memory.grow(Math.ceil((need - this.memory.buffer.byteLength) / 65536));
  }

  /** The blocks of x (a whole number of 256-value super-blocks). */
  quantize(dtype: KQuantType, x: Float32Array): Uint8Array {
    const bs = GGML_TYPES[dtype].typeSize;
    const nb = x.length / QK_K;
    const out = new Uint8Array(nb * bs);
    const run =
      dtype === 'q4_k' ? this.k.quantize_q4_k : dtype === 'q5_k' ? this.k.quantize_q5_k : this.k.quantize_q6_k;
    for (let b0 = 0; b0 < nb; b0 += CHUNK_BLOCKS) {
      const n = Math.min(CHUNK_BLOCKS, nb - b0);
      new Float32Array(this.memory.buffer, this.x, n * QK_K).set(x.subarray(b0 * QK_K, (b0 + n) * QK_K));
      run.call(this.k, this.x, n * QK_K, this.q, this.s);
      out.set(new Uint8Array(this.memory.buffer, this.q, n * bs), b0 * bs);
    }
    return out;
  }
}

let instance: WasmKQuant | null | undefined;

/** This thread's wasm quantizers, or null when they cannot load (or MPT_KQUANT=js asks for the JS copy). */
export function wasmKQuant(): WasmKQuant | null {
  if (instance !== undefined) return instance;
  instance = null;
  if (platform.env('MPT_KQUANT') === 'js') return instance;
  try {
    // dist/src/formats/x.js → dist/wasm/
    const bytes = platform.readBytesSync(new URL('../../wasm/kernels-base.wasm', import.meta.url));
    if (bytes) instance = new WasmKQuant(new WebAssembly.Module(bytes));
  } catch {
    // The JS copy gives the same bytes.
  }
  return instance;
}
