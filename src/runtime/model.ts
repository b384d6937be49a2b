/**
 * The high-level library entry: `loadModel(path)` opens a model folder or GGUF file, loads its
 * weights into a backend, finds its tokenizer and prompt format, and returns an `MptModel` that
 * generates text.
 *
 * ```ts
 * import { loadModel } from 'mpt-ts';
 * const model = await loadModel('models/mpt-7b-chat');
 * const { text } = await model.generate([{ role: 'user', content: 'Hi!' }], { maxTokens: 64 });
 * for await (const { text } of model.stream('Once upon a time', { seed: 1 })) process.stdout.write(text);
 * await model.dispose();
 * ```
 */
import type { KvType, ModelRunner } from '../backends/backend.js';
import { InputError } from '../errors.js';
import type { MptConfig } from '../model/config.js';
import { defaultModelPath } from '../model/default-model.js';
import { getBackend, loadRunner, type BackendName } from '../backends/registry.js';
import { openCheckpoint, type Checkpoint } from '../model/load.js';
import { formatStopIds, resolvePromptFormat, type ChatMessage, type PromptFormat } from './chat-template.js';
import {
  GenerationStream, generateTokens, resolveContextLength,
  type GenerateOptions, type GenerateResult, type GenerationChunk,
} from './generate.js';
import { loadTokenizer, MptTokenizer, type GgufTokenizerData } from './tokenizer.js';

export interface LoadModelOptions {
  /** Compute backend: 'wasm' (fast), 'reference' (plain TypeScript), or 'auto' (wasm when built). Default 'auto'. */
  backend?: BackendName | 'auto';
  /** Worker threads for the wasm backend. */
  threads?: number;
  /** Weight-loading progress (bytes done, bytes total). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Default context length for generation. Default: the model's max_seq_len; larger values are
   * accepted for ALiBi models (extrapolation).
   */
  contextLength?: number;
  /**
   * KV type and number of caches of contextLength that will be used at once (default f32, 1):
   * the wasm backend keeps room for them beside each layer's weights in its 4 GiB memories.
   */
  kvType?: KvType;
  sequences?: number;
  /** A tokenizer to use instead of the model's: a path (tokenizer.json or folder) or an instance; null for none. */
  tokenizer?: string | MptTokenizer | null;
  /** Prompt format for chat messages: 'auto' (detect), 'jinja', 'chatml', 'instruct', 'none'. Default 'auto'. */
  template?: string;
  /** Receives notes for the user (e.g. the tokenizer fallback). Default: stderr. */
  onNote?: (message: string) => void;
}

/** A prompt: raw text, chat messages (rendered with the prompt format), or token ids. */
export type PromptInput = string | readonly ChatMessage[] | readonly number[];

/** Options of `MptModel.generate` / `stream`. */
export type ModelGenerateOptions = GenerateOptions;

function isIdArray(x: unknown): x is readonly number[] {
  return Array.isArray(x) && x.every((v) => typeof v === 'number');
}

/** Picks the backend for 'auto': wasm when this build has it, else the reference backend. */
export async function resolveBackendName(name: BackendName | 'auto' | undefined): Promise<BackendName> {
  if (name !== undefined && name !== 'auto') return name;
  try {
    await getBackend('wasm');
    return 'wasm';
  } catch {
    return 'reference';
  }
}

/** A loaded MPT model with its tokenizer and prompt format. */
export class MptModel {
  /** Default context length of generations (see LoadModelOptions.contextLength). */
  readonly contextLength: number;

  constructor(
    /** The backend's runner (forward passes, KV caches). */
    readonly runner: ModelRunner,
    /** The tokenizer, or null when the model has none (then only token ids work). */
    private readonly tok: MptTokenizer | null,
    /** How chat messages become a prompt. */
    readonly format: PromptFormat,
    /** Absolute path of the model folder or GGUF file. */
    readonly path: string,
    contextLength?: number,
  ) {
    this.contextLength = resolveContextLength(runner.config, contextLength);
  }

  get config(): MptConfig {
    return this.runner.config;
  }

  /** True when the model has a tokenizer. */
  get hasTokenizer(): boolean {
    return this.tok !== null;
  }

  /** The tokenizer; throws InputError when the model has none. */
  get tokenizer(): MptTokenizer {
    if (!this.tok) throw new InputError(`${this.path} has no tokenizer (no tokenizer.json, and the shipped GPT-NeoX tokenizer does not fit its vocab_size ${this.config.vocabSize}): pass token ids`);
    return this.tok;
  }

  /** Renders chat messages with the model's prompt format (generation prompt appended by default). */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    return this.format.render(messages, options);
  }

  /** Turns a prompt into ids, plus the stop rules its kind adds (chat formats end turns with <|im_end|>). */
  prepare(input: PromptInput, options: GenerateOptions = {}): { ids: number[]; options: GenerateOptions } {
    if (typeof input === 'string') return { ids: this.tokenizer.encode(input), options };
    if (isIdArray(input)) return { ids: [...input], options };
    if (!Array.isArray(input)) throw new InputError('a prompt is a string, a list of chat messages, or a list of token ids');
    const text = this.applyChatTemplate(input as readonly ChatMessage[]);
    const ids = this.tokenizer.encode(text);
    const stopTokenIds = options.stopTokenIds ?? [...new Set([...this.tokenizer.stopIds, ...formatStopIds(this.format, this.tok)])];
    const stopStrings = [...new Set([...(options.stopStrings ?? []), ...this.format.stopStrings])];
    return { ids, options: { ...options, stopTokenIds, stopStrings } };
  }

  /**
   * Generates a continuation. A string is continued as is; chat messages are rendered with the
   * prompt format first (and its end-of-turn markers stop generation); ids are fed directly.
   */
  async generate(input: PromptInput, options: ModelGenerateOptions = {}): Promise<GenerateResult> {
    const stream = this.stream(input, options);
    for await (const chunk of stream) void chunk;
    return stream.result;
  }

  /**
   * Streams a continuation: an async iterable of `{token, text}` chunks (text is the new,
   * UTF-8-safe, stop-string-safe piece); `await stream.result` gives the final result. Breaking
   * out of the loop ends generation.
   */
  stream(input: PromptInput, options: ModelGenerateOptions = {}): GenerationStream {
    const { ids, options: o } = this.prepare(input, options);
    return new GenerationStream((onFinish) => generateTokens(this.runner, ids, {
      contextLength: this.contextLength,
      ...o,
      tokenizer: this.tok,
      onFinish,
    }));
  }

  /** Logits for every position of `ids` (row-major [ids.length, vocab_size]), one forward pass. */
  async logits(ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new InputError('logits() needs at least one token id');
    const V = this.config.vocabSize;
    for (const id of ids) if (!Number.isInteger(id) || id < 0 || id >= V) throw new InputError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
    if (ids.length > this.contextLength) throw new InputError(`${ids.length} tokens exceed the context length ${this.contextLength}`);
    const cache = this.runner.createCache({ capacity: ids.length });
    try {
      const [out] = await this.runner.forward([{ cache, tokens: ids }], { logits: 'all' });
      return out!.logits;
    } finally {
      cache.dispose();
    }
  }

  /** Frees the weights and workers. */
  async dispose(): Promise<void> {
    await this.runner.dispose();
  }
}

/**
 * The tokenizer of an opened model: `options.tokenizer` when given; else a GGUF's own; else the
 * folder's tokenizer.json; else the shipped GPT-NeoX-20B tokenizer when the vocabulary fits it,
 * with a note (loadTokenizer); null when none applies (then only token ids work). Throws when the
 * tokenizer has more ids than the model has embedding rows: they cannot belong together.
 */
export function checkpointTokenizer(
  ck: Pick<Checkpoint, 'kind' | 'path' | 'dir' | 'config' | 'ggufTokenizer' | 'ggufMetadata'>,
  options: Pick<LoadModelOptions, 'tokenizer' | 'onNote'> = {},
): MptTokenizer | null {
  let tokenizer: MptTokenizer | null;
  if (options.tokenizer instanceof MptTokenizer || options.tokenizer === null) tokenizer = options.tokenizer;
  else if (typeof options.tokenizer === 'string') {
    tokenizer = loadTokenizer(options.tokenizer, { vocabSize: ck.config.vocabSize, onNote: options.onNote });
  }
  else if (ck.kind === 'gguf' && ck.ggufTokenizer) {
    const data = { ...(ck.ggufTokenizer as GgufTokenizerData) };
    const tmpl = ck.ggufMetadata?.get('tokenizer.chat_template');
    if (data.chatTemplate === undefined && typeof tmpl === 'string') data.chatTemplate = tmpl;
    tokenizer = MptTokenizer.fromGguf(data, ck.path);
  } else {
    const name = ck.config.raw['tokenizer_name'];
    const tokenizerName = typeof name === 'string' ? name : undefined;
    tokenizer = loadTokenizer(ck.dir, { vocabSize: ck.config.vocabSize, tokenizerName, onNote: options.onNote });
  }
  if (tokenizer && tokenizer.size > ck.config.vocabSize) {
    throw new InputError(`the tokenizer ${tokenizer.source} has ${tokenizer.size} tokens but the model ` +
      `${ck.path} only ${ck.config.vocabSize} (vocab_size): they do not belong together`);
  }
  return tokenizer;
}

/**
 * Loads a model: a folder (config.json + safetensors / PyTorch .bin, sharded or not) or a GGUF
 * file; without a path, the shipped default model (models/default/).
 */
export async function loadModel(path?: string, options: LoadModelOptions = {}): Promise<MptModel> {
  const modelPath = path ?? defaultModelPath();
  const ck = await openCheckpoint(modelPath);
  try {
    const tokenizer = checkpointTokenizer(ck, options);
    const format = resolvePromptFormat(options.template, { tokenizer, configRaw: ck.config.raw, path: ck.path });
    const contextLength = resolveContextLength(ck.config, options.contextLength);
    const backend = await resolveBackendName(options.backend);
    const { runner } = await loadRunner(ck, {
      backend, threads: options.threads, onProgress: options.onProgress,
      kvReserve: { ctx: contextLength, kvType: options.kvType ?? 'f32', sequences: options.sequences ?? 1 },
    });
    return new MptModel(runner, tokenizer, format, ck.path, contextLength);
  } finally {
    await ck.tensors.close();
  }
}
