/**
 * Runs in a browser page (test/web-cache.test.ts): loads a GGUF file by URL through the browser
 * entry, with or without its offline cache, and lists and deletes the cached copies. Nothing of
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

/** Whether the page has OPFS (the test hides it to reach the Cache Storage store). */
export async function hasOpfs(): Promise<boolean> {
  return typeof navigator.storage?.getDirectory === 'function';
}

(globalThis as { mpt?: unknown }).mpt = { logits, listCachedModels, deleteCachedModel, clearModelCache, hasOpfs };
