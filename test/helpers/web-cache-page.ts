/**
 * Runs in a browser page (test/web-cache.test.ts): loads a GGUF file by URL through the browser
 * entry, with or without its offline cache (a tokenizer by URL too), and lists and deletes the cached copies. Nothing of
 * Node here.
 */
import { clearModelCache, deleteCachedModel, listCachedModels, loadModel } from '../../src/browser.js';

/** All positions' logits of `ids` from the model at `url`. */
export async function logits(url: string, ids: number[], cache = true): Promise<number[]> {
  const model = await loadModel(url, { threads: 2, cache });
  try {
    return Array.from(await model.logits(ids));
  } finally {
    await model.dispose();
  }
}

/** The ids of `text` by the tokenizer at `tokenizerUrl` given to the model at `url` in place of its own (null: its own). */
export async function encode(url: string, tokenizerUrl: string | null, text: string, cache = true): Promise<number[]> {
  return (await encodeReporting(url, tokenizerUrl, text, cache)).ids;
}

/** As `encode`, with the sizes of the files whose download `onDownload` reported to the end, in order. */
export async function encodeReporting(
  url: string,
  tokenizerUrl: string | null,
  text: string,
  cache = true,
): Promise<{ ids: number[]; downloaded: number[] }> {
  const downloaded: number[] = [];
  const model = await loadModel(url, {
    threads: 2,
    cache,
    ...(tokenizerUrl === null ? {} : { tokenizer: tokenizerUrl }),
    onDownload: (done, total) => {
      if (done === total) downloaded.push(total);
    },
  });
  try {
    return { ids: model.tokenizer.encode(text), downloaded };
  } finally {
    await model.dispose();
  }
}

/** Whether the page has OPFS (the test hides it to reach the Cache Storage store). */
export async function hasOpfs(): Promise<boolean> {
  return typeof navigator.storage?.getDirectory === 'function';
}

(globalThis as { mpt?: unknown }).mpt = {
  logits,
  encode,
  encodeReporting,
  listCachedModels,
  deleteCachedModel,
  clearModelCache,
  hasOpfs,
};
