/**
 * A model file by URL through the browser's offline copies (model-cache.ts). A complete copy is
 * read from disk: offline without touching the network, online after one HEAD request that checks
 * the server's file is still the one copied (ETag, Last-Modified, size; a copy of a changed file is
 * dropped and downloaded again). Without a copy the file is downloaded whole into the store (one
 * GET, streamed to disk), then read from there. Where it cannot be kept (no store, too little
 * quota, a write that fails) the file is read over the network with Range requests as without a
 * cache, and the console says why once.
 */
import { FetchError } from '../errors.js';
import { blobSource, type ByteSource } from './byte-source.js';
import { modelStore, storageLeft, type CachedModel, type StoredRecord } from './model-cache.js';
import { describeFailure } from './range-reads.js';
import { openUrlSource, type UrlSourceOptions } from './url-source.js';

export interface CachedUrlOptions extends UrlSourceOptions {
  /** Download progress of a file not yet cached (bytes done, bytes total). */
  onDownload?: (done: number, total: number) => void;
  /** Receives why a file could not be cached (default: console.warn, once per reason). */
  onWarning?: (message: string) => void;
}

/** What identifies the server's current file: its size and validators. */
interface Validators {
  bytes: number | undefined;
  etag: string | undefined;
  lastModified: string | undefined;
}

function validatorsOf(res: Response): Validators {
  const length = res.headers.get('content-length');
  const bytes = length === null ? Number.NaN : Number(length);
  return {
    bytes: Number.isSafeInteger(bytes) && bytes >= 0 ? bytes : undefined,
    etag: res.headers.get('etag') ?? undefined,
    lastModified: res.headers.get('last-modified') ?? undefined,
  };
}

/** Whether the server's file differs from the copy (a validator the server does not send is no evidence). */
export function changedSince(copy: CachedModel, now: Validators): boolean {
  if (now.bytes !== undefined && now.bytes !== copy.bytes) return true;
  if (now.etag !== undefined && copy.etag !== undefined) return now.etag !== copy.etag;
  if (now.lastModified !== undefined && copy.lastModified !== undefined) return now.lastModified !== copy.lastModified;
  return false;
}

/** Whether the browser says it has no network (then a copy is used without asking the server). */
export function offline(): boolean {
  return (globalThis as { navigator?: { onLine?: boolean } }).navigator?.onLine === false;
}

const warned = new Set<string>();

function warnOnce(options: CachedUrlOptions, message: string): void {
  if (options.onWarning) {
    options.onWarning(message);
    return;
  }
  if (warned.has(message)) return;
  warned.add(message);
  console.warn(message);
}

function fetcherOf(options: CachedUrlOptions): typeof fetch {
  const custom = options.fetch;
  return (input, init) => (custom ? custom(input, init) : globalThis.fetch(input, init));
}

/** The server's current validators, or undefined when it cannot be asked (offline, an error). */
export async function head(url: string, options: CachedUrlOptions): Promise<Validators | undefined> {
  try {
    const res = await fetcherOf(options)(url, { method: 'HEAD', headers: { ...options.headers }, cache: 'no-store' });
    return res.ok ? validatorsOf(res) : undefined;
  } catch {
    return undefined;
  }
}

function reportProgress(body: ReadableStream<Uint8Array>, total: number, options: CachedUrlOptions) {
  const onDownload = options.onDownload;
  if (onDownload === undefined) return body;
  let done = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, out) {
        done += chunk.length;
        onDownload(done, total);
        out.enqueue(chunk);
      },
    }),
  );
}

function isQuotaError(e: unknown): boolean {
  return (e as { name?: string })?.name === 'QuotaExceededError';
}

/** What download did: kept a complete copy, found no such file (404, 410), or could not keep it. */
export type Downloaded = 'kept' | 'absent' | 'not-kept';

/**
 * Downloads `url` whole into the store: as the copy of `url`, or as the entry `key` of the folder's
 * copy `partOf` (cached-url-folder.ts). 'not-kept' (with a warning where the store failed) when it
 * cannot be kept; a network failure is thrown.
 */
export async function download(
  url: string,
  options: CachedUrlOptions,
  entry?: { key: string; partOf: string },
): Promise<Downloaded> {
  const store = await modelStore();
  if (store === undefined) return 'not-kept';
  let res: Response;
  try {
    res = await fetcherOf(options)(url, { headers: { ...options.headers }, cache: 'no-store' });
  } catch (e) {
    throw new FetchError(`cannot fetch ${url}: ${describeFailure(e)}`, { cause: e });
  }
  const v = validatorsOf(res);
  if (res.status === 404 || res.status === 410) {
    res.body?.cancel().catch(() => {});
    return 'absent';
  }
  if (!res.ok || res.body === null || v.bytes === undefined) {
    // The range reader gives the right error for a failed answer, and reads one without a length.
    res.body?.cancel().catch(() => {});
    return 'not-kept';
  }
  const left = await storageLeft();
  if (left !== undefined && left < v.bytes) {
    res.body.cancel().catch(() => {});
    warnOnce(
      options,
      `mpt-ts: ${url} (${v.bytes} bytes) is not kept for offline use: the browser lets this site store ${left} more bytes; it is read over the network`,
    );
    return 'not-kept';
  }
  const meta: StoredRecord = { url: entry?.key ?? url, bytes: v.bytes, savedAt: Date.now() };
  if (entry !== undefined) meta.partOf = entry.partOf;
  if (v.etag !== undefined) meta.etag = v.etag;
  if (v.lastModified !== undefined) meta.lastModified = v.lastModified;
  try {
    await store.save(meta, reportProgress(res.body, v.bytes, options));
    return 'kept';
  } catch (e) {
    const why = isQuotaError(e) ? 'the browser refused more storage (quota exceeded)' : (e as Error).message;
    warnOnce(options, `mpt-ts: ${url} is not kept for offline use: ${why}; it is read over the network`);
    return 'not-kept';
  }
}

/**
 * Opens the file at `url` for positioned reads through the offline copies (see the module's
 * comment); where there is no store (Node), exactly openUrlSource.
 */
export async function openCachedUrlSource(url: string | URL, options: CachedUrlOptions = {}): Promise<ByteSource> {
  const href = new URL(String(url)).href;
  const store = await modelStore();
  if (store === undefined) return openUrlSource(href, options);
  const hit = await store.get(href);
  if (hit !== undefined) {
    const now = offline() ? undefined : await head(href, options);
    if (now === undefined || !changedSince(hit.meta, now)) return blobSource(hit.blob, href);
    await store.delete(href);
  }
  if ((await download(href, options)) === 'kept') {
    const copy = await store.get(href);
    if (copy !== undefined) return blobSource(copy.blob, href);
  }
  return openUrlSource(href, options);
}
