/**
 * Worker-thread entry of the wasm backend (a Node worker thread or a browser Web Worker). Receives
 * the kernel modules, the arenas (shared wasm memories) and the layout once, then runs passes: one
 * message in, one message out per pass; everything inside a pass is synchronised through shared
 * memory (see team.ts).
 */
import { platform } from '../../platform/index.js';
import { Executor, type Pass } from './executor.js';
import { instantiateKernels } from './kernels.js';
import type { ModelLayout } from './layout.js';
import { adoptKernelModules, kernelModule, type KernelVariant } from './module-loader.js';
import { CTL, Team } from './team.js';

export interface InitMessage {
  type: 'init';
  /** Both builds: 'shared' runs the passes, 'shared-base' the sampling kernels (backends/sampling/wasm-kernels.ts). */
  modules: Record<KernelVariant, WebAssembly.Module>;
  memories: WebAssembly.Memory[];
  ctl: SharedArrayBuffer;
  tid: number;
  nt: number;
  cores: number;
  layout: ModelLayout;
}
export interface PassMessage {
  type: 'pass';
  pass: Pass;
}
export type WorkerRequest = InitMessage | PassMessage;
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'done' }
  | { type: 'error'; message: string; stack?: string; aborted: boolean };

let executor: Executor | null = null;
let ctl: Int32Array | null = null;
const port = platform.workerPort();

function reply(m: WorkerReply): void {
  port.postMessage(m);
}

port.onMessage((data) => {
  const msg = data as WorkerRequest;
  try {
    if (msg.type === 'init') {
      ctl = new Int32Array(msg.ctl);
      adoptKernelModules(msg.modules);
      const module = kernelModule('shared');
      const kernels = msg.memories.map((m) => instantiateKernels(module, m));
      const team = new Team(ctl, msg.tid, msg.nt, msg.cores);
      executor = new Executor(msg.layout, kernels, msg.memories, team);
      reply({ type: 'ready' });
    } else if (msg.type === 'pass') {
      executor!.run(msg.pass);
      reply({ type: 'done' });
    }
  } catch (e) {
    const err = e as Error;
    const aborted = err.name === 'TeamAborted' || err.constructor?.name === 'TeamAborted';
    if (ctl) {
      // wake the others: they leave their barrier with TeamAborted
      Atomics.store(ctl, CTL.abort, 1);
      Atomics.add(ctl, CTL.generation, 0);
      Atomics.notify(ctl, CTL.generation);
    }
    reply({ type: 'error', message: err.message, stack: err.stack, aborted });
  }
});
