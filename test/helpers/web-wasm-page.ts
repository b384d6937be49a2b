/**
 * Runs in a browser page (test/web-wasm.test.ts): loads a fixture into the wasm backend from
 * fetched bytes and returns what the test compares with MosaicML's goldens. Nothing of Node here.
 */
import { loadWasmRunner } from '../../src/backends/wasm/index.js';
import { usingRelaxedSimd } from '../../src/backends/wasm/module-loader.js';
import type { DType, TensorInfo, TensorSource } from '../../src/formats/tensor-source.js';
import { parseMptConfig } from '../../src/model/config.js';
import { platform } from '../../src/platform/index.js';
import { generateTokens } from '../../src/runtime/generate.js';
import { Sampler, chooseToken } from '../../src/runtime/sampling.js';

const DTYPES: Record<string, DType> = { F32: 'f32', F16: 'f16', BF16: 'bf16' };

/** One tensor's entry in a safetensors header (the `__metadata__` entry is skipped). */
interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

/** A safetensors file held in memory (the format's own reader opens files with node:fs). */
function safetensorsFromBytes(bytes: Uint8Array): TensorSource {
  const headerLen = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Record<
    string,
    SafetensorsEntry
  >;
  const data = 8 + headerLen;
  const entries = new Map<string, { info: TensorInfo; start: number }>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = e.data_offsets;
    const info: TensorInfo = { name, dtype: DTYPES[e.dtype]!, shape: e.shape, byteLength: end - begin };
    entries.set(name, { info, start: data + begin });
  }
  const get = (name: string) => {
    const e = entries.get(name);
    if (!e) throw new Error(`no tensor ${name}`);
    return e;
  };
  return {
    list: () => [...entries.values()].map((e) => e.info),
    info: (name) => entries.get(name)?.info,
    read: async (name) => bytes.slice(get(name).start, get(name).start + get(name).info.byteLength),
    close: async () => {},
  };
}

async function fetchOk(url: string): Promise<Response> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return res;
}

export interface FixtureRun {
  crossOriginIsolated: boolean;
  threads: number;
  relaxedSimd: boolean;
  /** Per golden `logits/<seq>`: the logits of every position, one forward call. */
  logits: Record<string, number[]>;
  /** goldens.inputs.seq7 fed one token per call on a cache: the logits of each call. */
  steps: number[];
  /** Greedy generation from goldens.generate.prompt_ids (tokens chosen in the workers). */
  generated: number[];
  /** A seeded draw chosen in the workers, and the page's own choice from the same logits. */
  sampled: { worker: number; page: number };
}

export async function runFixture(name: string, threads: number): Promise<FixtureRun> {
  const dir = `/test/fixtures/${name}/`;
  const config = parseMptConfig(await (await fetchOk(dir + 'config.json')).json());
  const goldens = await (await fetchOk(dir + 'goldens.json')).json();
  const tensors = safetensorsFromBytes(new Uint8Array(await (await fetchOk(dir + 'model.safetensors')).arrayBuffer()));
  const runner = await loadWasmRunner(config, tensors, { threads });
  try {
    const logits: Record<string, number[]> = {};
    for (const key of Object.keys(goldens.tensors).filter((k) => k.startsWith('logits/'))) {
      const cache = runner.createCache({ capacity: 128 });
      const tokens: number[] = goldens.inputs[key.slice('logits/'.length)];
      const [o] = await runner.forward([{ cache, tokens }], { logits: 'all' });
      cache.dispose();
      logits[key] = Array.from(o!.logits);
    }
    const steps: number[] = [];
    const cache = runner.createCache({ capacity: 64 });
    for (const t of goldens.inputs.seq7 as number[]) {
      const [o] = await runner.forward([{ cache, tokens: [t] }], { logits: 'last' });
      steps.push(...o!.logits);
    }
    const request = new Sampler({ seed: 7, temperature: 1.3, topK: 40 }).request();
    const [s] = await runner.forward([{ cache, tokens: [1] }], { logits: 'last', sample: [request] });
    cache.dispose();
    const generated: number[] = [];
    const maxTokens = goldens.generate.new_tokens.length;
    const gen = generateTokens(runner, goldens.generate.prompt_ids, { temperature: 0, maxTokens });
    for await (const chunk of gen) generated.push(chunk.token);
    return {
      crossOriginIsolated: self.crossOriginIsolated,
      threads: runner.threads,
      relaxedSimd: usingRelaxedSimd(),
      logits,
      steps,
      generated,
      sampled: { worker: s!.token!, page: chooseToken(s!.logits, request) },
    };
  } finally {
    await runner.dispose();
  }
}

/** Messages posted to a worker right after its start, as it echoes them (web-slow-worker.ts). */
export async function echoFromSlowWorker(): Promise<unknown[]> {
  const w = platform.startWorker(new URL('./web-slow-worker.js', import.meta.url));
  const got: unknown[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      w.listen({
        message: (m) => {
          got.push(m);
          if (got.length === 2) resolve();
        },
        error: reject,
        exit: () => {},
      });
      w.postMessage('first');
      w.postMessage('second');
      setTimeout(resolve, 5000); // what has come back by then
    });
  } finally {
    await w.terminate();
  }
  return got;
}

(globalThis as { mpt?: unknown }).mpt = { runFixture, echoFromSlowWorker };
