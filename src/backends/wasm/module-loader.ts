/**
 * Finds and compiles the AssemblyScript kernel modules that `scripts/build-wasm.mjs` writes to
 * dist/wasm/, three builds of the same kernels:
 *   'shared'      shared memory, relaxed SIMD when the engine has it, else 'shared-base'; the
 *                 dot-add build ('shared-dot') instead where the engine lowers the relaxed
 *                 dot-add to one instruction (dot-lowering.ts times it once per process)
 *   'shared-base' shared memory, plain SIMD128 (also the synchronous helpers such as f32-ops)
 *   'shared-dot'  relaxed SIMD with the q4_0 and q8_0 tiles' block sums on i32x4 dot-adds (same results)
 * Node reads and compiles them on first use (`kernelModule`); a browser cannot read a file
 * synchronously, so there `loadKernelModules()` fetches and compiles them first (the wasm
 * backend's load does), and workers get them in their first message (`adoptKernelModules`).
 * MPT_WASM_RELAXED=0 forces the plain build; MPT_WASM_DOT=1 / 0 the dot-add build or not,
 * without timing.
 */
import { MptError } from '../../errors.js';
import { platform } from '../../platform/index.js';
import { packageFileUrl, packageUrlIsSet } from '../../platform/package-url.js';
import { type DotProbe, dotAddSpeedup, FUSED_SPEEDUP_NEEDED, probeImports } from './dot-lowering.js';

export type KernelVariant = 'shared' | 'shared-base' | 'shared-dot';
/** The builds a worker needs from its starter ('shared-dot' is only ever compiled as 'shared'). */
export type WorkerKernelVariant = Exclude<KernelVariant, 'shared-dot'>;

/** Where the compiled kernels live: dist/src/backends/wasm/x.js → dist/wasm/. */
export function kernelUrl(variant: KernelVariant | 'shared-relaxed' | 'dot-probe'): URL {
  const file = {
    shared: 'kernels.wasm',
    'shared-relaxed': 'kernels.wasm',
    'shared-base': 'kernels-base.wasm',
    'shared-dot': 'kernels-dot.wasm',
    'dot-probe': 'dot-probe.wasm',
  }[variant];
  return packageFileUrl(`dist/wasm/${file}`, new URL(`../../../wasm/${file}`, import.meta.url));
}

const compiled = new Map<KernelVariant, WebAssembly.Module>();
let relaxedInUse = false;
let dotInUse = false;

function relaxedWanted(): boolean {
  const want = platform.env('MPT_WASM_RELAXED') !== '0';
  platform.prepareWasmEngine({ relaxedSimd: want });
  return want;
}

function notFound(url: URL, e: unknown): MptError {
  const why = (e as Error).message;
  const hint =
    platform.name === 'browser' && !packageUrlIsSet()
      ? "serve the package's dist/wasm/ as application/wasm; in a bundle, say where the mpt-ts package folder is served with setPackageUrl()"
      : 'run `npm run build` first';
  return new MptError(`wasm kernels not found at ${url.href} (${why}): ${hint}`, { cause: e });
}

function readKernelSync(url: URL): Uint8Array<ArrayBuffer> {
  let bytes: Uint8Array<ArrayBuffer> | undefined;
  try {
    bytes = platform.readBytesSync(url);
  } catch (e) {
    throw notFound(url, e);
  }
  if (!bytes) throw new MptError('the wasm kernels are not loaded in this thread yet: await loadKernelModules() first');
  return bytes;
}

/** Whether the relaxed-SIMD build is in use for 'shared' (the dot-add build is one). */
export function usingRelaxedSimd(): boolean {
  kernelModule('shared');
  return relaxedInUse;
}

/** Whether 'shared' is the dot-add build. */
export function usingDotAdd(): boolean {
  kernelModule('shared');
  return dotInUse;
}

let dotChoice: boolean | null = null;

/**
 * Decides the dot-add build without the probe (true: use it, false: never, null: probe), for
 * benchmarks that compare the builds in a browser (no environment there). Takes effect only
 * before the first kernel load of the thread.
 */
export function chooseDotAdd(choice: boolean | null): void {
  dotChoice = choice;
}

/** MPT_WASM_DOT ('1' / '0') or chooseDotAdd decide without the probe; otherwise null. */
function dotForced(): boolean | null {
  const v = platform.env('MPT_WASM_DOT');
  return v === '1' ? true : v === '0' ? false : dotChoice;
}

/** The fused dot-add's speed-up measured on this engine, once per process (null before). */
let measuredSpeedup: number | null = null;

/** The speed-up dotAddSpeedup measured here, or null where no probe has run (forced, or no relaxed SIMD). */
export function dotAddProbeResult(): number | null {
  return measuredSpeedup;
}

/** Times the probe instance (dot-lowering.ts) and says whether the dot-add build wins. */
function dotChosen(probe: DotProbe, imports: ReturnType<typeof probeImports>): boolean {
  measuredSpeedup = dotAddSpeedup(probe, imports);
  return measuredSpeedup >= FUSED_SPEEDUP_NEEDED;
}

/** Compiles (once per thread) and returns the kernel module. */
export function kernelModule(variant: KernelVariant): WebAssembly.Module {
  let m = compiled.get(variant);
  if (!m) {
    if (variant === 'shared') {
      const relaxed = relaxedWanted() ? readKernelSync(kernelUrl('shared-relaxed')) : null;
      if (relaxed && WebAssembly.validate(relaxed)) {
        relaxedInUse = true;
        let forced = dotForced();
        if (forced === null) {
          const imports = probeImports();
          const probe = new WebAssembly.Instance(
            new WebAssembly.Module(readKernelSync(kernelUrl('dot-probe'))),
            imports,
          );
          forced = dotChosen(probe.exports as unknown as DotProbe, imports);
        }
        dotInUse = forced;
        m = dotInUse ? kernelModule('shared-dot') : new WebAssembly.Module(relaxed);
      } else m = kernelModule('shared-base');
    } else {
      relaxedWanted();
      m = new WebAssembly.Module(readKernelSync(kernelUrl(variant)));
    }
    compiled.set(variant, m);
  }
  return m;
}

async function readKernel(url: URL): Promise<Uint8Array<ArrayBuffer>> {
  try {
    return await platform.readBytes(url);
  } catch (e) {
    throw notFound(url, e);
  }
}

/** Compiles both builds without blocking (and without reading synchronously), once per thread. */
export async function loadKernelModules(): Promise<void> {
  if (compiled.has('shared') && compiled.has('shared-base')) return;
  const want = relaxedWanted();
  const [relaxed, base] = await Promise.all([
    want ? readKernel(kernelUrl('shared-relaxed')) : null,
    readKernel(kernelUrl('shared-base')),
  ]);
  if (!compiled.has('shared-base')) compiled.set('shared-base', await WebAssembly.compile(base));
  if (!compiled.has('shared')) {
    relaxedInUse = !!relaxed && WebAssembly.validate(relaxed);
    let forced = relaxedInUse ? dotForced() : false;
    if (forced === null) {
      const imports = probeImports();
      const probe = await WebAssembly.instantiate(await readKernel(kernelUrl('dot-probe')), imports);
      forced = dotChosen(probe.instance.exports as unknown as DotProbe, imports);
    }
    dotInUse = forced;
    if (dotInUse) {
      const dot = await WebAssembly.compile(await readKernel(kernelUrl('shared-dot')));
      compiled.set('shared-dot', dot);
      compiled.set('shared', dot);
    }
    if (!compiled.has('shared')) {
      compiled.set('shared', relaxedInUse ? await WebAssembly.compile(relaxed!) : compiled.get('shared-base')!);
    }
  }
}

/** The modules of this thread, to send to a worker (see adoptKernelModules). */
export function kernelModules(): Record<WorkerKernelVariant, WebAssembly.Module> {
  return { shared: kernelModule('shared'), 'shared-base': kernelModule('shared-base') };
}

/** In a worker: the modules its starter compiled, so that it neither reads nor compiles them again. */
export function adoptKernelModules(modules: Record<WorkerKernelVariant, WebAssembly.Module>): void {
  for (const [variant, m] of Object.entries(modules) as Array<[WorkerKernelVariant, WebAssembly.Module]>) {
    if (!compiled.has(variant)) compiled.set(variant, m);
  }
}

/** Bytes per wasm page. */
export const PAGE = 65536;
/** A wasm32 memory holds at most 65536 pages (4 GiB). */
export const MAX_PAGES = 65536;
