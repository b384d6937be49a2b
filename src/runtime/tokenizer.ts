/**
 * The text tokenizer of MPT models: GPT-NeoX-20B's byte-level BPE (NFC normalizer, GPT-2
 * pre-tokenizer regex, 50,009 merges, added tokens for runs of 2–24 spaces and the special
 * tokens), loaded from a Hugging Face `tokenizer.json` or built from the vocabulary embedded in a
 * GGUF file.
 *
 * Encoding runs through `@huggingface/tokenizers` (tokenizers.js), with its regular expressions
 * corrected and made safe by tokenizer-patterns.ts: Oniguruma's `\s` in the byte-level regex, as
 * in the Rust `tokenizers` library, which is the reference, and tokenizer.json's own patterns in a
 * linear-time matcher, as a file must not be able to hang the engine. Long pre-tokens (a
 * 100,000-letter word) are merged by bpe-merge.ts, in O(n log n), with the library's result. Decoding is done here,
 * following the Rust library's `decode` and ByteLevel decoder exactly: ids it does not know are
 * skipped, every token becomes bytes (through the byte-to-unicode table when all its characters
 * are in it, else its own UTF-8), and the bytes are decoded once with U+FFFD for invalid
 * sequences. tokenizers.js instead copies added tokens verbatim and maps unknown ids to the unk
 * token.
 *
 * Loading one from files is in tokenizer-source.ts (a model's folder source, anywhere) and
 * tokenizer-files.ts (paths, Node only).
 */
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { FormatError, InputError, quoteValue } from '../errors.js';
import { adoptPairMerger } from './bpe-merge.js';
import { adoptTokenizerPatterns } from './tokenizer-patterns.js';
import type { GgufTokenizer } from '../model/gguf-tokenizer.js';

/** One entry of tokenizer.json's `added_tokens`. */
export interface AddedTokenSpec {
  id: number;
  content: string;
  special: boolean;
  normalized: boolean;
  lstrip: boolean;
  rstrip: boolean;
  single_word: boolean;
}

/** The small JSON files that travel with a tokenizer.json in a model folder. */
export interface TokenizerSideFiles {
  /** tokenizer_config.json (chat_template, bos/eos token names, model_max_length, ...). */
  tokenizerConfig?: Record<string, unknown>;
  /** special_tokens_map.json (additional_special_tokens, ...). */
  specialTokensMap?: Record<string, unknown>;
  /** generation_config.json (eos_token_id, ...). */
  generationConfig?: Record<string, unknown>;
}

/** The earlier name of GgufTokenizer (model/gguf-tokenizer.ts), the one type of a GGUF file's tokenizer. */
export type GgufTokenizerData = GgufTokenizer;

export interface EncodeOptions {
  /**
   * Recognise special tokens written in the text (`<|endoftext|>` → 0), as the Rust library
   * does by default. With false they are encoded as ordinary text.
   */
  parseSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Leave out special tokens (`<|endoftext|>`, `<|im_end|>`, ...). Default false. */
  skipSpecialTokens?: boolean;
}

/** GPT-2's reversible byte ↔ printable-character table (bytes_to_unicode). */
function byteLevelTables(): { charToByte: Map<string, number>; byteToChar: string[] } {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const byteToChar: string[] = new Array(256);
  for (const b of printable) byteToChar[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (byteToChar[b] === undefined) byteToChar[b] = String.fromCharCode(256 + n++);
  }
  const charToByte = new Map<string, number>();
  byteToChar.forEach((c, b) => {
    charToByte.set(c, b);
  });
  return { charToByte, byteToChar };
}

const BYTE_LEVEL = byteLevelTables();
const UTF8 = new TextEncoder();

/** `v` as a JSON object, or a FormatError naming `what`. */
export function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FormatError(`${what} must hold a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Refuses a BPE merges list the tokenizer library would fail on with a TypeError: a list whose
 * items are all strings ("A B") or all pairs of strings (["A", "B"]), as the first item's form says.
 */
function checkMerges(merges: unknown, source: string): void {
  if (merges === undefined) return;
  if (!Array.isArray(merges)) {
    throw new FormatError(`${source}: tokenizer.json model.merges must be a list, got ${quoteValue(merges)}`);
  }
  const pairs = Array.isArray(merges[0]);
  for (let i = 0; i < merges.length; i++) {
    const m: unknown = merges[i];
    const ok = pairs
      ? Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string'
      : typeof m === 'string';
    if (!ok) {
      const form = pairs
        ? 'a pair of strings ["A", "B"], as model.merges[0] is'
        : 'a string "A B", as model.merges[0] is';
      throw new FormatError(`${source}: tokenizer.json model.merges[${i}] must be ${form}, got ${quoteValue(m)}`);
    }
  }
}

/** Name of a special token as tokenizer_config / special_tokens_map write it (string or AddedToken dict). */
function tokenName(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string')
    return (v as { content: string }).content;
  return undefined;
}

/**
 * A loaded tokenizer: exact encode/decode plus what generation needs (special ids, stop ids,
 * per-token bytes for UTF-8-safe streaming).
 */
export class MptTokenizer {
  /** Number of token ids (highest id + 1); ids at or past it are never produced or sampled. */
  readonly size: number;
  /** Token string of each id (added tokens take precedence, as in the Rust library). */
  private readonly idToTokenTable: (string | undefined)[];
  private readonly tokenToIdTable: Map<string, number>;
  private readonly specialIds: Set<number>;
  private readonly byteCache: (Uint8Array | undefined)[];
  private readonly hf: HfTokenizer;
  private hfPlain: HfTokenizer | undefined;
  private readonly tokenizerJson: Record<string, unknown>;
  private readonly byteLevelDecoder: boolean;
  /** Added tokens (ids and contents), for callers that need to know them. */
  readonly addedTokens: readonly AddedTokenSpec[];
  /** BOS / EOS / PAD / UNK token ids when the files name them. */
  readonly bosId: number | undefined;
  readonly eosId: number | undefined;
  readonly padId: number | undefined;
  readonly unkId: number | undefined;
  /**
   * Ids that end generation: generation_config.json's `eos_token_id` (a number or a list, e.g.
   * `[0, 50278]` for MPT-7B-Chat), else the EOS token.
   */
  readonly stopIds: readonly number[];
  /** The Jinja `chat_template` from tokenizer_config.json (or the GGUF), when present. */
  readonly chatTemplate: string | undefined;
  /** Special-token strings for chat templates (`bos_token`, `eos_token`, ...). */
  readonly specialTokenStrings: Readonly<Record<string, string | string[]>>;
  /** `model_max_length` from tokenizer_config.json, when it is a sane number. */
  readonly modelMaxLength: number | undefined;
  /** Where it came from (a path, or "gguf"), for messages. */
  readonly source: string;
  /**
   * The constructor's arguments (plain JSON, cloneable): `new MptTokenizer(...t.construction)` is
   * an equal tokenizer, e.g. in a worker thread that encodes long texts off the main thread.
   */
  readonly construction: readonly [tokenizerJson: unknown, side: TokenizerSideFiles, source: string];

  /**
   * Builds a tokenizer from a parsed tokenizer.json object and its side files. Tokens listed in
   * `additional_special_tokens` (special_tokens_map.json / tokenizer_config.json) or in
   * tokenizer_config's `added_tokens_decoder` that tokenizer.json lacks are added as special
   * tokens, with the next free ids when no id is given (as transformers' `add_special_tokens`
   * does: MPT-7B-Chat's `<|im_start|>` = 50277, `<|im_end|>` = 50278).
   */
  constructor(tokenizerJson: unknown, side: TokenizerSideFiles = {}, source = 'tokenizer.json') {
    this.construction = [tokenizerJson, side, source];
    // Shallow copy: only added_tokens is changed, and tokenizers.js does not mutate the rest.
    const tj = { ...asObject(tokenizerJson, 'tokenizer.json') };
    const model = asObject(tj['model'], 'tokenizer.json "model"');
    const vocab = asObject(model['vocab'] ?? {}, 'tokenizer.json "model.vocab"') as Record<string, number>;
    checkMerges(model['merges'], source);
    const added = (Array.isArray(tj['added_tokens']) ? (tj['added_tokens'] as unknown[]) : []).map((t, i) => {
      const spec = t as Partial<AddedTokenSpec> | null;
      if (typeof t !== 'object' || spec === null || typeof spec.content !== 'string' || !Number.isSafeInteger(spec.id))
        throw new FormatError(
          `${source}: tokenizer.json added_tokens[${i}] must be an object with a string "content" and an integer "id", got ${quoteValue(t)}`,
        );
      return { ...spec } as AddedTokenSpec;
    });
    tj['added_tokens'] = added;
    const cfg = side.tokenizerConfig ?? {};
    const stm = side.specialTokensMap ?? {};

    // Ids in use, to place extra special tokens after them.
    let maxId = -1;
    for (const id of Object.values(vocab)) if (id > maxId) maxId = id;
    for (const t of added) if (t.id > maxId) maxId = t.id;
    const present = new Set<string>([...added.map((t) => t.content)]);
    const addSpecial = (content: string, id?: number, extra: Partial<AddedTokenSpec> = {}) => {
      if (present.has(content) || (Object.hasOwn(vocab, content) && id === undefined)) return;
      const tokenId = id ?? ++maxId;
      if (tokenId > maxId) maxId = tokenId;
      added.push({
        id: tokenId,
        content,
        special: true,
        normalized: false,
        lstrip: false,
        rstrip: false,
        single_word: false,
        ...extra,
      });
      present.add(content);
    };
    const decoderMap = cfg['added_tokens_decoder'];
    if (decoderMap && typeof decoderMap === 'object') {
      const entries = Object.entries(decoderMap as Record<string, Record<string, unknown>>)
        .map(([k, v]) => [Number(k), v] as const)
        .filter(([k, v]) => Number.isInteger(k) && typeof v?.['content'] === 'string')
        .sort((a, b) => a[0] - b[0]);
      for (const [id, v] of entries) {
        addSpecial(v['content'] as string, id, {
          special: v['special'] !== false,
          normalized: v['normalized'] === true,
          lstrip: v['lstrip'] === true,
          rstrip: v['rstrip'] === true,
          single_word: v['single_word'] === true,
        });
      }
    }
    for (const src of [stm, cfg]) {
      const extra = src['additional_special_tokens'];
      if (Array.isArray(extra))
        for (const t of extra) {
          const name = tokenName(t);
          if (name !== undefined) addSpecial(name);
        }
    }

    try {
      this.hf = new HfTokenizer(tj, { ...cfg, clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new FormatError(`${source}: not a tokenizer this engine can load (${(e as Error).message})`, { cause: e });
    }
    const preType = (tj['pre_tokenizer'] as { type?: string } | null | undefined)?.type;
    if (adoptTokenizerPatterns(this.hf, source).byteLevel === 0 && preType === 'ByteLevel') {
      throw new FormatError(`${source}: internal: could not adjust the byte-level pre-tokenizer's whitespace class`);
    }
    adoptPairMerger(this.hf);
    this.tokenizerJson = tj;
    const decoder = tj['decoder'] as { type?: string } | null | undefined;
    this.byteLevelDecoder = decoder?.type === 'ByteLevel';

    this.idToTokenTable = [];
    this.tokenToIdTable = new Map();
    for (const [tok, id] of Object.entries(vocab)) {
      this.idToTokenTable[id] = tok;
      this.tokenToIdTable.set(tok, id);
    }
    this.specialIds = new Set();
    for (const t of added) {
      this.idToTokenTable[t.id] = t.content;
      this.tokenToIdTable.set(t.content, t.id);
      if (t.special) this.specialIds.add(t.id);
    }
    this.addedTokens = added.map((t) => ({ ...t }));
    this.size = this.idToTokenTable.length;
    this.byteCache = new Array(this.size);
    this.source = source;

    const idOf = (v: unknown) => {
      const n = tokenName(v);
      return n === undefined ? undefined : this.tokenToIdTable.get(n);
    };
    this.bosId = idOf(cfg['bos_token'] ?? stm['bos_token']);
    this.eosId = idOf(cfg['eos_token'] ?? stm['eos_token']);
    this.padId = idOf(cfg['pad_token'] ?? stm['pad_token']);
    this.unkId = idOf(cfg['unk_token'] ?? stm['unk_token']);
    const genEos = side.generationConfig?.['eos_token_id'];
    let stop: number[] = [];
    if (typeof genEos === 'number') stop = [genEos];
    else if (Array.isArray(genEos)) stop = genEos.filter((x): x is number => typeof x === 'number');
    if (stop.length === 0 && this.eosId !== undefined) stop = [this.eosId];
    if (
      stop.length === 0 &&
      this.tokenToIdTable.has('<|endoftext|>') &&
      this.specialIds.has(this.tokenToIdTable.get('<|endoftext|>')!)
    ) {
      stop = [this.tokenToIdTable.get('<|endoftext|>')!];
    }
    this.stopIds = stop;
    this.chatTemplate = typeof cfg['chat_template'] === 'string' ? (cfg['chat_template'] as string) : undefined;
    const strings: Record<string, string | string[]> = {};
    for (const key of ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token']) {
      const name = tokenName(cfg[key] ?? stm[key]);
      if (name !== undefined) strings[key] = name;
    }
    const extraNames = stm['additional_special_tokens'] ?? cfg['additional_special_tokens'];
    if (Array.isArray(extraNames))
      strings['additional_special_tokens'] = extraNames.map(tokenName).filter((x): x is string => x !== undefined);
    this.specialTokenStrings = strings;
    const mml = cfg['model_max_length'];
    this.modelMaxLength = typeof mml === 'number' && mml > 0 && mml < 1e9 ? mml : undefined;
  }

  /** Text → token ids, exactly as the Rust library's `encode(text, add_special_tokens=false)`. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new InputError('encode() needs a string');
    if (text.length === 0) return [];
    if (options.parseSpecialTokens === false) return this.encodeWithoutSpecials(text);
    return this.hf.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * Encodes special-token strings as plain text (the Rust library's `encode_special_tokens`):
   * a second tokenizers.js instance without the special added tokens, built on first use.
   */
  private encodeWithoutSpecials(text: string): number[] {
    if (!this.hfPlain) {
      const tj = {
        ...this.tokenizerJson,
        added_tokens: (this.tokenizerJson['added_tokens'] as AddedTokenSpec[]).filter((t) => !t.special),
      };
      this.hfPlain = new HfTokenizer(tj, { clean_up_tokenization_spaces: false });
      adoptTokenizerPatterns(this.hfPlain, this.source);
      adoptPairMerger(this.hfPlain);
    }
    return this.hfPlain.encode(text, { add_special_tokens: false }).ids;
  }

  /**
   * Token ids → text, as the Rust library's `decode(ids, skip_special_tokens)`: unknown ids are
   * skipped; no clean-up of spaces (transformers' `clean_up_tokenization_spaces` is a Python-side
   * post-process and is not applied).
   */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const list = Array.from(ids);
    if (!this.byteLevelDecoder) {
      const known = list.filter((id) => this.isKnown(id) && !(options.skipSpecialTokens && this.specialIds.has(id)));
      if (known.length === 0) return '';
      return this.hf.decode(known, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    }
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const id of list) {
      if (options.skipSpecialTokens && this.specialIds.has(id)) continue;
      const b = this.tokenBytes(id);
      if (b.length === 0) continue;
      parts.push(b);
      total += b.length;
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(all);
  }

  /** True when the decoder is byte-level, so `tokenBytes` concatenation is the decoded text. */
  get isByteLevel(): boolean {
    return this.byteLevelDecoder;
  }

  /**
   * The bytes a token contributes to decoded text (Rust ByteLevel decoder: through the
   * byte-to-unicode table when every character is in it, else the token's own UTF-8). Empty for
   * unknown ids. Only meaningful when `isByteLevel`.
   */
  tokenBytes(id: number): Uint8Array {
    if (!this.isKnown(id)) return new Uint8Array(0);
    const cached = this.byteCache[id];
    if (cached) return cached;
    const tok = this.idToTokenTable[id]!;
    const bytes: number[] = [];
    let allMapped = true;
    for (const ch of tok) {
      const b = BYTE_LEVEL.charToByte.get(ch);
      if (b === undefined) {
        allMapped = false;
        break;
      }
      bytes.push(b);
    }
    const out = allMapped ? Uint8Array.from(bytes) : UTF8.encode(tok);
    this.byteCache[id] = out;
    return out;
  }

  /** Whether the id names a token of this tokenizer. */
  isKnown(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.size && this.idToTokenTable[id] !== undefined;
  }

  /** Whether the id is a special token (`<|endoftext|>`, `<|im_end|>`, ...). */
  isSpecial(id: number): boolean {
    return this.specialIds.has(id);
  }

  /** The token string of an id (byte-level form, e.g. "Ġworld"), or undefined. */
  idToToken(id: number): string | undefined {
    return this.isKnown(id) ? this.idToTokenTable[id] : undefined;
  }

  /** The id of a token string, or undefined. */
  tokenToId(token: string): number | undefined {
    return this.tokenToIdTable.get(token);
  }

  /** The token strings of an encoding (for display). */
  tokens(ids: ArrayLike<number>): string[] {
    return Array.from(ids, (id) => this.idToToken(id) ?? `<unknown ${id}>`);
  }

  /**
   * Builds a tokenizer from GGUF-embedded data (llama.cpp `tokenizer.ggml.model` "gpt2"): normal
   * tokens form the BPE vocabulary, control and unknown tokens become special added tokens,
   * user-defined tokens (GPT-NeoX's space runs) normalized added tokens; unused tokens
   * (llama.cpp's `[PAD…]` fillers up to the model's vocab size) are left out, so they decode to
   * nothing and are never sampled. Normalizer NFC and the byte-level GPT-2 pre-tokenizer, as in
   * GPT-NeoX-20B's tokenizer.json.
   */
  static fromGguf(data: GgufTokenizer, source = 'gguf'): MptTokenizer {
    const { tokens, merges, tokenTypes } = data;
    if (!Array.isArray(tokens) || tokens.length === 0)
      throw new FormatError(`${source}: the GGUF file has no tokenizer.ggml.tokens`);
    const vocab: Record<string, number> = {};
    const added: AddedTokenSpec[] = [];
    let lastUsed = -1;
    for (let id = 0; id < tokens.length; id++) {
      const type = tokenTypes[id] ?? 1;
      const content = tokens[id]!;
      if (type === 5) continue;
      lastUsed = id;
      if (type === 3 || type === 2) {
        added.push({ id, content, special: true, normalized: false, lstrip: false, rstrip: false, single_word: false });
      } else if (type === 4) {
        added.push({ id, content, special: false, normalized: true, lstrip: false, rstrip: false, single_word: false });
      }
      if (!Object.hasOwn(vocab, content)) vocab[content] = id;
    }
    if (lastUsed < 0) throw new FormatError(`${source}: every GGUF token is marked unused`);
    const tokenizerJson = {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: added,
      normalizer: { type: 'NFC' },
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        vocab,
        merges: merges ?? [],
      },
    };
    const name = (id: number | undefined) =>
      id !== undefined && id >= 0 && id < tokens.length ? tokens[id] : undefined;
    const cfg: Record<string, unknown> = {};
    if (name(data.bosId) !== undefined) cfg['bos_token'] = name(data.bosId);
    if (name(data.eosId) !== undefined) cfg['eos_token'] = name(data.eosId);
    if (name(data.padId) !== undefined) cfg['pad_token'] = name(data.padId);
    if (typeof data.chatTemplate === 'string') cfg['chat_template'] = data.chatTemplate;
    const gen = data.eosId !== undefined ? { eos_token_id: data.eosId } : undefined;
    return new MptTokenizer(tokenizerJson, { tokenizerConfig: cfg, generationConfig: gen }, source);
  }
}

/** Ids the shipped GPT-NeoX-20B tokenizer uses (0..50276). */
export const NEOX_TOKENIZER_SIZE = 50277;

/** The side files a tokenizer.json is built with, by the key of TokenizerSideFiles they fill. */
export const TOKENIZER_SIDE_FILES = {
  tokenizerConfig: 'tokenizer_config.json',
  specialTokensMap: 'special_tokens_map.json',
  generationConfig: 'generation_config.json',
} as const satisfies Record<keyof TokenizerSideFiles, string>;

/** The same vocabulary in the slow tokenizers' format, kept beside a tokenizer.json by some folders. */
export const SLOW_TOKENIZER_FILES = ['vocab.json', 'merges.txt'] as const;

/** Every tokenizer file a Hugging Face model folder may hold (what a converted or exported folder copies). */
export const TOKENIZER_FILES: readonly string[] = [
  'tokenizer.json',
  ...Object.values(TOKENIZER_SIDE_FILES),
  ...SLOW_TOKENIZER_FILES,
];

export interface LoadTokenizerOptions {
  /**
   * The model's vocab_size (embedding rows): the shipped GPT-NeoX tokenizer is used as a fallback
   * only when it fits. Read from the folder's config.json when not given.
   */
  vocabSize?: number;
  /** config.json's `tokenizer_name`; the fallback is used only for GPT-NeoX names (or none). */
  tokenizerName?: string;
  /** Receives notes for the user (e.g. that the shipped tokenizer is used); default: the console. */
  onNote?: (message: string) => void;
}

/**
 * Whether a model folder without tokenizer.json may use the shipped GPT-NeoX-20B tokenizer: its
 * vocabulary holds the tokenizer's ids (MPT pads it to 50,432) and its config names GPT-NeoX or
 * no tokenizer (MPT's `tokenizer_name` is EleutherAI/gpt-neox-20b).
 */
export function neoxFallbackApplies(vocabSize: number | undefined, tokenizerName: string | undefined): boolean {
  if (vocabSize === undefined || vocabSize < NEOX_TOKENIZER_SIZE) return false;
  return tokenizerName === undefined || /neox/i.test(tokenizerName);
}

/** The note said when the shipped tokenizer stands in for the folder `where`'s. */
export function neoxFallbackNote(where: string, tokenizerName: string | undefined): string {
  const why = tokenizerName ? `config tokenizer_name: ${tokenizerName}` : 'the MPT default';
  return `${where} has no tokenizer.json; using the shipped GPT-NeoX-20B tokenizer (${why})`;
}

/**
 * Why the model `where` has no tokenizer: no tokenizer.json, and the shipped GPT-NeoX-20B one may
 * not stand in for it (neoxFallbackApplies). Each interface adds how to give one: every one can
 * put the file in the folder (TOKENIZER_FILE_HINT).
 */
export function noTokenizerMessage(
  where: string,
  vocabSize: number | undefined,
  tokenizerName: string | undefined,
): string {
  const why =
    vocabSize === undefined
      ? 'its vocab_size is not known'
      : vocabSize >= NEOX_TOKENIZER_SIZE && tokenizerName !== undefined && !/neox/i.test(tokenizerName)
        ? `its config names tokenizer ${JSON.stringify(tokenizerName)}, not the shipped GPT-NeoX-20B one`
        : `its vocab_size ${vocabSize} cannot hold the ${NEOX_TOKENIZER_SIZE} ids of the shipped GPT-NeoX-20B tokenizer`;
  return `${where} has no tokenizer (no tokenizer.json, and ${why})`;
}

/** How to give a model folder its tokenizer, whatever reads it. */
export const TOKENIZER_FILE_HINT =
  'put the tokenizer.json it was trained with in the folder (with its tokenizer_config.json for the chat template)';

/** Both ways to give one in the commands that take --tokenizer (generate, chat, serve, convert, quantize). */
export const TOKENIZER_HINTS = `${TOKENIZER_FILE_HINT}, or give --tokenizer PATH (a tokenizer.json, or a folder holding one)`;

/** `vocab_size` and `tokenizer_name` of a parsed config.json, where it has them. */
export function tokenizerHintsOf(config: Record<string, unknown> | undefined): LoadTokenizerOptions {
  const hints: LoadTokenizerOptions = {};
  if (typeof config?.['vocab_size'] === 'number') hints.vocabSize = config['vocab_size'];
  if (typeof config?.['tokenizer_name'] === 'string') hints.tokenizerName = config['tokenizer_name'];
  return hints;
}

/** The default onNote: the console (the CLI passes its own, to stderr). */
export function consoleNote(message: string): void {
  console.warn(`note: ${message}`);
}

/** The tokenizer embedded in a GGUF checkpoint, with its chat template from the file's metadata. */
export function ggufTokenizerOf(
  ggufTokenizer: GgufTokenizer,
  metadata: Map<string, unknown> | undefined,
  source: string,
): MptTokenizer {
  const data = { ...ggufTokenizer };
  const tmpl = metadata?.get('tokenizer.chat_template');
  if (data.chatTemplate === undefined && typeof tmpl === 'string') data.chatTemplate = tmpl;
  return MptTokenizer.fromGguf(data, source);
}

/** Refuses a tokenizer with ids past the model's embedding rows: they cannot belong together. */
export function checkTokenizerFitsModel(tokenizer: MptTokenizer, vocabSize: number, model: string): void {
  if (tokenizer.size > vocabSize) {
    throw new InputError(
      `the tokenizer ${tokenizer.source} has ${tokenizer.size} tokens but the model ` +
        `${model} only ${vocabSize} (vocab_size): they do not belong together`,
    );
  }
}
