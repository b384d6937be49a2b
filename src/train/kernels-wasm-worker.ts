/**
 * Worker of the threaded wasm trainer kernels: shares the trainer's wasm memory, sleeps until a
 * product is posted, and runs its part of it as one operation of the Team it forms with the caller
 * and the other workers (gemm-job.ts).
 */
import { workerData } from 'node:worker_threads';
import { kernelModule } from '../backends/wasm/module-loader.js';
import { abortTeam, Team, TeamAborted } from '../backends/wasm/team.js';
import { JOB, jobRunner, type WasmGemm } from './gemm-job.js';

const { control, jobBuffer, memory, tid, threads, cores } = workerData as {
  control: SharedArrayBuffer;
  jobBuffer: SharedArrayBuffer;
  memory: WebAssembly.Memory;
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
    // Wake the caller and the other workers: they leave the barrier with TeamAborted. Not rethrown:
    // the caller, blocked in a product, could not handle the Worker's error event.
    abortTeam(ctl);
    process.stderr.write(`training worker ${tid} failed: ${(e as Error).message}\n`);
  }
}
