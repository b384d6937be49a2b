/**
 * Encoding dispatches: their parameters gathered in one uniform buffer (a 256-byte slot each),
 * bind groups cached so that a decode step creates no objects, and the counts of what was encoded
 * (`WebGpuStats`).
 */
import {
  USAGE,
  type GpuBindGroup,
  type GpuBindGroupLayout,
  type GpuBuffer,
  type GpuCommandEncoder,
  type GpuComputePipeline,
  type GpuDevice,
} from './gpu.js';

/** Bytes per uniform slot (WebGPU's minimum uniform-buffer offset alignment). */
const SLOT = 256;

/** What a runner's forward calls have encoded, since it was loaded or `resetStats()`. */
export interface WebGpuStats {
  /** Forward calls. */
  forwards: number;
  /** Command buffers submitted (one a round: the next chunk of the batch's sequences). */
  submissions: number;
  /** Compute dispatches. */
  dispatches: number;
  /** Per weight matrix (its checkpoint name): the products that read it (each reads it whole, once). */
  matrixReads: Map<string, number>;
}

export function emptyStats(): WebGpuStats {
  return { forwards: 0, submissions: 0, dispatches: 0, matrixReads: new Map() };
}

/**
 * What the dispatches of every round share: one uniform buffer for the parameters (rewritten each
 * round; the previous round has finished by then), bind groups by (kernel, parameter slot,
 * buffers), bind-group layouts.
 */
export class DispatchCache {
  private uniforms: GpuBuffer | null = null;
  private readonly groups = new Map<string, GpuBindGroup>();
  private readonly layouts = new Map<string, GpuBindGroupLayout>();
  private readonly ids = new WeakMap<GpuBuffer, number>();
  private nextId = 1;

  constructor(
    private readonly device: GpuDevice,
    readonly pipeline: (name: string) => GpuComputePipeline,
    readonly stats: { current: WebGpuStats },
  ) {}

  /** The uniform buffer, holding `words` from its start. */
  params(words: Uint32Array): GpuBuffer {
    if (!this.uniforms || this.uniforms.size < words.byteLength) {
      this.uniforms?.destroy();
      const size = Math.max(words.byteLength, 64 * SLOT);
      this.uniforms = this.device.createBuffer({ size, usage: USAGE.UNIFORM | USAGE.COPY_DST, label: 'params' });
      this.groups.clear();
    }
    this.device.queue.writeBuffer(this.uniforms, 0, words);
    return this.uniforms;
  }

  group(kernel: string, slot: number, buffers: GpuBuffer[]): GpuBindGroup {
    const key = `${kernel}@${slot}:${buffers.map((b) => this.id(b)).join(',')}`;
    let g = this.groups.get(key);
    if (!g) {
      // Destroyed caches leave entries behind: start over now and then.
      if (this.groups.size >= 8192) this.groups.clear();
      let layout = this.layouts.get(kernel);
      if (!layout) {
        layout = this.pipeline(kernel).getBindGroupLayout(0);
        this.layouts.set(kernel, layout);
      }
      g = this.device.createBindGroup({
        layout,
        entries: [
          { binding: 0, resource: { buffer: this.uniforms!, offset: slot * SLOT, size: 64 } },
          ...buffers.map((buffer, b) => ({ binding: b + 1, resource: { buffer } })),
        ],
      });
      this.groups.set(key, g);
    }
    return g;
  }

  private id(b: GpuBuffer): number {
    let i = this.ids.get(b);
    if (i === undefined) {
      i = this.nextId++;
      this.ids.set(b, i);
    }
    return i;
  }
}

interface Item {
  kernel: string;
  buffers: GpuBuffer[];
  params: number[];
  groups: number[];
  reads?: string;
}

/** The dispatches of one command buffer, in order, in one compute pass. */
export class Dispatches {
  private readonly items: Item[] = [];

  constructor(
    private readonly cache: DispatchCache,
    private readonly enc: GpuCommandEncoder,
  ) {}

  /**
   * A dispatch of `kernel` with buffers at bindings 1.., up to sixteen u32 parameters; `reads`
   * names the weight matrix it reads whole (a product), for the stats.
   */
  add(kernel: string, buffers: GpuBuffer[], params: number[], groups: number[], reads?: string): void {
    this.items.push({ kernel, buffers, params, groups, reads });
  }

  /** Writes the parameters, then encodes every dispatch in order. */
  finish(): void {
    const words = new Uint32Array((this.items.length * SLOT) / 4);
    this.items.forEach((it, i) => {
      words.set(it.params, (i * SLOT) / 4);
    });
    this.cache.params(words);
    const stats = this.cache.stats.current;
    const pass = this.enc.beginComputePass();
    this.items.forEach((it, i) => {
      pass.setPipeline(this.cache.pipeline(it.kernel));
      pass.setBindGroup(0, this.cache.group(it.kernel, i, it.buffers));
      pass.dispatchWorkgroups(it.groups[0]!, it.groups[1] ?? 1, it.groups[2] ?? 1);
      if (it.reads !== undefined) stats.matrixReads.set(it.reads, (stats.matrixReads.get(it.reads) ?? 0) + 1);
    });
    stats.dispatches += this.items.length;
    pass.end();
  }
}
