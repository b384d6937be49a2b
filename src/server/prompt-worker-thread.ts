/**
 * The worker thread behind PromptWorker: its own copy of the served tokenizer (built from the same
 * constructor arguments) and chat template, doing one job per message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { InputError } from '../errors.js';
import {
  type BuiltinSource,
  builtinFormat,
  type ChatMessage,
  type JinjaSource,
  jinjaFormat,
} from '../runtime/chat-template.js';
import { MptTokenizer } from '../runtime/tokenizer.js';
import { type ConstraintVocabulary, JsonGrammar } from './constrain/json-constraint.js';
import { JsonAutomatonState } from './constrain/json-automaton.js';
import { constraintTrie, vocabularyOf } from './constrain/vocabulary.js';
import type { TokenTrieParts } from './constrain/token-trie.js';
import { parseError } from './json-in-turns.js';
import { jsonStringBytes } from './respond.js';
import { leastTokens } from './token-bound.js';

/** What the thread starts with, besides the tokenizer's construction. */
export interface PromptWorkerData {
  /** The tokenizer's longest token holding a non-whitespace byte (token-bound.ts). */
  solidTokenBytes: number;
  /** The served format's template, when it is a Jinja one. */
  jinja: JinjaSource | null;
  /** The served format's arguments, when it is a built-in one. */
  builtin: BuiltinSource | null;
}

/**
 * A chat job: the conversation `conversation` (its messages come with its first job in this
 * thread) rendered without the `drops` messages after its first `system`, then bounded (least
 * tokens) or encoded (as 'encode'). The text stays in this thread: of a conversation at the body
 * limit, a megabyte each way per probe of a truncation search.
 */
export interface ChatJob {
  kind: 'chat';
  conversation: number;
  messages?: ChatMessage[];
  system: number;
  drops: number;
  op: 'bound' | 'encode';
  keep: number;
}

/** encode: the ids when there are at most `keep`, else only their count. */
export type PromptJob = { id: number } & (
  | { kind: 'encode'; text: string; keep: number }
  | { kind: 'bound'; text: string }
  | { kind: 'render'; messages: ChatMessage[]; addGenerationPrompt: boolean }
  | { kind: 'decode'; ids: Int32Array }
  | { kind: 'decodeJson'; ids: Int32Array }
  | { kind: 'pieces'; ids: Int32Array }
  | { kind: 'trie'; vocabSize: number }
  | { kind: 'mask'; schema: string; vocabSize: number; eosIds: number[]; output: Uint8Array }
  | { kind: 'jsonError'; text: string }
  | ChatJob
  | { kind: 'forget'; conversation: number }
);
export type PromptReply =
  | {
      id: number;
      value:
        | Int32Array<ArrayBuffer>
        | Uint32Array<ArrayBuffer>
        | Uint8Array<ArrayBuffer>
        | number
        | string
        | null
        | string[]
        | TokenTrieParts;
    }
  | { id: number; error: string; input: boolean };

// Arrives as JSON text: one string is cheap to hand over, again after a restart.
const { construction, rest } = JSON.parse(workerData as string) as {
  construction: MptTokenizer['construction'];
  rest: PromptWorkerData;
};
const [json, side, source] = construction;
const tokenizer = new MptTokenizer(json, side, source);
const format = rest.jinja
  ? jinjaFormat(rest.jinja.template, rest.jinja.specialTokens)
  : rest.builtin
    ? builtinFormat(rest.builtin)
    : null;
const port = parentPort!;

/** Grammars kept by schema text (least recently used first), with the vocabulary they share. */
const MASK_GRAMMARS = 32;
const grammars = new Map<string, JsonGrammar>();
let maskVocabulary: ConstraintVocabulary | null = null;

/**
 * The mask (JsonGrammar.maskFor) of the state the schema reaches after `output`: the server's
 * grammar sends the bytes of the value so far, and this thread keeps its own trie and grammars.
 */
function constraintMask(job: Extract<PromptJob, { kind: 'mask' }>): Uint32Array<ArrayBuffer> {
  let vocab = maskVocabulary;
  if (!vocab || vocab.vocabSize !== job.vocabSize || vocab.eosIds.join() !== job.eosIds.join()) {
    vocab = vocabularyOf(constraintTrie(tokenizer, job.vocabSize), job.vocabSize, job.eosIds);
    maskVocabulary = vocab;
    grammars.clear();
  }
  let grammar = grammars.get(job.schema);
  if (grammar) grammars.delete(job.schema);
  else grammar = new JsonGrammar(JSON.parse(job.schema), vocab);
  grammars.set(job.schema, grammar);
  if (grammars.size > MASK_GRAMMARS) grammars.delete(grammars.keys().next().value!);
  const state = JsonAutomatonState.initial(grammar.root).feedBytes(job.output);
  if (!state) throw new Error('the constrained output does not follow its schema');
  // A copy: the grammar keeps its own in its cache, and the reply's buffer is handed over.
  return grammar.maskFor(state).slice();
}

/** Conversations of chat jobs, and the texts of their latest renders (a truncation search probes each about twice). */
const conversations = new Map<number, { messages: ChatMessage[]; texts: Map<string, string> }>();
const KEPT_TEXTS = 4;

function chat(job: ChatJob): Int32Array<ArrayBuffer> | number {
  if (!format) throw new Error('the worker has no chat format');
  let conv = conversations.get(job.conversation);
  if (job.messages) {
    conv = { messages: job.messages, texts: new Map() };
    conversations.set(job.conversation, conv);
  }
  if (!conv) throw new Error(`conversation ${job.conversation} was not sent to this thread`);
  const key = `${job.system} ${job.drops}`;
  let text = conv.texts.get(key);
  if (text === undefined) {
    const m = conv.messages;
    const kept = job.drops === 0 ? m : [...m.slice(0, job.system), ...m.slice(job.system + job.drops)];
    text = format.render(kept, { addGenerationPrompt: true });
    conv.texts.set(key, text);
    if (conv.texts.size > KEPT_TEXTS) conv.texts.delete(conv.texts.keys().next().value!);
  }
  if (job.op === 'bound') return leastTokens(text, rest.solidTokenBytes);
  const ids = tokenizer.encode(text);
  return ids.length <= job.keep ? Int32Array.from(ids) : ids.length;
}

function run(job: PromptJob): Exclude<PromptReply, { error: string }>['value'] {
  switch (job.kind) {
    case 'encode': {
      const ids = tokenizer.encode(job.text);
      return ids.length <= job.keep ? Int32Array.from(ids) : ids.length;
    }
    case 'bound':
      return leastTokens(job.text, rest.solidTokenBytes);
    case 'render':
      if (!format) throw new Error('the worker has no chat template');
      return format.render(job.messages, { addGenerationPrompt: job.addGenerationPrompt });
    case 'decode':
      return tokenizer.decode(job.ids);
    case 'decodeJson':
      return jsonStringBytes(tokenizer.decode(job.ids));
    case 'pieces':
      return Array.from(job.ids, (id) => tokenizer.decode([id]));
    case 'trie':
      return constraintTrie(tokenizer, job.vocabSize).parts;
    case 'mask':
      return constraintMask(job);
    case 'jsonError':
      return parseError(job.text);
    case 'chat':
      return chat(job);
    case 'forget':
      conversations.delete(job.conversation);
      return 0;
  }
}

port.on('message', (job: PromptJob) => {
  let reply: PromptReply;
  try {
    reply = { id: job.id, value: run(job) };
  } catch (e) {
    reply = { id: job.id, error: e instanceof Error ? e.message : String(e), input: e instanceof InputError };
  }
  port.postMessage(reply, 'value' in reply ? transferable(reply.value) : []);
});

/** The buffers a reply hands over rather than copies. */
function transferable(value: Exclude<PromptReply, { error: string }>['value']): ArrayBuffer[] {
  if (value instanceof Int32Array || value instanceof Uint32Array || value instanceof Uint8Array) return [value.buffer];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return [];
  return Object.values(value).map((a: Int32Array | Uint8Array) => a.buffer as ArrayBuffer);
}
