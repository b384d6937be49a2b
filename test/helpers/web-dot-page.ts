/**
 * Runs in a Chromium page (test/web-dot-add.test.ts): loads the kernels as the wasm backend does
 * (module-loader.ts decides the build, timing the dot-add where nothing forces it) and runs the
 * q4_0 and q8_0 cases of dot-add-cases.ts on the chosen build. Nothing of Node here.
 */
import { dotAddProbeResult, loadKernelModules, usingDotAdd } from '../../src/backends/wasm/module-loader.js';
import { dotAddCases } from './dot-add-cases.js';
import { Heap } from './wasm-heap.js';

export interface DotPageRun {
  dotAdd: boolean;
  probe: number | null;
  outputs: Record<string, number[]>;
}

async function runDotCases(): Promise<DotPageRun> {
  await loadKernelModules();
  return { dotAdd: usingDotAdd(), probe: dotAddProbeResult(), outputs: dotAddCases(new Heap('shared')) };
}

(globalThis as { mpt?: unknown }).mpt = { runDotCases };
