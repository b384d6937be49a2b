/**
 * The platform in Node: os, fs, v8 flags, process.env and worker_threads. The only place outside
 * cli/, server/ and the trainer where the engine touches Node's own modules.
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { Worker, parentPort } from 'node:worker_threads';
import type { Platform, PlatformWorker, WorkerListeners, WorkerPort } from './platform.js';

let engineFlagsSet = false;

function startWorker(url: URL): PlatformWorker {
  const w = new Worker(url);
  return {
    postMessage: (message) => w.postMessage(message),
    listen(l: WorkerListeners) {
      const onMessage = (m: unknown) => l.message(m);
      const onError = (e: Error) => l.error(e);
      const onExit = (code: number) => l.exit(code);
      w.on('message', onMessage);
      w.on('error', onError);
      w.on('exit', onExit);
      return () => {
        w.off('message', onMessage);
        w.off('error', onError);
        w.off('exit', onExit);
      };
    },
    ref: () => w.ref(),
    unref: () => w.unref(),
    terminate: async () => {
      await w.terminate();
    },
  };
}

function workerPort(): WorkerPort {
  const port = parentPort;
  if (!port) throw new Error('workerPort() called outside a worker thread');
  return {
    // Messages that arrived before this listener wait in the port (it starts on the first listener).
    onMessage: (listener) => {
      port.on('message', listener);
    },
    postMessage: (message) => port.postMessage(message),
  };
}

export const platform: Platform = {
  name: 'node',
  hardwareConcurrency: () => availableParallelism(),
  totalMemory: () => totalmem(),
  yieldToEventLoop: () => new Promise<void>((resolve) => setImmediate(resolve)),
  env: (name) => process.env[name],
  readBytes: async (url) => new Uint8Array(await readFile(fileURLToPath(url))),
  readBytesSync: (url) => new Uint8Array(readFileSync(fileURLToPath(url))),
  /**
   * V8 first compiles wasm with its baseline compiler (Liftoff) and swaps in optimized code only
   * when a function is called again; our kernels run long loops per call, so they would spend much
   * of their time in baseline code (measured: 2-3x slower). Compile with TurboFan from the start.
   * Relaxed SIMD is on by default from V8 11.4; Node 20 (V8 11.3) has it behind a flag. V8's flags
   * are per process: set once, they hold in the worker threads too.
   */
  prepareWasmEngine({ relaxedSimd }) {
    if (engineFlagsSet) return;
    engineFlagsSet = true;
    try {
      setFlagsFromString('--no-liftoff');
      if (relaxedSimd) setFlagsFromString('--experimental-wasm-relaxed-simd');
    } catch {
      // Not fatal: slower code, or the plain-SIMD build.
    }
  },
  canShareMemoryWithWorkers: () => true,
  mainThreadMayBlock: () => true,
  startWorker,
  workerPort,
};
