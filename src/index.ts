/**
 * mpt-ts: MosaicML's MPT models in TypeScript.
 *
 * The library API: `loadModel(source?, options)` returns an `MptModel` with `generate`, `stream`,
 * `applyChatTemplate`, `logits` and `tokenizer`. Lower layers (configs, checkpoints, backends,
 * the sampler and the generation loop) are exported for tools that need them. Everything that
 * also runs in a browser comes from src/browser.ts; what follows it needs Node.
 *
 * @packageDocumentation
 */

export * from './browser.js';

// Tokenizers from local paths
export { loadTokenizer, readTokenizerSideFiles, shippedNeoxTokenizerPath } from './runtime/tokenizer-files.js';

// Prompt cache files
export {
  PromptCacheError,
  PROMPT_CACHE_VERSION,
  fingerprintCheckpoint,
  loadPromptCache,
  modelFingerprint,
  preparePromptCache,
  readPromptCacheInfo,
  savePromptCache,
  streamWithPromptCache,
} from './runtime/prompt-cache.js';
export type {
  LoadPromptCacheOptions,
  LoadedPromptCache,
  PreparedPromptCache,
  PromptCacheInfo,
  PromptCacheRunOptions,
  SavePromptCacheOptions,
} from './runtime/prompt-cache.js';
export type { PromptCacheRejection } from './runtime/prompt-cache-file.js';

// The shipped model's folder
export { defaultModelPath } from './model/default-model.js';
