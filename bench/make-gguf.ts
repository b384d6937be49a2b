/**
 * Writes a random-weight MPT of a benchmark shape as a GGUF file (through the project's GGUF
 * writer), so that llama.cpp (shared/scripts/llamacpp-bench.mjs) can be measured on exactly the
 * shape `mpt bench --shape` measures. Quantized matrices are generated directly as random quants
 * (no f32 detour), one tensor at a time.
 *   node dist/bench/run.js make-gguf 1b q4_0 /tmp/mpt-1b-q4_0.gguf
 */
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { type Kernels, WTYPE, instantiateKernels, type WeightType } from '../src/backends/wasm/kernels.js';
import type { DType, TensorInfo, TensorSource } from '../src/formats/tensor-source.js';
import { byteLengthOf } from '../src/formats/ggml-quants.js';
import { byteLevelTestTokenizer } from '../src/model/gguf-tokenizer.js';
import type { GgufOutType } from '../src/model/gguf-type-mix.js';
import { writeGgufFromCheckpoint } from '../src/model/gguf-write.js';
import { expectedTensors } from '../src/model/weights-layout.js';
import { shapeConfig } from '../src/cli/commands/bench.js';

type Quantize = (X: number, n: number, Q: number, S: number) => void;
/** ggml's reference k-quant quantizers of a kernel instance (quant-k.ts; not in the backend's Kernels type). */
export function kQuantizers(k: Kernels): {
  kquant_scratch_bytes(): number;
  quantize_q4_k: Quantize;
  quantize_q5_k: Quantize;
  quantize_q6_k: Quantize;
} {
  return k as never;
}

const SHAPES: Record<string, [number, number, number, number]> = {
  '7b': [4096, 32, 32, 50432],
  '1b': [2048, 16, 24, 50432],
  tiny: [256, 4, 2, 1024],
};

/**
 * k-quant types (q4_k / q5_k / q6_k) are quantized from random f32 values (ggml's reference
 * quantizers), so their fp16 scales are those of real weights; the other types are random quants.
 * `layers` overrides the shape's layer count (a smaller file of the same width); `weightScale`
 * multiplies the weights' spread (e.g. 0.05: q8_0 / q4_0 / q4_K scales mostly subnormal fp16,
 * as in real tensors of small weights).
 */
export async function makeGguf(
  shape: string,
  type: WeightType,
  out: string,
  layers = 0,
  weightScale = 1,
): Promise<void> {
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown shape ${shape}`);
  const config = shapeConfig(s[0], s[1], layers > 0 ? layers : s[2], s[3], 2048);
  const kquant = type === 'q4_k' || type === 'q5_k' || type === 'q6_k';
  const infos: TensorInfo[] = expectedTensors(config).map((e) => {
    const dtype: DType = e.shape.length === 2 ? type : 'f32';
    const n = e.shape.reduce((a, b) => a * b, 1);
    return { name: e.name, dtype, shape: e.shape, byteLength: byteLengthOf(dtype, n) };
  });
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  const k = instantiateKernels(kernelModule('shared-base'), memory);
  const kq = kQuantizers(k);
  let seed = 1;
  const source: TensorSource = {
    list: () => infos,
    info: (n) => infos.find((i) => i.name === n),
    async read(name) {
      const info = infos.find((i) => i.name === name)!;
      const n = info.shape.reduce((a, b) => a * b, 1);
      // a k-quant matrix: its f32 values after the quants, the quantizers' scratch after them
      const f32At = kquant ? Math.ceil(info.byteLength / 64) * 64 : 0,
        scratchAt = f32At + n * 4;
      const need =
        (kquant && info.shape.length === 2 ? scratchAt + kq.kquant_scratch_bytes() : info.byteLength) + 65536;
      if (memory.buffer.byteLength < need) memory.grow(Math.ceil((need - memory.buffer.byteLength) / 65536));
      if (info.shape.length === 2 && kquant) {
        k.fill_random_weights(0, f32At, n, seed++, weightScale * Math.sqrt(3 / info.shape[1]!));
        const quantize = type === 'q4_k' ? kq.quantize_q4_k : type === 'q5_k' ? kq.quantize_q5_k : kq.quantize_q6_k;
        quantize.call(kq, f32At, n, 0, scratchAt);
      } else if (info.shape.length === 2)
        k.fill_random_weights(WTYPE[type], 0, n, seed++, weightScale * Math.sqrt(3 / info.shape[1]!));
      else k.fill_f32(0, n, 1);
      return new Uint8Array(memory.buffer, 0, info.byteLength).slice();
    },
    close: async () => {},
  };
  await writeGgufFromCheckpoint(config, source, byteLevelTestTokenizer(config.vocabSize), out, type as GgufOutType, {
    name: `random-${shape}`,
  });
}
