/**
 * The machine's read bandwidth as the wasm kernels see it: T worker threads, each streaming its
 * own slice of one shared wasm memory through the `read_probe` kernel (two 16-byte loads and two
 * adds per 32 bytes, no stores), all started together; GB/s = bytes read / wall time of the
 * slowest thread. Decode is bounded by this figure (every weight read once per token), so the
 * comparison with llama.cpp (vs-llamacpp.ts) records it with the same thread count.
 *   node dist/bench/read-bandwidth.js [--threads 2] [--mib 256] [--passes 8]
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { kernelModule } from '../src/backends/wasm/module-loader.js';
import { instantiateKernels } from '../src/backends/wasm/kernels.js';

interface Job {
  memory: WebAssembly.Memory;
  ctl: SharedArrayBuffer;
  base: number;
  bytes: number;
  passes: number;
  threads: number;
}

export interface ReadBandwidth {
  threads: number;
  bytes_per_thread: number;
  passes: number;
  /** Best of the passes: all threads' bytes over the slowest thread's time. */
  gb_per_s: number;
  /** Every pass, GB/s. */
  per_pass: number[];
}

/** Control slots: 0 = threads ready, 1 = start generation, 2 + t = thread t's ns of the last pass (as f64 below). */
function workerMain(job: Job): void {
  const k = instantiateKernels(kernelModule('shared-base'), job.memory);
  const ctl = new Int32Array(job.ctl);
  const times = new Float64Array(job.ctl, 64);
  const tid = Atomics.add(ctl, 0, 1);
  let sink = 0;
  for (let pass = 1; pass <= job.passes; pass++) {
    Atomics.wait(ctl, 1, pass - 1);
    const t0 = performance.now();
    sink ^= k.read_probe(job.base + tid * job.bytes, job.bytes);
    times[pass * job.threads + tid] = performance.now() - t0;
    Atomics.add(ctl, 2, 1);
    Atomics.notify(ctl, 2);
  }
  parentPort!.postMessage(sink);
}

/** Measures read bandwidth with `threads` threads, each streaming `mib` MiB `passes` times. */
export async function measureReadBandwidth(threads: number, mib = 256, passes = 8): Promise<ReadBandwidth> {
  const bytes = mib * 2 ** 20;
  const pages = Math.ceil((threads * bytes + 65536) / 65536);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: 65536, shared: true });
  const k = instantiateKernels(kernelModule('shared-base'), memory);
  const base = 65536;
  k.fill_random_bytes(base, threads * bytes, 5); // touch every page before timing
  const ctl = new SharedArrayBuffer(64 + 8 * (passes + 1) * threads);
  const c = new Int32Array(ctl);
  const job: Omit<Job, 'memory'> & { memory: WebAssembly.Memory } = { memory, ctl, base, bytes, passes, threads };
  const workers = Array.from(
    { length: threads },
    () => new Worker(fileURLToPath(import.meta.url), { workerData: job }),
  );
  const finished = workers.map((w) => new Promise((resolve, reject) => w.on('message', resolve).on('error', reject)));
  while (Atomics.load(c, 0) < threads) await new Promise((r) => setTimeout(r, 5));
  const times = new Float64Array(ctl, 64);
  const perPass: number[] = [];
  for (let pass = 1; pass <= passes; pass++) {
    Atomics.store(c, 2, 0);
    Atomics.store(c, 1, pass);
    Atomics.notify(c, 1);
    while (Atomics.load(c, 2) < threads) await new Promise((r) => setTimeout(r, 1));
    let slowest = 0;
    for (let t = 0; t < threads; t++) slowest = Math.max(slowest, times[pass * threads + t]!);
    perPass.push(+((threads * bytes) / (slowest / 1000) / 1e9).toFixed(2));
  }
  await Promise.all(finished);
  await Promise.all(workers.map((w) => w.terminate()));
  return { threads, bytes_per_thread: bytes, passes, gb_per_s: Math.max(...perPass), per_pass: perPass };
}

if (!isMainThread && workerData) workerMain(workerData as Job);
else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const argv = process.argv.slice(2);
  const opt = (name: string, dflt: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  console.log(JSON.stringify(await measureReadBandwidth(opt('threads', 2), opt('mib', 256), opt('passes', 8))));
}
