/**
 * Runs in a browser page (test/web-engine.test.ts): a model folder by URL through the browser
 * entry's loadModel, its logits through `model.logits`, and which backend and how many threads it
 * ran on. Nothing of Node here.
 */
import { loadModel } from '../../src/browser.js';

export interface LogitsRun {
  /** Per sequence, the logits of every position. */
  logits: number[][];
  backend: string;
  /** The wasm backend's threads (undefined on other backends). */
  threads: number | undefined;
  isolated: boolean;
}

/** Loads the model at `url` with `backend` and runs each of `seqs` through `model.logits`. */
export async function logitsOf(url: string, seqs: number[][], backend: 'wasm' | 'webgpu' | 'auto'): Promise<LogitsRun> {
  const model = await loadModel(url, { threads: 2, backend });
  try {
    const logits: number[][] = [];
    for (const ids of seqs) logits.push(Array.from(await model.logits(ids)));
    return {
      logits,
      backend: model.runner.backendName,
      threads: (model.runner as { threads?: number }).threads,
      isolated: self.crossOriginIsolated,
    };
  } finally {
    await model.dispose();
  }
}

/** What a page's WebGPU offers: null without an adapter, else whether it is a software one. */
export async function gpuAdapter(): Promise<{ fallback: boolean } | null> {
  const gpu = (navigator as { gpu?: { requestAdapter(): Promise<{ info?: { isFallbackAdapter?: boolean } } | null> } })
    .gpu;
  const adapter = await gpu?.requestAdapter();
  return adapter ? { fallback: adapter.info?.isFallbackAdapter === true } : null;
}

(globalThis as { mpt?: unknown }).mpt = { logitsOf, gpuAdapter };
