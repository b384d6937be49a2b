/**
 * Worker of the threaded wasm trainer kernels: shares the trainer's wasm memory, sleeps until a
 * job is posted, claims chunks of it alongside the other threads, and reports when it is out.
 */
import { workerData } from 'node:worker_threads';
import { kernelModule } from '../backends/wasm/module-loader.js';
import { WCTRL, workOnJob, type WasmGemm } from './gemm-job.js';

const { control, memory } = workerData as { control: SharedArrayBuffer; memory: WebAssembly.Memory };
const ctrl = new Int32Array(control),
  args = new Uint32Array(control);
const inst = new WebAssembly.Instance(kernelModule('shared'), { env: { memory } });
const gemm = (inst.exports as unknown as WasmGemm).gemm_f32;
let seen = 0;
for (;;) {
  Atomics.wait(ctrl, WCTRL.SEQ, seen);
  seen = Atomics.load(ctrl, WCTRL.SEQ);
  if (Atomics.load(ctrl, WCTRL.EXIT)) break;
  // Announce before claiming: the caller will not rewrite the job while we are in flight.
  Atomics.add(ctrl, WCTRL.INFLIGHT, 1);
  workOnJob(gemm, ctrl, args);
  Atomics.sub(ctrl, WCTRL.INFLIGHT, 1);
  Atomics.notify(ctrl, WCTRL.INFLIGHT);
}
