/**
 * The tokenizer a GGUF file embeds (`tokenizer.ggml.*`): the one type for it (GgufTokenizer,
 * which MptTokenizer.fromGguf takes), reading it from a file's metadata, writing that metadata,
 * and converting a Hugging Face tokenizer.json (byte-level BPE) to it as llama.cpp's converter
 * does.
 */
import { ConfigError, FormatError, InputError, quoteValue, UnsupportedError } from '../errors.js';
import {
  gguf,
  metaBool,
  metaNumber,
  metaString,
  metaStringArray,
  metaIntArray,
  type GgufFile,
  type GgufValue,
} from '../formats/gguf.js';

/** llama.cpp token types (`enum llama_token_type`). */
export const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/**
 * The tokenizer a GGUF file embeds (`tokenizer.ggml.*`): the one type for it in the engine, the
 * one `MptTokenizer.fromGguf` (src/runtime/tokenizer.ts) takes.
 */
export interface GgufTokenizer {
  /** `tokenizer.ggml.model`: "gpt2" for byte-level BPE (the only kind MPT uses). */
  model: string;
  /** `tokenizer.ggml.pre`: the pre-tokenizer ("mpt" for GPT-NeoX-20B). */
  pre?: string;
  tokens: string[];
  /** BPE merges as "left right" strings, in rank order. */
  merges: string[];
  /** One llama.cpp token type per token (see TokenType). */
  tokenTypes: number[];
  bosId?: number;
  eosId?: number;
  unkId?: number;
  padId?: number;
  addBos?: boolean;
  addEos?: boolean;
  chatTemplate?: string;
}

/** Reads the embedded tokenizer, or undefined when the file has none. */
export function tokenizerFromGguf(file: GgufFile): GgufTokenizer | undefined {
  const meta = file.metadata;
  const where = file.path;
  const model = metaString(meta, 'tokenizer.ggml.model', where, true);
  if (model === undefined) return undefined;
  const tokens = metaStringArray(meta, 'tokenizer.ggml.tokens', where);
  const merges = metaStringArray(meta, 'tokenizer.ggml.merges', where, true) ?? [];
  const types = metaIntArray(meta, 'tokenizer.ggml.token_type', where) ?? tokens.map(() => TokenType.NORMAL);
  if (types.length !== tokens.length) {
    throw new FormatError(
      `${where}: tokenizer.ggml.token_type has ${types.length} entries for ${tokens.length} tokens`,
    );
  }
  const id = (key: string): number | undefined => {
    const v = metaNumber(meta, key, where, true);
    if (v === undefined || v === -1 || v === 0xffffffff) return undefined;
    if (!Number.isInteger(v) || v < 0 || v >= tokens.length)
      throw new FormatError(`${where}: ${key} = ${v} is not a token id (${tokens.length} tokens)`);
    return v;
  };
  const tok: GgufTokenizer = { model, tokens, merges, tokenTypes: types };
  const pre = metaString(meta, 'tokenizer.ggml.pre', where, true);
  if (pre !== undefined) tok.pre = pre;
  const bos = id('tokenizer.ggml.bos_token_id');
  const eos = id('tokenizer.ggml.eos_token_id');
  const unk = id('tokenizer.ggml.unknown_token_id');
  const pad = id('tokenizer.ggml.padding_token_id');
  if (bos !== undefined) tok.bosId = bos;
  if (eos !== undefined) tok.eosId = eos;
  if (unk !== undefined) tok.unkId = unk;
  if (pad !== undefined) tok.padId = pad;
  const addBos = metaBool(meta, 'tokenizer.ggml.add_bos_token', where);
  const addEos = metaBool(meta, 'tokenizer.ggml.add_eos_token', where);
  if (addBos !== undefined) tok.addBos = addBos;
  if (addEos !== undefined) tok.addEos = addEos;
  const tmpl = metaString(meta, 'tokenizer.chat_template', where, true);
  if (tmpl !== undefined) tok.chatTemplate = tmpl;
  return tok;
}

/**
 * gpt2-style GGUF tokenizer data from a Hugging Face tokenizer.json (byte-level BPE), as
 * llama.cpp's converter makes it: ids 0..vocabSize-1, added tokens CONTROL when special (or
 * looking like `<|…|>`) else USER_DEFINED, ids the tokenizer lacks `[PAD{id}]` / UNUSED; merges
 * as "a b"; `<|endoftext|>` as bos/eos/unk when present, `<|padding|>` as padding.
 */
export function tokenizerFromHfJson(json: unknown, vocabSize: number, source = 'tokenizer.json'): GgufTokenizer {
  if (typeof json !== 'object' || json === null) throw new FormatError(`${source} is not a JSON object`);
  const tj = json as Record<string, unknown>;
  const model = tj['model'] as Record<string, unknown> | undefined;
  if (model?.['type'] !== 'BPE' || typeof model['vocab'] !== 'object') {
    throw new UnsupportedError(
      `${source}: only byte-level BPE tokenizers (model.type "BPE") can be embedded as gpt2 GGUF vocabularies`,
    );
  }
  const pre = tj['pre_tokenizer'] as Record<string, unknown> | null | undefined;
  if (pre?.['type'] !== 'ByteLevel') {
    throw new UnsupportedError(
      `${source}: the pre-tokenizer is ${pre ? quoteValue(pre['type']) : 'missing'}; only GPT-NeoX's ByteLevel pre-tokenizer maps to llama.cpp's "mpt"`,
    );
  }
  const tokens: (string | undefined)[] = new Array(vocabSize).fill(undefined);
  const types = new Array<number>(vocabSize).fill(TokenType.UNUSED);
  const place = (content: string, id: number, type: number) => {
    if (!Number.isInteger(id) || id < 0)
      throw new FormatError(`${source}: token ${quoteValue(content)} has invalid id ${id}`);
    if (id >= vocabSize)
      throw new ConfigError(`${source}: token id ${id} does not fit the model's vocab_size ${vocabSize}`);
    tokens[id] = content;
    types[id] = type;
  };
  for (const [content, id] of Object.entries(model['vocab'] as Record<string, number>))
    place(content, id, TokenType.NORMAL);
  const added = Array.isArray(tj['added_tokens']) ? (tj['added_tokens'] as Record<string, unknown>[]) : [];
  for (const a of added) {
    const content = String(a['content']);
    const special = a['special'] === true || (content.startsWith('<|') && content.endsWith('|>'));
    place(content, Number(a['id']), special ? TokenType.CONTROL : TokenType.USER_DEFINED);
  }
  const full = tokens.map((t, i) => t ?? `[PAD${i}]`);
  const rawMerges = Array.isArray(model['merges']) ? (model['merges'] as unknown[]) : [];
  const merges = rawMerges.map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));
  if (merges.length === 0) throw new FormatError(`${source} has no BPE merges (llama.cpp requires them)`);
  const out: GgufTokenizer = {
    model: 'gpt2',
    pre: 'mpt',
    tokens: full,
    merges,
    tokenTypes: types,
    addBos: false,
    addEos: false,
  };
  const eot = full.indexOf('<|endoftext|>');
  if (eot >= 0) {
    out.bosId = eot;
    out.eosId = eot;
    out.unkId = eot;
  }
  const pad = full.indexOf('<|padding|>');
  if (pad >= 0) out.padId = pad;
  return out;
}

/** GPT-2's bytes_to_unicode: the printable character standing for each byte in byte-level BPE. */
function byteToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) keep.push(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.push(b);
  for (let b = 0xae; b <= 0xff; b++) keep.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++)
    out[b] = keep.includes(b) ? String.fromCodePoint(b) : String.fromCodePoint(256 + extra++);
  return out;
}

/**
 * A minimal byte-level vocabulary of exactly `vocabSize` ids for test models whose vocab is not
 * a real tokenizer's (the gguf-tiny-q fixture's recipe): id 0 `<|endoftext|>` (CONTROL; bos, eos
 * and unk), ids 1–256 the byte tokens, id 257 `Ġt` from the single merge "Ġ t" (llama.cpp needs
 * a non-empty merge list), then `[PAD{id}]` UNUSED. Every id is a valid token, so any id sequence
 * can be fed; text does not tokenize usefully.
 */
export function byteLevelTestTokenizer(vocabSize: number): GgufTokenizer {
  if (vocabSize < 258)
    throw new InputError(`a byte-level test vocabulary needs at least 258 ids, the model has ${vocabSize}`);
  const tokens = ['<|endoftext|>', ...byteToUnicode(), 'Ġt'];
  const types = [TokenType.CONTROL, ...new Array<number>(257).fill(TokenType.NORMAL)];
  for (let i = tokens.length; i < vocabSize; i++) {
    tokens.push(`[PAD${i}]`);
    types.push(TokenType.UNUSED);
  }
  return {
    model: 'gpt2',
    pre: 'mpt',
    tokens,
    merges: ['Ġ t'],
    tokenTypes: types,
    bosId: 0,
    eosId: 0,
    unkId: 0,
    addBos: false,
    addEos: false,
  };
}

/** The `tokenizer.ggml.*` metadata llama.cpp's gpt2 vocabulary loader reads. */
export function ggufTokenizerMetadata(t: GgufTokenizer, vocabSize: number): Map<string, GgufValue> {
  if (t.tokens.length !== vocabSize) {
    throw new ConfigError(
      `the tokenizer has ${t.tokens.length} tokens but the model's vocab_size is ${vocabSize}; llama.cpp needs one token per embedding row`,
    );
  }
  if (t.merges.length === 0)
    throw new ConfigError('llama.cpp needs a non-empty tokenizer.ggml.merges list for gpt2 vocabularies');
  const m = new Map<string, GgufValue>();
  m.set('tokenizer.ggml.model', gguf.str(t.model));
  m.set('tokenizer.ggml.pre', gguf.str(t.pre ?? 'mpt'));
  m.set('tokenizer.ggml.tokens', gguf.strings(t.tokens));
  m.set('tokenizer.ggml.token_type', gguf.i32s(t.tokenTypes));
  m.set('tokenizer.ggml.merges', gguf.strings(t.merges));
  if (t.bosId !== undefined) m.set('tokenizer.ggml.bos_token_id', gguf.u32(t.bosId));
  if (t.eosId !== undefined) m.set('tokenizer.ggml.eos_token_id', gguf.u32(t.eosId));
  if (t.unkId !== undefined) m.set('tokenizer.ggml.unknown_token_id', gguf.u32(t.unkId));
  if (t.padId !== undefined) m.set('tokenizer.ggml.padding_token_id', gguf.u32(t.padId));
  m.set('tokenizer.ggml.add_bos_token', gguf.bool(t.addBos ?? false));
  m.set('tokenizer.ggml.add_eos_token', gguf.bool(t.addEos ?? false));
  if (t.chatTemplate !== undefined) m.set('tokenizer.chat_template', gguf.str(t.chatTemplate));
  return m;
}
