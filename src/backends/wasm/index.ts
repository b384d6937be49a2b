/**
 * The wasm backend: WebAssembly SIMD kernels (AssemblyScript, src/backends/wasm/assembly/) on a
 * pool of worker threads sharing the model's wasm memories (in Node, or a cross-origin isolated
 * page; elsewhere in a browser, on the page's own thread).
 *
 *   wasmBackend.load(config, tensors, { threads })      keeps the file's storage types
 *   createWasmBackend({ weightType: 'q4_0' }).load(...) converts every matrix at load time
 *   loadRandomModel(config, { type, threads })          random weights, for benchmarks
 */
import { InputError } from '../../errors.js';
import type { TensorSource } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { kvCacheBytes } from '../../model/memory-plan.js';
import { platform } from '../../platform/index.js';
import type { Backend, LoadRunnerOptions, ModelRunner } from '../backend.js';
import { Arenas } from './arenas.js';
import { InlinePool, checkSharedWasmMemory } from './inline-pool.js';
import { TARGET_TYPES, type WeightType } from './kernels.js';
import { planLayout } from './layout.js';
import { chooseMatrixType, convertedTypes, loadWeights, type WeightTypeChoice } from './load-weights.js';
import { kernelModule, kernelModules, loadKernelModules } from './module-loader.js';
import { WorkerPool, type PassPool } from './pool.js';
import { fillRandomWeights } from './random-weights.js';
import { WasmRunner } from './runner.js';

export interface WasmLoadOptions extends LoadRunnerOptions {
  /** Storage type of the weight matrices: 'auto' (default) keeps the file's types where the kernels have them. */
  weightType?: WeightTypeChoice;
  /** Tokens per internal pass (default 512). */
  maxRows?: number;
  /** Weight bytes per wasm memory before another is used (default 3 GiB). */
  arenaBudget?: number;
  /** Called with a warning (default: console.warn). */
  onWarning?: (message: string) => void;
}

let toldNotIsolated = false;

/** The threads asked for, or one where memory cannot be shared with workers (said once a thread). */
function threadCount(t: number | undefined, onWarning: ((message: string) => void) | undefined): number {
  if (t !== undefined && (!Number.isInteger(t) || t < 1 || t > 256)) {
    throw new InputError(`threads must be an integer in [1, 256], got ${t}`);
  }
  if (platform.canShareMemoryWithWorkers()) return t ?? Math.max(1, platform.hardwareConcurrency());
  checkSharedWasmMemory();
  if (!toldNotIsolated) {
    toldNotIsolated = true;
    (onWarning ?? console.warn)(
      'wasm backend: this page is not cross-origin isolated, so no memory can be shared with ' +
        'workers: the kernels run on one thread, in the page. Serve it with the headers Cross-Origin-Opener-Policy: ' +
        'same-origin and Cross-Origin-Embedder-Policy: require-corp to use worker threads.',
    );
  }
  return 1;
}

/** Worker threads, or the page's own thread where workers cannot share the memories. */
function startPool(arenas: Arenas, threads: number): Promise<PassPool> {
  const { memories, layout } = arenas;
  if (!platform.canShareMemoryWithWorkers()) {
    return Promise.resolve(new InlinePool(kernelModule('shared'), memories, layout));
  }
  return WorkerPool.create(kernelModules(), memories, layout, threads);
}

function checkChoice(t: string | undefined): WeightTypeChoice {
  if (t === undefined || t === 'auto') return 'auto';
  if (!(TARGET_TYPES as readonly string[]).includes(t))
    throw new InputError(`unknown weight type "${t}" (auto, ${TARGET_TYPES.join(', ')})`);
  return t as WeightType;
}

/** Loads a checkpoint into the wasm backend. */
export async function loadWasmRunner(
  config: MptConfig,
  tensors: TensorSource,
  options: WasmLoadOptions = {},
): Promise<WasmRunner> {
  const threads = threadCount(options.threads, options.onWarning);
  const choice = checkChoice(options.weightType);
  await loadKernelModules();
  const typeOf = (name: string): WeightType => {
    const info = tensors.info(name);
    return info ? chooseMatrixType(info, choice) : 'f32';
  };
  if (choice === 'auto') {
    const conv = convertedTypes(tensors);
    if (conv.length)
      (options.onWarning ?? console.warn)(
        `wasm backend: ${conv.join(', ')} weights are converted to q8_0 at load time (the kernels run f32, f16, bf16, q8_0, q4_0, q4_K, q5_K, q6_K)`,
      );
  }
  const r = options.kvReserve;
  const kvBytesPerLayer = r ? kvCacheBytes(config, r.ctx, r.kvType, r.sequences ?? 1) / config.nLayers : 0;
  const layout = planLayout(config, typeOf, {
    threads,
    maxRows: options.maxRows,
    arenaBudget: options.arenaBudget,
    kvBytesPerLayer,
  });
  const arenas = new Arenas(layout);
  // The workers start (and instantiate the kernels) while the weights stream in.
  const pool = startPool(arenas, threads);
  try {
    await loadWeights(config, tensors, layout, arenas, options.onProgress);
  } catch (e) {
    await pool.then(
      (p) => p.close(),
      () => undefined,
    );
    throw e;
  }
  return new WasmRunner(layout, arenas, await pool);
}

export interface RandomModelOptions {
  type: WeightType;
  threads?: number;
  maxRows?: number;
  arenaBudget?: number;
  seed?: number;
}

/** A model of the given shape with random weights generated in place (benchmarks). */
export async function loadRandomModel(config: MptConfig, options: RandomModelOptions): Promise<WasmRunner> {
  const threads = threadCount(options.threads, undefined);
  const type = checkChoice(options.type) as WeightType;
  await loadKernelModules();
  const layout = planLayout(config, () => type, {
    threads,
    maxRows: options.maxRows,
    arenaBudget: options.arenaBudget,
  });
  const arenas = new Arenas(layout);
  fillRandomWeights(arenas, layout, options.seed ?? 1234);
  return new WasmRunner(layout, arenas, await startPool(arenas, threads));
}

/** A wasm backend with fixed load options (e.g. a weight type to convert to). */
export function createWasmBackend(defaults: WasmLoadOptions = {}): Backend {
  return {
    name: 'wasm',
    load(config: MptConfig, tensors: TensorSource, options?: LoadRunnerOptions): Promise<ModelRunner> {
      return loadWasmRunner(config, tensors, { ...defaults, ...options });
    },
  };
}

export const wasmBackend: Backend = createWasmBackend();

export { WasmKvCache } from './kv-cache.js';
export { WasmRunner } from './runner.js';
export type { WeightType } from './kernels.js';
export type { WeightTypeChoice } from './load-weights.js';
