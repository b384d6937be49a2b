/**
 * Writes a random-weight MPT of a benchmark shape as a GGUF file (through the project's GGUF
 * writer), so that llama.cpp (shared/scripts/llamacpp-bench.mjs) can be measured on exactly the
 * shape `mpt bench --shape` measures. Quantized matrices are generated directly as random quants
 * (no f32 detour), one tensor at a time.
 *   node dist/bench/run.js make-gguf 1b q4_0 /tmp/mpt-1b-q4_0.gguf
 */
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { WTYPE, instantiateKernels, type WeightType } from '../src/backends/wasm/kernels.js';
import type { DType, TensorInfo, TensorSource } from '../src/formats/tensor-source.js';
import { byteLengthOf } from '../src/formats/ggml-quants.js';
import { byteLevelTestTokenizer } from '../src/model/gguf-tokenizer.js';
import type { GgufOutType } from '../src/model/gguf-type-mix.js';
import { writeGgufFromCheckpoint } from '../src/model/gguf-write.js';
import { expectedTensors } from '../src/model/weights-layout.js';
import { shapeConfig } from '../src/cli/commands/bench.js';

const SHAPES: Record<string, [number, number, number, number]> = {
  '7b': [4096, 32, 32, 50432],
  '1b': [2048, 16, 24, 50432],
  tiny: [256, 4, 2, 1024],
};

export async function makeGguf(shape: string, type: WeightType, out: string): Promise<void> {
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown shape ${shape}`);
  const config = shapeConfig(s[0], s[1], s[2], s[3], 2048);
  const infos: TensorInfo[] = expectedTensors(config).map((e) => {
    const dtype: DType = e.shape.length === 2 ? type : 'f32';
    const n = e.shape.reduce((a, b) => a * b, 1);
    return { name: e.name, dtype, shape: e.shape, byteLength: byteLengthOf(dtype, n) };
  });
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: true });
  const k = instantiateKernels(kernelModule('shared-base'), memory);
  let seed = 1;
  const source: TensorSource = {
    list: () => infos,
    info: (n) => infos.find((i) => i.name === n),
    async read(name) {
      const info = infos.find((i) => i.name === name)!;
      const n = info.shape.reduce((a, b) => a * b, 1);
      const need = info.byteLength + 65536;
      if (memory.buffer.byteLength < need) memory.grow(Math.ceil((need - memory.buffer.byteLength) / 65536));
      if (info.shape.length === 2) k.fill_random_weights(WTYPE[type], 0, n, seed++, Math.sqrt(3 / info.shape[1]!));
      else k.fill_f32(0, n, 1);
      return new Uint8Array(memory.buffer, 0, info.byteLength).slice();
    },
    close: async () => {},
  };
  await writeGgufFromCheckpoint(config, source, byteLevelTestTokenizer(config.vocabSize), out, type as GgufOutType, {
    name: `random-${shape}`,
  });
}
