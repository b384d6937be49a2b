/**
 * A file on a web server as a ByteSource: every read is one HTTP `Range: bytes=a-b` request
 * (several in flight), so a checkpoint is read tensor by tensor, never downloaded whole. Opening
 * asks for the first byte: a 206 answer proves Range support and its Content-Range gives the size
 * (a HEAD request's Content-Length when a cross-origin answer hides Content-Range). A server that
 * ignores Range answers 200 with the whole file: a small file (a config.json) is then kept in
 * memory, a large one is a RangeNotSupportedError.
 */
import { FetchError, FormatError, InputError, MptError, RangeNotSupportedError } from '../errors.js';
import { bytesSource, checkRange, type ByteSource } from './byte-source.js';

export interface UrlSourceOptions {
  /** Headers for every request (an Authorization header for a gated Hugging Face repository, say). */
  headers?: Readonly<Record<string, string>>;
  /** Most range requests in flight at once per file (default 6, what browsers allow per host on HTTP/1.1). */
  maxInFlight?: number;
  /** Largest file accepted whole from a server that ignores Range (default WHOLE_FILE_LIMIT). */
  wholeFileLimit?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

/** Files up to this size may come whole from a server without Range support (config and tokenizer files do). */
export const WHOLE_FILE_LIMIT = 64 << 20;
const DEFAULT_MAX_IN_FLIGHT = 6;

interface ContentRange {
  /** First and last byte of the answer; undefined for `bytes *\/size` (a 416 answer). */
  start?: number;
  end?: number;
  /** The whole file's size; undefined when the server wrote `*`. */
  total?: number;
}

function parseContentRange(header: string | null): ContentRange | undefined {
  if (header === null) return undefined;
  const m = /^\s*bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(header);
  if (m === null) return undefined;
  const num = (s: string | undefined) => (s === undefined || s === '*' ? undefined : Number(s));
  const out: ContentRange = {};
  const start = num(m[1]);
  const end = num(m[2]);
  const total = num(m[3]);
  if (start !== undefined) out.start = start;
  if (end !== undefined) out.end = end;
  if (total !== undefined) out.total = total;
  return out;
}

function describeFailure(e: unknown): string {
  const err = e as Error & { cause?: { message?: string; code?: string } };
  const cause = err.cause?.code ?? err.cause?.message;
  return cause === undefined ? err.message : `${err.message} (${cause})`;
}

/** The error for an HTTP answer that is neither the range nor the file. */
function httpError(url: string, res: Response, what: string): FetchError {
  const status = `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
  const hint =
    res.status === 401 || res.status === 403
      ? ': a gated or private repository needs an access token (an Authorization header)'
      : res.status === 404 || res.status === 410
        ? ': no such file'
        : '';
  return new FetchError(`cannot read ${what} from ${url}: ${status}${hint}`, { status: res.status });
}

function notRanges(url: string, size: string): RangeNotSupportedError {
  return new RangeNotSupportedError(
    `${url}: the server ignores HTTP Range requests and sent the whole file (${size}), so it cannot be read` +
      ' piece by piece; serve it from a server that supports byte ranges, or open a downloaded copy',
    { status: 200 },
  );
}

/** Discards an answer's body (so its connection can be reused) without waiting for it. */
function discard(res: Response): void {
  res.body?.cancel().catch(() => {});
}

/** Streams an answer's body into `dest`, which it must fill exactly. */
async function readBody(res: Response, dest: Uint8Array, url: string, what: string): Promise<void> {
  if (res.body === null) {
    if (dest.length === 0) return;
    throw new FetchError(`${url}: the answer for ${what} has no body`);
  }
  const reader = res.body.getReader();
  let done = 0;
  try {
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      if (done + chunk.value.length > dest.length) {
        throw new FetchError(`${url}: the server sent more than the ${dest.length} bytes asked for ${what}`);
      }
      dest.set(chunk.value, done);
      done += chunk.value.length;
    }
  } finally {
    reader.releaseLock();
  }
  if (done !== dest.length) {
    throw new FetchError(`${url}: the answer for ${what} ended after ${done} of ${dest.length} bytes`);
  }
}

/** Reads a whole body of unknown length, refusing one longer than `limit`. */
async function readWhole(res: Response, url: string, limit: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  if (res.body !== null) {
    const reader = res.body.getReader();
    for (;;) {
      const chunk = await reader.read();
      if (chunk.done) break;
      total += chunk.value.length;
      if (total > limit) {
        await reader.cancel().catch(() => {});
        throw notRanges(url, `over ${limit} bytes`);
      }
      chunks.push(chunk.value);
    }
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

class UrlSource implements ByteSource {
  private readonly controller = new AbortController();
  private closed = false;
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly size: number,
    private readonly fetcher: typeof fetch,
    private readonly headers: Readonly<Record<string, string>>,
    private readonly maxInFlight: number,
  ) {}

  async read(offset: number, length: number, what = 'data'): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(offset, out, what);
    return out;
  }

  async readInto(offset: number, dest: Uint8Array, what = 'data'): Promise<void> {
    this.checkOpen(what);
    checkRange(this, offset, dest.length, what);
    if (dest.length === 0) return;
    await this.acquire();
    try {
      this.checkOpen(what);
      const last = offset + dest.length - 1;
      const res = await this.request(`bytes=${offset}-${last}`, what);
      if (res.status !== 206) {
        discard(res);
        throw res.status === 200 ? notRanges(this.name, `${this.size} bytes`) : httpError(this.name, res, what);
      }
      const range = parseContentRange(res.headers.get('content-range'));
      if (range !== undefined && (range.start !== offset || range.end !== last)) {
        discard(res);
        throw new FetchError(
          `${this.name}: asked for bytes ${offset}-${last} (${what}), the server sent ${range.start}-${range.end}`,
        );
      }
      if (range?.total !== undefined && range.total !== this.size) {
        discard(res);
        throw new FormatError(`${this.name} changed while open: it had ${this.size} bytes, now ${range.total}`);
      }
      await readBody(res, dest, this.name, what);
    } catch (e) {
      if (this.closed) throw new MptError(`${this.name} was closed while reading ${what}`, { cause: e });
      if (e instanceof MptError) throw e;
      throw new FetchError(`cannot read ${what} from ${this.name}: ${describeFailure(e)}`, { cause: e });
    } finally {
      this.release();
    }
  }

  private request(range: string, what: string): Promise<Response> {
    return this.fetcher(this.name, {
      headers: { ...this.headers, Range: range },
      signal: this.controller.signal,
    }).catch((e: unknown) => {
      throw new FetchError(`cannot read ${what} from ${this.name}: ${describeFailure(e)}`, { cause: e });
    });
  }

  private checkOpen(what: string): void {
    if (this.closed) throw new MptError(`${this.name} was already closed (reading ${what})`);
  }

  private async acquire(): Promise<void> {
    if (this.active < this.maxInFlight) {
      this.active++;
      return;
    }
    // release() hands its slot straight to the first waiter, so `active` stays counted.
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next !== undefined) next();
    else this.active--;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.controller.abort();
  }
}

/** The size from a HEAD request's Content-Length (for answers whose Content-Range is hidden). */
async function sizeFromHead(
  url: string,
  fetcher: typeof fetch,
  headers: Readonly<Record<string, string>>,
): Promise<number> {
  let res: Response;
  try {
    res = await fetcher(url, { method: 'HEAD', headers: { ...headers } });
  } catch (e) {
    throw new FetchError(`cannot read the size of ${url}: ${describeFailure(e)}`, { cause: e });
  }
  if (!res.ok) throw httpError(url, res, 'the size');
  const length = res.headers.get('content-length');
  const size = length === null ? Number.NaN : Number(length);
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new FetchError(`cannot read the size of ${url}: the server sends neither Content-Range nor Content-Length`);
  }
  return size;
}

/**
 * Opens the file at `url` (http or https) for positioned reads. A missing file is a FetchError
 * with status 404; a server without Range support, a RangeNotSupportedError (unless the file is
 * small enough to keep whole, see UrlSourceOptions.wholeFileLimit).
 */
export async function openUrlSource(url: string | URL, options: UrlSourceOptions = {}): Promise<ByteSource> {
  let href: string;
  try {
    const parsed = new URL(String(url));
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      throw new Error(`${parsed.protocol} is not http(s)`);
    href = parsed.href;
  } catch (e) {
    throw new InputError(`${String(url)} is not an http(s) URL: ${(e as Error).message}`, { cause: e });
  }
  // Called through an arrow: a browser's fetch throws "Illegal invocation" when called as a method of another object.
  const custom = options.fetch;
  const fetcher: typeof fetch = (input, init) => (custom ? custom(input, init) : globalThis.fetch(input, init));
  const headers = options.headers ?? {};
  const limit = options.wholeFileLimit ?? WHOLE_FILE_LIMIT;
  let res: Response;
  try {
    res = await fetcher(href, { headers: { ...headers, Range: 'bytes=0-0' } });
  } catch (e) {
    throw new FetchError(`cannot fetch ${href}: ${describeFailure(e)}`, { cause: e });
  }
  const range = parseContentRange(res.headers.get('content-range'));
  if (res.status === 206 || res.status === 416) {
    discard(res);
    // 416: nothing to serve at byte 0, so the file is empty; its size comes as `bytes */0`.
    const size = range?.total ?? (res.status === 416 ? 0 : await sizeFromHead(href, fetcher, headers));
    const maxInFlight = Math.max(1, Math.floor(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT));
    return new UrlSource(href, size, fetcher, headers, maxInFlight);
  }
  if (res.status === 200) {
    const length = res.headers.get('content-length');
    if (length !== null && Number(length) > limit) {
      discard(res);
      throw notRanges(href, `${length} bytes`);
    }
    try {
      return bytesSource(await readWhole(res, href, limit), href);
    } catch (e) {
      if (e instanceof MptError) throw e;
      throw new FetchError(`cannot fetch ${href}: ${describeFailure(e)}`, { cause: e });
    }
  }
  discard(res);
  throw httpError(href, res, 'the file');
}
