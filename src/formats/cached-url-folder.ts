/**
 * A model folder by URL through the browser's offline copies (model-cache.ts), as
 * cached-url-source.ts does for one file. Which files a folder has is known only by asking for
 * them, so the first load records what the loader reads: each file it opens is downloaded whole
 * into the store (one GET, as a file of the folder), a file the server does not have (404) is
 * noted as absent, and once the model is loaded `commit` writes the folder's record listing both —
 * written last, it marks the copy complete. With a complete copy the loader's files are read from
 * disk and its absent files are absent without a request: offline nothing is asked of the server;
 * online every file of the copy, absent ones included, is checked with one HEAD request each, all
 * at once (ETag, Last-Modified, size): a changed file (a config.json or tokenizer edited on the
 * server) is dropped and downloaded again when the loader opens it, a file that has appeared is
 * fetched, and the rest is read from disk. Where a file cannot be kept (no store, quota, a failed
 * write) it is read over the network as without a cache, and the folder is not marked complete.
 * Another copy of files of the folder (a tokenizer by URL kept under a name of its own) keeps
 * entries of its own (entryKey): deleting either copy, or finding a file of one changed, leaves
 * the other complete.
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

/** The URL of the file `name` of the folder `root`. */
function fileUrl(root: string, name: string): string {
  return new URL(encodeURIComponent(name), root).href;
}

/**
 * The name under which the copy `record` of the folder `root` keeps its file `name`: the file's URL
 * in the folder's own copy; in another copy (a tokenizer's), the URL with a fragment naming that
 * copy, so that the two copies never share, overwrite or delete each other's entries.
 */
function entryKey(root: string, record: string, name: string): string {
  const url = fileUrl(root, name);
  return record === root ? url : `${url}#copy=${encodeURIComponent(record)}`;
}

/** The complete copy `record` of the folder `root`: its kept files, by name, and its absent ones. */
async function completeCopy(
  store: ModelStore,
  root: string,
  record: string,
): Promise<{ files: Map<string, CacheHit>; absent: Set<string> } | undefined> {
  const meta = await store.record(record);
  if (meta?.files === undefined) return undefined;
  const names = [...meta.files, ...(meta.absent ?? [])];
  if (!names.every(isPlainFileName)) return undefined;
  const files = new Map<string, CacheHit>();
  for (const name of meta.files) {
    const hit = await store.get(entryKey(root, record, name));
    if (hit === undefined) return undefined;
    files.set(name, hit);
  }
  return { files, absent: new Set(meta.absent) };
}

/**
 * The names of the copy's files that changed on the server, and of its absent files the server
 * now has: one HEAD request per file, all at once. A file the server cannot be asked about
 * (a network error) counts as unchanged.
 */
async function staleNames(
  copy: { files: Map<string, CacheHit>; absent: Set<string> },
  root: string,
  options: CachedUrlOptions,
): Promise<{ changed: string[]; appeared: string[] }> {
  const [changed, appeared] = await Promise.all([
    Promise.all(
      [...copy.files].map(async ([name, hit]) => {
        const now = await head(fileUrl(root, name), options);
        return now !== undefined && changedSince(hit.meta, now) ? name : undefined;
      }),
    ),
    Promise.all(
      [...copy.absent].map(async (name) =>
        (await head(fileUrl(root, name), options)) !== undefined ? name : undefined,
      ),
    ),
  ]);
  const named = (xs: (string | undefined)[]) => xs.filter((x): x is string => x !== undefined);
  return { changed: named(changed), appeared: named(appeared) };
}

/**
 * The model folder at `base` (a URL) through the offline copies (see the module's comment); where
 * there is no store (Node), urlFolder with a `commit` that does nothing. `recordUrl` names the
 * copy (default: the folder's URL; a tokenizer by URL keeps the files it reads under a name of
 * its own, so that its copy and a model's copy of the same folder do not overwrite each other).
 */
export async function openCachedUrlFolder(
  base: string | URL,
  options: CachedUrlOptions = {},
  recordUrl?: string,
): Promise<CachedUrlFolder> {
  const network = urlFolder(base, options);
  const root = network.name;
  const record = recordUrl ?? root;
  const store = await modelStore();
  if (store === undefined) return { ...network, commit: async () => {} };
  const copy = await completeCopy(store, root, record);
  if (copy === undefined) await removeCopy(store, record);
  const kept = new Map<string, CacheHit>(copy?.files);
  const absent = new Set<string>(copy?.absent);
  let added = false;
  if (copy !== undefined && !offline()) {
    // Files changed on the server are dropped and fetched again as the loader opens them; the
    // folder's record is written anew (commit) with them.
    const { changed, appeared } = await staleNames(copy, root, options);
    for (const name of changed) {
      await store.delete(kept.get(name)!.meta.url);
      kept.delete(name);
    }
    for (const name of appeared) absent.delete(name);
    added = changed.length + appeared.length > 0;
  }
  let incomplete = false;
  return {
    name: root,
    async open(file: string): Promise<ByteSource | undefined> {
      checkFileName(root, file);
      const url = fileUrl(root, file);
      const hit = kept.get(file);
      if (hit !== undefined) return blobSource(hit.blob, url);
      if (absent.has(file)) return undefined;
      added = true;
      const key = entryKey(root, record, file);
      const got = await download(url, options, { key, partOf: record });
      if (got === 'absent') {
        absent.add(file);
        return undefined;
      }
      const fresh = got === 'kept' ? await store.get(key) : undefined;
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
      await store.saveRecord({ url: record, bytes, savedAt: Date.now(), files: [...kept.keys()], absent: [...absent] });
      added = false;
    },
  };
}
