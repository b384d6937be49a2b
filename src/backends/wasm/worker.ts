/**
 * Worker-thread entry of the wasm backend (a Node worker thread or a browser Web Worker). Receives
 * the kernel modules, the arenas (shared wasm memories) and the layout once, then runs passes:
 * it sleeps on its wake word in the pass channel (pass-channel.ts) and reads each pass from there,
 * or, for a pass that names something new, from a message; everything inside a pass is
 * synchronised through shared memory (see team.ts).
 */
import { platform } from '../../platform/index.js';
import { Executor, type Pass } from './executor.js';
import { instantiateKernels } from './kernels.js';
import type { ModelLayout } from './layout.js';
import { adoptKernelModules, kernelModule, type WorkerKernelVariant } from './module-loader.js';
import { HEAD, PassChannel, WAKE, wakeSlot, type ChannelShape, type WorkerKnows } from './pass-channel.js';
import type { PassTuning } from './pass-tuning.js';
import { abortTeam, Team } from './team.js';

export interface InitMessage {
  type: 'init';
  /** Both builds: 'shared' runs the passes, 'shared-base' the sampling kernels (backends/sampling/wasm-kernels.ts). */
  modules: Record<WorkerKernelVariant, WebAssembly.Module>;
  memories: WebAssembly.Memory[];
  ctl: SharedArrayBuffer;
  channel: SharedArrayBuffer;
  shape: ChannelShape;
  /** The engine's main thread has no Atomics.waitAsync: the last worker out of a pass says so in a message. */
  doneByMessage: boolean;
  tid: number;
  nt: number;
  cores: number;
  layout: ModelLayout;
  /** The pool's scheduling settings (pass-tuning.ts), the same in every thread. */
  tuning: PassTuning;
}
/** A pass the channel could not carry; the worker keeps its buffers and sampling options (ids) for later passes. */
export interface PassMessage {
  type: 'pass';
  seq: number;
  pass: Pass;
  /** Per sampling request of the pass, the id of its options (-1: none), or null. */
  sampleIds: number[] | null;
}
export type WorkerRequest = InitMessage | PassMessage;
export type WorkerReply =
  | { type: 'ready' }
  | { type: 'done'; seq: number }
  | { type: 'error'; seq?: number; message: string; stack?: string; aborted: boolean };

let executor: Executor | null = null;
let ctl: Int32Array | null = null;
let channel: PassChannel | null = null;
let init: InitMessage | null = null;
const knows: WorkerKnows = { options: [] };
/** The last wake word seen. */
let seen = 0;
/** Sequence number of the pass whose message a MESSAGE wake announced (0: none). */
let awaited = 0;
let idleSpins = 0;
const port = platform.workerPort();

function reply(m: WorkerReply): void {
  port.postMessage(m);
}

/** Tells the others to leave their barriers (TeamAborted). */
function abortOthers(): void {
  if (ctl) abortTeam(ctl);
}

function errorReply(e: unknown, seq?: number): WorkerReply {
  const err = e as Error;
  const aborted = err.name === 'TeamAborted' || err.constructor?.name === 'TeamAborted';
  return { type: 'error', ...(seq !== undefined ? { seq } : {}), message: err.message, stack: err.stack, aborted };
}

/** Runs a pass of `threads` workers and counts this one out (after its error, if any, is posted). */
function runPass(seq: number, threads: number, get: () => Pass): void {
  const c = channel!.words;
  try {
    executor!.run(get());
  } catch (e) {
    abortOthers();
    reply(errorReply(e, seq));
    Atomics.add(c, HEAD.failed, 1);
  }
  if (Atomics.add(c, HEAD.done, 1) + 1 === threads) {
    Atomics.notify(c, HEAD.done);
    if (init!.doneByMessage) reply({ type: 'done', seq });
  }
}

/** Runs passes from the channel until a wake asks for a message or for the end. */
function serve(): void {
  const ch = channel!,
    c = ch.words,
    slot = wakeSlot(init!.tid);
  for (;;) {
    let w = Atomics.load(c, slot);
    for (let i = 0; w === seen && i < idleSpins; i++) w = Atomics.load(c, slot);
    while (w === seen) {
      Atomics.wait(c, slot, seen);
      w = Atomics.load(c, slot);
    }
    seen = w;
    const kind = Atomics.load(c, slot + 1);
    if (kind === WAKE.quit) return;
    if (kind === WAKE.message) {
      awaited = w;
      return;
    }
    runPass(w, ch.descriptorThreads(), () => ch.decode(knows));
  }
}

/** Keeps what a pass message names, for the passes the channel will carry. */
function adopt(m: PassMessage): void {
  const p = m.pass;
  if (p.logitsOut) knows.logitsOut = p.logitsOut;
  if (p.tokensOut) knows.tokensOut = p.tokensOut;
  if (p.hiddenOut) knows.hiddenOut = p.hiddenOut;
  m.sampleIds?.forEach((id, j) => {
    const r = p.sample?.[j];
    if (id >= 0 && r) knows.options[id] = r.options;
  });
}

port.onMessage((data) => {
  const msg = data as WorkerRequest;
  if (msg.type === 'init') {
    try {
      init = msg;
      ctl = new Int32Array(msg.ctl);
      channel = new PassChannel(msg.channel, msg.shape);
      adoptKernelModules(msg.modules);
      const module = kernelModule('shared');
      const kernels = msg.memories.map((m) => instantiateKernels(module, m));
      const team = new Team(ctl, msg.tid, msg.nt, msg.cores, Number.POSITIVE_INFINITY, msg.tuning);
      executor = new Executor(msg.layout, kernels, msg.memories, team, msg.tuning);
      // Spinning on the wake word (a decode step's next pass often comes within tens of µs, and a
      // worker that need not be woken by the OS starts it at once) only while every worker has a core.
      idleSpins = msg.nt <= msg.cores ? msg.tuning.idleSpins : 0;
      reply({ type: 'ready' });
    } catch (e) {
      abortOthers();
      reply(errorReply(e));
      return;
    }
    serve();
  } else if (msg.type === 'pass') {
    // A message whose wake never came (the post to another worker failed) is dropped.
    if (msg.seq !== awaited) return;
    awaited = 0;
    adopt(msg);
    runPass(msg.seq, msg.pass.threads, () => msg.pass);
    serve();
  }
});
