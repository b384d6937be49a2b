/**
 * The WebGPU backend's ModelRunner: weights (matrices in f32, f16 or bf16 as stored; weights.ts)
 * and f32 KV caches in GPU buffers, the MPT forward pass as a sequence of compute dispatches
 * (shaders.ts), step for step the reference backend's (src/backends/reference/forward.ts). One
 * command buffer per chunk of at most `maxRows` tokens of one sequence; logits come back through
 * a mapped staging buffer.
 *
 * This first version computes in f32 and runs the sequences of a batch one after the other: it
 * is the definition faster GPU kernels (quantized weights, batched decode) will be tested against,
 * as the wasm kernels are against the reference backend.
 */
import { InputError, UnsupportedError } from '../../errors.js';
import { alibiSlopes } from '../../model/alibi.js';
import type { MptConfig } from '../../model/config.js';
import type { ForwardOptions, KvCache, KvCacheOptions, ModelRunner, SequenceInput, SequenceOutput } from '../backend.js';
import { KvCacheBase } from '../kv-cache-base.js';
import { validateBatch } from '../validate-batch.js';
import type { LinearOf, NormOf, WeightTree } from '../../model/weight-tree.js';
import { MAP_READ, STORAGE, USAGE, type GpuBuffer, type GpuBindGroup, type GpuBindGroupLayout, type GpuCommandEncoder, type GpuComputePipeline, type GpuContext, type GpuDevice } from './gpu.js';
import { kernelSource } from './shaders.js';
import { bindingLimit, uploadBytes, type GpuTensor } from './weights.js';

/** Activation codes of the kernels (shaders.ts `activate`). */
const ACT = { none: 0, gelu: 1, gelu_tanh: 2, silu: 3, relu: 4 } as const;
/** Bytes per uniform slot (WebGPU's minimum uniform-buffer offset alignment). */
const SLOT = 256;

/** A matrix product's weights and its shape (rows = outputs, cols = inputs). */
interface GpuLinear { w: GpuTensor; b?: GpuTensor; rows: number; cols: number }

export class WebGpuKvCache extends KvCacheBase implements KvCache {
  /** @internal 1 = real token, 0 = padding, per position (the GPU copy is `valid`). */
  readonly padMask: Uint8Array;

  /** @internal */
  constructor(readonly runner: WebGpuRunner, readonly capacity: number, readonly kvType: 'f32' | 'f16',
    /** @internal */ readonly keys: GpuBuffer[], /** @internal */ readonly values: GpuBuffer[], /** @internal */ readonly valid: GpuBuffer) {
    super();
    this.padMask = new Uint8Array(capacity);
  }

  protected release(): void {
    for (const b of [...this.keys, ...this.values, this.valid]) b.destroy();
  }
}

/** One round's share of one sequence: tokens [t0, t0+n), and where its logit rows go. */
interface Chunk {
  seq: number;
  cache: WebGpuKvCache;
  tokens: ArrayLike<number>;
  padMask?: ArrayLike<number>;
  t0: number;
  n: number;
  /** Rows of the chunk whose logits are wanted, [first, end). */
  want: [number, number] | null;
  /** First row of the round's logits buffer for them. */
  logitsAt: number;
}

/** Scratch buffers for `rows` tokens. */
interface Scratch {
  /** Chunks whose token ids fit in `ids` (2 · maxRows words each). */
  idsFor: number;
  ids: GpuBuffer; x: GpuBuffer; xn: GpuBuffer; qkv: GpuBuffer; qn: GpuBuffer; kn: GpuBuffer;
  ctx: GpuBuffer; hid: GpuBuffer; gate: GpuBuffer;
}

export class WebGpuRunner implements ModelRunner {
  readonly backendName = 'webgpu';
  private readonly device: GpuDevice;
  private readonly pipelines = new Map<string, GpuComputePipeline>();
  private readonly dummy: GpuBuffer;
  private readonly slopes: GpuBuffer;
  private readonly softmaxScale: number;
  private scratch: Scratch | null = null;
  private logits: { buf: GpuBuffer; staging: GpuBuffer; rows: number } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;
  private readonly dispatchCache: DispatchCache;
  /** How the matrices are stored on the GPU (f32, f16, bf16). */
  readonly matrixTypes: string[];

  /** @internal use loadWebGpuRunner */
  constructor(readonly config: MptConfig, readonly gpu: GpuContext, private readonly W: WeightTree<GpuTensor>,
    /** Tokens per command buffer. */ readonly maxRows: number) {
    this.device = gpu.device;
    this.dispatchCache = new DispatchCache(this.device, (name) => this.pipeline(name));
    this.dummy = this.device.createBuffer({ size: 16, usage: STORAGE });
    const c = config;
    const slopes = c.attn.alibi ? alibiSlopes(c.nHeads, c.attn.alibiBiasMax) : new Float32Array(c.nHeads);
    this.slopes = uploadBytes(gpu, new Uint8Array(slopes.buffer, slopes.byteOffset, slopes.byteLength), 'slopes');
    this.softmaxScale = c.attn.softmaxScale ?? 1 / Math.sqrt(c.headDim);
    const mats = [W.wte, W.lmHead, ...W.blocks.flatMap((B) => [B.wqkv, B.outProj, B.upProj, B.downProj, ...(B.gateProj ? [B.gateProj] : [])].map((m) => m.weight))];
    this.matrixTypes = [...new Set(mats.map((m) => m.type))].sort();
    for (const name of ['embed', 'norm', 'matmul', 'glu', 'clip', 'storeKv', 'attention']) this.pipeline(name);
  }

  /** The compute pipeline of a kernel (shaders.ts kernelSource), compiled on first use. */
  pipeline(name: string): GpuComputePipeline {
    let p = this.pipelines.get(name);
    if (!p) {
      const module = this.device.createShaderModule({ code: kernelSource(name), label: name });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: name });
      this.pipelines.set(name, p);
    }
    return p;
  }

  createCache(options: KvCacheOptions): KvCache {
    if (this.disposed) throw new InputError('this runner has been disposed');
    if (!Number.isInteger(options.capacity) || options.capacity < 1) throw new InputError(`KV cache capacity must be a positive integer, got ${options.capacity}`);
    const kvType = options.kvType ?? 'f32';
    const c = this.config, kvd = c.attn.kvNHeads * c.headDim;
    if (kvType !== 'f32' && kvType !== 'f16') throw new UnsupportedError(`the webgpu backend keeps f32 or f16 KV caches (asked for ${kvType})`);
    if (kvType === 'f16' && kvd % 2) throw new UnsupportedError(`f16 KV caches need an even kv_heads · head_dim (this model: ${kvd})`);
    const bytes = options.capacity * kvd * (kvType === 'f16' ? 2 : 4);
    checkSize(this.gpu, bytes, 'a KV cache layer');
    const make = () => Array.from({ length: c.nLayers }, () => this.device.createBuffer({ size: bytes, usage: STORAGE }));
    const valid = this.device.createBuffer({ size: Math.ceil(options.capacity / 4) * 16, usage: STORAGE });
    return new WebGpuKvCache(this, options.capacity, kvType, make(), make(), valid);
  }

  /** A copy of `from` made on the GPU (queued before any later forward call's work). */
  copyCache(from: KvCache, capacity: number): KvCache {
    if (!(from instanceof WebGpuKvCache) || from.runner !== this) throw new InputError('this KV cache was not created by this webgpu runner');
    if (from.disposed) throw new InputError('this KV cache has been disposed');
    if (!(capacity >= from.len)) throw new InputError(`a copy of ${from.len} positions needs a capacity of at least ${from.len}, got ${capacity}`);
    const to = this.createCache({ capacity, kvType: from.kvType }) as WebGpuKvCache;
    const n = from.len;
    if (n > 0) {
      const c = this.config, rowBytes = c.attn.kvNHeads * c.headDim * (from.kvType === 'f16' ? 2 : 4);
      const enc = this.device.createCommandEncoder();
      for (let l = 0; l < c.nLayers; l++) {
        enc.copyBufferToBuffer(from.keys[l]!, 0, to.keys[l]!, 0, n * rowBytes);
        enc.copyBufferToBuffer(from.values[l]!, 0, to.values[l]!, 0, n * rowBytes);
      }
      enc.copyBufferToBuffer(from.valid, 0, to.valid, 0, n * 4);
      this.device.queue.submit([enc.finish()]);
    }
    to.padMask.set(from.padMask.subarray(0, n));
    to.len = n;
    return to;
  }

  forward(batch: SequenceInput[], options: ForwardOptions): Promise<SequenceOutput[]> {
    const run = this.queue.then(() => this.forwardNow(batch, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    this.device.destroy();
  }

  private async forwardNow(batch: SequenceInput[], options: ForwardOptions): Promise<SequenceOutput[]> {
    if (this.disposed) throw new InputError('this runner has been disposed');
    validateBatch(batch, options, this.config.vocabSize, (c): c is WebGpuKvCache => c instanceof WebGpuKvCache && c.runner === this, 'webgpu');
    const V = this.config.vocabSize;
    const modes = batch.map((s) => s.logits ?? options.logits);
    const outputs: SequenceOutput[] = batch.map((s, i) =>
      ({ logits: new Float32Array((modes[i] === 'all' ? s.tokens.length : modes[i] === 'last' && s.tokens.length > 0 ? 1 : 0) * V) }));
    const done = batch.map(() => 0);
    // Rounds: the next chunk of every unfinished sequence, all in one command buffer and one read-back.
    for (;;) {
      const round: Chunk[] = [];
      let logitRows = 0;
      batch.forEach((s, i) => {
        const T = s.tokens.length, t0 = done[i]!;
        if (t0 >= T) return;
        const n = Math.min(this.maxRows, T - t0);
        const want: [number, number] | null = modes[i] === 'all' ? [0, n] : modes[i] === 'last' && t0 + n === T ? [n - 1, n] : null;
        round.push({ seq: i, cache: s.cache as WebGpuKvCache, tokens: s.tokens, padMask: s.padMask, t0, n, want, logitsAt: logitRows });
        if (want) logitRows += want[1] - want[0];
      });
      if (round.length === 0) break;
      const rows = await this.runRound(round, logitRows);
      for (const ch of round) {
        done[ch.seq] = ch.t0 + ch.n;
        if (!ch.want || !rows) continue;
        const m = ch.want[1] - ch.want[0];
        outputs[ch.seq]!.logits.set(rows.subarray(ch.logitsAt * V, (ch.logitsAt + m) * V), modes[ch.seq] === 'all' ? ch.t0 * V : 0);
      }
    }
    return outputs;
  }

  /** Encodes, submits and waits for one round; returns its logit rows (chunk by chunk). */
  private async runRound(round: Chunk[], logitRows: number): Promise<Float32Array | null> {
    const dev = this.device, V = this.config.vocabSize, R = this.maxRows;
    const s = this.ensureScratch(round.length);
    const ids = new Uint32Array(2 * R * round.length);
    round.forEach((ch, k) => this.prepare(ch, ids, 2 * R * k));
    dev.queue.writeBuffer(s.ids, 0, ids);
    const out = logitRows > 0 ? this.ensureLogits(logitRows) : null;
    // Validation errors of encoding and submission come back here, not as uncaptured errors.
    dev.pushErrorScope('validation');
    const enc = dev.createCommandEncoder();
    const plan = new Dispatches(this.dispatchCache, enc);
    round.forEach((ch, k) => this.encode(plan, s, ch, 2 * R * k, out?.buf ?? null));
    plan.finish();
    if (out) enc.copyBufferToBuffer(out.buf, 0, out.staging, 0, logitRows * V * 4);
    dev.queue.submit([enc.finish()]);
    const err = await dev.popErrorScope();
    if (err) throw new Error(`webgpu: ${err.message}`);
    for (const ch of round) ch.cache.len += ch.n;
    if (!out) {
      await dev.queue.onSubmittedWorkDone();
      return null;
    }
    await out.staging.mapAsync(MAP_READ, 0, logitRows * V * 4);
    const rows = new Float32Array(out.staging.getMappedRange(0, logitRows * V * 4).slice(0));
    out.staging.unmap();
    return rows;
  }

  /**
   * A chunk's token ids, then (learned position embeddings) positions, into `ids` at `at`;
   * MosaicML shifts positions left past padding. Also the pad mask, on both sides.
   */
  private prepare(ch: Chunk, ids: Uint32Array, at: number): void {
    const c = this.config, cache = ch.cache, past = cache.len, n = ch.n;
    let pads = 0;
    for (let j = 0; j < past; j++) if (!cache.padMask[j]) pads++;
    for (let t = 0; t < n; t++) {
      const real = ch.padMask ? (ch.padMask[ch.t0 + t] ? 1 : 0) : 1;
      if (!real) pads++;
      const pos = Math.max(0, past + t - pads);
      if (this.W.wpe && pos >= c.maxSeqLen) throw new InputError(`position ${pos} is beyond the learned position embedding (max_seq_len ${c.maxSeqLen})`);
      ids[at + t] = ch.tokens[ch.t0 + t]!;
      ids[at + n + t] = pos;
    }
    for (let t = 0; t < n; t++) cache.padMask[past + t] = ch.padMask ? (ch.padMask[ch.t0 + t] ? 1 : 0) : 1;
    // The pad mask as u32 flags, rewritten from a 4-aligned start.
    const from = past & ~3;
    this.device.queue.writeBuffer(cache.valid, from * 4, Uint32Array.from(cache.padMask.subarray(from, past + n)));
  }

  /** The dispatches of one chunk: tokens [t0, t0+n) of one sequence on top of its cache. */
  private encode(plan: Dispatches, s: Scratch, ch: Chunk, idsAt: number, logits: GpuBuffer | null): void {
    const c = this.config, n = ch.n, past = ch.cache.len, cache = ch.cache;
    const d = c.dModel, kvd = c.attn.kvNHeads * c.headDim, qn = d + 2 * kvd, ff = c.ffn.hiddenSize, V = c.vocabSize;
    const W = this.W;
    const normFlags = (w: NormOf<GpuTensor>) => (w.weight ? 1 : 0) | (w.bias ? 2 : 0) | (c.normType.includes('rmsnorm') ? 4 : 0);
    const norm = (x: GpuBuffer, ldx: number, xoff: number, w: NormOf<GpuTensor>, y: GpuBuffer, ldy: number, yoff: number, width: number) =>
      plan.add('norm', [x, w.weight?.buf ?? this.dummy, w.bias?.buf ?? this.dummy, y], [n, width, ldx, xoff, ldy, yoff, normFlags(w), 0, f32bits(c.layerNormEpsilon)], [n]);
    const matmul = (x: GpuBuffer, ldx: number, xoff: number, rows: number, m: GpuLinear, y: GpuBuffer, ldy: number, acc: boolean, act = 0, scale = 1, yoff = 0) =>
      plan.add(`matmul.${m.w.type}`, [x, m.w.buf, m.b?.buf ?? this.dummy, y], [rows, m.rows, m.cols, ldx, xoff, ldy, yoff, (m.b ? 1 : 0) | (acc ? 2 : 0), act, f32bits(scale)],
        [Math.min(m.rows, 32768), Math.ceil(rows / 4), Math.ceil(m.rows / 32768)]);
    const lin = (m: LinearOf<GpuTensor>, rows: number, cols: number): GpuLinear => ({ w: m.weight, b: m.bias, rows, cols });
    const act = ACT[c.ffn.activation];

    plan.add(`embed.${W.wte.type}.${W.wpe?.type ?? 'f32'}`, [s.ids, W.wte.buf, W.wpe?.buf ?? this.dummy, s.x], [n, d, W.wpe ? 1 : 0, idsAt], [Math.ceil(d / 64), n]);
    W.blocks.forEach((B, l) => {
      norm(s.x, d, 0, B.norm1, s.xn, d, 0, d);
      matmul(s.xn, d, 0, n, lin(B.wqkv, qn, d), s.qkv, qn, false);
      if (c.attn.clipQkv !== null) plan.add('clip', [s.qkv], [n * qn, f32bits(c.attn.clipQkv)], [Math.min(1024, Math.ceil((n * qn) / 256))]);
      // qk_ln normalises all of q and all of k (across heads), before the split into heads.
      let q: [GpuBuffer, number, number] = [s.qkv, qn, 0];
      let k: [GpuBuffer, number, number] = [s.qkv, qn, d];
      if (c.attn.qkLn) {
        norm(s.qkv, qn, 0, B.qLn!, s.qn, d, 0, d);
        norm(s.qkv, qn, d, B.kLn!, s.kn, kvd, 0, kvd);
        q = [s.qn, d, 0];
        k = [s.kn, kvd, 0];
      }
      const kv = cache.kvType;
      plan.add(`storeKv.${kv}`, [k[0], s.qkv, cache.keys[l]!, cache.values[l]!], [n, kvd, past, 0, k[1], k[2], qn, d + kvd], [Math.ceil(kvd / (kv === 'f16' ? 128 : 64)), n]);
      plan.add(`attention.${kv}`, [q[0], cache.keys[l]!, cache.values[l]!, cache.valid, this.slopes, s.ctx],
        [n, past, c.headDim, kvd, q[1], q[2], c.nHeads / c.attn.kvNHeads, d, f32bits(this.softmaxScale)], [n, c.nHeads]);
      matmul(s.ctx, d, 0, n, lin(B.outProj, d, d), s.x, d, true);
      norm(s.x, d, 0, B.norm2, s.xn, d, 0, d);
      if (B.gateProj) {
        matmul(s.xn, d, 0, n, lin(B.gateProj, ff, d), s.gate, ff, false);
        matmul(s.xn, d, 0, n, lin(B.upProj, ff, d), s.hid, ff, false);
        plan.add('glu', [s.gate, s.hid], [n * ff, act], [Math.min(1024, Math.ceil((n * ff) / 256))]);
      } else {
        matmul(s.xn, d, 0, n, lin(B.upProj, ff, d), s.hid, ff, false, act);
      }
      matmul(s.hid, ff, 0, n, lin(B.downProj, d, ff), s.x, d, true);
    });
    if (ch.want && logits) {
      const [r0, r1] = ch.want;
      norm(s.x, d, 0, W.normF, s.xn, d, 0, d);
      matmul(s.xn, d, r0 * d, r1 - r0, { w: W.lmHead, rows: V, cols: d }, logits, V, false, 0, c.logitScale ?? 1, ch.logitsAt * V);
    }
  }

  /** Scratch buffers for one chunk at a time, and token ids for `sequences` chunks. */
  private ensureScratch(sequences: number): Scratch {
    const c = this.config, R = this.maxRows, d = c.dModel, kvd = c.attn.kvNHeads * c.headDim, ff = c.ffn.hiddenSize;
    const buf = (words: number, label: string) => {
      checkSize(this.gpu, words * 4, label);
      return this.device.createBuffer({ size: Math.max(16, words * 4), usage: STORAGE, label });
    };
    this.scratch ??= {
      idsFor: 0, ids: this.dummy, x: buf(R * d, 'x'), xn: buf(R * d, 'xn'), qkv: buf(R * (d + 2 * kvd), 'qkv'),
      qn: buf(c.attn.qkLn ? R * d : 4, 'q'), kn: buf(c.attn.qkLn ? R * kvd : 4, 'k'), ctx: buf(R * d, 'ctx'),
      hid: buf(R * ff, 'hid'), gate: buf(c.ffn.ffnType === 'mptglu' ? R * ff : 4, 'gate'),
    };
    if (this.scratch.idsFor < sequences) {
      if (this.scratch.idsFor > 0) this.scratch.ids.destroy();
      this.scratch.ids = buf(2 * R * sequences, 'ids');
      this.scratch.idsFor = sequences;
    }
    return this.scratch;
  }

  private ensureLogits(rows: number): { buf: GpuBuffer; staging: GpuBuffer } {
    if (this.logits && this.logits.rows >= rows) return this.logits;
    this.logits?.buf.destroy();
    this.logits?.staging.destroy();
    const bytes = rows * this.config.vocabSize * 4;
    checkSize(this.gpu, bytes, 'the logits');
    this.logits = {
      rows,
      buf: this.device.createBuffer({ size: bytes, usage: STORAGE, label: 'logits' }),
      staging: this.device.createBuffer({ size: bytes, usage: USAGE.MAP_READ | USAGE.COPY_DST, label: 'logits staging' }),
    };
    return this.logits;
  }
}

/**
 * What the dispatches of every round share, so that a decode step re-encodes without creating
 * objects: one uniform buffer for the parameters (rewritten each round; the previous round has
 * finished by then), bind groups by (kernel, parameter slot, buffers), bind-group layouts.
 */
class DispatchCache {
  private uniforms: GpuBuffer | null = null;
  private readonly groups = new Map<string, GpuBindGroup>();
  private readonly layouts = new Map<string, GpuBindGroupLayout>();
  private readonly ids = new WeakMap<GpuBuffer, number>();
  private nextId = 1;

  constructor(private readonly device: GpuDevice, readonly pipeline: (name: string) => GpuComputePipeline) {}

  /** The uniform buffer, holding `words` from its start. */
  params(words: Uint32Array): GpuBuffer {
    if (!this.uniforms || this.uniforms.size < words.byteLength) {
      this.uniforms?.destroy();
      this.uniforms = this.device.createBuffer({ size: Math.max(words.byteLength, 64 * SLOT), usage: USAGE.UNIFORM | USAGE.COPY_DST, label: 'params' });
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
      if (!layout) this.layouts.set(kernel, (layout = this.pipeline(kernel).getBindGroupLayout(0)));
      g = this.device.createBindGroup({
        layout,
        entries: [{ binding: 0, resource: { buffer: this.uniforms!, offset: slot * SLOT, size: 64 } },
          ...buffers.map((buffer, b) => ({ binding: b + 1, resource: { buffer } }))],
      });
      this.groups.set(key, g);
    }
    return g;
  }

  private id(b: GpuBuffer): number {
    let i = this.ids.get(b);
    if (i === undefined) this.ids.set(b, (i = this.nextId++));
    return i;
  }
}

/** The dispatches of one command buffer, their parameters gathered in one uniform buffer. */
class Dispatches {
  private readonly items: { kernel: string; buffers: GpuBuffer[]; params: number[]; groups: number[] }[] = [];

  constructor(private readonly cache: DispatchCache, private readonly enc: GpuCommandEncoder) {}

  add(kernel: string, buffers: GpuBuffer[], params: number[], groups: number[]): void {
    this.items.push({ kernel, buffers, params, groups });
  }

  /** Writes the parameters, then encodes every dispatch in order in one compute pass. */
  finish(): void {
    const words = new Uint32Array((this.items.length * SLOT) / 4);
    this.items.forEach((it, i) => words.set(it.params, (i * SLOT) / 4));
    this.cache.params(words);
    const pass = this.enc.beginComputePass();
    this.items.forEach((it, i) => {
      pass.setPipeline(this.cache.pipeline(it.kernel));
      pass.setBindGroup(0, this.cache.group(it.kernel, i, it.buffers));
      pass.dispatchWorkgroups(it.groups[0]!, it.groups[1] ?? 1, it.groups[2] ?? 1);
    });
    pass.end();
  }
}

function f32bits(x: number): number {
  return new Uint32Array(Float32Array.of(x).buffer)[0]!;
}

function checkSize(gpu: GpuContext, bytes: number, what: string): void {
  const max = bindingLimit(gpu);
  if (bytes > max) throw new UnsupportedError(`${what} takes ${bytes} bytes, more than this GPU binds in one buffer (${max}); the webgpu backend does not split tensors yet`);
}
