/**
 * A browser's offline copies of model files downloaded by URL: in the Origin Private File System
 * (`navigator.storage.getDirectory()`), or in Cache Storage (`caches`) where a browser lacks
 * OPFS's writable files. A copy is read back as a Blob (positioned reads by slicing, the file
 * stays on disk), never as one ArrayBuffer. A copy counts only once complete: OPFS writes the data
 * file, then a small record beside it that marks it complete (a download cut short leaves no
 * record, and its data file is discarded); Cache Storage stores an answer only once its whole body
 * has been read. A model folder by URL (cached-url-folder.ts) keeps each of its files so, as part of
 * the folder, and then a record of the folder alone that lists them: written last, it marks the
 * folder complete. Node has neither store: there every function here finds no store and does nothing.
 */

/** One cached model: a file, or a model folder (a URL ending in `/`) with its files. */
export interface CachedModel {
  /** The URL it was downloaded from. */
  url: string;
  /** Its size in bytes (a folder: its files' sizes together). */
  bytes: number;
  /** When it was saved (milliseconds since the epoch, as Date.now()). */
  savedAt: number;
  /** The server's ETag and Last-Modified headers when it was downloaded (to see it change). */
  etag?: string;
  lastModified?: string;
  /** A folder's files kept, by name. */
  files?: string[];
  /** A folder's files the server does not have (404), by name: offline they are not asked for. */
  absent?: string[];
}

/**
 * What the store keeps under a name (`url`): a CachedModel, or a file of a cached folder (`partOf`
 * the folder's copy). A name is a URL; one with a fragment (`#…`) is not the file's own copy but an
 * entry of another copy holding the same file (cached-url-folder.ts), kept apart from it.
 */
export interface StoredRecord extends CachedModel {
  partOf?: string;
}

/** A cached file: its record and its bytes as a disk-backed Blob. */
export interface CacheHit {
  meta: StoredRecord;
  blob: Blob;
}

/** Where copies are kept. */
export interface ModelStore {
  readonly kind: 'opfs' | 'cache-storage';
  /** The complete copy of `url`, or undefined. */
  get(url: string): Promise<CacheHit | undefined>;
  /**
   * Writes `body` (exactly `meta.bytes` bytes) as the copy of `meta.url`, then marks it complete.
   * On any failure (a QuotaExceededError, a cut download) nothing of it is kept, and it throws.
   */
  save(meta: StoredRecord, body: ReadableStream<Uint8Array>): Promise<void>;
  /** The record of `url` that has no bytes of its own (a folder's), or undefined. */
  record(url: string): Promise<StoredRecord | undefined>;
  /** Writes a record without bytes (a folder's, once all its files are kept). */
  saveRecord(meta: StoredRecord): Promise<void>;
  /** Every record, the files of folders included. */
  list(): Promise<StoredRecord[]>;
  /** Removes the copy of `url`; false when there was none. */
  delete(url: string): Promise<boolean>;
}

const FOLDER = 'mpt-ts-models';

// The parts of the browser's APIs used here (lib.dom's OPFS types differ between TypeScript versions).
interface WritableFile {
  write(data: Uint8Array | string): Promise<void>;
  close(): Promise<void>;
  abort(reason?: unknown): Promise<void>;
}
interface FileEntry {
  getFile(): Promise<File>;
  createWritable(options?: { keepExistingData?: boolean }): Promise<WritableFile>;
}
interface Folder {
  getFileHandle(name: string, options?: { create?: boolean }): Promise<FileEntry>;
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<Folder>;
  removeEntry(name: string): Promise<void>;
  keys(): AsyncIterableIterator<string>;
}
interface StorageView {
  getDirectory?: () => Promise<Folder>;
  estimate?: () => Promise<{ quota?: number; usage?: number }>;
}

function storage(): StorageView | undefined {
  return (globalThis as unknown as { navigator?: { storage?: StorageView } }).navigator?.storage;
}

function isNotFound(e: unknown): boolean {
  return (e as { name?: string })?.name === 'NotFoundError';
}

/** A file name for a URL: the hex SHA-256 of it (URLs hold characters and lengths file names may not). */
async function keyOf(url: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(url));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

const isNames = (v: unknown) => v === undefined || (Array.isArray(v) && v.every((n) => typeof n === 'string'));

function parseRecord(text: string): StoredRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<StoredRecord>;
    if (typeof r.url !== 'string' || !Number.isSafeInteger(r.bytes) || typeof r.savedAt !== 'number') return undefined;
    if (!isNames(r.files) || !isNames(r.absent) || (r.partOf !== undefined && typeof r.partOf !== 'string'))
      return undefined;
    return r as StoredRecord;
  } catch {
    return undefined;
  }
}

/** OPFS: `<key>.data` holds the bytes, `<key>.json` (written last) the record. */
class OpfsStore implements ModelStore {
  readonly kind = 'opfs';
  constructor(private readonly folder: Folder) {}

  private async readRecord(name: string): Promise<StoredRecord | undefined> {
    try {
      return parseRecord(await (await (await this.folder.getFileHandle(name)).getFile()).text());
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
  }

  async get(url: string): Promise<CacheHit | undefined> {
    const key = await keyOf(url);
    const meta = await this.readRecord(`${key}.json`);
    if (meta === undefined || meta.url !== url) return undefined;
    let blob: File;
    try {
      blob = await (await this.folder.getFileHandle(`${key}.data`)).getFile();
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    return blob.size === meta.bytes ? { meta, blob } : undefined;
  }

  async save(meta: StoredRecord, body: ReadableStream<Uint8Array>): Promise<void> {
    const key = await keyOf(meta.url);
    await this.remove(`${key}.json`);
    const data = await (await this.folder.getFileHandle(`${key}.data`, { create: true })).createWritable();
    let written = 0;
    try {
      const reader = body.getReader();
      for (;;) {
        const chunk = await reader.read();
        if (chunk.done) break;
        written += chunk.value.length;
        if (written > meta.bytes) throw new Error(`${meta.url} sent more than its ${meta.bytes} bytes`);
        await data.write(chunk.value);
      }
      if (written !== meta.bytes) throw new Error(`${meta.url} ended after ${written} of ${meta.bytes} bytes`);
      // Closing commits the written bytes to the file at once (until then they are in a swap file).
      await data.close();
    } catch (e) {
      await data.abort(e).catch(() => {});
      await this.remove(`${key}.data`);
      throw e;
    }
    await this.saveRecord(meta);
  }

  async record(url: string): Promise<StoredRecord | undefined> {
    const meta = await this.readRecord(`${await keyOf(url)}.json`);
    return meta?.url === url ? meta : undefined;
  }

  async saveRecord(meta: StoredRecord): Promise<void> {
    const record = await (
      await this.folder.getFileHandle(`${await keyOf(meta.url)}.json`, { create: true })
    ).createWritable();
    await record.write(JSON.stringify(meta));
    await record.close();
  }

  private async remove(name: string): Promise<boolean> {
    try {
      await this.folder.removeEntry(name);
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  async list(): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for await (const name of this.folder.keys()) {
      if (!name.endsWith('.json')) continue;
      const meta = await this.readRecord(name);
      if (meta !== undefined) out.push(meta);
    }
    return out;
  }

  async delete(url: string): Promise<boolean> {
    const key = await keyOf(url);
    const had = await this.remove(`${key}.json`);
    return (await this.remove(`${key}.data`)) || had;
  }
}

/**
 * The URL under which Cache Storage keeps the entry named `url`. Cache Storage matches URLs without
 * their fragment, so `x#a`, `x#b` and `x` would be one entry: a fragment moves into the query.
 */
function cacheRequestUrl(url: string): string {
  const u = new URL(url);
  if (u.hash === '') return u.href;
  const fragment = u.hash.slice(1);
  u.hash = '';
  u.searchParams.append('mpt-ts-fragment', fragment);
  return u.href;
}

/** Cache Storage: one answer per name (at cacheRequestUrl), its record in headers of our own. */
class CacheStorageStore implements ModelStore {
  readonly kind = 'cache-storage';
  constructor(private readonly cache: Cache) {}

  /** The record an answer holds. */
  private static metaOf(res: Response): StoredRecord | undefined {
    const r = res.headers.get('x-mpt-record');
    return r === null ? undefined : parseRecord(r);
  }

  async get(url: string): Promise<CacheHit | undefined> {
    const res = await this.cache.match(cacheRequestUrl(url));
    if (res === undefined) return undefined;
    const meta = CacheStorageStore.metaOf(res);
    if (meta?.url !== url) return undefined;
    const blob = await res.blob();
    return blob.size === meta.bytes ? { meta, blob } : undefined;
  }

  async save(meta: StoredRecord, body: ReadableStream<Uint8Array>): Promise<void> {
    let written = 0;
    const counted = body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, out) {
          written += chunk.length;
          if (written > meta.bytes) throw new Error(`${meta.url} sent more than its ${meta.bytes} bytes`);
          out.enqueue(chunk);
        },
        flush() {
          if (written !== meta.bytes) throw new Error(`${meta.url} ended after ${written} of ${meta.bytes} bytes`);
        },
      }),
    );
    const headers = { 'content-type': 'application/octet-stream', 'x-mpt-record': JSON.stringify(meta) };
    await this.cache.put(cacheRequestUrl(meta.url), new Response(counted, { headers }));
  }

  async record(url: string): Promise<StoredRecord | undefined> {
    const res = await this.cache.match(cacheRequestUrl(url));
    const meta = res === undefined ? undefined : CacheStorageStore.metaOf(res);
    return meta?.url === url ? meta : undefined;
  }

  async saveRecord(meta: StoredRecord): Promise<void> {
    await this.cache.put(
      cacheRequestUrl(meta.url),
      new Response(null, { headers: { 'x-mpt-record': JSON.stringify(meta) } }),
    );
  }

  async list(): Promise<StoredRecord[]> {
    const out: StoredRecord[] = [];
    for (const req of await this.cache.keys()) {
      const res = await this.cache.match(req);
      const meta = res === undefined ? undefined : CacheStorageStore.metaOf(res);
      if (meta !== undefined && cacheRequestUrl(meta.url) === req.url) out.push(meta);
    }
    return out;
  }

  delete(url: string): Promise<boolean> {
    return this.cache.delete(cacheRequestUrl(url));
  }
}

/** Whether OPFS files can be written here (Safari before 17 has OPFS but no createWritable). */
function writableOpfs(): boolean {
  const proto = (globalThis as { FileSystemFileHandle?: { prototype: object } }).FileSystemFileHandle?.prototype;
  return proto !== undefined && 'createWritable' in proto;
}

let opened: Promise<ModelStore | undefined> | undefined;

async function openStore(): Promise<ModelStore | undefined> {
  const getDirectory = storage()?.getDirectory;
  if (getDirectory !== undefined && writableOpfs()) {
    try {
      const root = await getDirectory.call(storage());
      return new OpfsStore(await root.getDirectoryHandle(FOLDER, { create: true }));
    } catch {
      // OPFS refused (a private window of some browsers): try Cache Storage.
    }
  }
  const caches = (globalThis as { caches?: CacheStorage }).caches;
  if (caches !== undefined) {
    try {
      return new CacheStorageStore(await caches.open(FOLDER));
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** This page's store of model copies, or undefined where there is none (Node, an opaque origin). */
export function modelStore(): Promise<ModelStore | undefined> {
  opened ??= openStore();
  return opened;
}

/** Bytes the origin may still store, where the browser says (navigator.storage.estimate). */
export async function storageLeft(): Promise<number | undefined> {
  try {
    const e = await storage()?.estimate?.();
    return e?.quota === undefined ? undefined : e.quota - (e.usage ?? 0);
  } catch {
    return undefined;
  }
}

/** A record as listed: without the store's own field. */
function listed({ partOf: _, ...meta }: StoredRecord): CachedModel {
  return meta;
}

/** The models kept for offline use in this browser, one entry per file or folder (none in Node). */
export async function listCachedModels(): Promise<CachedModel[]> {
  const store = await modelStore();
  return store === undefined ? [] : (await store.list()).filter((m) => m.partOf === undefined).map(listed);
}

/**
 * Removes the copy of `url` (a folder's: its record first, so a folder half removed is no longer
 * complete, then its files); false when there was none.
 */
export async function removeCopy(store: ModelStore, url: string): Promise<boolean> {
  let had = await store.delete(url);
  for (const m of await store.list()) if (m.partOf === url) had = (await store.delete(m.url)) || had;
  return had;
}

/** Removes the cached copy of the model file or folder at `url`; false when there was none. */
export async function deleteCachedModel(url: string | URL): Promise<boolean> {
  const store = await modelStore();
  return store === undefined ? false : removeCopy(store, new URL(String(url), pageUrl()).href);
}

/** Removes every cached model file and folder; how many there were (a folder counts once). */
export async function clearModelCache(): Promise<number> {
  const store = await modelStore();
  if (store === undefined) return 0;
  const all = await store.list();
  for (const m of all) await store.delete(m.url);
  return all.filter((m) => m.partOf === undefined).length;
}

/** The page's URL, against which relative model URLs resolve (undefined outside a page). */
export function pageUrl(): string | undefined {
  return (globalThis as { location?: { href: string } }).location?.href;
}
