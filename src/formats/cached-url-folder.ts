/**
 * A model folder by URL through the browser's offline copies (model-cache.ts), as
 * cached-url-source.ts does for one file. Which files a folder has is known only by asking for
 * them, so the first load records what the loader reads: each file it opens is downloaded whole
 * into the store (one GET, as a file of the folder), a file the server does not have (404) is
 * noted as absent, and once the model is loaded `commit` writes the folder's record listing both —
 * written last, it marks the copy complete. With a complete copy the loader's files are read from
 * disk and its absent files are absent without a request: offline nothing is asked of the server;
 * online one HEAD of the folder's largest file (its weights) checks it is the one copied (ETag,
 * Last-Modified, size), and a changed file drops the whole copy, which is downloaded again. Only
 * that file is checked: a server that changes config.json or tokenizer files alone is not seen
 * until the copy is deleted. Where a file cannot be kept (no store, quota, a failed write) it is
 * read over the network as without a cache, and the folder is not marked complete.
 */
import { blobSource, type ByteSource } from './byte-source.js';
import { changedSince, download, head, offline, type CachedUrlOptions } from './cached-url-source.js';
import { checkFileName, isPlainFileName, urlFolder, type FolderSource } from './folder-source.js';
import { modelStore, removeCopy, type CacheHit, type ModelStore } from './model-cache.js';

/** A folder by URL whose copy is marked complete by `commit`, once the loader has read it. */
export interface CachedUrlFolder extends FolderSource {
  /** Writes the folder's record when every file the loader opened is kept (else does nothing). */
  commit(): Promise<void>;
}

/** The complete copy of the folder `root`: its kept files, by name, and its absent ones. */
async function completeCopy(
  store: ModelStore,
  root: string,
): Promise<{ files: Map<string, CacheHit>; absent: Set<string> } | undefined> {
  const record = await store.record(root);
  if (record?.files === undefined) return undefined;
  const names = [...record.files, ...(record.absent ?? [])];
  if (!names.every(isPlainFileName)) return undefined;
  const files = new Map<string, CacheHit>();
  for (const name of record.files) {
    const hit = await store.get(new URL(encodeURIComponent(name), root).href);
    if (hit === undefined) return undefined;
    files.set(name, hit);
  }
  return { files, absent: new Set(record.absent) };
}

/** The folder's largest kept file (its weights): the one whose change a HEAD request looks for. */
function largest(files: Map<string, CacheHit>): CacheHit | undefined {
  let best: CacheHit | undefined;
  for (const hit of files.values()) if (best === undefined || hit.meta.bytes > best.meta.bytes) best = hit;
  return best;
}

/**
 * The model folder at `base` (a URL) through the offline copies (see the module's comment); where
 * there is no store (Node), urlFolder with a `commit` that does nothing.
 */
export async function openCachedUrlFolder(
  base: string | URL,
  options: CachedUrlOptions = {},
): Promise<CachedUrlFolder> {
  const network = urlFolder(base, options);
  const root = network.name;
  const store = await modelStore();
  if (store === undefined) return { ...network, commit: async () => {} };
  let copy = await completeCopy(store, root);
  if (copy !== undefined && !offline()) {
    const weights = largest(copy.files);
    const now = weights === undefined ? undefined : await head(weights.meta.url, options);
    if (now !== undefined && changedSince(weights!.meta, now)) copy = undefined;
  }
  if (copy === undefined) await removeCopy(store, root);
  const kept = new Map<string, CacheHit>(copy?.files);
  const absent = new Set<string>(copy?.absent);
  let added = false;
  let incomplete = false;
  return {
    name: root,
    async open(file: string): Promise<ByteSource | undefined> {
      checkFileName(root, file);
      const url = new URL(encodeURIComponent(file), root).href;
      const hit = kept.get(file);
      if (hit !== undefined) return blobSource(hit.blob, url);
      if (absent.has(file)) return undefined;
      added = true;
      const got = await download(url, options, root);
      if (got === 'absent') {
        absent.add(file);
        return undefined;
      }
      const fresh = got === 'kept' ? await store.get(url) : undefined;
      if (fresh === undefined) {
        incomplete = true;
        return network.open(file);
      }
      kept.set(file, fresh);
      return blobSource(fresh.blob, url);
    },
    async commit() {
      if (!added || incomplete) return;
      let bytes = 0;
      for (const hit of kept.values()) bytes += hit.meta.bytes;
      await store.saveRecord({ url: root, bytes, savedAt: Date.now(), files: [...kept.keys()], absent: [...absent] });
      added = false;
    },
  };
}
