/**
 * The WebGPU backend's ModelRunner: weights (matrices in their stored type, layout.ts) and f32 or
 * f16 KV caches in GPU buffers (ranges of shared pools, kv-pool.ts), the MPT forward pass as compute dispatches (matvec.ts, shaders.ts),
 * step for step the reference backend's (src/backends/reference/forward.ts).
 *
 * A forward call runs in rounds of at most `maxRows` tokens: the next chunk of as many of the
 * batch's sequences as fit, their rows side by side in the scratch buffers, so that every product
 * reads each weight once per round for all of them. One command buffer per round; the wanted logit
 * rows come back through one mapped staging buffer.
 *
 * Dispatches of a round: the embedding; per layer the QKV product (norm_1 and clip_qkv fused),
 * attention (storing the new keys and values; one dispatch for the rows of every chunk of up to 8
 * rows, whose caches share a pool, kv-pool.ts; one per longer chunk; qk_ln adds a dispatch per
 * chunk before it), the output product (+= residual), the up product (norm_2 and the activation
 * fused; GLU: gate, then up · act(gate)) and the down product (+= residual); the LM head (norm_f
 * fused, logit rows gathered).
 */
import { InputError, UnsupportedError } from '../../errors.js';
import type { MptConfig } from '../../model/config.js';
import { mptFacts, positionIds, type MptFacts } from '../../model/facts.js';
import type {
  ForwardOptions,
  KvCache,
  KvCacheOptions,
  ModelRunner,
  SequenceInput,
  SequenceOutput,
} from '../backend.js';
import { KvCacheBase } from '../kv-cache-base.js';
import { validateBatch } from '../validate-batch.js';
import type { NormOf, WeightTree } from '../../model/weight-tree.js';
import { DispatchCache, Dispatches, emptyStats, type WebGpuStats } from './dispatch.js';
import {
  MAP_READ,
  STORAGE,
  USAGE,
  type GpuBuffer,
  type GpuComputePipeline,
  type GpuContext,
  type GpuDevice,
} from './gpu.js';
import { ATTENTION_BLOCK, type KvStore } from './attention.js';
import { KvPool } from './kv-pool.js';
import { f32bits, MV_MAX_ROWS, productDispatch } from './matvec.js';
import { kernelSource } from './shaders.js';
import { bindingLimit, uploadBytes, type GpuTensor } from './weights.js';

/** Activation codes of the kernels (wgsl.ts `activate`). */
const ACT = { none: 0, gelu: 1, gelu_tanh: 2, silu: 3, relu: 4 } as const;

export class WebGpuKvCache extends KvCacheBase implements KvCache {
  /** @internal 1 = real token, 0 = padding, per position (the GPU copy is in the pool's `valid`). */
  readonly padMask: Uint8Array;

  /** @internal */
  constructor(
    readonly runner: WebGpuRunner,
    readonly capacity: number,
    readonly kvType: KvStore,
    /** @internal the buffers holding this cache's positions */ readonly pool: KvPool,
    /** @internal its first position in them */ readonly offset: number,
  ) {
    super();
    this.padMask = new Uint8Array(capacity);
  }

  /** @internal each layer's key buffer (shared with the pool's other caches) */
  get keys(): GpuBuffer[] {
    return this.pool.keys;
  }

  protected release(): void {
    this.pool.free(this.offset);
  }
}

/** One round's share of one sequence: tokens [t0, t0+n), at rows [base, base+n) of the scratch. */
interface Chunk {
  seq: number;
  cache: WebGpuKvCache;
  tokens: ArrayLike<number>;
  padMask?: ArrayLike<number>;
  t0: number;
  n: number;
  base: number;
  /** Rows of the chunk whose logits are wanted, [first, end). */
  want: [number, number] | null;
  /** First row of the round's logits buffer for them. */
  logitsAt: number;
}

/**
 * The attention of a round's chunks whose caches share a pool: chunks of more than MV_MAX_ROWS rows
 * a block dispatch each; the rows of the others one dispatch, entries [tableAt, tableAt + rows) of
 * the table (attention.ts).
 */
interface AttentionGroup {
  pool: KvPool;
  kv: KvStore;
  blocks: Chunk[];
  single: Chunk[];
  tableAt: number;
  rows: number;
}

/**
 * Scratch buffers for a round of maxRows (R) tokens. ids: token ids at [0, R), positions at
 * [R, 2R), the rows whose logits are wanted at [2R, 3R), the one-row attention's table at [3R, 7R).
 */
interface Scratch {
  ids: GpuBuffer;
  x: GpuBuffer;
  qkv: GpuBuffer;
  qn: GpuBuffer;
  ctx: GpuBuffer;
  hid: GpuBuffer;
  gate: GpuBuffer;
}

/** Options of one product (matvec.ts). */
interface Product {
  norm?: NormOf<GpuTensor>;
  accumulate?: boolean;
  act?: number;
  scale?: number;
  clip?: number | null;
  /** GLU: the gate values, laid out as the output; y = act(gate) · y. */
  glu?: GpuBuffer;
  /** Rows of X to read: the list at this word of `ids`. */
  gather?: number;
}

export class WebGpuRunner implements ModelRunner {
  readonly backendName = 'webgpu';
  private readonly device: GpuDevice;
  private readonly pipelines = new Map<string, GpuComputePipeline>();
  private readonly dummy: GpuBuffer;
  private readonly slopes: GpuBuffer;
  /** What the config implies (model/facts.ts). */
  private readonly facts: MptFacts;
  private scratch: Scratch | null = null;
  private logits: { buf: GpuBuffer; staging: GpuBuffer; rows: number } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private disposed = false;
  private readonly dispatchCache: DispatchCache;
  /** KV cache memory, by storage type. */
  private readonly pools: Record<KvStore, KvPool[]> = { f32: [], f16: [] };
  private readonly statsRef = { current: emptyStats() };
  /** How the matrices are stored on the GPU (f32, f16, bf16, q8_0, ...). */
  readonly matrixTypes: string[];

  /** @internal use loadWebGpuRunner */
  constructor(
    readonly config: MptConfig,
    readonly gpu: GpuContext,
    private readonly W: WeightTree<GpuTensor>,
    /** Tokens per command buffer. */ readonly maxRows: number,
  ) {
    this.device = gpu.device;
    this.facts = mptFacts(config);
    const f = this.facts;
    if (f.headDim > 256) {
      throw new UnsupportedError(`the webgpu backend's attention takes head_dim up to 256 (this model: ${f.headDim})`);
    }
    const linears = W.blocks.flatMap((B) => [
      B.wqkv,
      B.outProj,
      B.upProj,
      B.downProj,
      ...(B.gateProj ? [B.gateProj] : []),
    ]);
    const mats = [W.wte, W.lmHead, ...linears.map((m) => m.weight)];
    this.dispatchCache = new DispatchCache(this.device, (name) => this.pipeline(name), this.statsRef);
    this.dummy = this.device.createBuffer({ size: 16, usage: STORAGE });
    const slopes = f.slopes;
    this.slopes = uploadBytes(gpu, new Uint8Array(slopes.buffer, slopes.byteOffset, slopes.byteLength), 'slopes');
    this.matrixTypes = [...new Set(mats.map((m) => m.type))].sort();
  }

  /** What forward calls have encoded since the load or the last `resetStats()`. */
  get stats(): WebGpuStats {
    return this.statsRef.current;
  }

  resetStats(): void {
    this.statsRef.current = emptyStats();
  }

  /** The compute pipeline of a kernel (shaders.ts kernelSource), compiled on first use. */
  pipeline(name: string): GpuComputePipeline {
    let p = this.pipelines.get(name);
    if (!p) {
      const code = kernelSource(name, { subgroups: this.gpu.subgroups, f16: this.gpu.f16 });
      const module = this.device.createShaderModule({ code, label: name });
      p = this.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: name });
      this.pipelines.set(name, p);
    }
    return p;
  }

  createCache(options: KvCacheOptions): KvCache {
    if (this.disposed) throw new InputError('this runner has been disposed');
    if (!Number.isInteger(options.capacity) || options.capacity < 1)
      throw new InputError(`KV cache capacity must be a positive integer, got ${options.capacity}`);
    const kvType = options.kvType ?? 'f32';
    const c = this.config,
      kvd = this.facts.kvDim;
    if (kvType !== 'f32' && kvType !== 'f16')
      throw new UnsupportedError(`the webgpu backend keeps f32 or f16 KV caches (asked for ${kvType})`);
    if (kvType === 'f16' && kvd % 2)
      throw new UnsupportedError(`f16 KV caches need an even kv_heads · head_dim (this model: ${kvd})`);
    const rowBytes = kvd * (kvType === 'f16' ? 2 : 4);
    checkSize(this.gpu, options.capacity * rowBytes, 'a KV cache layer');
    const pools = this.pools[kvType];
    for (const pool of pools) {
      const at = pool.allocate(options.capacity);
      if (at !== null) return new WebGpuKvCache(this, options.capacity, kvType, pool, at);
    }
    const maxPositions = Math.floor(Math.min(bindingLimit(this.gpu) / rowBytes, bindingLimit(this.gpu) / 4));
    const pool = new KvPool(this.device, c.nLayers, rowBytes, maxPositions);
    pools.push(pool);
    const at = pool.allocate(options.capacity);
    if (at === null)
      throw new UnsupportedError(`a KV cache of ${options.capacity} positions does not fit this GPU's buffers`);
    return new WebGpuKvCache(this, options.capacity, kvType, pool, at);
  }

  /** A copy of `from` made on the GPU (queued before any later forward call's work). */
  copyCache(from: KvCache, capacity: number): KvCache {
    if (!(from instanceof WebGpuKvCache) || from.runner !== this)
      throw new InputError('this KV cache was not created by this webgpu runner');
    if (from.disposed) throw new InputError('this KV cache has been disposed');
    if (!(capacity >= from.len))
      throw new InputError(`a copy of ${from.len} positions needs a capacity of at least ${from.len}, got ${capacity}`);
    const to = this.createCache({ capacity, kvType: from.kvType }) as WebGpuKvCache;
    const n = from.len;
    if (n > 0) {
      const rowBytes = from.pool.rowBytes,
        bytes = n * rowBytes;
      const enc = this.device.createCommandEncoder();
      // WebGPU copies between distinct buffers only: within a pool, through a temporary one.
      const temp = from.pool === to.pool ? this.device.createBuffer({ size: bytes, usage: STORAGE }) : null;
      const copy = (a: GpuBuffer, aOff: number, b: GpuBuffer, bOff: number, size: number) => {
        if (temp) {
          enc.copyBufferToBuffer(a, aOff, temp, 0, size);
          enc.copyBufferToBuffer(temp, 0, b, bOff, size);
        } else enc.copyBufferToBuffer(a, aOff, b, bOff, size);
      };
      for (let l = 0; l < this.config.nLayers; l++) {
        copy(from.pool.keys[l]!, from.offset * rowBytes, to.pool.keys[l]!, to.offset * rowBytes, bytes);
        copy(from.pool.values[l]!, from.offset * rowBytes, to.pool.values[l]!, to.offset * rowBytes, bytes);
      }
      copy(from.pool.valid!, from.offset * 4, to.pool.valid!, to.offset * 4, n * 4);
      this.device.queue.submit([enc.finish()]);
      temp?.destroy();
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
    validateBatch(
      batch,
      options,
      this.config.vocabSize,
      (c): c is WebGpuKvCache => c instanceof WebGpuKvCache && c.runner === this,
      'webgpu',
    );
    this.stats.forwards++;
    const V = this.config.vocabSize;
    const modes = batch.map((s) => s.logits ?? options.logits);
    const outputs: SequenceOutput[] = batch.map((s, i) => ({
      logits: new Float32Array(
        (modes[i] === 'all' ? s.tokens.length : modes[i] === 'last' && s.tokens.length > 0 ? 1 : 0) * V,
      ),
    }));
    const done = batch.map(() => 0);
    // Rounds of at most maxRows tokens: the next chunk of each unfinished sequence, in batch order, while they fit.
    for (;;) {
      const round: Chunk[] = [];
      let rows = 0,
        logitRows = 0;
      batch.forEach((s, i) => {
        const T = s.tokens.length,
          t0 = done[i]!;
        const n = Math.min(this.maxRows - rows, T - t0);
        if (n <= 0) return;
        const want: [number, number] | null =
          modes[i] === 'all' ? [0, n] : modes[i] === 'last' && t0 + n === T ? [n - 1, n] : null;
        const cache = s.cache as WebGpuKvCache;
        round.push({
          seq: i,
          cache,
          tokens: s.tokens,
          padMask: s.padMask,
          t0,
          n,
          base: rows,
          want,
          logitsAt: logitRows,
        });
        rows += n;
        if (want) logitRows += want[1] - want[0];
      });
      if (round.length === 0) break;
      const out = await this.runRound(round, rows, logitRows);
      for (const ch of round) {
        done[ch.seq] = ch.t0 + ch.n;
        if (!ch.want || !out) continue;
        const m = ch.want[1] - ch.want[0];
        const rowsOut = out.subarray(ch.logitsAt * V, (ch.logitsAt + m) * V);
        outputs[ch.seq]!.logits.set(rowsOut, modes[ch.seq] === 'all' ? ch.t0 * V : 0);
      }
    }
    return outputs;
  }

  /** Encodes, submits and waits for one round; returns its logit rows (chunk by chunk). */
  private async runRound(round: Chunk[], rows: number, logitRows: number): Promise<Float32Array | null> {
    const dev = this.device,
      V = this.config.vocabSize,
      R = this.maxRows;
    const s = this.ensureScratch();
    const ids = new Uint32Array(7 * R);
    for (const ch of round) {
      this.prepare(ch, ids);
      const [w0, w1] = ch.want ?? [0, 0];
      for (let r = w0; r < w1; r++) ids[2 * R + ch.logitsAt + r - w0] = ch.base + r;
    }
    const groups = this.attentionGroups(round, ids);
    dev.queue.writeBuffer(s.ids, 0, ids);
    const out = logitRows > 0 ? this.ensureLogits(logitRows) : null;
    // Validation errors of encoding and submission come back here, not as uncaptured errors.
    dev.pushErrorScope('validation');
    const enc = dev.createCommandEncoder();
    const plan = new Dispatches(this.dispatchCache, enc);
    this.encode(plan, s, groups, rows, out ? logitRows : 0, out?.buf ?? null);
    plan.finish();
    if (out) enc.copyBufferToBuffer(out.buf, 0, out.staging, 0, logitRows * V * 4);
    dev.queue.submit([enc.finish()]);
    this.stats.submissions++;
    const err = await dev.popErrorScope();
    if (err) throw new Error(`webgpu: ${err.message}`);
    for (const ch of round) ch.cache.len += ch.n;
    if (!out) {
      await dev.queue.onSubmittedWorkDone();
      return null;
    }
    await out.staging.mapAsync(MAP_READ, 0, logitRows * V * 4);
    const got = new Float32Array(out.staging.getMappedRange(0, logitRows * V * 4).slice(0));
    out.staging.unmap();
    return got;
  }

  /**
   * The round's chunks by KV pool, and the one-row attention's table (at ids[3R ..]): an entry of
   * (cache offset, past, T << 16 | t, base) for each row t of a chunk of up to MV_MAX_ROWS rows.
   */
  private attentionGroups(round: Chunk[], ids: Uint32Array): AttentionGroup[] {
    const groups: AttentionGroup[] = [];
    let entry = 0;
    for (const ch of round) {
      let g = groups.find((x) => x.pool === ch.cache.pool);
      if (!g) {
        g = { pool: ch.cache.pool, kv: ch.cache.kvType, blocks: [], single: [], tableAt: 0, rows: 0 };
        groups.push(g);
      }
      (ch.n > MV_MAX_ROWS ? g.blocks : g.single).push(ch);
    }
    for (const g of groups) {
      g.tableAt = 3 * this.maxRows + 4 * entry;
      for (const ch of g.single) {
        for (let t = 0; t < ch.n; t++, entry++) {
          ids.set([ch.cache.offset, ch.cache.len, (ch.n << 16) | t, ch.base], 3 * this.maxRows + 4 * entry);
        }
        g.rows += ch.n;
      }
    }
    return groups;
  }

  /**
   * A chunk's token ids at ids[base + t] and (learned position embeddings) positions at
   * ids[maxRows + base + t]; MosaicML shifts positions left past padding. Also the pad mask, on
   * both sides.
   */
  private prepare(ch: Chunk, ids: Uint32Array): void {
    const cache = ch.cache,
      past = cache.len,
      n = ch.n,
      mask = ch.padMask;
    let pads = 0;
    for (let j = 0; j < past; j++) if (!cache.padMask[j]) pads++;
    const { positions } = positionIds(this.facts, past, pads, n, mask && ((t) => !!mask[ch.t0 + t]));
    for (let t = 0; t < n; t++) ids[ch.base + t] = ch.tokens[ch.t0 + t]!;
    ids.set(positions, this.maxRows + ch.base);
    for (let t = 0; t < n; t++) cache.padMask[past + t] = ch.padMask ? (ch.padMask[ch.t0 + t] ? 1 : 0) : 1;
    // The pad mask as u32 flags, rewritten from a 4-aligned start.
    const from = past & ~3;
    const flags = Uint32Array.from(cache.padMask.subarray(from, past + n));
    this.device.queue.writeBuffer(cache.pool.valid!, (cache.offset + from) * 4, flags);
  }

  /** The dispatches of one round: `rows` tokens of the round's chunks, then `logitRows` logit rows. */
  private encode(
    plan: Dispatches,
    s: Scratch,
    groups: AttentionGroup[],
    rows: number,
    logitRows: number,
    logits: GpuBuffer | null,
  ): void {
    const f = this.facts,
      W = this.W,
      R = this.maxRows;
    const d = f.dModel,
      hd = f.headDim,
      kvd = f.kvDim,
      qn = f.qkvDim;
    const ff = f.ffnHidden,
      V = f.vocabSize;
    const eps = f32bits(f.norm.eps),
      rms = f.norm.kind === 'rmsnorm';
    const act = ACT[f.activation];
    const opt = (t: GpuTensor | undefined) => t?.buf ?? this.dummy;
    const mv = (
      X: GpuBuffer,
      ldx: number,
      rows: number,
      m: GpuTensor,
      bias: GpuTensor | undefined,
      Y: GpuBuffer,
      ldy: number,
      o: Product = {},
    ) => {
      const norm = o.norm && { weight: !!o.norm.weight, bias: !!o.norm.bias, rms, eps: f.norm.eps };
      const p = productDispatch({ ...o, W: m.layout!, rows, ldx, ldy, bias: !!bias, norm, glu: !!o.glu });
      const ids = o.gather !== undefined ? s.ids : this.dummy;
      plan.add(
        p.kernel,
        [X, m.buf, opt(bias), Y, opt(o.norm?.weight), opt(o.norm?.bias), ids, o.glu ?? this.dummy],
        p.params,
        p.groups,
        m.name,
      );
    };

    const wpe = W.wpe?.layout;
    plan.add(
      `embed.${W.wte.type}.${W.wpe?.type ?? 'f32'}`,
      [s.ids, W.wte.buf, opt(W.wpe), s.x],
      [rows, d, wpe ? 1 : 0, R, W.wte.layout!.stride, W.wte.layout!.scaleAt, wpe?.stride ?? 0, wpe?.scaleAt ?? 0],
      [Math.ceil(d / 64), rows],
    );
    W.blocks.forEach((B, l) => {
      mv(s.x, d, rows, B.wqkv.weight, B.wqkv.bias, s.qkv, qn, { norm: B.norm1, clip: f.clipQkv });
      // attention.ts's parameters; the one-row kernel reads the chunk's (T, past, base, offset) from the table.
      const attention = (kernel: string, ch: Chunk, buffers: GpuBuffer[], groups: number[], tableAt = 0) => {
        const seq = [ch.n, ch.cache.len, hd, kvd, f.qkLn ? d : qn, ch.base, f.queriesPerKvHead];
        const rest = [
          f.qkLn ? 0 : 1,
          f32bits(f.softmaxScale),
          qn,
          f.qkvSplit.k,
          f.qkvSplit.v,
          d,
          ch.cache.offset,
          tableAt,
        ];
        plan.add(kernel, buffers, [...seq, ...rest], groups);
      };
      for (const g of groups) {
        const keys = g.pool.keys[l]!,
          values = g.pool.values[l]!;
        if (f.qkLn) {
          // qk_ln normalises all of q and all of k (across heads), before the split into heads.
          const qLn = B.qLn!,
            kLn = B.kLn!;
          const flags =
            (qLn.weight ? 1 : 0) | (qLn.bias ? 2 : 0) | (kLn.weight ? 4 : 0) | (kLn.bias ? 8 : 0) | (rms ? 16 : 0);
          const norms = [opt(qLn.weight), opt(qLn.bias), opt(kLn.weight), opt(kLn.bias)];
          for (const ch of [...g.blocks, ...g.single]) {
            plan.add(
              `qkNorm.${g.kv}`,
              [s.qkv, ...norms, s.qn, keys, values],
              [ch.n, ch.cache.len, d, kvd, qn, ch.base * qn, ch.base * d, flags, eps, ch.cache.offset],
              [ch.n],
            );
          }
        }
        const buffers = [f.qkLn ? s.qn : s.qkv, keys, values, g.pool.valid!, this.slopes, s.ctx, s.qkv];
        // Prompt chunks: blocks of query rows sharing each key tile.
        for (const ch of g.blocks)
          attention(`attentionBlock.${g.kv}`, ch, buffers, [Math.ceil(ch.n / ATTENTION_BLOCK), f.nHeads]);
        // The other rows, of every sequence: one workgroup each, from the table.
        if (g.rows > 0)
          attention(`attention.${g.kv}`, g.single[0]!, [...buffers, s.ids], [g.rows, f.nHeads], g.tableAt);
      }
      mv(s.ctx, d, rows, B.outProj.weight, B.outProj.bias, s.x, d, { accumulate: true });
      if (B.gateProj) {
        mv(s.x, d, rows, B.gateProj.weight, B.gateProj.bias, s.gate, ff, { norm: B.norm2 });
        mv(s.x, d, rows, B.upProj.weight, B.upProj.bias, s.hid, ff, { norm: B.norm2, glu: s.gate, act });
      } else {
        mv(s.x, d, rows, B.upProj.weight, B.upProj.bias, s.hid, ff, { norm: B.norm2, act });
      }
      mv(s.hid, ff, rows, B.downProj.weight, B.downProj.bias, s.x, d, { accumulate: true });
    });
    if (logits && logitRows > 0) {
      mv(s.x, d, logitRows, W.lmHead, undefined, logits, V, { norm: W.normF, gather: 2 * R, scale: f.logitScale });
    }
  }

  /** Scratch buffers for a round of maxRows tokens. */
  private ensureScratch(): Scratch {
    const f = this.facts,
      R = this.maxRows,
      d = f.dModel,
      ff = f.ffnHidden;
    const buf = (words: number, label: string) => {
      checkSize(this.gpu, words * 4, label);
      return this.device.createBuffer({ size: Math.max(16, words * 4), usage: STORAGE, label });
    };
    this.scratch ??= {
      ids: buf(7 * R, 'ids'),
      x: buf(R * d, 'x'),
      qkv: buf(R * f.qkvDim, 'qkv'),
      qn: buf(f.qkLn ? R * d : 4, 'q'),
      ctx: buf(R * d, 'ctx'),
      hid: buf(R * ff, 'hid'),
      gate: buf(f.glu ? R * ff : 4, 'gate'),
    };
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
      staging: this.device.createBuffer({
        size: bytes,
        usage: USAGE.MAP_READ | USAGE.COPY_DST,
        label: 'logits staging',
      }),
    };
    return this.logits;
  }
}

function checkSize(gpu: GpuContext, bytes: number, what: string): void {
  const max = bindingLimit(gpu);
  if (bytes > max)
    throw new UnsupportedError(
      `${what} takes ${bytes} bytes, more than this GPU binds in one buffer (${max}); the webgpu backend does not split tensors yet`,
    );
}
