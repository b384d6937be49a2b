/**
 * The WebGPU device: the browser's `navigator.gpu`, or in Node the `webgpu` npm package (Dawn).
 * Only the part of the WebGPU API this backend uses is typed here (TypeScript's DOM library has
 * no WebGPU types), so the backend builds without the optional package installed.
 */
import { UnsupportedError } from '../../errors.js';

export interface GpuBuffer {
  readonly size: number;
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}
export interface GpuBindGroupLayout {
  readonly __brand?: 'layout';
}
export interface GpuBindGroup {
  readonly __brand?: 'group';
}
export interface GpuComputePipeline {
  getBindGroupLayout(index: number): GpuBindGroupLayout;
}
export interface GpuComputePass {
  setPipeline(p: GpuComputePipeline): void;
  setBindGroup(index: number, g: GpuBindGroup): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
export interface GpuCommandBuffer {
  readonly __brand?: 'commands';
}
export interface GpuCommandEncoder {
  beginComputePass(): GpuComputePass;
  copyBufferToBuffer(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void;
  finish(): GpuCommandBuffer;
}
export interface GpuBufferBinding {
  buffer: GpuBuffer;
  offset?: number;
  size?: number;
}
export interface GpuDevice {
  readonly limits: Record<string, number>;
  readonly queue: {
    submit(buffers: GpuCommandBuffer[]): void;
    writeBuffer(
      buffer: GpuBuffer,
      offset: number,
      data: ArrayBufferView | ArrayBuffer,
      dataOffset?: number,
      size?: number,
    ): void;
    onSubmittedWorkDone(): Promise<void>;
  };
  createBuffer(d: { size: number; usage: number; mappedAtCreation?: boolean; label?: string }): GpuBuffer;
  createShaderModule(d: { code: string; label?: string }): unknown;
  createComputePipeline(d: {
    layout: 'auto';
    compute: { module: unknown; entryPoint: string };
    label?: string;
  }): GpuComputePipeline;
  createComputePipelineAsync?(d: {
    layout: 'auto';
    compute: { module: unknown; entryPoint: string };
    label?: string;
  }): Promise<GpuComputePipeline>;
  createBindGroup(d: {
    layout: GpuBindGroupLayout;
    entries: { binding: number; resource: GpuBufferBinding }[];
  }): GpuBindGroup;
  createCommandEncoder(): GpuCommandEncoder;
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<{ message: string } | null>;
  destroy(): void;
}
interface GpuAdapter {
  readonly limits: Record<string, number>;
  readonly features?: { has(name: string): boolean };
  readonly info?: { vendor?: string; architecture?: string; device?: string; description?: string };
  requestDevice(d?: { requiredLimits?: Record<string, number>; requiredFeatures?: string[] }): Promise<GpuDevice>;
}
interface Gpu {
  requestAdapter(o?: { powerPreference?: 'high-performance' | 'low-power' }): Promise<GpuAdapter | null>;
}

/** GPUBufferUsage and GPUMapMode flags (fixed by the WebGPU specification). */
export const USAGE = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 } as const;
export const MAP_READ = 1;
/** Usage of every storage buffer of the backend (weights, caches, scratch). */
export const STORAGE = USAGE.STORAGE | USAGE.COPY_DST | USAGE.COPY_SRC;

/** Limits this backend asks for: as large as the adapter allows (big embedding matrices). */
const WANTED_LIMITS = ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupsPerDimension'];

async function findGpu(): Promise<Gpu> {
  const nav = (globalThis as { navigator?: { gpu?: Gpu } }).navigator;
  if (nav?.gpu) return nav.gpu;
  try {
    // A computed specifier: the package is optional.
    const spec = 'webgpu';
    const mod = (await import(spec)) as { create(flags: string[]): Gpu };
    return mod.create([]);
  } catch (e) {
    throw new UnsupportedError(
      `WebGPU is not available: in Node the backend needs the optional \`webgpu\` package (npm install webgpu@0.6.2) and a GPU driver (${(e as Error).message})`,
    );
  }
}

export interface GpuContext {
  device: GpuDevice;
  /** The device has the `subgroups` feature (WGSL subgroup operations). */
  subgroups: boolean;
  /** The device has the `shader-f16` feature (asked for with `f16`). */
  f16: boolean;
  /** The adapter, in words (for `mpt info`, benchmarks, errors). */
  adapterName: string;
  /**
   * The WebGPU instance and adapter, held as long as the device: Dawn's Node binding tears its
   * instance down when that object is collected, and the device's next call then crashes.
   */
  readonly owners: unknown[];
}

/**
 * Opens a device on the best adapter, with the `subgroups` feature where the adapter has it and
 * `subgroups` is not false, and `shader-f16` where it has it and `f16` is true. Throws
 * UnsupportedError when there is no adapter.
 */
export async function openGpu(options: { subgroups?: boolean; f16?: boolean } = {}): Promise<GpuContext> {
  const gpu = await findGpu();
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter)
    throw new UnsupportedError('WebGPU found no GPU adapter (in Node: is a Vulkan, Metal or D3D12 driver installed?)');
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) if (adapter.limits[k] !== undefined) requiredLimits[k] = adapter.limits[k]!;
  const subgroups = options.subgroups !== false && !!adapter.features?.has('subgroups');
  const f16 = options.f16 === true && !!adapter.features?.has('shader-f16');
  const requiredFeatures = [...(subgroups ? ['subgroups'] : []), ...(f16 ? ['shader-f16'] : [])];
  const device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  const i = adapter.info ?? {};
  const adapterName =
    [i.description || i.device, i.vendor, i.architecture].filter(Boolean).join(' / ') || 'unknown adapter';
  return { device, subgroups, f16, adapterName, owners: [gpu, adapter] };
}
