/**
 * Prompt work without holding the server's event loop: rendering chat messages through a Jinja
 * chat template, bounding a text's token count from its bytes, text → token ids and ids → text,
 * and the vocabulary's trie for constrained decoding.
 * Small inputs are handled in place; large ones, and every Jinja render (a template spends up to
 * its work budget, about half a second, whatever the messages' size), by a worker thread with its
 * own copy of the tokenizer and the template, one job at a time. (A megabyte of text costs a
 * second or more of tokenizing, during which health checks and every stream would otherwise
 * wait.) A job whose client left, whose time ran out, or whose server is stopping is dropped from
 * the queue, or the worker computing it is stopped.
 */
import { Worker } from 'node:worker_threads';
import { InputError } from '../errors.js';
import type { ChatMessage, PromptFormat } from '../runtime/chat-template.js';
import type { MptTokenizer } from '../runtime/tokenizer.js';
import type { PromptJob, PromptReply, PromptWorkerData } from './prompt-worker-thread.js';
import { TokenTrie, type TokenTrieParts } from './constrain/token-trie.js';
import { jsonStringBytes } from './respond.js';
import { leastTokens, longestSolidToken } from './token-bound.js';

/** Texts up to this many UTF-16 units are encoded in place (tens of milliseconds at worst). */
export const INLINE_CHARS = 2048;

/** Texts up to this many UTF-16 units are bounded in place (a few milliseconds: one or two passes). */
export const INLINE_BOUND_CHARS = 64 * 1024;

/** Id lists up to this long are decoded in place. */
export const INLINE_IDS = 2048;

/** A text's token count, and its token ids when they were asked for (encodeUpTo). */
export interface Encoded {
  count: number;
  ids: number[] | null;
}

/** The ids as an array (a loop into a sized array: Array.from's iteration is several times slower). */
function arrayOf(ids: Int32Array): number[] {
  const out = new Array<number>(ids.length).fill(0);
  for (let i = 0; i < ids.length; i++) out[i] = ids[i]!;
  return out;
}

/**
 * A chat conversation whose renders are bounded and encoded by the worker (PromptWorker.conversation):
 * its messages are sent once, not with every probe of a truncation search.
 */
export interface Conversation {
  /** `leastTokens` of the conversation rendered without the `drops` messages after its system messages. */
  leastTokens(drops: number, signal?: AbortSignal): Promise<number>;
  /** `encodeUpTo` of the conversation rendered without the `drops` messages after its system messages. */
  encodeUpTo(drops: number, keep: number, signal?: AbortSignal): Promise<Encoded>;
  /** Lets the worker drop the messages and texts it keeps. */
  release(): void;
}

/** A conversation the worker renders: which worker thread has its messages. */
interface WorkerConversation {
  id: number;
  messages: ChatMessage[];
  sentTo: Worker | null;
}

/** A job as queued: what it sends, and how its promise settles. */
interface Pending {
  job: PromptJob;
  conversation?: WorkerConversation;
  resolve(value: unknown): void;
  reject(e: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/** Per tokenizer: its longest token holding a non-whitespace byte (token-bound.ts). */
const solidTokenBytesOf = new WeakMap<MptTokenizer, number>();
/** Per tokenizer: its construction as JSON text, part of what a worker is started with. */
const constructionText = new WeakMap<MptTokenizer, string>();

export interface PromptWorkerOptions {
  /** The chat format `render` uses; one with a Jinja template renders in the worker. */
  format?: PromptFormat;
  /**
   * Texts and id lists up to this long are handled in place (tests: a small number sends
   * everything to the worker). Default INLINE_CHARS to encode, INLINE_BOUND_CHARS to bound,
   * INLINE_IDS to decode.
   */
  inlineChars?: number;
}

export class PromptWorker {
  private worker: Worker | null = null;
  private running: Pending | null = null;
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private closedWith: { reason: unknown } | null = null;
  private readonly solidTokenBytes: number;
  private readonly format: PromptFormat | undefined;
  private readonly inline: { encode: number; bound: number; decode: number };
  private readonly workerData: string;

  constructor(
    private readonly tokenizer: MptTokenizer,
    options: PromptWorkerOptions = {},
  ) {
    this.format = options.format;
    const given = options.inlineChars;
    this.inline = { encode: given ?? INLINE_CHARS, bound: given ?? INLINE_BOUND_CHARS, decode: given ?? INLINE_IDS };
    // Passes over the vocabulary, done once per tokenizer when a server starts, not in a request.
    let n = solidTokenBytesOf.get(tokenizer);
    if (n === undefined) {
      n = longestSolidToken(tokenizer);
      solidTokenBytesOf.set(tokenizer, n);
    }
    this.solidTokenBytes = n;
    let text = constructionText.get(tokenizer);
    if (text === undefined) {
      text = JSON.stringify(tokenizer.construction);
      constructionText.set(tokenizer, text);
    }
    const data: PromptWorkerData = {
      solidTokenBytes: n,
      jinja: this.format?.jinja ?? null,
      builtin: this.format?.builtin ?? null,
    };
    // The construction is spliced in as text: it is serialized once per tokenizer, not per server.
    this.workerData = `{"construction":${text},"rest":${JSON.stringify(data)}}`;
  }

  /**
   * A lower bound on the number of tokens `text` encodes to, from its bytes alone (token-bound.ts):
   * each of its non-whitespace bytes ends up in a token holding such a byte, and no such token of
   * this vocabulary is longer than the longest one. 0 when the tokenizer is not byte-level, or
   * normalizes text other than by NFC.
   */
  leastTokens(text: string, signal?: AbortSignal): Promise<number> {
    if (text.length <= this.inline.bound || this.solidTokenBytes === 0)
      return this.inPlace(signal, () => leastTokens(text, this.solidTokenBytes));
    return this.submit({ id: 0, kind: 'bound', text }, signal) as Promise<number>;
  }

  /** The token ids of `text`, as `tokenizer.encode(text)` gives them; rejects with the signal's reason if it aborts. */
  async encode(text: string, signal?: AbortSignal): Promise<number[]> {
    return (await this.encodeUpTo(text, Infinity, signal)).ids!;
  }

  /**
   * The number of tokens `text` encodes to, and their ids when there are at most `keep` (else
   * null): what a request that refuses a prompt longer than the context needs. A long text's ids
   * stay in the worker: making an array of 300,000 ids costs the event loop 30-200 ms (Array.from
   * more), and a chat truncation encodes several such texts only to learn their lengths.
   */
  async encodeUpTo(text: string, keep: number, signal?: AbortSignal): Promise<Encoded> {
    if (text.length <= this.inline.encode)
      return this.inPlace(signal, () => {
        const ids = this.tokenizer.encode(text);
        return { count: ids.length, ids: ids.length <= keep ? ids : null };
      });
    const got = (await this.submit({ id: 0, kind: 'encode', text, keep }, signal)) as Int32Array | number;
    return typeof got === 'number' ? { count: got, ids: null } : { count: got.length, ids: arrayOf(got) };
  }

  /**
   * The messages rendered by the format this worker was made with (`format.render`); an error in
   * the format is an InputError. A Jinja template renders in the worker, the built-in formats
   * (string concatenation, linear in the text) in place.
   */
  render(messages: readonly ChatMessage[], addGenerationPrompt: boolean, signal?: AbortSignal): Promise<string> {
    const format = this.format;
    if (!format) return Promise.reject(new Error('this PromptWorker was made without a chat format'));
    if (!format.jinja) return this.inPlace(signal, () => format.render(messages, { addGenerationPrompt }));
    const plain = messages.map((m) => ({ role: m.role, content: m.content }));
    return this.submit({ id: 0, kind: 'render', messages: plain, addGenerationPrompt }, signal) as Promise<string>;
  }

  /**
   * The conversation `messages` (rendered with a generation prompt, by the format this worker was
   * made with), to be rendered without some of the messages after its first `system` ones, then
   * bounded or encoded. Renders through a Jinja template, and those of a conversation longer than
   * the in-place limit, are done in the worker, which is sent the messages once and keeps the
   * texts: the probes of a truncation search send and receive a few numbers each.
   */
  conversation(messages: readonly ChatMessage[], system: number): Conversation {
    const format = this.format;
    if (!format) throw new Error('this PromptWorker was made without a chat format');
    let chars = 0;
    for (const m of messages) chars += m.content.length;
    const plain = messages.map((m) => ({ role: m.role, content: m.content }));
    const without = (drops: number) =>
      drops === 0 ? plain : [...plain.slice(0, system), ...plain.slice(system + drops)];
    if (!(format.jinja || (format.builtin && chars > this.inline.encode))) {
      // Small, or a format the worker cannot rebuild: rendered here, each text bounded and encoded as any other.
      const texts = new Map<number, string>();
      const textAfter = (drops: number) => {
        let text = texts.get(drops);
        if (text === undefined) {
          text = format.render(without(drops), { addGenerationPrompt: true });
          texts.set(drops, text);
        }
        return text;
      };
      return {
        leastTokens: async (drops, signal) =>
          this.leastTokens(await this.inPlace(signal, () => textAfter(drops)), signal),
        encodeUpTo: async (drops, keep, signal) =>
          this.encodeUpTo(await this.inPlace(signal, () => textAfter(drops)), keep, signal),
        release: () => {},
      };
    }
    const conv: WorkerConversation = { id: this.nextId++, messages: plain, sentTo: null };
    const job = (drops: number, op: 'bound' | 'encode', keep: number): PromptJob => ({
      id: 0,
      kind: 'chat',
      conversation: conv.id,
      system,
      drops,
      op,
      keep,
    });
    return {
      leastTokens: (drops, signal) => this.submit(job(drops, 'bound', 0), signal, conv) as Promise<number>,
      encodeUpTo: async (drops, keep, signal) => {
        const got = (await this.submit(job(drops, 'encode', keep), signal, conv)) as Int32Array | number;
        return typeof got === 'number' ? { count: got, ids: null } : { count: got.length, ids: arrayOf(got) };
      },
      release: () => {
        if (conv.sentTo && conv.sentTo === this.worker)
          this.worker.postMessage({ id: -1, kind: 'forget', conversation: conv.id } satisfies PromptJob);
        conv.sentTo = null;
      },
    };
  }

  /** `tokenizer.decode(ids)`. */
  decode(ids: readonly number[], signal?: AbortSignal): Promise<string> {
    if (ids.length <= this.inline.decode) return this.inPlace(signal, () => this.tokenizer.decode(ids));
    return this.submit({ id: 0, kind: 'decode', ids: Int32Array.from(ids) }, signal) as Promise<string>;
  }

  /**
   * `tokenizer.decode(ids)` as a JSON string in UTF-8 (jsonStringBytes), made in the worker for a
   * long list: a megabyte of text costs the event loop 50-140 ms busy to escape, measure and encode.
   */
  decodeJson(ids: readonly number[], signal?: AbortSignal): Promise<Uint8Array> {
    if (ids.length <= this.inline.decode)
      return this.inPlace(signal, () => jsonStringBytes(this.tokenizer.decode(ids)));
    return this.submit({ id: 0, kind: 'decodeJson', ids: Int32Array.from(ids) }, signal) as Promise<Uint8Array>;
  }

  /** Each id's own text, `tokenizer.decode([id])`. */
  pieces(ids: readonly number[], signal?: AbortSignal): Promise<string[]> {
    if (ids.length <= this.inline.decode)
      return this.inPlace(signal, () => ids.map((id) => this.tokenizer.decode([id])));
    return this.submit({ id: 0, kind: 'pieces', ids: Int32Array.from(ids) }, signal) as Promise<string[]>;
  }

  /**
   * JSON.parse's message for `text`, or null when it parses: a large request body refused by the
   * parse in turns (json-in-turns.ts) gets the message of a whole parse, which costs the event loop
   * as long as the body is large.
   */
  jsonError(text: string, signal?: AbortSignal): Promise<string | null> {
    return this.submit({ id: 0, kind: 'jsonError', text }, signal) as Promise<string | null>;
  }

  /**
   * The trie of the first `vocabSize` token ids' bytes, for constrained decoding (vocabulary.ts):
   * a pass over the whole vocabulary, 100-500 ms, built in the worker and handed over as buffers.
   */
  async constraintTrie(vocabSize: number, signal?: AbortSignal): Promise<TokenTrie> {
    return new TokenTrie((await this.submit({ id: 0, kind: 'trie', vocabSize }, signal)) as TokenTrieParts);
  }

  /**
   * The JSON-constraint mask of `schema` (its JSON text) after `output`, the bytes of the value so
   * far (json-constraint.ts's MaskWorker): the worker keeps its own vocabulary trie and grammars,
   * so the walk over the vocabulary (up to a second on a busy machine) is done there.
   */
  async constraintMask(
    schema: string,
    vocab: { vocabSize: number; eosIds: readonly number[] },
    output: Uint8Array,
    signal?: AbortSignal,
  ): Promise<Uint32Array> {
    const { vocabSize } = vocab;
    const job: PromptJob = { id: 0, kind: 'mask', schema, vocabSize, eosIds: [...vocab.eosIds], output };
    return (await this.submit(job, signal)) as Uint32Array;
  }

  /**
   * Starts the worker thread now rather than on the first job: a server does when it starts
   * listening, so that its first long prompt or chat template does not wait (seconds on a busy
   * machine) for the thread to build its tokenizer.
   */
  start(): void {
    if (!this.closedWith) this.startWorker();
  }

  /** Stops the worker; what is queued or running rejects with `reason`, and so does every later call. */
  close(reason: unknown): void {
    if (this.closedWith) return;
    this.closedWith = { reason };
    for (const p of [...(this.running ? [this.running] : []), ...this.queue.splice(0)]) this.settle(p, reason);
    this.running = null;
    this.stopWorker();
  }

  private inPlace<T>(signal: AbortSignal | undefined, work: () => T): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith.reason);
    if (signal?.aborted) return Promise.reject(signal.reason);
    try {
      return Promise.resolve(work());
    } catch (e) {
      return Promise.reject(e);
    }
  }

  private submit(job: PromptJob, signal: AbortSignal | undefined, conversation?: WorkerConversation): Promise<unknown> {
    if (this.closedWith) return Promise.reject(this.closedWith.reason);
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<unknown>((resolve, reject) => {
      const p: Pending = {
        job: { ...job, id: this.nextId++ },
        conversation,
        resolve,
        reject,
        signal,
        onAbort: () => this.abort(p, signal!.reason),
      };
      signal?.addEventListener('abort', p.onAbort, { once: true });
      this.queue.push(p);
      this.pump();
    });
  }

  private pump(): void {
    if (this.running || this.closedWith) return;
    const p = this.queue.shift();
    if (!p) return;
    this.running = p;
    try {
      const w = this.startWorker();
      const conv = p.conversation;
      // A conversation's messages go with its first job in this thread (again after a restart).
      if (conv && conv.sentTo !== w && p.job.kind === 'chat') {
        p.job = { ...p.job, messages: conv.messages };
        conv.sentTo = w;
      }
      w.postMessage(p.job);
    } catch (e) {
      this.running = null;
      this.settle(p, e);
      this.pump();
    }
  }

  private startWorker(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./prompt-worker-thread.js', import.meta.url), { workerData: this.workerData });
    // The server's socket keeps the process alive; an idle worker must not.
    w.unref();
    w.on('message', (reply: PromptReply) => {
      const p = this.running;
      if (!p || p.job.id !== reply.id) return;
      this.running = null;
      if ('error' in reply) {
        // The format's own refusals (template errors, its work budget) are the request's fault.
        const e = reply.input ? new InputError(reply.error) : new Error(`${p.job.kind} failed: ${reply.error}`);
        this.settle(p, e);
      } else {
        this.settle(p, null, reply.value);
      }
      this.pump();
    });
    const lost = (why: Error) => {
      if (this.worker !== w) return;
      this.worker = null;
      const p = this.running;
      this.running = null;
      if (p) this.settle(p, why);
      this.pump();
    };
    w.on('error', lost);
    w.on('exit', (code) => lost(new Error(`the prompt worker thread exited (code ${code})`)));
    this.worker = w;
    return w;
  }

  private stopWorker(): void {
    const w = this.worker;
    this.worker = null;
    if (w) void w.terminate();
  }

  private abort(p: Pending, reason: unknown): void {
    const queued = this.queue.indexOf(p);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
    } else if (this.running === p) {
      // Its job may hold the worker for seconds more: stop it, and start afresh for the next.
      this.running = null;
      this.stopWorker();
    } else {
      return;
    }
    this.settle(p, reason);
    this.pump();
  }

  private settle(p: Pending, error: unknown, value?: unknown): void {
    p.signal?.removeEventListener('abort', p.onAbort);
    if (error === null) p.resolve(value);
    else p.reject(error);
  }
}
