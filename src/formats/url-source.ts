/**
 * A file on a web server as a ByteSource, read with HTTP `Range: bytes=a-b` requests, so that a
 * checkpoint is read tensor by tensor, never downloaded whole. Reads share few, large answers
 * (range-reads.ts): the loader's reads in file order are served by requests of up to 64 MiB,
 * several in flight, each streamed straight into the buffers of the reads it serves. Opening asks
 * for the first MiB: a 206 answer proves Range support, its Content-Range gives the size (a HEAD
 * request's Content-Length when a cross-origin answer hides Content-Range), and its body serves
 * the reads of the header. A server that ignores Range answers 200 with the whole file: a small
 * file (a config.json) is then kept in memory, a large one is a RangeNotSupportedError.
 */
import { FetchError, FormatError, InputError, MptError, RangeNotSupportedError } from '../errors.js';
import { bytesSource, checkRange, type ByteSource } from './byte-source.js';
import { describeFailure, RangeReads } from './range-reads.js';

export interface UrlSourceOptions {
  /** Headers for every request (an Authorization header for a gated Hugging Face repository, say). */
  headers?: Readonly<Record<string, string>>;
  /** Most range requests in flight at once per file (default 6, what browsers allow per host on HTTP/1.1). */
  maxInFlight?: number;
  /**
   * Bytes the first request asks for, and any request that continues none before it (default
   * MIN_REQUEST); a request continuing another asks for twice as many as that one, up to
   * `maxRequestBytes` (default MAX_REQUEST). Reads within a request's range share its answer.
   */
  minRequestBytes?: number;
  maxRequestBytes?: number;
  /** Largest file accepted whole from a server that ignores Range (default WHOLE_FILE_LIMIT). */
  wholeFileLimit?: number;
  /** The fetch to use (default: the global one). */
  fetch?: typeof fetch;
}

/** Files up to this size may come whole from a server without Range support (config and tokenizer files do). */
export const WHOLE_FILE_LIMIT = 64 << 20;
const DEFAULT_MAX_IN_FLIGHT = 6;
/** The first request's size: a GGUF header is read in 1 MiB pieces (gguf.ts). */
export const MIN_REQUEST = 1 << 20;
/** The most a request that continues another asks for. */
export const MAX_REQUEST = 64 << 20;

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

/** Sends a request for `range` (a Range header's value) with the source's headers. */
function requester(href: string, fetcher: typeof fetch, headers: Readonly<Record<string, string>>) {
  return (range: string, what: string, signal?: AbortSignal): Promise<Response> =>
    fetcher(href, { headers: { ...headers, Range: range }, ...(signal ? { signal } : {}) }).catch((e: unknown) => {
      throw new FetchError(`cannot read ${what} from ${href}: ${describeFailure(e)}`, { cause: e });
    });
}

/** The body of a 206 answer holding exactly bytes [start, end) of the file of `size` bytes, or the error it is. */
function rangeBody(href: string, size: number, res: Response, start: number, end: number, what: string) {
  const last = end - 1;
  if (res.status !== 206) {
    discard(res);
    throw res.status === 200 ? notRanges(href, `${size} bytes`) : httpError(href, res, what);
  }
  const range = parseContentRange(res.headers.get('content-range'));
  if (range !== undefined && (range.start !== start || range.end !== last)) {
    discard(res);
    throw new FetchError(
      `${href}: asked for bytes ${start}-${last} (${what}), the server sent ${range.start}-${range.end}`,
    );
  }
  if (range?.total !== undefined && range.total !== size) {
    discard(res);
    throw new FormatError(`${href} changed while open: it had ${size} bytes, now ${range.total}`);
  }
  if (res.body === null) throw new FetchError(`${href}: the answer for ${what} has no body`);
  return res.body;
}

class UrlSource implements ByteSource {
  private readonly reads: RangeReads;

  constructor(
    readonly name: string,
    readonly size: number,
    request: ReturnType<typeof requester>,
    o: { maxInFlight: number; minRequest: number; maxRequest: number },
  ) {
    this.reads = new RangeReads({
      name,
      size,
      maxStreams: o.maxInFlight,
      minRequest: o.minRequest,
      maxRequest: o.maxRequest,
      open: async (start, end, what, signal) =>
        rangeBody(name, size, await request(`bytes=${start}-${end - 1}`, what, signal), start, end, what),
    });
  }

  /** Serves the reads that follow from the rest of the answer that opened the file. */
  adopt(start: number, end: number, body: ReadableStream<Uint8Array>): void {
    this.reads.adopt(start, end, body);
  }

  async read(offset: number, length: number, what = 'data'): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(offset, out, what);
    return out;
  }

  async readInto(offset: number, dest: Uint8Array, what = 'data'): Promise<void> {
    this.reads.checkOpen(what);
    checkRange(this, offset, dest.length, what);
    if (dest.length === 0) return;
    await this.reads.readInto(offset, dest, what);
  }

  async close(): Promise<void> {
    this.reads.close();
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
  const minRequest = Math.max(1, Math.floor(options.minRequestBytes ?? MIN_REQUEST));
  const maxRequest = Math.max(minRequest, Math.floor(options.maxRequestBytes ?? MAX_REQUEST));
  const maxInFlight = Math.max(1, Math.floor(options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT));
  // The first request opens the file and asks for its first bytes: the reads of its header follow.
  let res: Response;
  try {
    res = await fetcher(href, { headers: { ...headers, Range: `bytes=0-${minRequest - 1}` } });
  } catch (e) {
    throw new FetchError(`cannot fetch ${href}: ${describeFailure(e)}`, { cause: e });
  }
  const range = parseContentRange(res.headers.get('content-range'));
  if (res.status === 416) {
    // Nothing to serve at byte 0, so the file is empty (its size comes as `bytes */0`).
    discard(res);
    return new UrlSource(href, range?.total ?? 0, requester(href, fetcher, headers), {
      maxInFlight,
      minRequest,
      maxRequest,
    });
  }
  if (res.status === 206) {
    let size: number;
    try {
      size = range?.total ?? (await sizeFromHead(href, fetcher, headers));
    } catch (e) {
      discard(res);
      throw e;
    }
    const source = new UrlSource(href, size, requester(href, fetcher, headers), {
      maxInFlight,
      minRequest,
      maxRequest,
    });
    const end = Math.min(size, minRequest);
    if (end > 0) source.adopt(0, end, rangeBody(href, size, res, 0, end, `bytes 0-${end - 1}`));
    else discard(res);
    return source;
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
