/**
 * mpt-ts: MosaicML's MPT models in TypeScript.
 *
 * The library API: `loadModel(path?, options)` returns an `MptModel` with `generate`, `stream`,
 * `applyChatTemplate`, `logits` and `tokenizer`. Lower layers (configs, checkpoints, backends,
 * the sampler and the generation loop) are exported for tools that need them.
 *
 * @packageDocumentation
 */

// High-level API
export { loadModel, MptModel, resolveBackendName } from './runtime/model.js';
export type { LoadModelOptions, ModelGenerateOptions, PromptInput } from './runtime/model.js';
export { ChatSession } from './runtime/chat-session.js';
export type { ChatSessionOptions } from './runtime/chat-session.js';

// Tokenizer
export { MptTokenizer, loadTokenizer, readTokenizerSideFiles, shippedNeoxTokenizerPath, NEOX_TOKENIZER_SIZE } from './runtime/tokenizer.js';
export type { AddedTokenSpec, DecodeOptions, EncodeOptions, GgufTokenizerData, LoadTokenizerOptions, TokenizerSideFiles } from './runtime/tokenizer.js';
export { StreamDecoder } from './runtime/stream-decoder.js';
export type { StreamDecoderOptions } from './runtime/stream-decoder.js';

// Prompt formats
export {
  chatmlFormat, detectPromptFormat, formatStopIds, instructFormat, jinjaFormat, plainFormat,
  renderJinjaChatTemplate, resolvePromptFormat, INSTRUCT_INTRO, MPT_CHAT_DEFAULT_SYSTEM,
} from './runtime/chat-template.js';
export type { ChatMessage, FormatHints, PromptFormat, TemplateName } from './runtime/chat-template.js';

// Sampling and generation
export {
  Sampler, Xoshiro128, applyPenalties, argmax, chooseToken, filteredDistribution, logSoftmax, randomSeed, topLogprobs,
  validateSamplingOptions, DEFAULT_SAMPLING,
} from './runtime/sampling.js';
export type { SampleRequest, SamplingOptions, TokenLogprob } from './runtime/sampling.js';
export { StopStringMatcher } from './runtime/stop-strings.js';
export type { StopCheck } from './runtime/stop-strings.js';
export {
  GenerationSequence, GenerationStream, generate, generateTokens, resolveContextLength, stepSequences, DEFAULT_MAX_TOKENS,
} from './runtime/generate.js';
export type {
  FinishReason, GenerateOptions, GenerateResult, GenerationChunk, GenerationTimings, GenerationUsage,
  RunGenerationOptions, SequenceOptions,
} from './runtime/generate.js';

// Long contexts: prompt cache files, context-overflow policy, memory planner
export {
  PromptCacheError, PROMPT_CACHE_VERSION, fingerprintCheckpoint, loadPromptCache, modelFingerprint, preparePromptCache,
  readPromptCacheInfo, savePromptCache, streamWithPromptCache,
} from './runtime/prompt-cache.js';
export type { LoadPromptCacheOptions, PromptCacheInfo, SavePromptCacheOptions } from './runtime/prompt-cache.js';
export {
  CONTEXT_OVERFLOW_POLICIES, dropOldestTurns, generateWithContextPolicy, parseOverflowPolicy, shiftWindow, streamWithContextPolicy,
} from './runtime/context-policy.js';
export type { ContextOverflowPolicy, ContextPolicyOptions } from './runtime/context-policy.js';
export { assertFits, kvCacheBytes, planMemory } from './model/memory-plan.js';
export type { MemoryPlan, MemoryPlanInput } from './model/memory-plan.js';

// Configs, checkpoints, backends
export { parseMptConfig, qkvDim, toMosaicConfigJson } from './model/config.js';
export type { MptConfig, AttnConfig, FfnConfig } from './model/config.js';
export { openCheckpoint, openFolderCheckpoint } from './model/load.js';
export type { Checkpoint, CheckpointInput, OpenCheckpointOptions } from './model/load.js';
export { loadRunner, getBackend } from './backends/registry.js';
export type { BackendName, LoadOptions } from './backends/registry.js';
export { defaultModelPath } from './model/default-model.js';
export { referenceBackend } from './backends/reference/index.js';
export type {
  Backend, ForwardOptions, KvCache, KvCacheOptions, KvType, LoadRunnerOptions, ModelRunner, SequenceInput, SequenceOutput,
} from './backends/backend.js';
export type { DType, TensorInfo, TensorSource } from './formats/tensor-source.js';
// Where a checkpoint's bytes come from (local files are opened by path)
export { blobSource, bytesSource } from './formats/byte-source.js';
export type { ByteSource } from './formats/byte-source.js';
export { openUrlSource } from './formats/url-source.js';
export type { UrlSourceOptions } from './formats/url-source.js';
export { fileListFolder, urlFolder } from './formats/folder-source.js';
export type { FolderSource } from './formats/folder-source.js';

// Errors
export {
  MptError, FormatError, ConfigError, UnsupportedError, WeightsError, InputError, MemoryPlanError, UnsafePickleError,
  FetchError, RangeNotSupportedError,
} from './errors.js';
