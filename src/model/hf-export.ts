/**
 * The files of a Hugging Face MPT folder made from a checkpoint (a GGUF file, usually): MosaicML's
 * config.json, the tensors as f32/f16/bf16 for model.safetensors, and the tokenizer as
 * tokenizer.json + tokenizer_config.json + special_tokens_map.json + generation_config.json, the
 * way mosaicml/mpt-7b ships them. The inverse of `writeGgufFromCheckpoint` and
 * `tokenizerFromHfJson`: quantized matrices are dequantized as ggml does, so a q4_0 GGUF comes back
 * as the f16/bf16/f32 values llama.cpp computes with. Writing the files is the caller's job.
 */
import { UnsupportedError } from '../errors.js';
import { f32ToBf16Bytes, f32ToF16Bytes, shapeElements } from '../formats/dtypes.js';
import { dequantize } from '../formats/ggml-quants.js';
import type { TensorToWrite } from '../formats/safetensors.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { toMosaicConfigJson, type MptConfig } from './config.js';
import { TokenType, type GgufTokenizer } from './gguf-tokenizer.js';

export type HfExportDtype = 'f32' | 'f16' | 'bf16';
export const HF_EXPORT_DTYPES: readonly HfExportDtype[] = ['f32', 'f16', 'bf16'];

const TORCH_DTYPE: Record<HfExportDtype, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };

/** config.json: MosaicML's key set, with torch_dtype naming what model.safetensors holds. */
export function hfConfigJson(c: MptConfig, dtype: HfExportDtype): Record<string, unknown> {
  return { ...toMosaicConfigJson(c), torch_dtype: TORCH_DTYPE[dtype] };
}

/**
 * Every tensor of `source` for model.safetensors in `dtype`, read and converted one at a time when
 * the writer reaches it (a 7B model is never held whole). A tied model writes no lm_head.
 */
export function hfTensorsToWrite(
  c: MptConfig,
  source: TensorSource,
  dtype: HfExportDtype,
  onTensor?: (done: number, total: number, name: string) => void,
): TensorToWrite[] {
  const list = source.list().filter((t) => !(c.tieWordEmbeddings && t.name === 'lm_head.weight'));
  let done = 0;
  return list.map((info) => ({
    name: info.name,
    dtype,
    shape: info.shape.slice(),
    data: async () => {
      const stored = await source.read(info.name);
      const values = dequantize(info.dtype, stored, shapeElements(info.shape));
      onTensor?.(++done, list.length, info.name);
      if (dtype === 'f16') return f32ToF16Bytes(values);
      if (dtype === 'bf16') return f32ToBf16Bytes(values);
      return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
    },
  }));
}

/**
 * tokenizer.json for a GGUF `gpt2` (byte-level BPE) vocabulary, laid out as GPT-NeoX-20B's:
 * NFC normalizer, ByteLevel pre-tokenizer / post-processor / decoder, BPE vocab of the normal and
 * control tokens, control tokens also as special added tokens, user-defined tokens (GPT-NeoX's
 * runs of spaces) as added tokens only. The `[PAD<id>]` fillers llama.cpp's converter adds up to
 * vocab_size (UNUSED) are left out again.
 */
export function hfTokenizerJson(t: GgufTokenizer): Record<string, unknown> {
  if (t.model !== 'gpt2') {
    throw new UnsupportedError(
      `the GGUF tokenizer is "${t.model}"; only byte-level BPE ("gpt2") vocabularies become tokenizer.json`,
    );
  }
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  t.tokens.forEach((content, id) => {
    const type = t.tokenTypes[id] ?? TokenType.NORMAL;
    if (type === TokenType.UNUSED) return;
    const special = type === TokenType.CONTROL;
    if (type !== TokenType.USER_DEFINED) vocab[content] = id;
    if (special || type === TokenType.USER_DEFINED) {
      added.push({ id, special, content, single_word: false, lstrip: false, rstrip: false, normalized: !special });
    }
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: { type: 'NFC' },
    pre_tokenizer: byteLevel,
    post_processor: byteLevel,
    decoder: byteLevel,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      vocab,
      merges: t.merges,
    },
  };
}

/** tokenizer.json and its side files (special tokens, chat template, generation ids), name → text. */
export function hfTokenizerFiles(t: GgufTokenizer, maxSeqLen: number): Record<string, string> {
  const json = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
  const name = (id: number | undefined) => (id === undefined ? undefined : t.tokens[id]);
  const special: Record<string, string> = {};
  for (const [key, id] of [
    ['bos_token', t.bosId],
    ['eos_token', t.eosId],
    ['unk_token', t.unkId],
    ['pad_token', t.padId],
  ] as const) {
    const s = name(id);
    if (s !== undefined) special[key] = s;
  }
  const config: Record<string, unknown> = {
    add_bos_token: t.addBos ?? false,
    add_eos_token: t.addEos ?? false,
    add_prefix_space: false,
    clean_up_tokenization_spaces: true,
    model_max_length: maxSeqLen,
    tokenizer_class: 'GPTNeoXTokenizer',
    ...special,
  };
  if (t.chatTemplate !== undefined) config['chat_template'] = t.chatTemplate;
  const generation: Record<string, unknown> = { _from_model_config: true };
  if (t.bosId !== undefined) generation['bos_token_id'] = t.bosId;
  if (t.eosId !== undefined) generation['eos_token_id'] = t.eosId;
  if (t.padId !== undefined) generation['pad_token_id'] = t.padId;
  return {
    'tokenizer.json': JSON.stringify(hfTokenizerJson(t)),
    'tokenizer_config.json': json(config),
    'special_tokens_map.json': json(special),
    'generation_config.json': json(generation),
  };
}
