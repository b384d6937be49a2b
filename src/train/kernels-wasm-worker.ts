/**
 * Worker of the threaded wasm trainer kernels: shares the trainer's wasm memory, sleeps until a
 * product is posted, and runs its part of it as one operation of the Team it forms with the caller
 * and the other workers (gemm-job.ts).
 */
import { type MessagePort, workerData } from 'node:worker_threads';
import { kernelModule } from '../backends/wasm/module-loader.js';
import { abortTeam, Team, TeamAborted } from '../backends/wasm/team.js';
import { JOB, jobRunner, type WasmGemm } from './gemm-job.js';
import { recordFailure } from './thread-failure.js';

const { control, jobBuffer, failure, memory, tid, threads, cores } = workerData as {
  control: SharedArrayBuffer;
  jobBuffer: SharedArrayBuffer;
  failure: SharedArrayBuffer;
  memory: WebAssembly.Memory;
  /** This thread's end of its channel to the watchdog: it closes when this thread ends, however. */
  lifeline: MessagePort;
  tid: number;
  threads: number;
  cores: number;
};
const ctl = new Int32Array(control),
  job = new Int32Array(jobBuffer);
try {
  const inst = new WebAssembly.Instance(kernelModule('shared'), { env: { memory } });
  const team = new Team(ctl, tid, threads, cores);
  team.reset(threads);
  const runJob = jobRunner(team, (inst.exports as unknown as WasmGemm).gemm_f32, new Uint32Array(jobBuffer));
  // Ready only once the watchdog listens: from then on, a death of this thread is seen.
  Atomics.wait(job, JOB.WATCHED, 0);
  Atomics.add(job, JOB.READY, 1);
  let seen = 0;
  for (;;) {
    Atomics.wait(job, JOB.SEQ, seen);
    seen = Atomics.load(job, JOB.SEQ);
    if (Atomics.load(job, JOB.EXIT)) break;
    runJob();
  }
} catch (e) {
  if (!(e instanceof TeamAborted)) {
    // Not rethrown: the caller, blocked in a product, could not handle the Worker's error event.
    // The record carries the error to it; the abort wakes it and the other workers (TeamAborted).
    const err = e as Error;
    recordFailure(failure, tid, `${err.name}: ${err.message}`);
    abortTeam(ctl);
  }
}
