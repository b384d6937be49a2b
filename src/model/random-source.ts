/**
 * A checkpoint of random weights for a config, made tensor by tensor when read (benchmarks of
 * backends that load through a TensorSource): matrices in the asked type (f32, f16, bf16 or a
 * ggml block type), norms at 1 and biases at 0 in f32, so activations stay in range through any
 * number of layers.
 */
import { InputError } from '../errors.js';
import { f32ToF16Bytes } from '../formats/dtypes.js';
import { byteLengthOf, quantize } from '../formats/ggml-quants.js';
import type { DType, TensorInfo, TensorSource } from '../formats/tensor-source.js';
import type { MptConfig } from './config.js';
import { expectedTensors } from './weights-layout.js';

const TYPES: readonly DType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];

export function randomTensorSource(config: MptConfig, type: DType, seed = 1234): TensorSource {
  if (!TYPES.includes(type)) throw new InputError(`random weights in ${type} are not available (${TYPES.join(', ')})`);
  const infos: TensorInfo[] = expectedTensors(config).map((e) => {
    const count = e.shape.reduce((a, b) => a * b, 1);
    const dtype: DType = e.shape.length === 2 ? type : 'f32';
    return { name: e.name, dtype, shape: e.shape, byteLength: byteLengthOf(dtype, count) };
  });
  return {
    list: () => infos,
    info: (name) => infos.find((i) => i.name === name),
    async read(name) {
      const info = infos.find((i) => i.name === name);
      if (!info) throw new InputError(`no tensor ${name}`);
      const count = info.shape.reduce((a, b) => a * b, 1);
      const x = new Float32Array(count);
      if (info.shape.length === 2) {
        let s = (seed ^ (name.length * 2654435761)) >>> 0;
        const scale = 1 / Math.sqrt(info.shape[1]!);
        for (let i = 0; i < count; i++) {
          s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
          x[i] = ((s / 2 ** 32) * 2 - 1) * scale;
        }
      } else if (name.endsWith('.weight')) x.fill(1);
      switch (info.dtype) {
        case 'f32':
          return new Uint8Array(x.buffer);
        case 'f16':
          return f32ToF16Bytes(x);
        case 'bf16': {
          const u = new Uint32Array(x.buffer),
            out = new Uint16Array(count);
          for (let i = 0; i < count; i++) out[i] = u[i]! >>> 16;
          return new Uint8Array(out.buffer);
        }
        default:
          return quantize(info.dtype, x);
      }
    },
    close: async () => {},
  };
}
