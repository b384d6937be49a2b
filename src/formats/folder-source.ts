/**
 * A model folder as named byte sources: what a Hugging Face folder is wherever there is no file
 * system to list — a base URL (a repository's `resolve/main/`, a static server), or the files a
 * user dropped or chose in a browser. The folder on disk is in file-reader.ts (Node).
 */
import { FetchError, InputError, quoteValue } from '../errors.js';
import { blobSource, type ByteSource } from './byte-source.js';
import { openUrlSource, type UrlSourceOptions } from './url-source.js';

export interface FolderSource {
  /** What the folder is called in error messages: a path, a base URL, "the dropped files". */
  readonly name: string;
  /**
   * Opens the file `file` (a plain file name, see isPlainFileName) of the folder, or gives
   * undefined when the folder has no such file. A file that exists but cannot be read throws.
   */
  open(file: string): Promise<ByteSource | undefined>;
  /** The names of the folder's files, where it can list them (used for hints in messages only). */
  list?(): Promise<string[]>;
}

/** A name that stays inside a folder: no separators of any platform or URL, not `.` or `..`. */
export function isPlainFileName(file: string): boolean {
  return file !== '' && file !== '.' && file !== '..' && !/[\\/]/.test(file);
}

/** What every FolderSource.open does first: refuses a name that is not a plain file name. */
export function checkFileName(folder: string, file: string): void {
  if (!isPlainFileName(file)) throw new InputError(`${quoteValue(file)} is not a file name in ${folder}`);
}

/**
 * The folder at a base URL: file `f` is `base + f` (the base gets a trailing slash). A file the
 * server answers 404 for is absent; every other failure is a FetchError naming the URL.
 */
export function urlFolder(base: string | URL, options: UrlSourceOptions = {}): FolderSource {
  const href = String(base);
  const root = new URL(href.endsWith('/') ? href : `${href}/`);
  return {
    name: root.href,
    async open(file) {
      checkFileName(root.href, file);
      try {
        return await openUrlSource(new URL(encodeURIComponent(file), root), options);
      } catch (e) {
        if (e instanceof FetchError && (e.status === 404 || e.status === 410)) return undefined;
        throw e;
      }
    },
  };
}

/**
 * The files a user chose or dropped (a folder's worth of File objects) as a folder, by their
 * names. Two files of the same name (from different subfolders of a dropped tree) are refused:
 * which one was meant cannot be known.
 */
export function fileListFolder(files: Iterable<File>, name = 'the chosen files'): FolderSource {
  const byName = new Map<string, File>();
  for (const f of files) {
    if (byName.has(f.name)) throw new InputError(`${name} hold two files named ${f.name}: choose one model folder`);
    byName.set(f.name, f);
  }
  return {
    name,
    async open(file) {
      checkFileName(name, file);
      const f = byName.get(file);
      return f === undefined ? undefined : blobSource(f, `${file} (in ${name})`);
    },
    list: async () => [...byName.keys()],
  };
}
