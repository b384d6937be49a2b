// Preloaded into every test process by run-tests.mjs (node --import). Dawn's Node binding (the
// `webgpu` package) waits for GPU work (mapAsync, onSubmittedWorkDone) by re-arming setImmediate
// with a native callback until the work is done: the JS thread runs at 100% for as long as the GPU
// works. On lavapipe, the CPU Vulkan driver CI tests WebGPU on, the GPU is the CPU: that thread takes
// a core from the driver's shader compiler (a new pipeline compiles for seconds on first dispatch),
// on a 2-core CI machine that also runs a second test file. Here those callbacks wait 1 ms instead
// (setTimeout); everything else that calls setImmediate is left alone.
//
// Why this is not in src/ for users too (looked at in the seventeenth session): Dawn's AsyncRunner
// looks up `setImmediate` on the global object at every tick (QueueTick: env.Global().Get(
// "setImmediate")), so the only handle on its polling is that global; the library cannot change
// it without replacing a global function in the user's process, even if only while one of its own
// GPU waits is pending. That would also slow other addons' native callbacks, and it would add up
// to 1 ms to every GPU wait (a decode step maps its logits once per token), a cost not measured on
// a real GPU yet. Kept to the tests until it can be measured there or Dawn offers a blocking wait.

import { promisify } from 'node:util';

const immediate = globalThis.setImmediate;

/** A function made by a native addon (N-API): native code with a prototype, which builtins lack. */
function fromAddon(fn) {
  return (
    typeof fn === 'function' &&
    fn.length === 0 &&
    Object.hasOwn(fn, 'prototype') &&
    Function.prototype.toString.call(fn).includes('[native code]')
  );
}

function setImmediate(fn, ...args) {
  return fromAddon(fn) ? setTimeout(fn, 1, ...args) : immediate(fn, ...args);
}
setImmediate[promisify.custom] = immediate[promisify.custom];
globalThis.setImmediate = setImmediate;
