/**
 * Positioned reads of a remote file served from few, large ranged answers, streamed straight into
 * the readers' buffers. Asking a server for every read separately is slow where requests are
 * costly: a loader reading a 739 MB GGUF in 16 MiB pieces made 152 requests, and in Chromium each
 * answer's body streams several times slower than one long answer (bench/browser.ts). So a read
 * here joins an answer already under way that will reach its bytes (a "stream"), or starts one
 * that asks for more than the read: the first is small (`minRequest`), and a read that continues
 * where a stream ends starts one twice as long, up to `maxRequest`, as an operating system reads
 * ahead of a file read in order. A stream reads its body only while some read waits for bytes
 * ahead of it, so a stream nobody needs costs what the network buffers, not the rest of its range;
 * one idle for IDLE_MS, or whose slot a new stream needs, is cancelled. The small runs of bytes a
 * stream passes that no read asked for yet (a norm's weights between two matrices) are kept, up to
 * KEEP_BUDGET bytes, for the read that asks for them later.
 */
import { FetchError, MptError } from '../errors.js';
import { closedError } from './byte-source.js';

/** Opens bytes [start, end) of the file: a body holding exactly those bytes, its answer checked. */
export type OpenRange = (
  start: number,
  end: number,
  what: string,
  signal: AbortSignal,
) => Promise<ReadableStream<Uint8Array>>;

export interface RangeReadsOptions {
  name: string;
  size: number;
  open: OpenRange;
  /** Most streams open at once. */
  maxStreams: number;
  /** Bytes asked for by a stream that continues no other (at least the read's own length). */
  minRequest: number;
  /** Most bytes asked for by a stream that continues another (a read longer than this asks for its own length). */
  maxRequest: number;
}

/** A read waiting for a stream's bytes: `dest` receives the file's bytes from offset `at`. */
interface Claim {
  at: number;
  dest: Uint8Array;
  filled: number;
  what: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** One ranged answer: bytes [start, end) of the file, arriving in order; `pos` is the next one. */
interface Stream {
  readonly start: number;
  readonly end: number;
  /** How many bytes it asked for (a stream that continues it asks for twice as many). */
  readonly window: number;
  pos: number;
  claims: Claim[];
  body: Promise<ReadableStream<Uint8Array>>;
  reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  readonly abort: AbortController;
  pumping: boolean;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

/** A stream idle this long (no read waiting for its bytes) is cancelled, releasing its connection. */
export const IDLE_MS = 5000;
/** Most bytes kept of runs no read asked for yet. */
export const KEEP_BUDGET = 16 << 20;
/** A read this far (at most) beyond the bytes a stream will deliver anyway joins it rather than asking anew. */
export const MAX_SKIP = 1 << 20;

/** Where a finished or cancelled stream ended and how much it read ahead (to see a read continue it). */
interface PastEnd {
  end: number;
  window: number;
}

/** A piece of the file kept from a stream: `bytes` are the file's bytes from offset `at`. */
interface Kept {
  at: number;
  bytes: Uint8Array;
}

export class RangeReads {
  private readonly streams = new Set<Stream>();
  private readonly waiting: (() => void)[] = [];
  private readonly ends: PastEnd[] = [];
  private kept: Kept[] = [];
  private keptBytes = 0;
  private closed = false;

  constructor(private readonly o: RangeReadsOptions) {}

  /**
   * Makes `body` (bytes [start, end) of the file, already asked for) the first stream: the answer
   * that opened the file serves the reads that follow it.
   */
  adopt(start: number, end: number, body: ReadableStream<Uint8Array>): void {
    const s = this.stream(start, end, end - start, Promise.resolve(body), new AbortController());
    this.idle(s);
  }

  /** Fills `dest` with the file's bytes from `offset` (the range already checked against the size). */
  async readInto(offset: number, dest: Uint8Array, what: string): Promise<void> {
    const parts: Promise<void>[] = [];
    let at = offset;
    let rest = dest;
    while (rest.length > 0) {
      this.checkOpen(what);
      const fromKept = this.fromKept(at, rest);
      if (fromKept > 0) {
        at += fromKept;
        rest = rest.subarray(fromKept);
        continue;
      }
      let s = this.joinable(at);
      if (s === undefined) {
        if (!this.room()) {
          // Wait for a stream to end or fall idle, then look again (one may cover `at` by then).
          await new Promise<void>((resolve) => this.waiting.push(resolve));
          continue;
        }
        s = this.begin(at, rest.length);
      }
      const n = Math.min(rest.length, s.end - at);
      const part = this.claim(s, at, rest.subarray(0, n), what);
      // Promise.all below still sees a failure; this keeps one that comes while the loop waits
      // for a stream slot (or throws because the source closed) from being an unhandled rejection.
      part.catch(() => {});
      parts.push(part);
      at += n;
      rest = rest.subarray(n);
    }
    await Promise.all(parts);
  }

  /** Cancels every stream; reads still waiting fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of [...this.streams]) this.cancel(s, new MptError(`${this.o.name} was closed while reading`));
    this.wakeWaiting();
    this.kept = [];
    this.keptBytes = 0;
  }

  /** Throws when the source was closed (before a read of `what` starts). */
  checkOpen(what: string): void {
    if (this.closed) throw closedError(this.o.name, what);
  }

  /** Copies the kept bytes from `at` on into `dest`; how many (0 when none is kept at `at`). */
  private fromKept(at: number, dest: Uint8Array): number {
    for (const k of this.kept) {
      if (k.at <= at && at < k.at + k.bytes.length) {
        const n = Math.min(dest.length, k.at + k.bytes.length - at);
        dest.set(k.bytes.subarray(at - k.at, at - k.at + n));
        return n;
      }
    }
    return 0;
  }

  /** The open stream that will reach `at` with the fewest bytes no read asked for, if near enough. */
  private joinable(at: number): Stream | undefined {
    let best: Stream | undefined;
    let bestGap = Number.POSITIVE_INFINITY;
    for (const s of this.streams) {
      if (at < s.pos || at >= s.end) continue;
      const frontier = s.claims.reduce((f, c) => Math.max(f, c.at + c.dest.length), s.pos);
      const gap = at - frontier;
      if (gap <= MAX_SKIP && gap < bestGap) {
        best = s;
        bestGap = gap;
      }
    }
    return best;
  }

  /** Whether a new stream may start now (after cancelling an idle one to make room, if need be). */
  private room(): boolean {
    if (this.streams.size < this.o.maxStreams) return true;
    for (const s of this.streams) {
      if (s.claims.length === 0) {
        this.cancel(s, undefined);
        return true;
      }
    }
    return false;
  }

  /**
   * Wakes every read waiting for a stream slot: each looks again, and one that no longer needs a
   * slot (its bytes were kept, or a stream now covers them) must not use up the only wake-up.
   */
  private wakeWaiting(): void {
    for (const wake of this.waiting.splice(0)) wake();
  }

  /** Starts a stream at `at` for a read of `length` bytes, reading ahead as the module says. */
  private begin(at: number, length: number): Stream {
    const before = this.ends.find((e) => e.end <= at && at - e.end <= MAX_SKIP);
    const ahead = before === undefined ? this.o.minRequest : Math.min(this.o.maxRequest, 2 * before.window);
    const end = Math.min(this.o.size, at + Math.max(length, ahead));
    const abort = new AbortController();
    const body = this.o.open(at, end, `bytes ${at}-${end - 1}`, abort.signal);
    body.catch(() => {}); // its failure reaches the claims through pump()
    return this.stream(at, end, end - at, body, abort);
  }

  private stream(
    start: number,
    end: number,
    window: number,
    body: Promise<ReadableStream<Uint8Array>>,
    abort: AbortController,
  ): Stream {
    const s: Stream = {
      start,
      end,
      window,
      pos: start,
      claims: [],
      body,
      reader: undefined,
      abort,
      pumping: false,
      idleTimer: undefined,
    };
    this.streams.add(s);
    this.ends.unshift({ end, window });
    this.ends.length = Math.min(this.ends.length, 16);
    return s;
  }

  private claim(s: Stream, at: number, dest: Uint8Array, what: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      s.claims.push({ at, dest, filled: 0, what, resolve, reject });
      if (s.idleTimer !== undefined) clearTimeout(s.idleTimer);
      s.idleTimer = undefined;
      void this.pump(s);
    });
  }

  /** Reads `s`'s body while a claim waits for bytes, handing each chunk to the claims it serves. */
  private async pump(s: Stream): Promise<void> {
    if (s.pumping) return;
    s.pumping = true;
    try {
      s.reader ??= (await s.body).getReader();
      while (s.claims.length > 0) {
        const chunk = await s.reader.read();
        if (chunk.done) {
          throw new FetchError(
            `${this.o.name}: the answer for bytes ${s.start}-${s.end - 1} ended after ${s.pos - s.start} bytes`,
          );
        }
        this.deliver(s, chunk.value);
      }
      // Read to the body's end, so that its connection is free for the next request.
      if (s.pos >= s.end && !(await s.reader.read()).done) {
        throw new FetchError(`${this.o.name}: the server sent more than the bytes ${s.start}-${s.end - 1} asked for`);
      }
    } catch (e) {
      this.cancel(s, e);
      return;
    } finally {
      s.pumping = false;
    }
    if (s.pos >= s.end) this.finish(s);
    else this.idle(s);
  }

  /** Hands the file's bytes `chunk` (from s.pos on) to the claims; keeps the runs none asked for. */
  private deliver(s: Stream, chunk: Uint8Array): void {
    const from = s.pos;
    const to = from + chunk.length;
    if (to > s.end) {
      throw new FetchError(`${this.o.name}: the server sent more than the bytes ${s.start}-${s.end - 1} asked for`);
    }
    const served: [number, number][] = [];
    s.claims = s.claims.filter((c) => {
      const lo = Math.max(from, c.at + c.filled);
      const hi = Math.min(to, c.at + c.dest.length);
      if (lo < hi) {
        c.dest.set(chunk.subarray(lo - from, hi - from), lo - c.at);
        c.filled += hi - lo;
        served.push([lo, hi]);
      }
      if (c.filled < c.dest.length) return true;
      c.resolve();
      return false;
    });
    served.sort((a, b) => a[0] - b[0]);
    let at = from;
    for (const [lo, hi] of [...served, [to, to] as [number, number]]) {
      if (lo > at) this.keep(at, chunk.subarray(at - from, lo - from));
      at = Math.max(at, hi);
    }
    s.pos = to;
  }

  /** Keeps a copy of bytes no read asked for, dropping the oldest kept beyond KEEP_BUDGET. */
  private keep(at: number, bytes: Uint8Array): void {
    if (bytes.length > KEEP_BUDGET / 4) return;
    this.kept.push({ at, bytes: bytes.slice() });
    this.keptBytes += bytes.length;
    while (this.keptBytes > KEEP_BUDGET) this.keptBytes -= this.kept.shift()!.bytes.length;
  }

  /** A stream with no claim left: cancelled after IDLE_MS unless a read joins it; its slot may be taken. */
  private idle(s: Stream): void {
    if (!this.streams.has(s)) return;
    s.idleTimer = setTimeout(() => {
      if (s.claims.length === 0) this.cancel(s, undefined);
    }, IDLE_MS);
    (s.idleTimer as { unref?: () => void }).unref?.();
    this.wakeWaiting();
  }

  private finish(s: Stream): void {
    this.streams.delete(s);
    s.reader?.releaseLock();
    this.wakeWaiting();
  }

  /** Ends `s` early: its claims fail with `error` (as a FetchError naming each read), its body is dropped. */
  private cancel(s: Stream, error: unknown): void {
    if (!this.streams.delete(s)) return;
    if (s.idleTimer !== undefined) clearTimeout(s.idleTimer);
    for (const c of s.claims.splice(0)) c.reject(this.failure(error, c.what));
    s.abort.abort();
    if (s.reader !== undefined) s.reader.cancel().catch(() => {});
    else s.body.then((b) => b.cancel().catch(() => {})).catch(() => {});
    this.wakeWaiting();
  }

  private failure(e: unknown, what: string): Error {
    if (e instanceof MptError) return e;
    return new FetchError(`cannot read ${what} from ${this.o.name}: ${describeFailure(e)}`, { cause: e });
  }
}

/**
 * Why a request failed, for a message: the error's own message and, where fetch wraps the network's
 * error (Node's "fetch failed"), that error's code or message, which says what went wrong.
 */
export function describeFailure(e: unknown): string {
  const err = e as (Error & { cause?: { message?: string; code?: string } }) | undefined;
  const cause = err?.cause?.code ?? err?.cause?.message;
  const message = String(err?.message ?? e);
  return cause === undefined ? message : `${message} (${cause})`;
}
