// A WebGPU device for kernel tests: pipelines compiled on demand from kernelSource, buffers filled
// from typed arrays, and one dispatch run in a command buffer of its own with buffers read back.
import type { GpuBuffer, GpuComputePipeline, GpuContext } from '../../src/backends/webgpu/gpu.js';
import { MAP_READ, STORAGE, USAGE, openGpu } from '../../src/backends/webgpu/gpu.js';
import { DispatchCache, Dispatches, emptyStats } from '../../src/backends/webgpu/dispatch.js';
import { kernelSource } from '../../src/backends/webgpu/shaders.js';

/** Why the WebGPU tests cannot run here (no adapter: null when they can), and whether it has subgroups. */
export async function probeWebGpu(): Promise<{ why: string | null; subgroups: boolean }> {
  try {
    const gpu = await openGpu();
    gpu.device.destroy();
    return { why: null, subgroups: gpu.subgroups };
  } catch (e) {
    return { why: `no WebGPU adapter here: ${(e as Error).message}`, subgroups: false };
  }
}

/** n values in [-scale, scale), from a seed (an LCG: the same values everywhere). */
export function random(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return ((s / 2 ** 32) * 2 - 1) * scale;
  });
}

export class KernelHarness {
  private readonly pipelines = new Map<string, GpuComputePipeline>();
  private readonly cache: DispatchCache;
  /** A 16-byte buffer for bindings a dispatch does not use. */
  readonly dummy: GpuBuffer;

  constructor(readonly gpu: GpuContext) {
    this.cache = new DispatchCache(gpu.device, (name) => this.pipeline(name), { current: emptyStats() });
    this.dummy = this.buffer(new Float32Array(4));
  }

  private pipeline(name: string): GpuComputePipeline {
    let p = this.pipelines.get(name);
    if (!p) {
      const dev = this.gpu.device;
      const module = dev.createShaderModule({
        code: kernelSource(name, { subgroups: this.gpu.subgroups, f16: this.gpu.f16 }),
      });
      p = dev.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
      this.pipelines.set(name, p);
    }
    return p;
  }

  buffer(data: Float32Array | Uint32Array | Uint8Array | Uint16Array): GpuBuffer {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    const b = this.gpu.device.createBuffer({ size, usage: STORAGE, mappedAtCreation: true });
    new Uint8Array(b.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    b.unmap();
    return b;
  }

  /**
   * Runs WGSL `body` once per value of `x` (statements that read `x[i]` and write `y[i * per + k]`,
   * k < per) after `prelude` (the WGSL functions under test, which bind nothing); returns y.
   */
  async elementwise(prelude: string, body: string, x: Float32Array, per: number): Promise<Float32Array> {
    const dev = this.gpu.device;
    const code = `${prelude}
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x;
  if (i >= ${x.length}u) { return; }
  ${body}
}`;
    dev.pushErrorScope('validation');
    const pipeline = dev.createComputePipeline({
      layout: 'auto',
      compute: { module: dev.createShaderModule({ code }), entryPoint: 'main' },
    });
    const xb = this.buffer(x),
      yb = this.buffer(new Float32Array(x.length * per));
    const group = dev.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [
        { binding: 0, resource: { buffer: xb } },
        { binding: 1, resource: { buffer: yb } },
      ],
    });
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(Math.ceil(x.length / 64));
    pass.end();
    const bytes = x.length * per * 4;
    const staging = dev.createBuffer({ size: bytes, usage: USAGE.MAP_READ | USAGE.COPY_DST });
    enc.copyBufferToBuffer(yb, 0, staging, 0, bytes);
    dev.queue.submit([enc.finish()]);
    const err = await dev.popErrorScope();
    if (err) throw new Error(err.message);
    await staging.mapAsync(MAP_READ);
    const y = new Float32Array(staging.getMappedRange().slice(0));
    for (const b of [staging, xb, yb]) b.destroy();
    return y;
  }

  /** Runs one dispatch, then returns the first `bytes` of each buffer of `read`. */
  async run(
    kernel: string,
    buffers: GpuBuffer[],
    params: number[],
    groups: number[],
    read: { buf: GpuBuffer; bytes: number }[],
  ): Promise<ArrayBuffer[]> {
    const dev = this.gpu.device;
    dev.pushErrorScope('validation');
    const enc = dev.createCommandEncoder();
    const plan = new Dispatches(this.cache, enc);
    plan.add(kernel, buffers, params, groups);
    plan.finish();
    const staging = read.map(({ buf, bytes }) => {
      const s = dev.createBuffer({ size: bytes, usage: USAGE.MAP_READ | USAGE.COPY_DST });
      enc.copyBufferToBuffer(buf, 0, s, 0, bytes);
      return s;
    });
    dev.queue.submit([enc.finish()]);
    const err = await dev.popErrorScope();
    if (err) throw new Error(err.message);
    const out: ArrayBuffer[] = [];
    for (const s of staging) {
      await s.mapAsync(MAP_READ);
      out.push(s.getMappedRange().slice(0));
      s.destroy();
    }
    return out;
  }
}
