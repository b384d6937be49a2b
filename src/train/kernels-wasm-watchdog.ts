/**
 * Watchdog of the trainer's kernel workers (kernels-wasm.ts). A worker that dies outside its own
 * error handling (terminated, out of memory, a crash) cannot say so, and the calling thread,
 * blocked at the Team's barrier, cannot receive the Worker's exit event; this thread's event loop
 * is free, and each worker holds one end of a MessageChannel whose other end is here: when a
 * worker's thread ends, its end closes and this one sees it. Unless the kernels were closed
 * (JOB.EXIT), it records the failure and aborts the Team, and the caller leaves the barrier with
 * the worker named.
 *
 * The workers count themselves ready only once this thread listens (JOB.WATCHED): a channel
 * whose other end closed before this end listened never reports it.
 */
import { type MessagePort, workerData } from 'node:worker_threads';
import { abortTeam } from '../backends/wasm/team.js';
import { JOB } from './gemm-job.js';
import { recordFailure, threadEndedMessage } from './thread-failure.js';

const { control, jobBuffer, failure, ports } = workerData as {
  control: SharedArrayBuffer;
  jobBuffer: SharedArrayBuffer;
  failure: SharedArrayBuffer;
  /** Per worker (tid 1, 2, …), the watchdog's end of its channel. */
  ports: MessagePort[];
};
const ctl = new Int32Array(control),
  job = new Int32Array(jobBuffer);

ports.forEach((port, i) => {
  const tid = i + 1;
  port.on('close', () => {
    if (Atomics.load(job, JOB.EXIT)) return;
    recordFailure(failure, tid, threadEndedMessage());
    abortTeam(ctl);
  });
  // A port reports its other end closing only once started; the listener also keeps this
  // thread alive while the worker lives.
  port.on('message', () => {});
});
Atomics.store(job, JOB.WATCHED, 1);
Atomics.notify(job, JOB.WATCHED);
