/**
 * What `backend: 'auto'` means. In Node: the wasm backend when this build has it, else the
 * reference one (the WebGPU backend is asked for by name). In a browser, given the model: WebGPU
 * when `navigator.gpu` offers a hardware adapter whose buffers can each hold every tensor of the
 * model, the wasm backend otherwise. A software adapter (Chromium's SwiftShader) does not count:
 * the wasm kernels are faster on the same CPU. WebGPU exposes no memory size, so only the
 * per-buffer limits are checked; a model larger than the GPU's memory fails at load.
 */
import type { MptConfig } from '../model/config.js';
import type { TensorSource } from '../formats/tensor-source.js';
import { platform } from '../platform/index.js';
import { getBackend, type BackendName } from './registry.js';

/** The backend picked and why, in words for the user. */
export interface BackendChoice {
  name: BackendName;
  reason: string;
}

interface AdapterView {
  readonly limits: Record<string, number>;
  readonly isFallbackAdapter?: boolean;
  readonly info?: { isFallbackAdapter?: boolean; description?: string; vendor?: string; architecture?: string };
}
interface GpuView {
  requestAdapter(o?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<AdapterView | null>;
}

async function builtBackend(): Promise<BackendName> {
  try {
    await getBackend('wasm');
    return 'wasm';
  } catch {
    return 'reference';
  }
}

function adapterName(a: AdapterView): string {
  const i = a.info ?? {};
  return [i.description, i.vendor, i.architecture].filter(Boolean).join(' / ') || 'a GPU';
}

/**
 * The `navigator.gpu` objects that gave no adapter. A browser logs a warning of its own at each
 * such answer (Chromium: "No available adapters."; no other API tells whether there is one), and
 * a page that loads several models would log it at each load. So a page that got no adapter is
 * taken to have none until it is reloaded: a machine without a usable GPU gives the same answer
 * each time; one that gains an adapter in the page's lifetime (a GPU process restarted) runs
 * 'auto' on wasm until the reload. Adapters that exist are asked for at each load, as before.
 */
const withoutAdapter = new WeakSet<object>();

/**
 * Whether a page's WebGPU adapter should run the model: the adapter's name, or the reason not.
 * Exported for tests, which give it adapters of their own making.
 */
export async function webgpuVerdict(
  gpu: GpuView | undefined,
  model: { config: MptConfig; tensors: Pick<TensorSource, 'info'> },
): Promise<{ ok: true; adapter: string } | { ok: false; why: string }> {
  if (gpu === undefined) return { ok: false, why: 'this browser has no WebGPU' };
  const none = { ok: false, why: 'WebGPU has no adapter here' } as const;
  if (withoutAdapter.has(gpu)) return none;
  let adapter: AdapterView | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    return { ok: false, why: `WebGPU gave no adapter (${(e as Error).message})` };
  }
  if (adapter === null) {
    withoutAdapter.add(gpu);
    return none;
  }
  if (adapter.info?.isFallbackAdapter === true || adapter.isFallbackAdapter === true) {
    return { ok: false, why: "WebGPU's only adapter is a software one (it runs on the CPU, slower than wasm)" };
  }
  const { limitOf, tensorOverLimit } = await import('./webgpu/weights.js');
  const limit = limitOf(adapter.limits);
  const over = tensorOverLimit(limit, model.config, model.tensors);
  if (over !== undefined) {
    return {
      ok: false,
      why: `tensor ${over.name} takes ${over.bytes} bytes, more than ${adapterName(adapter)} binds in one buffer (${limit})`,
    };
  }
  return { ok: true, adapter: adapterName(adapter) };
}

/**
 * The backend for `name`: itself unless 'auto' (or undefined); for 'auto' see this module's
 * comment. Without a model, or outside a browser, 'auto' never picks WebGPU.
 */
export async function chooseBackend(
  name: BackendName | 'auto' | undefined,
  model?: { config: MptConfig; tensors: Pick<TensorSource, 'info'> },
): Promise<BackendChoice> {
  if (name !== undefined && name !== 'auto') return { name, reason: `backend '${name}' asked for` };
  const built = await builtBackend();
  if (platform.name !== 'browser' || model === undefined) {
    return { name: built, reason: built === 'wasm' ? 'the wasm backend' : 'the wasm backend is not built' };
  }
  const gpu = (globalThis as { navigator?: { gpu?: GpuView } }).navigator?.gpu;
  const verdict = await webgpuVerdict(gpu, model);
  if (verdict.ok) return { name: 'webgpu', reason: `WebGPU on ${verdict.adapter}` };
  return { name: built, reason: `${verdict.why}, so ${built}` };
}
