/**
 * Passes on the calling thread, for a page that cannot share memory with workers (not
 * cross-origin isolated: no SharedArrayBuffer, and a shared wasm memory cannot be posted). The
 * kernels still use shared wasm memories (the builds import one), which such a page may create
 * for its own thread. One thread: the team never waits at a barrier (a page may not block).
 */
import { MptError, PlatformError } from '../../errors.js';
import { Executor, type Pass } from './executor.js';
import { instantiateKernels } from './kernels.js';
import type { ModelLayout } from './layout.js';
import { DEFAULT_TUNING } from './pass-tuning.js';
import type { PassPool } from './pool.js';
import { CTL, Team } from './team.js';

/**
 * Throws where this thread cannot create a shared wasm memory at all (browsers that allow one
 * only to cross-origin isolated pages; Chromium 156 allows it to every page).
 */
export function checkSharedWasmMemory(): void {
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch (e) {
    throw new PlatformError(
      'the wasm kernels need a shared WebAssembly.Memory, which this page may not create ' +
        `(${(e as Error).message}): serve it cross-origin isolated, with the headers ` +
        'Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp',
      { cause: e },
    );
  }
}

export class InlinePool implements PassPool {
  readonly threads = 1;
  readonly cores = 1;
  readonly tuning = DEFAULT_TUNING;
  private readonly ctl = new Int32Array(CTL.size);
  private readonly executor: Executor;
  private closed = false;

  constructor(module: WebAssembly.Module, memories: WebAssembly.Memory[], layout: ModelLayout) {
    const kernels = memories.map((m) => instantiateKernels(module, m));
    this.executor = new Executor(layout, kernels, memories, new Team(this.ctl, 0, 1, 1));
  }

  buffer(bytes: number): ArrayBuffer {
    return new ArrayBuffer(bytes);
  }

  async run(pass: Pass): Promise<void> {
    if (this.closed) throw new MptError('the wasm runner has been disposed');
    this.ctl.fill(0);
    this.executor.run(pass);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
