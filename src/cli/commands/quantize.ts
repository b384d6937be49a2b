/**
 * `mpt quantize IN OUT.gguf --type q8_0|q4_0|q4_k|q4_k_m|…`: a model in a smaller storage type, as a GGUF
 * file (our one quantized format). The writing is `mpt convert`'s (ggml's reference quantizers,
 * the bytes llama-quantize writes); this command only insists on an explicit type.
 */
import { InputError } from '../../errors.js';
import { parseArgs } from '../args.js';
import { run as convert } from './convert.js';

export const summary = 'quantize a model to a GGUF file (q8_0, q4_0, q4_k, q4_k_m, f16, ...)';
export const help = `usage: mpt quantize IN OUT.gguf --type TYPE [--tokenizer PATH|bytes] [--name NAME]

Writes IN (a Hugging Face MPT folder or a GGUF file) as OUT.gguf with every matrix stored as
--type (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k, f16, bf16 or f32), or with
llama-quantize's per-tensor mix for the presets q4_k_m and q5_k_m; LayerNorm weights and biases
stay f32. The bytes are those llama-quantize writes without an imatrix. The wasm backend runs
f32, f16, bf16, q8_0, q4_0, q4_k, q5_k and q6_k matrices directly. Same as
\`mpt convert IN OUT.gguf --type TYPE\` (see its help for --tokenizer, --name, --threads and fallbacks).`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      type: { type: 'string' },
      tokenizer: { type: 'string' },
      name: { type: 'string' },
      threads: { type: 'string' },
    },
    'quantize',
  );
  if (positionals.length !== 2 || options['type'] === undefined) {
    throw new InputError(
      'usage: mpt quantize IN OUT.gguf --type q8_0|q4_0|q4_k|q4_k_m|f16|... (see mpt quantize --help)',
    );
  }
  return convert(argv, 'quantize');
}
