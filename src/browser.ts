/**
 * mpt-ts in a browser tab: the library API without what needs Node (local paths and files, prompt
 * cache files, the server, the CLI, the trainer). `loadModel` takes a URL, a File or Blob, or the
 * files a user chose; the rest works as in Node. The package's "browser" export; `mpt-ts` in Node
 * (src/index.ts) is this plus the Node-only parts. Its module graph touches nothing of Node
 * (test/platform-imports.test.ts); a page without a bundler maps the two bare dependencies,
 * @huggingface/tokenizers and @huggingface/jinja, with an import map (README, "In the browser").
 *
 * @packageDocumentation
 */

// High-level API
export { loadCheckpointTokenizer, loadModel, MptModel, resolveBackendName } from './runtime/model.js';
export type { LoadModelOptions, ModelGenerateOptions, ModelSource, PromptInput } from './runtime/model.js';
export { ChatSession } from './runtime/chat-session.js';
export type { ChatSessionOptions } from './runtime/chat-session.js';

// Tokenizer
export { MptTokenizer, NEOX_TOKENIZER_SIZE, noTokenizerMessage } from './runtime/tokenizer.js';
export { loadFolderTokenizer, shippedNeoxTokenizerUrl } from './runtime/tokenizer-source.js';
export type { FolderTokenizerOptions } from './runtime/tokenizer-source.js';
export type {
  AddedTokenSpec,
  DecodeOptions,
  EncodeOptions,
  GgufTokenizerData,
  LoadTokenizerOptions,
  TokenizerSideFiles,
} from './runtime/tokenizer.js';
export type { GgufTokenizer } from './model/gguf-tokenizer.js';
export { StreamDecoder } from './runtime/stream-decoder.js';
export type { StreamDecoderOptions } from './runtime/stream-decoder.js';

// Prompt formats
export {
  chatmlFormat,
  detectPromptFormat,
  formatStopIds,
  instructFormat,
  jinjaFormat,
  plainFormat,
  renderJinjaChatTemplate,
  resolvePromptFormat,
  INSTRUCT_INTRO,
  MPT_CHAT_DEFAULT_SYSTEM,
} from './runtime/chat-template.js';
export type {
  BuiltinSource,
  ChatMessage,
  FormatHints,
  JinjaSource,
  PromptFormat,
  TemplateName,
} from './runtime/chat-template.js';

// Sampling and generation
export {
  Sampler,
  Xoshiro128,
  applyPenalties,
  argmax,
  chooseToken,
  filteredDistribution,
  logSoftmax,
  randomSeed,
  topLogprobs,
  validateSamplingOptions,
  DEFAULT_SAMPLING,
} from './runtime/sampling.js';
export type { SampleRequest, SamplingOptions, TokenLogprob } from './runtime/sampling.js';
export { StopStringMatcher } from './runtime/stop-strings.js';
export type { StopCheck } from './runtime/stop-strings.js';
export {
  GenerationSequence,
  GenerationStream,
  generate,
  generateTokens,
  resolveContextLength,
  stepSequences,
  DEFAULT_MAX_TOKENS,
} from './runtime/generate.js';
export type {
  FinishReason,
  GenerateOptions,
  GenerateResult,
  GenerationChunk,
  GenerationTimings,
  GenerationUsage,
  RunGenerationOptions,
  SequenceOptions,
  TokenConstraint,
  TokenLogprobInfo,
} from './runtime/generate.js';

// Long contexts: context-overflow policy, memory planner
export {
  CONTEXT_OVERFLOW_POLICIES,
  dropOldestTurns,
  generateWithContextPolicy,
  parseOverflowPolicy,
  shiftWindow,
  streamWithContextPolicy,
} from './runtime/context-policy.js';
export type { ContextOverflowPolicy, ContextPolicyOptions, PolicyGenerateResult } from './runtime/context-policy.js';
export { assertFits, kvCacheBytes, planMemory } from './model/memory-plan.js';
export type { MemoryPlan, MemoryPlanInput } from './model/memory-plan.js';

// Configs, checkpoints, backends
export { parseMptConfig, qkvDim, toMosaicConfigJson } from './model/config.js';
export type { MptConfig, AttnConfig, AttnType, FfnConfig, FfnType, Activation, NormType } from './model/config.js';
export { openCheckpoint, openFolderCheckpoint } from './model/load.js';
export type { Checkpoint, CheckpointInput, OpenCheckpointOptions } from './model/load.js';
export { loadRunner, getBackend } from './backends/registry.js';
export type { BackendName, LoadOptions } from './backends/registry.js';
export { referenceBackend } from './backends/reference/index.js';
export type {
  Backend,
  ForwardOptions,
  KvCache,
  KvCacheOptions,
  KvSnapshot,
  KvType,
  LoadRunnerOptions,
  ModelRunner,
  SequenceInput,
  SequenceOutput,
} from './backends/backend.js';
export type { DType, TensorInfo, TensorSource } from './formats/tensor-source.js';
// Where a checkpoint's bytes come from (local files are opened by path)
export { blobSource, bytesSource } from './formats/byte-source.js';
export type { ByteSource } from './formats/byte-source.js';
export { openUrlSource } from './formats/url-source.js';
// Offline copies of models loaded by URL, and where the package's own files are served (bundles)
export { clearModelCache, deleteCachedModel, listCachedModels } from './formats/model-cache.js';
export type { CachedModel } from './formats/model-cache.js';
export { setPackageUrl } from './platform/package-url.js';
export type { UrlSourceOptions } from './formats/url-source.js';
export { fileListFolder, urlFolder } from './formats/folder-source.js';
export type { FolderSource } from './formats/folder-source.js';

// Errors
export {
  MptError,
  FormatError,
  ConfigError,
  UnsupportedError,
  WeightsError,
  InputError,
  MemoryPlanError,
  UnsafePickleError,
  FetchError,
  RangeNotSupportedError,
} from './errors.js';
