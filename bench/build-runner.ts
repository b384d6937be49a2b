/**
 * A runner from another build of the package (a folder holding `dist/`: this worktree, or a copy of
 * main's), for the benchmarks that compare builds (step-series.ts, step-ab.ts): the model loaded as
 * `mpt bench` loads it, `maxRows` rows a pass (1: decode only).
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ModelRunner } from '../src/backends/backend.js';

export async function loadBuildRunner(root: string, model: string, threads: number, maxRows = 1): Promise<ModelRunner> {
  const base = pathToFileURL(`${resolve(root)}/`);
  const wasm = await import(new URL('dist/src/backends/wasm/index.js', base).href);
  const { openCheckpoint } = await import(new URL('dist/src/model/load.js', base).href);
  const ck = await openCheckpoint(model);
  const runner: ModelRunner = await wasm.loadWasmRunner(ck.config, ck.tensors, {
    threads,
    weightType: 'auto',
    maxRows,
  });
  await ck.tensors.close();
  return runner;
}
