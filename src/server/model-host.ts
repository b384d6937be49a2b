/**
 * The model a server serves: runner, tokenizer, prompt format, context length and the ids that
 * end a reply, gathered once at start-up, plus the vocabulary trie for constrained decoding.
 */
import { basename } from 'node:path';
import type { KvType, ModelRunner } from '../backends/backend.js';
import { InputError } from '../errors.js';
import type { BackendName } from '../backends/registry.js';
import { formatStopIds, type PromptFormat } from '../runtime/chat-template.js';
import { resolveContextLength } from '../runtime/generate.js';
import { loadModel } from '../runtime/model.js';
import { type MptTokenizer, noTokenizerMessage, TOKENIZER_HINTS, tokenizerHintsOf } from '../runtime/tokenizer.js';
import type { ConstraintVocabulary } from './constrain/json-constraint.js';
import { vocabularyOf } from './constrain/vocabulary.js';
import type { PromptWorker } from './prompt-worker.js';

export interface ServedModel {
  /** The name clients put in `model` (and /v1/models lists). */
  readonly id: string;
  readonly runner: ModelRunner;
  readonly tokenizer: MptTokenizer;
  readonly format: PromptFormat;
  /** Most positions (prompt + generated) of one sequence. */
  readonly contextLength: number;
  /** Token ids that end a reply (EOS, and the chat format's end-of-turn token). */
  readonly stopIds: readonly number[];
  /** Ids at or past this are padding rows of the embedding, never sampled. */
  readonly vocabLimit: number;
  readonly kvType: KvType;
  /** Unix seconds when the model was loaded. */
  readonly created: number;
  /**
   * The vocabulary as constrained decoding needs it: built on first use by `prompts`, off the
   * event loop (a pass over the vocabulary held every other client for ~190 ms), then kept.
   */
  constraintVocabulary(prompts: PromptWorker): Promise<ConstraintVocabulary>;
}

export interface LoadServedModelOptions {
  backend?: BackendName;
  threads?: number;
  /** Context length; default: the model's max_seq_len. */
  ctx?: number;
  /** The id clients use; default: the model folder's name. */
  name?: string;
  /** Prompt format for chat: auto, chatml, instruct, none, jinja. */
  template?: string;
  kvType?: KvType;
  /** Sequences decoded at once (their KV caches are planned for at load). */
  parallel?: number;
  /** A tokenizer.json, or a folder holding one, to use instead of the model's. */
  tokenizer?: string;
  onNote?: (message: string) => void;
}

/** Wraps an already loaded runner and tokenizer (tests, embedding the server in a program). */
export function servedModelFrom(
  runner: ModelRunner,
  tokenizer: MptTokenizer,
  options: { id: string; ctx?: number; format: PromptFormat; kvType?: KvType },
): ServedModel {
  const contextLength = resolveContextLength(runner.config, options.ctx);
  const stopIds = [...new Set([...tokenizer.stopIds, ...formatStopIds(options.format, tokenizer)])];
  const vocabSize = runner.config.vocabSize;
  let vocab: Promise<ConstraintVocabulary> | undefined;
  return {
    id: options.id,
    runner,
    tokenizer,
    format: options.format,
    contextLength,
    stopIds,
    vocabLimit: Math.min(tokenizer.size, vocabSize),
    kvType: options.kvType ?? 'f32',
    created: Math.floor(Date.now() / 1000),
    constraintVocabulary(prompts) {
      if (vocab) return vocab;
      const building = prompts.constraintTrie(vocabSize).then((trie) => vocabularyOf(trie, vocabSize, stopIds));
      vocab = building;
      // A build cut short (its server stopping) is tried again by the next request.
      building.catch(() => {
        if (vocab === building) vocab = undefined;
      });
      return building;
    },
  };
}

/** Loads a model folder or GGUF file for serving (through the runtime's `loadModel`). */
export async function loadServedModel(path: string, options: LoadServedModelOptions = {}): Promise<ServedModel> {
  const m = await loadModel(path, {
    backend: options.backend ?? 'auto',
    threads: options.threads,
    contextLength: options.ctx,
    template: options.template,
    ...(options.kvType ? { kvType: options.kvType } : {}),
    ...(options.parallel ? { sequences: options.parallel } : {}),
    ...(options.tokenizer !== undefined ? { tokenizer: options.tokenizer } : {}),
    onNote: options.onNote,
  });
  if (!m.hasTokenizer) {
    const why = noTokenizerMessage(path, m.config.vocabSize, tokenizerHintsOf(m.config.raw).tokenizerName);
    await m.dispose();
    throw new InputError(`${why}; a server needs one: ${TOKENIZER_HINTS}`);
  }
  const id = options.name ?? basename(m.path).replace(/\.gguf$/, '');
  return servedModelFrom(m.runner, m.tokenizer, { id, ctx: m.contextLength, format: m.format, kvType: options.kvType });
}
