/**
 * Prompt caches: the KV cache of a processed prompt saved to disk and restored later, so a
 * 65k-token book is read once and queried many times (`mpt generate --prompt-cache FILE`).
 *
 * A file is only ever used with the model, KV type and token prefix that made it: everything a
 * stale or foreign file could get wrong is checked, and a mismatch is a `PromptCacheError` whose
 * `reason` names what differs. The file format is prompt-cache-file.ts; the model's identity,
 * model-fingerprint.ts.
 */
import type { KvCache, KvType, ModelRunner } from '../backends/backend.js';
import { InputError } from '../errors.js';
import { mptFacts } from '../model/facts.js';
import { generateWithContextPolicy, type ContextPolicyOptions } from './context-policy.js';
import { GenerationStream, type GenerateOptions, type GenerateResult, type GenerationChunk } from './generate.js';
import type { MptModel } from './model.js';
import { fingerprintCheckpoint } from './model-fingerprint.js';
import {
  checkPromptCachePath,
  checkTokens,
  closePromptCacheFile,
  openPromptCacheFile,
  PromptCacheError,
  readSnapshot,
  verifyChecksum,
  writePromptCacheFile,
  type PromptCacheInfo,
} from './prompt-cache-file.js';

export { fingerprintCheckpoint, modelFingerprint } from './model-fingerprint.js';
export {
  checkPromptCachePath,
  encodedRowBytes,
  PROMPT_CACHE_VERSION,
  PromptCacheError,
  readPromptCacheInfo,
  type PromptCacheInfo,
  type PromptCacheRejection,
} from './prompt-cache-file.js';

export interface SavePromptCacheOptions {
  /** `modelFingerprint` of the model that computed the cache. */
  modelHash: string;
}

/**
 * Saves the KV cache of `tokens` (cache.length positions, one token id each) to `path`,
 * atomically. The runner must support snapshots (`saveCache`). Returns the file size.
 */
export async function savePromptCache(
  path: string,
  runner: ModelRunner,
  cache: KvCache,
  tokens: readonly number[],
  options: SavePromptCacheOptions,
): Promise<number> {
  if (!runner.saveCache)
    throw new InputError(`the ${runner.backendName} backend cannot save KV caches (no prompt cache support)`);
  const snap = runner.saveCache(cache);
  checkTokens(tokens, snap.length);
  return writePromptCacheFile(path, snap, tokens, options.modelHash, runner.backendName);
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

export interface LoadPromptCacheOptions {
  /** `modelFingerprint` of the model that will use the cache: must equal the file's. */
  modelHash: string;
  /** Capacity of the restored cache (the context length). */
  capacity: number;
  /** KV type the caller wants; a file of another type is rejected. Default: the file's. */
  kvType?: KvType;
  /**
   * The prompt about to be run. The cache is cut to the longest common prefix of its tokens and
   * the prompt (a key/value row depends only on the tokens up to it, so the cut cache is exact);
   * a file that shares no token with the prompt is rejected. Default: every cached position is
   * restored.
   */
  prompt?: readonly number[];
  /** Reject unless every cached token is a prefix of `prompt`. Default false. */
  requireFullPrefix?: boolean;
  /** Check the sha256 of the file's contents (reads the file twice). Default true. */
  verify?: boolean;
}

export interface LoadedPromptCache {
  cache: KvCache;
  /** Token ids of the positions in `cache` (a prefix of the prompt when one was given). */
  tokens: number[];
  /** The file's header. */
  info: PromptCacheInfo;
}

/**
 * Restores a prompt cache file into a new cache of `runner`, after checking that it was made by
 * the same model (fingerprint), with the same shape and KV type, and for the same token prefix.
 */
export async function loadPromptCache(
  path: string,
  runner: ModelRunner,
  options: LoadPromptCacheOptions,
): Promise<LoadedPromptCache> {
  if (!runner.restoreCache)
    throw new InputError(`the ${runner.backendName} backend cannot restore KV caches (no prompt cache support)`);
  const c = runner.config;
  const kvd = mptFacts(c).kvDim;
  const o = openPromptCacheFile(path, (info) => {
    if (info.modelHash !== options.modelHash) {
      throw new PromptCacheError(
        'model',
        `${path} was made with another model (fingerprint ${info.modelHash.slice(0, 12)}…, this model's is ${options.modelHash.slice(0, 12)}…): delete it or use another file`,
      );
    }
    if (info.nLayers !== c.nLayers || info.kvDim !== kvd) {
      throw new PromptCacheError(
        'shape',
        `${path} holds ${info.nLayers} layers x ${info.kvDim} KV values, this model has ${c.nLayers} x ${kvd}`,
      );
    }
    if (options.kvType !== undefined && options.kvType !== info.kvType) {
      throw new PromptCacheError(
        'kv-type',
        `${path} stores a ${info.kvType} KV cache, but ${options.kvType} was asked for: use --kv-type ${info.kvType} or another file`,
      );
    }
  });
  try {
    const info = o.info;
    let keep = info.length;
    if (options.prompt) {
      keep = commonPrefix(info.tokens, options.prompt);
      if (keep === 0 && info.length > 0) {
        throw new PromptCacheError(
          'tokens',
          `${path} was made for another prompt (its first token differs): delete it or use another file`,
        );
      }
      if (options.requireFullPrefix && keep < info.length) {
        throw new PromptCacheError(
          'tokens',
          `${path} holds ${info.length} tokens, but the prompt differs from them at token ${keep}`,
        );
      }
    }
    if (keep > options.capacity) {
      throw new PromptCacheError(
        'capacity',
        `${path} holds ${keep} usable positions, more than the context of ${options.capacity}: ask for a larger context`,
      );
    }
    if (options.verify ?? true) verifyChecksum(path, o);
    const snap = readSnapshot(o, keep);
    const cache = runner.restoreCache(snap, { capacity: options.capacity, kvType: info.kvType });
    return { cache, tokens: info.tokens.slice(0, keep), info };
  } finally {
    closePromptCacheFile(o);
  }
}

// ---------------------------------------------------------------------------------------------
// Generation with a prompt cache (`mpt generate --prompt-cache FILE`)

export interface PromptCacheRunOptions {
  /** The prompt cache file: restored when it exists, written after the prompt when it does not. */
  file: string;
  /** KV type of a new cache (default f32); an existing file must have this type when it is given. */
  kvType?: KvType;
  /** Prompt tokens per forward call while prefilling (default 512). */
  batchSize?: number;
  /** The model's fingerprint, when already known (default: computed from model.path). */
  modelHash?: string;
  /** Receives one line per event (reused / written), for stderr. */
  onNote?: (message: string) => void;
}

export interface PreparedPromptCache {
  /** A cache of model.runner holding every prompt position. */
  cache: KvCache;
  /** Prompt tokens whose keys and values came from the file. */
  reused: number;
  /** Bytes written when the file was created, else 0. */
  written: number;
}

/**
 * Processes a prompt with a prompt cache file: restores the file's longest prefix shared with
 * the prompt (rejecting a file of another model, KV type or prompt), runs the rest of the prompt
 * in chunks of `batchSize`, and writes the file when it did not exist. The file is written once
 * and never overwritten: delete it to rebuild it.
 */
export async function preparePromptCache(
  runner: ModelRunner,
  modelPath: string,
  prompt: readonly number[],
  capacity: number,
  o: PromptCacheRunOptions,
): Promise<PreparedPromptCache> {
  if (prompt.length === 0) throw new InputError('the prompt is empty: give at least one token');
  if (prompt.length > capacity)
    throw new InputError(`the prompt has ${prompt.length} tokens, more than the context length ${capacity}`);
  const exists = checkPromptCachePath(o.file) === 'exists';
  const modelHash = o.modelHash ?? (await fingerprintCheckpoint(modelPath));
  let cache: KvCache;
  let reused = 0;
  if (exists) {
    const loaded = await loadPromptCache(o.file, runner, { modelHash, capacity, kvType: o.kvType, prompt });
    cache = loaded.cache;
    reused = loaded.tokens.length;
    o.onNote?.(
      `prompt cache: reused ${reused} of ${prompt.length} prompt tokens from ${o.file} (it holds ${loaded.info.length})`,
    );
  } else {
    cache = runner.createCache({ capacity, kvType: o.kvType });
  }
  try {
    const batch = Math.max(1, o.batchSize ?? 512);
    for (let i = reused; i < prompt.length; i += batch) {
      await runner.forward([{ cache, tokens: prompt.slice(i, Math.min(prompt.length, i + batch)) }], {
        logits: 'none',
      });
    }
    let written = 0;
    if (!exists) {
      written = await savePromptCache(o.file, runner, cache, prompt, { modelHash });
      o.onNote?.(`prompt cache: wrote ${prompt.length} tokens (${(written / 2 ** 20).toFixed(1)} MiB) to ${o.file}`);
    }
    return { cache, reused, written };
  } catch (e) {
    cache.dispose();
    throw e;
  }
}

/**
 * `model.stream(ids, options)` through a prompt cache file: the prompt is restored from / saved
 * to `o.file` (see preparePromptCache), then generation continues on that cache (with the
 * context overflow policy of `options`), and the cache is freed when the stream ends.
 */
export async function streamWithPromptCache(
  model: MptModel,
  ids: readonly number[],
  options: GenerateOptions & ContextPolicyOptions,
  o: PromptCacheRunOptions,
): Promise<GenerationStream> {
  const ctx = options.contextLength ?? model.contextLength;
  const { cache } = await preparePromptCache(model.runner, model.path, ids, ctx, { kvType: options.kvType, ...o });
  const tokenizer = model.hasTokenizer ? model.tokenizer : null;
  async function* run(
    onFinish: (r: GenerateResult) => void,
  ): AsyncGenerator<GenerationChunk, GenerateResult, undefined> {
    try {
      // The cache holds the whole prompt: generation re-feeds only its last token for the logits.
      return yield* generateWithContextPolicy(model.runner, ids, {
        contextLength: ctx,
        ...options,
        tokenizer,
        cache,
        cachedIds: ids,
        onFinish,
      });
    } finally {
      cache.dispose();
    }
  }
  return new GenerationStream(run);
}
