/**
 * Runs in a browser page (test/web-model.test.ts): the library's browser entry as a page uses it —
 * loadModel by URL, Blob or chosen files, then generate, stream, logits, abort, dispose. Counts
 * the Web Workers the page starts and ends, to see that dispose ends them. Nothing of Node here.
 */
import { loadModel, type ModelSource } from '../../src/browser.js';

let started = 0;
let ended = 0;
const NativeWorker = globalThis.Worker;
globalThis.Worker = class extends NativeWorker {
  constructor(url: string | URL, options?: WorkerOptions) {
    super(url, options);
    started++;
  }
  override terminate(): void {
    ended++;
    super.terminate();
  }
};

async function blobOf(url: string): Promise<Blob> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res.blob();
}

/** A source as the test names it: a URL string, or the file at a URL as a Blob, a File, or a one-file list. */
async function sourceOf(kind: 'url' | 'blob' | 'files' | 'default', url: string): Promise<ModelSource | undefined> {
  if (kind === 'default') return undefined;
  if (kind === 'url') return url;
  const blob = await blobOf(url);
  if (kind === 'blob') return blob;
  return [new File([blob], url.slice(url.lastIndexOf('/') + 1))];
}

export interface GreedyRun {
  tokens: number[];
  text: string;
  hasTokenizer: boolean;
  workers: { started: number; ended: number };
}

/** Greedy generation from `prompt`, then dispose; the workers started and ended meanwhile. */
export async function greedy(
  kind: 'url' | 'default',
  url: string,
  prompt: string,
  maxTokens: number,
): Promise<GreedyRun> {
  const before = { started, ended };
  const model = await loadModel(await sourceOf(kind, url), { threads: 2 });
  let result: Awaited<ReturnType<typeof model.generate>>;
  try {
    result = await model.generate(prompt, { maxTokens, temperature: 0 });
  } finally {
    await model.dispose();
  }
  return {
    tokens: result.tokens,
    text: result.text,
    hasTokenizer: model.hasTokenizer,
    workers: { started: started - before.started, ended: ended - before.ended },
  };
}

/** All positions' logits of `ids`. */
export async function logits(kind: 'url' | 'blob' | 'files', url: string, ids: number[]): Promise<number[]> {
  const model = await loadModel(await sourceOf(kind, url), { threads: 2 });
  try {
    return Array.from(await model.logits(ids));
  } finally {
    await model.dispose();
  }
}

/** Streams with an AbortSignal aborted after `after` chunks: what came and how it finished. */
export async function abortAfter(
  url: string,
  prompt: string,
  after: number,
): Promise<{ chunks: number; finish: string; tokens: number }> {
  const model = await loadModel(url, { threads: 2 });
  try {
    const controller = new AbortController();
    const stream = model.stream(prompt, { maxTokens: 200, temperature: 0, signal: controller.signal });
    let chunks = 0;
    for await (const chunk of stream) {
      void chunk;
      if (++chunks === after) controller.abort();
    }
    const result = await stream.result;
    return { chunks, finish: result.finishReason, tokens: result.tokens.length };
  } finally {
    await model.dispose();
  }
}

(globalThis as { mpt?: unknown }).mpt = { greedy, logits, abortAfter };
