/**
 * The platform in a browser (a page or a Web Worker): navigator, fetch, module Web Workers.
 * Nothing here runs at import time, so Node may import this file too (index.ts does).
 */
import type { Platform, PlatformWorker, WorkerListeners, WorkerPort } from './platform.js';

/**
 * What a worker's port sends once it listens. A module worker whose imports are still loading
 * drops the messages that reach it meanwhile (seen in Chromium), so the starter holds them back
 * until this arrives.
 */
const LISTENING = 'mpt-ts: worker listening';

interface Scope {
  navigator?: { hardwareConcurrency?: number };
  crossOriginIsolated?: boolean;
  scheduler?: { yield?: () => Promise<void> };
  postMessage?: (message: unknown) => void;
  addEventListener?: (type: 'message', listener: (e: MessageEvent) => void) => void;
}
declare const WorkerGlobalScope: unknown;
const scope = globalThis as unknown as Scope;

function yieldToEventLoop(): Promise<void> {
  const scheduler = scope.scheduler;
  if (typeof scheduler?.yield === 'function') return scheduler.yield();
  // A message is a task of its own, without setTimeout's clamping to 4 ms.
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => {
      channel.port1.close();
      resolve();
    };
    channel.port2.postMessage(null);
  });
}

async function readBytes(url: URL): Promise<Uint8Array<ArrayBuffer>> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url.href} answered ${res.status} ${res.statusText}`);
  return new Uint8Array(await res.arrayBuffer());
}

function startWorker(url: URL): PlatformWorker {
  const w = new Worker(url, { type: 'module' });
  let held: unknown[] | null = [];
  const all = new Set<WorkerListeners>();
  w.addEventListener('message', (e) => {
    if (held && e.data === LISTENING) {
      const queued = held;
      held = null;
      for (const m of queued) w.postMessage(m);
      return;
    }
    for (const l of all) l.message(e.data);
  });
  w.addEventListener('error', (e) => {
    // A script that fails to load or link gives an ErrorEvent without a message.
    const err = new Error(e.message || `the worker script ${url.href} failed to load`);
    for (const l of all) l.error(err);
  });
  w.addEventListener('messageerror', () => {
    const err = new Error('a message from the worker could not be deserialized');
    for (const l of all) l.error(err);
  });
  return {
    postMessage(message) {
      if (held) held.push(message);
      else w.postMessage(message);
    },
    listen(l) {
      all.add(l);
      return () => {
        all.delete(l);
      };
    },
    ref() {},
    unref() {},
    terminate: async () => {
      w.terminate();
    },
  };
}

function workerPort(): WorkerPort {
  const { postMessage, addEventListener } = scope;
  if (typeof WorkerGlobalScope !== 'function' || !postMessage || !addEventListener) {
    throw new Error('workerPort() called outside a Web Worker');
  }
  let told = false;
  return {
    onMessage(listener) {
      addEventListener.call(globalThis, 'message', (e) => listener(e.data));
      if (!told) postMessage.call(globalThis, LISTENING);
      told = true;
    },
    postMessage: (message) => postMessage.call(globalThis, message),
  };
}

export const platform: Platform = {
  name: 'browser',
  hardwareConcurrency: () => scope.navigator?.hardwareConcurrency ?? 1,
  // navigator.deviceMemory is rounded and capped at 8 GiB (and Chromium only): too coarse to plan with.
  totalMemory: () => undefined,
  yieldToEventLoop,
  env: () => undefined,
  readBytes,
  readBytesSync: () => undefined,
  prepareWasmEngine() {},
  canShareMemoryWithWorkers: () => scope.crossOriginIsolated === true,
  mainThreadMayBlock: () => false,
  startWorker,
  workerPort,
};
