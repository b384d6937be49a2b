/**
 * Runs in the benchmark's Chromium tab (bench/browser.ts): opens a GGUF file by URL and loads it
 * into the wasm backend exactly as `mpt bench MODEL` does in Node (same loader options), times the
 * first token of a short prompt, then measures prompt and decode speed with the same `measure`.
 */
import { loadWasmRunner } from '../src/backends/wasm/index.js';
import { chooseDotAdd, dotAddProbeResult, usingDotAdd } from '../src/backends/wasm/module-loader.js';
import { measure } from '../src/cli/commands/bench.js';
import { bytesSource } from '../src/formats/byte-source.js';
import type { UrlSourceOptions } from '../src/formats/url-source.js';
import { openCheckpoint } from '../src/model/load.js';

export interface TabRun {
  threads: number;
  crossOriginIsolated: boolean;
  /** Opening the file and loading it into the backend (workers started), as `mpt bench`'s load_ms. */
  load_ms: number;
  /** Of load_ms: opening the file (its header read and parsed). */
  open_ms: number;
  /** From the start of the load to the first token of an 8-token prompt. */
  first_token_ms: number;
  pp: number[];
  tg: number[];
  /** Whether the kernels were the dot-add build, and the probe's speed-up where it ran. */
  dot_add: boolean;
  dot_probe: number | null;
}

export interface TabOptions {
  threads: number;
  pp: number;
  tg: number;
  reps: number;
  /**
   * 'url' (default): the file is read by URL while loading. 'memory': fetched whole into an
   * ArrayBuffer before the clock starts, so that load_ms is the backend's share alone.
   */
  via?: 'url' | 'memory';
  /** Request sizes of the URL source (UrlSourceOptions.minRequestBytes, maxRequestBytes); 1 and 1 ask for each read alone. */
  minRequestBytes?: number;
  maxRequestBytes?: number;
  /** The dot-add kernel build: true / false, or undefined to let the probe decide (module-loader.ts). */
  dotAdd?: boolean;
}

export async function run(url: string, o: TabOptions): Promise<TabRun> {
  chooseDotAdd(o.dotAdd ?? null);
  const input = o.via === 'memory' ? bytesSource(await (await fetch(url)).arrayBuffer(), url) : url;
  const t0 = performance.now();
  const url_: UrlSourceOptions = {};
  if (o.minRequestBytes !== undefined) url_.minRequestBytes = o.minRequestBytes;
  if (o.maxRequestBytes !== undefined) url_.maxRequestBytes = o.maxRequestBytes;
  const ck = await openCheckpoint(input, { url: url_ });
  const openMs = performance.now() - t0;
  let runner: Awaited<ReturnType<typeof loadWasmRunner>>;
  try {
    runner = await loadWasmRunner(ck.config, ck.tensors, {
      threads: o.threads,
      weightType: 'auto',
      maxRows: Math.max(1, o.pp),
    });
  } finally {
    await ck.tensors.close();
  }
  const loadMs = performance.now() - t0;
  try {
    const cache = runner.createCache({ capacity: 16 });
    await runner.forward([{ cache, tokens: [1, 2, 3, 4, 5, 6, 7, 8] }], { logits: 'last' });
    cache.dispose();
    const firstTokenMs = performance.now() - t0;
    const m = o.pp > 0 || o.tg > 0 ? await measure(runner, o) : { pp: [], tg: [] };
    return {
      threads: runner.threads,
      crossOriginIsolated: self.crossOriginIsolated,
      load_ms: Math.round(loadMs),
      open_ms: Math.round(openMs),
      first_token_ms: Math.round(firstTokenMs),
      pp: m.pp,
      tg: m.tg,
      dot_add: usingDotAdd(),
      dot_probe: dotAddProbeResult(),
    };
  } finally {
    await runner.dispose();
  }
}

(globalThis as { bench?: unknown }).bench = { run };
