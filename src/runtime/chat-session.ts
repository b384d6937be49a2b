/**
 * A multi-turn conversation with a model: the message history, rendered with the model's prompt
 * format at every turn, kept within the context by dropping the oldest turns (the system prompt
 * stays), and a KV cache reused across turns (only the part of the prompt that changed is fed
 * again).
 */
import type { KvCache } from '../backends/backend.js';
import { InputError } from '../errors.js';
import type { ChatMessage } from './chat-template.js';
import { GenerationStream, generateTokens, type GenerateOptions, type GenerateResult } from './generate.js';
import { DEFAULT_MAX_TOKENS } from './generation-sequence.js';
import type { MptModel } from './model.js';

export interface ChatSessionOptions extends GenerateOptions {
  /** System prompt (kept when old turns are dropped). */
  system?: string;
}

export class ChatSession {
  /** The conversation so far (system message first when there is one). */
  messages: ChatMessage[] = [];
  /** How many messages the last `send` dropped to fit the context. */
  lastDropped = 0;
  private cache: KvCache | undefined;
  private cachedIds: number[] = [];
  private busy = false;

  constructor(
    readonly model: MptModel,
    readonly options: ChatSessionOptions = {},
  ) {
    this.reset();
  }

  /** Forgets the conversation (keeps the system prompt). */
  reset(): void {
    this.messages = this.options.system !== undefined ? [{ role: 'system', content: this.options.system }] : [];
    this.cachedIds = [];
    this.cache?.truncate(0);
  }

  /** The history as JSON-ready data. */
  toJSON(): { messages: ChatMessage[] } {
    return { messages: this.messages.map((m) => ({ ...m })) };
  }

  private get ctx(): number {
    return this.options.contextLength ?? this.model.contextLength;
  }

  /**
   * Renders the conversation, dropping the oldest non-system turns while the prompt plus room for
   * the reply (max tokens, at most half the context) does not fit.
   */
  private fit(messages: ChatMessage[]): { messages: ChatMessage[]; ids: number[]; dropped: number } {
    const maxTokens = this.options.maxTokens ?? DEFAULT_MAX_TOKENS;
    const room = Math.max(1, Math.min(maxTokens, Math.floor(this.ctx / 2)));
    let msgs = messages;
    let dropped = 0;
    for (;;) {
      const { ids } = this.model.prepare(msgs, this.options);
      if (ids.length + room <= this.ctx) return { messages: msgs, ids, dropped };
      const first = msgs.findIndex((m) => m.role !== 'system');
      const turns = msgs.length - (first < 0 ? msgs.length : first);
      if (turns <= 1) {
        if (ids.length < this.ctx) return { messages: msgs, ids, dropped };
        throw new InputError(
          `the message is too long: its prompt has ${ids.length} tokens, the context holds ${this.ctx}`,
        );
      }
      // Drop the oldest turn: a user message and the assistant reply after it.
      let n = 1;
      if (msgs[first]!.role === 'user' && msgs[first + 1]?.role === 'assistant' && turns > 2) n = 2;
      msgs = [...msgs.slice(0, first), ...msgs.slice(first + n)];
      dropped += n;
    }
  }

  /**
   * Sends a user message and streams the reply. The reply (even a cut-short one) joins the
   * history when the stream ends.
   */
  send(content: string, options: GenerateOptions = {}): GenerationStream {
    if (this.busy)
      throw new InputError('a reply is still being generated: finish or stop it before sending the next message');
    const candidate: ChatMessage[] = [...this.messages, { role: 'user', content }];
    const { messages, ids, dropped } = this.fit(candidate);
    this.lastDropped = dropped;
    const merged: GenerateOptions = { ...this.options, ...options };
    const prepared = this.model.prepare(messages, merged).options;
    const runner = this.model.runner;
    if (!this.cache) this.cache = runner.createCache({ capacity: this.ctx });
    const cache = this.cache;
    const cachedIds = this.cachedIds;
    this.busy = true;
    const onFinish = (r: GenerateResult) => {
      this.busy = false;
      this.messages = [...messages, { role: 'assistant', content: r.text }];
      this.cachedIds = [...ids, ...r.tokens].slice(0, cache.length);
    };
    const self = this;
    return new GenerationStream((finish) =>
      (async function* () {
        try {
          return yield* generateTokens(runner, ids, {
            contextLength: self.ctx,
            ...prepared,
            tokenizer: self.model.tokenizer,
            cache,
            cachedIds,
            onFinish: (r) => {
              onFinish(r);
              finish(r);
            },
          });
        } catch (e) {
          // The cache may now hold anything: forget what it held.
          self.cachedIds = [];
          cache.truncate(0);
          throw e;
        } finally {
          self.busy = false;
        }
      })(),
    );
  }

  /** Frees the KV cache. */
  dispose(): void {
    this.cache?.dispose();
    this.cache = undefined;
    this.cachedIds = [];
  }
}
