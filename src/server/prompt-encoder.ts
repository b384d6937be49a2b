/**
 * Prompt text → token ids without holding the server's event loop. Short texts are encoded in
 * place; longer ones by a worker thread with its own copy of the tokenizer, one text at a time
 * (a megabyte of text costs a second or more of tokenizing, during which health checks and every
 * stream would otherwise wait). A text whose client left, whose time ran out, or whose
 * server is stopping is dropped from the queue, or the worker computing it is stopped.
 *
 * Also the fewest tokens a text can encode to, judged from its bytes alone, so a prompt that
 * cannot fit the context is refused before anyone tokenizes it.
 */
import { Worker } from 'node:worker_threads';
import type { MptTokenizer } from '../runtime/tokenizer.js';
import type { EncodeJob, EncodeReply } from './tokenize-worker.js';

/** Texts up to this many UTF-16 units are encoded in place (tens of milliseconds at worst). */
export const INLINE_CHARS = 2048;

interface Pending {
  job: EncodeJob;
  resolve(ids: number[]): void;
  reject(e: unknown): void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/** JavaScript's whitespace (what `trim` removes, and so what added tokens' lstrip/rstrip may drop) above U+007F. */
function isWideSpace(c: number): boolean {
  return (
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000 ||
    c === 0xfeff
  );
}

/** UTF-8 bytes of the text's non-whitespace characters (a lone surrogate, 3 bytes once encoded, counts 2). */
function solidBytes(text: string): { bytes: number; ascii: boolean } {
  let bytes = 0;
  let ascii = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      if (c !== 0x20 && (c < 0x09 || c > 0x0d)) bytes++;
      continue;
    }
    ascii = false;
    if (isWideSpace(c)) continue;
    bytes += c < 0x800 ? 2 : c >= 0xd800 && c <= 0xdfff ? 2 : 3;
  }
  return { bytes, ascii };
}

const ASCII_SPACE_BYTES = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20]);

/** Per tokenizer: its longest token holding a byte other than ASCII whitespace (0 when no bound applies). */
const solidTokenBytesOf = new WeakMap<MptTokenizer, number>();
/** Per tokenizer: its construction as JSON text, what a worker is started with. */
const constructionText = new WeakMap<MptTokenizer, string>();

function measureSolidTokens(tok: MptTokenizer): number {
  const normalizer = (tok.construction[0] as { normalizer?: { type?: unknown } | null }).normalizer;
  if (!tok.isByteLevel || (normalizer != null && normalizer.type !== 'NFC')) return 0;
  let longest = 0;
  const single = new Set<number>();
  for (let id = 0; id < tok.size; id++) {
    const b = tok.tokenBytes(id);
    if (b.length === 1) single.add(b[0]!);
    if (b.length > longest && b.some((x) => !ASCII_SPACE_BYTES.has(x))) longest = b.length;
  }
  // A vocabulary without a token for every byte UTF-8 uses (all but C0, C1, F5-FF) drops what it
  // cannot spell: no bound then.
  for (let b = 0; b < 0xf5; b++) if (b !== 0xc0 && b !== 0xc1 && !single.has(b)) return 0;
  return longest;
}

export class PromptEncoder {
  private worker: Worker | null = null;
  private running: Pending | null = null;
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private closedWith: { reason: unknown } | null = null;
  private readonly solidTokenBytes: number;

  private readonly workerData: string;

  constructor(
    private readonly tokenizer: MptTokenizer,
    private readonly inlineChars = INLINE_CHARS,
  ) {
    // Passes over the vocabulary, done once per tokenizer when a server starts, not in a request.
    let n = solidTokenBytesOf.get(tokenizer);
    if (n === undefined) {
      n = measureSolidTokens(tokenizer);
      solidTokenBytesOf.set(tokenizer, n);
    }
    this.solidTokenBytes = n;
    let text = constructionText.get(tokenizer);
    if (text === undefined) {
      text = JSON.stringify(tokenizer.construction);
      constructionText.set(tokenizer, text);
    }
    this.workerData = text;
  }

  /**
   * A lower bound on the number of tokens `text` encodes to, from its bytes alone: each of its
   * non-whitespace bytes ends up in a token that holds such a byte, and no such token of this
   * vocabulary is longer than `solidTokenBytes`. (Whitespace does not count: GPT-NeoX packs up to
   * 512 spaces in one token.) 0 when the tokenizer is not byte-level, or normalizes text other
   * than by NFC (which can only shorten it by composing characters).
   */
  minTokens(text: string): number {
    if (this.solidTokenBytes === 0) return 0;
    const raw = solidBytes(text);
    const bytes = raw.ascii ? raw.bytes : Math.min(raw.bytes, solidBytes(text.normalize('NFC')).bytes);
    return Math.ceil(bytes / this.solidTokenBytes);
  }

  /** The token ids of `text`, as `tokenizer.encode(text)` gives them; rejects with the signal's reason if it aborts. */
  encode(text: string, signal?: AbortSignal): Promise<number[]> {
    if (this.closedWith) return Promise.reject(this.closedWith.reason);
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (text.length <= this.inlineChars) {
      try {
        return Promise.resolve(this.tokenizer.encode(text));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return new Promise<number[]>((resolve, reject) => {
      const p: Pending = {
        job: { id: this.nextId++, text },
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

  /** Stops the worker; what is queued or running rejects with `reason`, and so does every later call. */
  close(reason: unknown): void {
    if (this.closedWith) return;
    this.closedWith = { reason };
    for (const p of [...(this.running ? [this.running] : []), ...this.queue.splice(0)]) this.settle(p, reason);
    this.running = null;
    this.stopWorker();
  }

  private pump(): void {
    if (this.running || this.closedWith) return;
    const p = this.queue.shift();
    if (!p) return;
    this.running = p;
    try {
      this.startWorker().postMessage(p.job);
    } catch (e) {
      this.running = null;
      this.settle(p, e);
      this.pump();
    }
  }

  private startWorker(): Worker {
    if (this.worker) return this.worker;
    const w = new Worker(new URL('./tokenize-worker.js', import.meta.url), { workerData: this.workerData });
    // The server's socket keeps the process alive; an idle worker must not.
    w.unref();
    w.on('message', (reply: EncodeReply) => {
      const p = this.running;
      if (!p || p.job.id !== reply.id) return;
      this.running = null;
      if ('ids' in reply) this.settle(p, null, Array.from(reply.ids));
      else this.settle(p, new Error(`tokenizing failed: ${reply.error}`));
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
    w.on('exit', (code) => lost(new Error(`the tokenizer worker exited (code ${code})`)));
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
      // Its text may hold the worker for seconds more: stop it, and start afresh for the next.
      this.running = null;
      this.stopWorker();
    } else {
      return;
    }
    this.settle(p, reason);
    this.pump();
  }

  private settle(p: Pending, error: unknown, ids?: number[]): void {
    p.signal?.removeEventListener('abort', p.onAbort);
    if (ids) p.resolve(ids);
    else p.reject(error);
  }
}
