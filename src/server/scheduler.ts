/**
 * Continuous batching: one loop owns the model runner and, at every step, runs ONE
 * `runner.forward(batch)` holding every active sequence — a decoding sequence contributes its
 * last sampled token, a sequence still reading its prompt contributes a chunk of it (chunked
 * prefill keeps a long prompt from stalling everyone else's decoding). Sequences join as soon as
 * a slot is free and leave the moment they finish; each has its own KV cache, freed at once.
 *
 * The scheduler knows nothing of sampling or HTTP: a `SequenceClient` turns logits into the next
 * token and hears how its sequence ended. A request's choices are the runtime's
 * `GenerationSequence`s behind that interface (sequence.ts), so every per-token rule is the one
 * `generate()` applies. Why this loop builds its own batches instead of calling the runtime's
 * `stepSequences`: the batch changes at every step (sequences join and leave), one prefill budget
 * is shared by all the prompts being read, the caches are the scheduler's (created when a sequence
 * is admitted, copied from another choice's prompt or taken from a kept one, kept after it ends),
 * embedding requests read prompts in the same batches, and a failing or cancelled sequence must
 * end alone while the others go on. `stepSequences` steps a fixed set with caches of their own.
 */
import type { KvCache, KvType, ModelRunner, SequenceInput, SequenceOutput } from '../backends/backend.js';
import { UnsupportedError } from '../errors.js';
import type { SampleRequest } from '../backends/sampling/sampler.js';
import { PROMPT_LOGITS_CHUNK } from '../runtime/generation-sequence.js';

export type EndReason = 'finished' | 'cancelled' | 'error' | 'shutdown';

export interface SequenceClient {
  /** Prompt token ids (at least one). */
  readonly prompt: readonly number[];
  /** KV positions the sequence may need (prompt + new tokens); the cache is sized to it. */
  readonly capacity: number;
  /**
   * Receives the logits after the prompt (first call) and after each fed token, and the token
   * the runner chose for its sampleRequest() if it did; returns the next token to feed, or null
   * when the sequence is complete. Runs inside the scheduler's loop: it
   * must be quick and must not throw (an exception ends only this sequence, with 'error').
   */
  next(logits: Float32Array, token?: number): number | null;
  /**
   * Optional: called before a step whose logits this client will read; a request returned here
   * lets the runner choose the token where the logits are (in parallel with the other rows), and
   * `next` then receives it as `token` (when the runner could choose it).
   */
  sampleRequest?(): SampleRequest | null;
  /**
   * Optional: null when the client can take its next logits now; else a promise that settles
   * (never rejects) when it can (its grammar's mask is being computed on another thread). Asked
   * before each step that feeds the sequence (and right after `next`), so the mask is computed
   * while the forward runs: the step goes on, its logits are kept, and `next` receives them once
   * the promise settles (at once, between the other sequences' steps); the sequence's next step
   * waits for that.
   */
  ready?(): Promise<void> | null;
  /**
   * Optional: receives the logits of every prompt position, chunk by chunk (rows of vocab_size
   * floats, the first for prompt position `first`), before `next` receives the last row. The
   * rows are views valid during the call only. Such a sequence reads its whole prompt itself: it
   * neither copies another choice's cache nor takes a kept one.
   */
  readonly promptLogits?: (rows: Float32Array, first: number) => void;
  /**
   * Optional (embeddings): receives the final hidden states (after norm_f) of every prompt
   * position, chunk by chunk (rows of d_model floats, the first for prompt position `first`),
   * valid during the call only. Such a sequence only reads its prompt: once it is read, the
   * sequence ends ('finished') without `next` being called. It reads the whole prompt itself.
   */
  readonly promptHidden?: (rows: Float32Array, first: number) => void;
  /** Called exactly once when the sequence leaves the scheduler. */
  onEnd(reason: EndReason, error?: unknown): void;
}

export interface SchedulerOptions {
  /** Most sequences decoding at once (the batch size of a step). */
  maxActive: number;
  /** Most sequences waiting for a slot; submit() refuses beyond it. */
  maxQueue: number;
  /** Prompt tokens processed per step, over all prefilling sequences. */
  prefillChunk?: number;
  kvType?: KvType;
  /**
   * Caches of finished sequences kept for later prompts that start with the same tokens (a chat
   * client re-sends the whole conversation every turn): at most this many, least recently used
   * dropped first, and dropped at once when a new sequence needs their memory. 0 = off (default).
   */
  prefixCache?: number;
}

/** Thrown by submit() when the queue is full. */
export class QueueFullError extends Error {
  constructor(readonly queued: number) {
    super(`the request queue is full (${queued} waiting)`);
    this.name = 'QueueFullError';
  }
}

/** A handle on a submitted sequence. */
export interface SequenceHandle {
  /** Stops the sequence (its cache is disposed at once, or right after the step in flight). */
  cancel(reason?: 'cancelled' | 'shutdown'): void;
}

interface Slot {
  client: SequenceClient;
  cache: KvCache | null;
  /** Prompt tokens already fed. */
  fed: number;
  /** The token to feed at the next step once the prompt is in. */
  pending: number;
  ended: boolean;
  cancelRequested: 'cancelled' | 'shutdown' | null;
  inFlight: boolean;
  /**
   * Another sequence of the same request with the same prompt (choices of n > 1): this one waits
   * until that one has read all but the last prompt token, copies its cache, and feeds only the
   * last token itself. Null once copied, or when it reads its prompt itself.
   */
  leader: Slot | null;
  /** Tokens fed after the prompt (the cache holds prompt[0, fed) then these). */
  decoded: number[];
  /** Its client is not ready for logits (`SequenceClient.ready`); the loop is woken when it is. */
  waiting: boolean;
  /**
   * A step's output that came back while `waiting`: the last row's logits (a copy: the runner
   * reuses its buffer) and the runner's token, handed to `next` once the client is ready.
   */
  held: { logits: Float32Array; token: number | undefined } | null;
}

/** A finished sequence's cache, kept for prompts that start with `ids` (its contents). */
interface Retained {
  ids: number[];
  cache: KvCache;
}

/** Counters the server exports as metrics. */
export interface SchedulerStats {
  queued: number;
  active: number;
  steps: number;
  /** Tokens sampled (first tokens included) since start. */
  generatedTokens: number;
  promptTokens: number;
  /** Prompt tokens found in a kept cache (prefixCache) instead of being processed. */
  cachedPromptTokens: number;
  /** Sequences in the last step's batch. */
  lastBatchSize: number;
  /** Generated tokens per second over the last few seconds. */
  decodeTokensPerSecond: number;
}

const RATE_WINDOW_MS = 5000;

export class Scheduler {
  private readonly queue: Slot[] = [];
  private readonly active: Slot[] = [];
  private wake: (() => void) | null = null;
  private running = false;
  private closed = false;
  private loopDone: Promise<void> | null = null;
  private readonly prefillChunk: number;
  private steps = 0;
  private generated = 0;
  private promptTokens = 0;
  private cachedPromptTokens = 0;
  /** Kept caches, least recently used first. */
  private readonly retained: Retained[] = [];
  private lastBatch = 0;
  /** (time, tokens) per recent step, for the decode rate. */
  private readonly recent: Array<[number, number]> = [];

  constructor(
    private readonly runner: ModelRunner,
    private readonly options: SchedulerOptions,
  ) {
    if (!(options.maxActive >= 1)) throw new RangeError('maxActive must be >= 1');
    if (!(options.maxQueue >= 0)) throw new RangeError('maxQueue must be >= 0');
    this.prefillChunk = options.prefillChunk ?? 256;
  }

  /** Sequences waiting for a slot. */
  get queued(): number {
    return this.queue.length;
  }

  /** Free places in the queue (a request of n sequences needs n). */
  get queueRoom(): number {
    return this.options.maxQueue - this.queue.length + Math.max(0, this.options.maxActive - this.active.length);
  }

  get activeCount(): number {
    return this.active.length;
  }

  stats(): SchedulerStats {
    const now = performance.now();
    while (this.recent.length && now - this.recent[0]![0] > RATE_WINDOW_MS) this.recent.shift();
    let tokens = 0;
    for (const [, n] of this.recent) tokens += n;
    const span = this.recent.length ? Math.max(now - this.recent[0]![0], 250) : RATE_WINDOW_MS;
    return {
      queued: this.queue.length,
      active: this.active.length,
      steps: this.steps,
      generatedTokens: this.generated,
      promptTokens: this.promptTokens,
      cachedPromptTokens: this.cachedPromptTokens,
      lastBatchSize: this.lastBatch,
      decodeTokensPerSecond: this.recent.length ? (tokens * 1000) / span : 0,
    };
  }

  /**
   * Adds sequences atomically (all of a request's choices, or none): throws QueueFullError when
   * they do not fit.
   */
  submitAll(clients: SequenceClient[]): SequenceHandle[] {
    if (this.closed) throw new QueueFullError(this.queue.length);
    if (clients.length > this.queueRoom && (this.queue.length > 0 || this.active.length > 0))
      throw new QueueFullError(this.queue.length);
    const leaders = new Map<string, Slot>();
    const handles = clients.map((client) => {
      if (client.prompt.length === 0) throw new RangeError('a sequence needs at least one prompt token');
      const slot: Slot = {
        client,
        cache: null,
        fed: 0,
        pending: -1,
        ended: false,
        cancelRequested: null,
        inFlight: false,
        leader: null,
        decoded: [],
        waiting: false,
        held: null,
      };
      if (this.canCopyCaches && client.prompt.length > 1 && !client.promptLogits && !client.promptHidden) {
        const key = promptKey(client.prompt);
        const leader = leaders.get(key);
        if (leader) slot.leader = leader;
        else leaders.set(key, slot);
      }
      this.queue.push(slot);
      return { cancel: (reason: 'cancelled' | 'shutdown' = 'cancelled') => this.cancel(slot, reason) };
    });
    this.ensureLoop();
    this.wake?.();
    return handles;
  }

  /** Cancels everything and waits for the loop to stop. */
  async close(): Promise<void> {
    this.closed = true;
    for (const s of [...this.queue, ...this.active]) this.cancel(s, 'shutdown');
    this.wake?.();
    await this.loopDone;
    while (this.retained.length) this.retained.shift()!.cache.dispose();
  }

  /** Keeps a finished sequence's cache for later prompts with the same start (prefixCache). */
  private keep(slot: Slot, cache: KvCache): void {
    const limit = this.options.prefixCache ?? 0;
    const ids = [...slot.client.prompt.slice(0, slot.fed), ...slot.decoded];
    if (limit <= 0 || cache.length !== ids.length || ids.length === 0) {
      cache.dispose();
      return;
    }
    this.retained.push({ ids, cache });
    while (this.retained.length > limit) this.retained.shift()!.cache.dispose();
  }

  /**
   * The kept cache sharing the longest start with this slot's prompt, taken out and truncated to
   * that start; at least the last prompt token is left to feed, so the first logits are computed.
   * A cache too small for the new sequence is copied into one of its size (when the backend
   * copies caches). Null when none shares a token, or the copy cannot be allocated.
   */
  private takeKept(slot: Slot): KvCache | null {
    const prompt = slot.client.prompt;
    let best = -1,
      bestLen = 0;
    this.retained.forEach((r, i) => {
      if (r.cache.kvType !== (this.options.kvType ?? r.cache.kvType)) return;
      const n = Math.min(r.ids.length, prompt.length - 1);
      let l = 0;
      while (l < n && r.ids[l] === prompt[l]) l++;
      if (l > bestLen) {
        best = i;
        bestLen = l;
      }
    });
    if (best < 0) return null;
    const [r] = this.retained.splice(best, 1);
    let cache = r!.cache;
    cache.truncate(bestLen);
    if (cache.capacity < slot.client.capacity) {
      let bigger: KvCache | null = null;
      try {
        if (this.canCopyCaches) bigger = this.copyCache(cache, slot.client.capacity);
      } catch {
        // no memory for the copy: read the prompt
      }
      cache.dispose();
      if (!bigger) return null;
      cache = bigger;
    }
    this.cachedPromptTokens += bestLen;
    return cache;
  }

  /** Whether the runner copies caches (copyCache, or saveCache + restoreCache). */
  private get canCopyCaches(): boolean {
    const r = this.runner;
    return (
      typeof r.copyCache === 'function' || (typeof r.saveCache === 'function' && typeof r.restoreCache === 'function')
    );
  }

  /** A new cache of `capacity` positions holding `from`'s contents (throws when out of memory). */
  private copyCache(from: KvCache, capacity: number): KvCache {
    if (this.runner.copyCache) return this.runner.copyCache(from, capacity);
    return this.runner.restoreCache!(this.runner.saveCache!(from), { capacity, kvType: from.kvType });
  }

  private cancel(slot: Slot, reason: 'cancelled' | 'shutdown'): void {
    if (slot.ended) return;
    const qi = this.queue.indexOf(slot);
    if (qi >= 0) {
      this.queue.splice(qi, 1);
      this.end(slot, reason);
      return;
    }
    slot.cancelRequested = reason;
    // Not part of the step in flight: free its cache now.
    if (!slot.inFlight) this.retire(slot, reason);
    this.wake?.();
  }

  private end(slot: Slot, reason: EndReason, error?: unknown): void {
    if (slot.ended) return;
    slot.ended = true;
    slot.held = null;
    if (slot.cache) {
      // An embedding's cache holds no reply: chat prompts are what the kept caches are for.
      if (reason === 'finished' && !this.closed && !slot.client.promptHidden) this.keep(slot, slot.cache);
      else slot.cache.dispose();
      slot.cache = null;
    }
    try {
      slot.client.onEnd(reason, error);
    } catch {
      // A client's bookkeeping failing must not stop the loop.
    }
  }

  /** Removes an active slot and ends it. */
  private retire(slot: Slot, reason: EndReason, error?: unknown): void {
    const i = this.active.indexOf(slot);
    if (i >= 0) this.active.splice(i, 1);
    this.end(slot, reason, error);
  }

  /**
   * For a slot waiting on its leader: once the leader has read all but the last prompt token,
   * copies those positions of its cache (the same keys and values this slot would compute) and
   * returns true; the slot then feeds the last prompt token itself, so its first logits are its
   * own. False while the leader is still reading. When the leader ended, or the copy fails (no
   * memory), the slot reads its prompt itself.
   */
  private copyPrompt(s: Slot): boolean {
    const leader = s.leader!;
    const n = s.client.prompt.length - 1;
    if (leader.ended || !leader.cache) {
      s.leader = null;
      return true;
    }
    if (leader.fed < n) return false;
    s.leader = null;
    try {
      const copy = this.copyCache(leader.cache, s.client.capacity);
      copy.truncate(n);
      s.cache!.dispose();
      s.cache = copy;
      s.fed = n;
    } catch {
      // read the prompt itself
    }
    return true;
  }

  /**
   * Asks the client whether it is ready for logits (once per wait): when not, `waiting` is set
   * until it is; then the logits held for it meanwhile are handed over at once, and the loop is
   * woken. A client whose `ready` throws counts as ready (its `next` fails instead).
   */
  private askReady(s: Slot): void {
    if (s.waiting || s.ended) return;
    let wait: Promise<void> | null | undefined;
    try {
      wait = s.client.ready?.();
    } catch {
      return;
    }
    if (!wait) return;
    s.waiting = true;
    const done = () => {
      s.waiting = false;
      const held = s.held;
      if (held && !s.ended) {
        s.held = null;
        // Between steps or during one (s is not in it: a held slot sits steps out).
        if (this.deliver(s, held.logits, held.token)) this.recent.push([performance.now(), 1]);
      }
      this.wake?.();
    };
    wait.then(done, done);
  }

  /**
   * Hands the client its logits: the token it returns is fed at its next step (whose mask is
   * asked for now), or the sequence ends. Returns whether a token was sampled.
   */
  private deliver(s: Slot, logits: Float32Array, token: number | undefined): boolean {
    let next: number | null;
    try {
      next = s.client.next(logits, token);
    } catch (e) {
      this.retire(s, 'error', e);
      return false;
    }
    this.generated++;
    if (next === null) this.retire(s, 'finished');
    else {
      s.pending = next;
      this.askReady(s);
    }
    return true;
  }

  /** The client's sample request for this step (a client that throws samples on its own). */
  private request(s: Slot): SampleRequest | null {
    try {
      return s.client.sampleRequest?.() ?? null;
    } catch {
      return null;
    }
  }

  /** One chunk of a promptHidden sequence read on its own, with the reference backend's hidden states. */
  private async hiddenApart(s: Slot, tokens: number[]): Promise<void> {
    let rows: Float32Array | undefined;
    let failure: unknown = null;
    try {
      const options = { logits: 'none', outputHiddenStates: true } as const;
      const [o] = await this.runner.forward([{ cache: s.cache!, tokens }], options);
      rows = o!.hiddenStates?.at(-1);
    } catch (e) {
      failure = e;
    }
    s.inFlight = false;
    if (s.ended) return;
    if (s.cancelRequested) {
      this.retire(s, s.cancelRequested);
      return;
    }
    if (failure) {
      this.retire(s, 'error', failure);
      return;
    }
    this.hiddenRead(s, tokens.length, rows);
  }

  /** Hands a promptHidden sequence its chunk's rows; ends it once its prompt is read. */
  private hiddenRead(s: Slot, n: number, rows: Float32Array | undefined): void {
    try {
      if (!rows) throw new UnsupportedError(`the ${this.runner.backendName} backend does not return hidden states`);
      s.client.promptHidden!(rows, s.fed);
    } catch (e) {
      this.retire(s, 'error', e);
      return;
    }
    s.fed += n;
    this.promptTokens += n;
    if (s.fed === s.client.prompt.length) this.retire(s, 'finished');
  }

  private ensureLoop(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop().finally(() => {
      this.running = false;
    });
  }

  private admit(): void {
    while (this.active.length < this.options.maxActive && this.queue.length) {
      const slot = this.queue[0]!;
      const kept = slot.leader || slot.client.promptLogits || slot.client.promptHidden ? null : this.takeKept(slot);
      if (kept) {
        slot.cache = kept;
        slot.fed = kept.length;
      } else {
        for (;;) {
          try {
            slot.cache = this.runner.createCache({ capacity: slot.client.capacity, kvType: this.options.kvType });
            break;
          } catch (e) {
            // Out of KV memory: kept caches go first; then wait for a running sequence to finish.
            if (this.retained.length) {
              this.retained.shift()!.cache.dispose();
              continue;
            }
            if (this.active.length > 0) return;
            this.queue.shift();
            this.end(slot, 'error', e);
            slot.cache = null;
            break;
          }
        }
        if (!slot.cache) continue;
      }
      this.queue.shift();
      this.active.push(slot);
    }
  }

  private async loop(): Promise<void> {
    for (;;) {
      this.admit();
      if (this.active.length === 0) {
        if (this.closed) return;
        await new Promise<void>((r) => {
          this.wake = r;
        });
        this.wake = null;
        continue;
      }
      const batch: SequenceInput[] = [];
      const members: Slot[] = [];
      const requests: Array<SampleRequest | null> = [];
      // Hidden-state chunks of runners that cannot return them in the batch: one call each, after it.
      const apart: Array<{ s: Slot; tokens: number[] }> = [];
      let budget = this.prefillChunk;
      // Prompt rows whose logits are read (echo with logprobs), over all sequences: each is a
      // log-softmax over the vocabulary on the event loop when the step returns.
      let scoredRows = PROMPT_LOGITS_CHUNK;
      for (const s of this.active) {
        const prompt = s.client.prompt;
        if (s.leader && !this.copyPrompt(s)) continue; // its leader has not read the prompt yet
        if (s.fed < prompt.length) {
          if (budget <= 0) continue;
          if (s.client.promptHidden) {
            const n = Math.min(prompt.length - s.fed, budget);
            budget -= n;
            const tokens = prompt.slice(s.fed, s.fed + n);
            if (!this.runner.finalHidden) {
              apart.push({ s, tokens });
              continue;
            }
            batch.push({ cache: s.cache!, tokens, logits: 'none', finalHidden: true });
            requests.push(null);
          } else if (s.client.promptLogits) {
            // Every row's logits: a smaller chunk bounds the logits buffer (rows × vocab floats).
            const n = Math.min(prompt.length - s.fed, budget, scoredRows);
            if (n <= 0) continue;
            this.askReady(s);
            budget -= n;
            scoredRows -= n;
            batch.push({ cache: s.cache!, tokens: prompt.slice(s.fed, s.fed + n), logits: 'all' });
            requests.push(null);
          } else {
            const n = Math.min(prompt.length - s.fed, budget);
            const last = s.fed + n === prompt.length;
            // Asked at the first chunk, so that the first mask is computed while the prompt is read.
            this.askReady(s);
            budget -= n;
            batch.push({ cache: s.cache!, tokens: prompt.slice(s.fed, s.fed + n) });
            requests.push(last ? this.request(s) : null);
          }
        } else {
          // Its last logits wait for their mask: it feeds nothing before it has sampled.
          if (s.held) continue;
          this.askReady(s);
          batch.push({ cache: s.cache!, tokens: [s.pending] });
          requests.push(this.request(s));
        }
        members.push(s);
      }
      if (members.length === 0 && apart.length === 0) {
        // Every active sequence waits for its grammar's mask: sleep until one is ready (askReady
        // wakes the loop), a request comes or one is cancelled.
        await new Promise<void>((r) => {
          this.wake = r;
        });
        this.wake = null;
        continue;
      }
      for (const s of members) s.inFlight = true;
      for (const a of apart) a.s.inFlight = true;
      let outputs: SequenceOutput[] | null = null;
      let failure: unknown = null;
      try {
        const sample = requests.some((r) => r) ? requests : undefined;
        if (batch.length) outputs = await this.runner.forward(batch, { logits: 'last', reuseLogits: true, sample });
      } catch (e) {
        failure = e;
      }
      for (const s of members) s.inFlight = false;
      this.steps++;
      this.lastBatch = members.length;
      let sampled = 0;
      for (let i = 0; i < members.length; i++) {
        const s = members[i]!;
        if (s.ended) continue;
        if (s.cancelRequested) {
          this.retire(s, s.cancelRequested);
          continue;
        }
        if (failure || !outputs) {
          this.retire(s, 'error', failure);
          continue;
        }
        const prompt = s.client.prompt;
        let logits = outputs[i]!.logits;
        if (s.client.promptHidden) {
          this.hiddenRead(s, batch[i]!.tokens.length, outputs[i]!.finalHidden);
          continue;
        }
        if (s.fed < prompt.length) {
          const n = batch[i]!.tokens.length;
          if (s.client.promptLogits) {
            try {
              s.client.promptLogits(logits, s.fed);
            } catch (e) {
              this.retire(s, 'error', e);
              continue;
            }
            logits = logits.subarray(logits.length - logits.length / n);
          }
          s.fed += n;
          this.promptTokens += n;
          if (s.fed < prompt.length) continue;
        } else s.decoded.push(batch[i]!.tokens[0]!);
        // The mask asked for before the step has not come: keep the row until it does.
        if (s.waiting) s.held = { logits: logits.slice(), token: outputs[i]!.token };
        else if (this.deliver(s, logits, outputs[i]!.token)) sampled++;
      }
      // After the batch's rows are read: those may be views of a buffer the next call reuses.
      for (const { s, tokens } of apart) await this.hiddenApart(s, tokens);
      if (sampled) this.recent.push([performance.now(), sampled]);
      if (this.recent.length > 4096) this.recent.splice(0, this.recent.length - 4096);
      // Let the event loop deliver streamed chunks, new requests and disconnects between steps.
      await new Promise<void>((r) => setImmediate(r));
    }
  }
}

/** Each prompt list's ids joined, made once per list: n choices of a request share theirs. */
const promptKeys = new WeakMap<readonly number[], string>();
function promptKey(ids: readonly number[]): string {
  let key = promptKeys.get(ids);
  if (key === undefined) {
    key = ids.join(',');
    promptKeys.set(ids, key);
  }
  return key;
}
