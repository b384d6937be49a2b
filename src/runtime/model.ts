/**
 * The high-level library entry: `loadModel(source)` opens a model — a folder or GGUF file by path
 * (Node), by URL, as a File/Blob or the files a user chose (a browser) — loads its weights into a
 * backend, finds its tokenizer and prompt format, and returns an `MptModel` that generates text.
 * The same in Node and a browser tab: nothing here touches Node, whose file loading is imported
 * only for paths.
 *
 * ```ts
 * import { loadModel } from 'mpt-ts';
 * const model = await loadModel('models/mpt-7b-chat');
 * const { text } = await model.generate([{ role: 'user', content: 'Hi!' }], { maxTokens: 64 });
 * for await (const { text } of model.stream('Once upon a time', { seed: 1 })) console.log(text);
 * await model.dispose();
 * ```
 */
import type { KvType, ModelRunner } from '../backends/backend.js';
import { InputError } from '../errors.js';
import { openCachedUrlFolder, type CachedUrlFolder } from '../formats/cached-url-folder.js';
import { openCachedUrlSource } from '../formats/cached-url-source.js';
import { fileListFolder, urlFolder } from '../formats/folder-source.js';
import type { MptConfig } from '../model/config.js';
import { chooseBackend, type BackendChoice } from '../backends/choose.js';
import { loadRunner, type BackendName } from '../backends/registry.js';
import { openCheckpoint, type Checkpoint, type CheckpointInput } from '../model/load.js';
import { platform } from '../platform/index.js';
import { packageFileUrl } from '../platform/package-url.js';
import { formatStopIds, resolvePromptFormat, type ChatMessage, type PromptFormat } from './chat-template.js';
import {
  GenerationStream,
  generateTokens,
  resolveContextLength,
  type GenerateOptions,
  type GenerateResult,
} from './generate.js';
import {
  checkTokenizerFitsModel,
  ggufTokenizerOf,
  MptTokenizer,
  noTokenizerMessage,
  TOKENIZER_FILE_HINT,
  tokenizerHintsOf,
} from './tokenizer.js';
import { loadFolderTokenizer } from './tokenizer-source.js';

export interface LoadModelOptions {
  /**
   * Compute backend: 'wasm' (fast), 'reference' (plain TypeScript), 'webgpu', or 'auto' (default):
   * in Node wasm when built; in a page WebGPU when a hardware adapter can hold the model's
   * tensors, else wasm, and the console says which once.
   */
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
  /**
   * A tokenizer to use instead of the model's: a path (Node) or URL of a tokenizer.json or of a
   * folder (ending in `/`), or an instance; null for none.
   */
  tokenizer?: string | URL | MptTokenizer | null;
  /** Prompt format for chat messages: 'auto' (detect), 'jinja', 'chatml', 'instruct', 'none'. Default 'auto'. */
  template?: string;
  /** Receives notes for the user (e.g. the tokenizer fallback). Default: the console (stderr in Node). */
  onNote?: (message: string) => void;
  /**
   * In a browser, a GGUF file, model folder or tokenizer (`tokenizer`) by URL is kept for offline use (Origin Private File
   * System, else Cache Storage) and read from there next time; false reads it over the network,
   * uncached. Ignored in Node. Default true.
   */
  cache?: boolean;
  /**
   * Download progress of a file by URL not yet cached in this browser (bytes done, total), one file
   * after another: a GGUF file, the files of a model folder, a tokenizer's (`tokenizer`, or the
   * folder's tokenizer.json).
   */
  onDownload?: (done: number, total: number) => void;
}

/** A prompt: raw text, chat messages (rendered with the prompt format), or token ids. */
export type PromptInput = string | readonly ChatMessage[] | readonly number[];

/** Options of `MptModel.generate` / `stream`. */
export type ModelGenerateOptions = GenerateOptions;

function isIdArray(x: unknown): x is readonly number[] {
  return Array.isArray(x) && x.every((v) => typeof v === 'number');
}

/**
 * Picks the backend for 'auto' (see backends/choose.ts): in Node wasm when this build has it, else
 * the reference backend; in a page, given the model, WebGPU where an adapter fits it, else wasm.
 */
export async function resolveBackendName(
  name: BackendName | 'auto' | undefined,
  model?: Pick<Checkpoint, 'config' | 'tensors'>,
): Promise<BackendName> {
  return (await chooseBackend(name, model)).name;
}

/** What 'auto' chose in this page, said once per distinct choice (not per model loaded). */
const toldChoices = new Set<string>();

function tellChoice(choice: BackendChoice, onNote: LoadModelOptions['onNote']): void {
  const message = `mpt-ts: backend 'auto' runs the model on ${choice.name} (${choice.reason})`;
  if (toldChoices.has(message)) return;
  toldChoices.add(message);
  (onNote ?? console.info)(message);
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
    /** The model: absolute path of its folder or GGUF file, its URL, or its source's name. */
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
    if (!this.tok)
      throw new InputError(
        `${noTokenizerMessage(this.path, this.config.vocabSize, tokenizerHintsOf(this.config.raw).tokenizerName)}: ` +
          `${TOKENIZER_FILE_HINT}, give loadModel a tokenizer (option \`tokenizer\`), or pass token ids`,
      );
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
    if (!Array.isArray(input))
      throw new InputError('a prompt is a string, a list of chat messages, or a list of token ids');
    const text = this.applyChatTemplate(input as readonly ChatMessage[]);
    const ids = this.tokenizer.encode(text);
    const stopTokenIds = options.stopTokenIds ?? [
      ...new Set([...this.tokenizer.stopIds, ...formatStopIds(this.format, this.tok)]),
    ];
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
    return new GenerationStream((onFinish) =>
      generateTokens(this.runner, ids, {
        contextLength: this.contextLength,
        ...o,
        tokenizer: this.tok,
        onFinish,
      }),
    );
  }

  /** Logits for every position of `ids` (row-major [ids.length, vocab_size]), one forward pass. */
  async logits(ids: readonly number[]): Promise<Float32Array> {
    if (ids.length === 0) throw new InputError('logits() needs at least one token id');
    const V = this.config.vocabSize;
    for (const id of ids)
      if (!Number.isInteger(id) || id < 0 || id >= V)
        throw new InputError(`token id ${id} is outside the vocabulary (0..${V - 1})`);
    if (ids.length > this.contextLength)
      throw new InputError(`${ids.length} tokens exceed the context length ${this.contextLength}`);
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
 * What `loadModel` opens: a path (Node: a folder or .gguf file), the URL of a .gguf file or of a
 * Hugging Face folder (ending in `/`), a File or Blob holding a GGUF file, the Files of a folder a
 * user chose or dropped (a FileList or array), a ByteSource (GGUF) or a FolderSource.
 */
export type ModelSource = CheckpointInput | Iterable<File>;

const inBrowser = platform.name === 'browser';

function isUrlString(s: string): boolean {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(s);
}

/** In a page, a relative name is a URL relative to the page (there are no paths). */
function inPage(s: string): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  return inBrowser && !isUrlString(s) && base !== undefined ? new URL(s, base).href : s;
}

function isFileList(v: unknown): v is Iterable<File> {
  return (
    typeof v === 'object' &&
    v !== null &&
    !(typeof Blob !== 'undefined' && v instanceof Blob) &&
    typeof (v as Iterable<File>)[Symbol.iterator] === 'function'
  );
}

/**
 * The chosen files as a checkpoint input: a folder, except a lone .gguf file without config.json
 * (a GGUF picked through a folder or multi-file input) or one file alone, which is read as a file
 * so that a wrong one (a .txt dropped on the page) is refused by its own name.
 */
function chosenFiles(files: Iterable<File>): CheckpointInput {
  const list = [...files];
  const gguf = list.filter((f) => f.name.toLowerCase().endsWith('.gguf'));
  if (gguf.length === 1 && !list.some((f) => f.name === 'config.json')) return gguf[0]!;
  if (list.length === 1 && list[0]!.name !== 'config.json') return list[0]!;
  return fileListFolder(list);
}

/** The shipped model (models/default/): a folder on disk in Node, fetched next to the modules in a page. */
async function defaultModel(): Promise<string> {
  if (inBrowser) return packageFileUrl('models/default/', new URL('../../../models/default/', import.meta.url)).href;
  const { defaultModelPath } = await import('../model/default-model.js');
  return defaultModelPath();
}

/** The name under which a page keeps the files of a tokenizer given by URL (see namedTokenizer). */
export function tokenizerCopyUrl(url: string | URL): string {
  return `${new URL(String(url)).href}#tokenizer`;
}

/**
 * A tokenizer named by path or URL: a tokenizer.json file, or a folder (a URL ending in `/`). In a
 * page (unless `cache` is false) the files it reads are kept for offline use like a model
 * folder's, as the copy named tokenizerCopyUrl(url), their download reported to `onDownload`.
 */
async function namedTokenizer(
  named: string | URL,
  vocabSize: number,
  options: Pick<LoadModelOptions, 'onNote' | 'cache' | 'onDownload'>,
): Promise<MptTokenizer | null> {
  const { onNote, onDownload } = options;
  const name = named instanceof URL ? named.href : inPage(named);
  if (!isUrlString(name)) {
    const { loadTokenizer } = await import('./tokenizer-files.js');
    return loadTokenizer(name, { vocabSize, onNote });
  }
  const url = new URL(name);
  const base = url.pathname.endsWith('/') ? url : new URL('./', url);
  const folder =
    inBrowser && options.cache !== false
      ? await openCachedUrlFolder(base, onDownload === undefined ? {} : { onDownload }, tokenizerCopyUrl(url))
      : { ...urlFolder(base), commit: async () => {} };
  const file = url.pathname.endsWith('/')
    ? undefined
    : decodeURIComponent(url.pathname.slice(url.pathname.lastIndexOf('/') + 1));
  const tokenizer = await loadFolderTokenizer(folder, { ...(file === undefined ? {} : { file }), vocabSize, onNote });
  await folder.commit();
  return tokenizer;
}

/**
 * The tokenizer of an opened model: `options.tokenizer` when given; else a GGUF's own; else the
 * tokenizer.json of the checkpoint's folder; else the shipped GPT-NeoX-20B tokenizer when the
 * vocabulary fits it, with a note (loadFolderTokenizer); null when none applies (then only token
 * ids work). Throws when the tokenizer has more ids than the model has embedding rows: they cannot
 * belong together.
 */
export async function loadCheckpointTokenizer(
  ck: Pick<Checkpoint, 'kind' | 'path' | 'folder' | 'config' | 'ggufTokenizer' | 'ggufMetadata'>,
  options: Pick<LoadModelOptions, 'tokenizer' | 'onNote' | 'cache' | 'onDownload'> = {},
): Promise<MptTokenizer | null> {
  const vocabSize = ck.config.vocabSize;
  let tokenizer: MptTokenizer | null;
  if (options.tokenizer instanceof MptTokenizer || options.tokenizer === null) tokenizer = options.tokenizer;
  else if (options.tokenizer !== undefined) {
    tokenizer = await namedTokenizer(options.tokenizer, vocabSize, options);
  } else if (ck.kind === 'gguf' && ck.ggufTokenizer) {
    tokenizer = ggufTokenizerOf(ck.ggufTokenizer, ck.ggufMetadata, ck.path);
  } else if (ck.folder === undefined) tokenizer = null;
  else {
    const { tokenizerName } = tokenizerHintsOf(ck.config.raw);
    tokenizer = await loadFolderTokenizer(ck.folder, { vocabSize, tokenizerName, onNote: options.onNote });
  }
  if (tokenizer) checkTokenizerFitsModel(tokenizer, vocabSize, ck.path);
  return tokenizer;
}

/** What openCheckpoint is given for a model source (see ModelSource). */
function checkpointInput(source: ModelSource): CheckpointInput {
  if (typeof source === 'string') return inPage(source);
  return isFileList(source) ? chosenFiles(source) : source;
}

/**
 * Loads a model (see ModelSource): a folder (config.json + safetensors / PyTorch .bin, sharded or
 * not) or a GGUF file; without a source, the shipped default model (models/default/).
 */
export async function loadModel(source?: ModelSource, options: LoadModelOptions = {}): Promise<MptModel> {
  const cached = inBrowser && options.cache !== false;
  let folderCopy: CachedUrlFolder | undefined;
  const ck = await openCheckpoint(checkpointInput(source ?? (await defaultModel())), {
    openGguf: cached ? (url, o) => openCachedUrlSource(url, { ...o, onDownload: options.onDownload }) : undefined,
    openFolder: cached
      ? async (url, o) => {
          folderCopy = await openCachedUrlFolder(url, { ...o, onDownload: options.onDownload });
          return folderCopy;
        }
      : undefined,
  });
  try {
    const tokenizer = await loadCheckpointTokenizer(ck, options);
    const format = resolvePromptFormat(options.template, { tokenizer, configRaw: ck.config.raw, path: ck.path });
    const contextLength = resolveContextLength(ck.config, options.contextLength);
    const auto = options.backend === undefined || options.backend === 'auto';
    const choice = await chooseBackend(options.backend, ck);
    if (auto && inBrowser) tellChoice(choice, options.onNote);
    const load = (backend: BackendName) =>
      loadRunner(ck, {
        backend,
        threads: options.threads,
        onProgress: options.onProgress,
        kvReserve: { ctx: contextLength, kvType: options.kvType ?? 'f32', sequences: options.sequences ?? 1 },
      });
    let loaded: Awaited<ReturnType<typeof load>>;
    try {
      loaded = await load(choice.name);
    } catch (e) {
      // A GPU that cannot hold the model (memory, lost device) is found only by trying.
      if (!(auto && choice.name === 'webgpu')) throw e;
      (options.onNote ?? console.warn)(`mpt-ts: WebGPU could not load the model (${(e as Error).message}): using wasm`);
      loaded = await load('wasm');
    }
    // Every file the model needs has been read (and kept): the folder's copy is complete.
    await folderCopy?.commit();
    return new MptModel(loaded.runner, tokenizer, format, ck.path, contextLength);
  } finally {
    await ck.tensors.close();
  }
}
