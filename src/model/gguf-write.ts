/**
 * Writing an MPT checkpoint as a GGUF file llama.cpp loads: what its loader (src/models/mpt.cpp,
 * llama-vocab.cpp) requires and its converter (convert_hf_to_gguf.py, class MPTModel) writes: the
 * hyperparameter keys, the tensor names, F32 1-D tensors, and a gpt2-style tokenizer with
 * `tokenizer.ggml.pre` "mpt" whose token list is padded to the model's vocab_size with
 * `[PAD{id}]` tokens of type UNUSED.
 */
import { InputError, UnsupportedError } from '../errors.js';
import { dequantize } from '../formats/ggml-quants.js';
import type { QuantizePool } from '../formats/parallel-quantize.js';
import { gguf, writeGguf, type GgufTensorToWrite, type GgufValue } from '../formats/gguf.js';
import type { TensorInfo, TensorSource } from '../formats/tensor-source.js';
import type { MptConfig } from './config.js';

import { tokenizerFromHfJson, ggufTokenizerMetadata, type GgufTokenizer } from './gguf-tokenizer.js';
import { FILE_TYPE, GGUF_OUT_TYPES, ggufTensorPlan, type GgufOutType } from './gguf-type-mix.js';

export interface WriteGgufCheckpointOptions {
  /** `general.name` (default "mpt"). */
  name?: string;
  /** Progress of tensor data written (bytes). */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /** Threads that quantize large matrices (default: the machine's parallelism; 1 = this thread). */
  threads?: number;
}

/** Refuses configs whose arithmetic llama.cpp's MPT graph does not implement. */
function checkLlamaCppCanRun(c: MptConfig): void {
  const no = (what: string) => {
    throw new UnsupportedError(
      `llama.cpp's MPT architecture has no ${what}; the GGUF file would compute a different model`,
    );
  };
  if (c.attn.softmaxScale !== null && Math.abs(c.attn.softmaxScale - 1 / Math.sqrt(c.headDim)) > 1e-12)
    no('softmax_scale (it always uses 1/sqrt(head_dim))');
  if (c.logitScale !== null && c.logitScale !== 1) no('logit_scale');
  if (c.ffn.ffnType !== 'mptmlp') no(`ffn_type ${c.ffn.ffnType}`);
  if (c.ffn.activation !== 'gelu' && c.ffn.activation !== 'gelu_tanh')
    no(`${c.ffn.activation} activation (it uses GELU)`);
  if (c.normType.includes('rmsnorm')) no('RMSNorm (it uses LayerNorm)');
  if (c.attn.qkLn && c.attn.kvNHeads !== c.nHeads)
    no('qk_ln with grouped/multi-query attention (its k norm is d_model wide)');
  if (c.learnedPosEmb && c.attn.alibi) no('learned position embedding together with ALiBi');
  if (!c.learnedPosEmb && !c.attn.alibi) no('model without ALiBi or position embeddings');
}

/** The llama.cpp metadata for an MPT config (general.* and mpt.* keys), in converter order. */
export function ggufMetadataForConfig(c: MptConfig, type: GgufOutType, name = 'mpt'): Map<string, GgufValue> {
  const m = new Map<string, GgufValue>();
  m.set('general.architecture', gguf.str('mpt'));
  m.set('general.name', gguf.str(name));
  m.set('general.file_type', gguf.u32(FILE_TYPE[type]));
  m.set('general.quantization_version', gguf.u32(2));
  m.set('mpt.context_length', gguf.u32(c.maxSeqLen));
  m.set('mpt.embedding_length', gguf.u32(c.dModel));
  m.set('mpt.block_count', gguf.u32(c.nLayers));
  m.set('mpt.feed_forward_length', gguf.u32(c.ffn.hiddenSize));
  m.set('mpt.attention.head_count', gguf.u32(c.nHeads));
  if (c.attn.kvNHeads !== c.nHeads) m.set('mpt.attention.head_count_kv', gguf.u32(c.attn.kvNHeads));
  m.set('mpt.attention.layer_norm_epsilon', gguf.f32(c.layerNormEpsilon));
  if (c.attn.clipQkv !== null) m.set('mpt.attention.clamp_kqv', gguf.f32(c.attn.clipQkv));
  m.set('mpt.attention.max_alibi_bias', gguf.f32(c.attn.alibi ? c.attn.alibiBiasMax : 0));
  return m;
}

/** Float32 values of a stored tensor of any dtype, in room the quantize pool can share without a copy. */
async function readAsF32(tensors: TensorSource, info: TensorInfo, pool: QuantizePool): Promise<Float32Array> {
  const bytes = await tensors.read(info.name);
  const count = info.shape.reduce((a, b) => a * b, 1);
  return dequantize(info.dtype, bytes, count, pool.allocate(count));
}

/**
 * Writes an MPT checkpoint as a GGUF file llama.cpp loads: every tensor under its llama.cpp
 * name, matrices (and the embedding) in `type` or the preset's mix (see ggufTensorType) —
 * f32/f16/bf16 rounded to nearest even, q8_0 / q4_0 / q4_1 / q5_0 / q5_1 / q4_K / q5_K / q6_K
 * by ggml's reference quantizers, bit for bit what llama-quantize makes without an imatrix —
 * and 1-D tensors in F32. A matrix whose rows are not a whole number of blocks falls back as
 * llama-quantize does (k-quants to Q5_0 / Q5_1 / Q8_0, else F16). The tokenizer is a
 * tokenizer.json path, its parsed object, or ready GGUF tokenizer data.
 * Tensors are read, converted and written one at a time; the file appears atomically.
 */
export async function writeGgufFromCheckpoint(
  config: MptConfig,
  tensors: TensorSource,
  tokenizer: string | GgufTokenizer | Record<string, unknown>,
  outPath: string,
  type: GgufOutType,
  options: WriteGgufCheckpointOptions = {},
): Promise<void> {
  if (!GGUF_OUT_TYPES.includes(type))
    throw new InputError(`unknown GGUF output type "${type}" (${GGUF_OUT_TYPES.join(', ')})`);
  checkLlamaCppCanRun(config);
  let tok: GgufTokenizer;
  if (typeof tokenizer === 'string') {
    // Node-only modules are loaded here, when a file is written, so that reading GGUF runs anywhere.
    const { JSON_FILE_LIMITS, readJsonFile } = await import('../formats/json-file.js');
    const parsed = await readJsonFile(tokenizer, 'tokenizer', JSON_FILE_LIMITS.tokenizer);
    tok = tokenizerFromHfJson(parsed, config.vocabSize, tokenizer);
  } else if (Array.isArray((tokenizer as GgufTokenizer).tokens)) {
    tok = tokenizer as GgufTokenizer;
  } else {
    tok = tokenizerFromHfJson(tokenizer, config.vocabSize);
  }

  const meta = ggufMetadataForConfig(config, type, options.name ?? 'mpt');
  for (const [k, v] of ggufTokenizerMetadata(tok, config.vocabSize)) meta.set(k, v);

  const out: GgufTensorToWrite[] = [];
  const { QuantizePool } = await import('../formats/parallel-quantize.js');
  const pool = new QuantizePool(options.threads);
  for (const { info, name, dims, dtype } of ggufTensorPlan(orderForLlamaCpp(tensors.list(), config), config, type)) {
    if (name === undefined)
      throw new UnsupportedError(`tensor ${info.name} has no counterpart in llama.cpp's MPT architecture`);
    const cols = dims[0] ?? 1;
    const rows = dims.slice(1).reduce((a, b) => a * b, 1);
    out.push({
      name,
      dims,
      dtype,
      data: async () => {
        if (info.dtype === dtype) return tensors.read(info.name);
        return pool.quantize(dtype, await readAsF32(tensors, info, pool), rows, cols, name);
      },
    });
  }
  try {
    await writeGguf(outPath, meta, out, options.onProgress ? { onProgress: options.onProgress } : {});
  } finally {
    await pool.close();
  }
}

/** Within a block, the order the forward pass uses them (weight before bias). */
const BLOCK_ORDER = [
  'norm_1',
  'attn.Wqkv',
  'attn.q_ln',
  'attn.k_ln',
  'attn.out_proj',
  'norm_2',
  'ffn.up_proj',
  'ffn.down_proj',
];

/** Converter order: embeddings, then each block's tensors in forward order, then the final norm and head. */
function orderForLlamaCpp(list: TensorInfo[], c: MptConfig): TensorInfo[] {
  const rank = (n: string): number => {
    const bias = n.endsWith('.bias') ? 0.5 : 0;
    if (n.startsWith('transformer.wte.')) return bias;
    if (n.startsWith('transformer.wpe.')) return 1 + bias;
    const m = /^transformer\.blocks\.(\d+)\.(.+)\.(weight|bias)$/.exec(n);
    if (m) {
      const within = BLOCK_ORDER.indexOf(m[2]!);
      return 2 + Number(m[1]) * 100 + (within < 0 ? 99 : within) + bias;
    }
    if (n.startsWith('transformer.norm_f.')) return 2 + c.nLayers * 100 + bias;
    return 3 + c.nLayers * 100 + bias;
  };
  return list
    .map((t, i) => ({ t, i }))
    .sort((a, b) => rank(a.t.name) - rank(b.t.name) || a.i - b.i)
    .map((e) => e.t);
}
