/**
 * The wasm backend's ModelRunner: KV caches in the arenas, forward calls split into passes of at
 * most `maxRows` tokens (continuous batching: a pass may hold tokens of several sequences), each
 * pass run by the worker pool.
 */
import { InputError, UnsupportedError } from '../../errors.js';
import type { MptConfig } from '../../model/config.js';
import { mptFacts, positionIds } from '../../model/facts.js';
import type {
  ForwardOptions,
  KvCache,
  KvCacheOptions,
  KvSnapshot,
  KvType,
  ModelRunner,
  SequenceInput,
  SequenceOutput,
} from '../backend.js';
import type { Arenas } from './arenas.js';
import { validateBatch } from '../validate-batch.js';
import { type KvCacheOwner, WasmKvCache } from './kv-cache.js';
import { restoreWasmCache, snapshotWasmCache } from './kv-snapshot.js';
import type { Pass, PassSequence } from './executor.js';
import type { WeightType } from './kernels.js';
import { PRIVATE_ROWS, kvRegionBytes, type MatrixRef, type ModelLayout } from './layout.js';
import { LightShare } from './light-share.js';
import { passThreads } from './pass-threads.js';
import type { PassPool } from './pool.js';

/**
 * Multiply-adds of a pass below which this thread runs thread 0's share itself (PassPool.run
 * `here`, where it may block: Node): a few ms at most on one core. The shipped model's decode
 * step (16 M) then wakes no worker at its start (1 thread: none at all) and is not woken at its end.
 */
const HERE_PASS_MACS = 1 << 26;

/**
 * What one (query, key) pair costs a head besides its 2·d_head multiply-adds (the softmax's max,
 * exp and scale), counted in multiply-adds: with 4-wide heads a long prompt's attention was
 * counted as nearly free and a 100-160 ms prefill ran on the calling thread (a server's event loop).
 */
const ATTENTION_HEAD_COST = 16;

/**
 * One decode row's time a multiply-add by weight type, relative to q4_0's: the shipped model's
 * output matrix (50,432 × 256) on one thread, `profile --threads 1` (busy machine, boosted):
 * q4_0 0.46 ms, q8_0 0.56, bf16 1.32, f16 1.74, f32 6.7. The k-quants count as q4_0 (as before
 * this table: the shipped model as Q4_K_M did not run its decode rows faster shared).
 */
const DECODE_COST: Readonly<Record<WeightType, number>> = {
  q4_0: 1,
  q8_0: 1.2,
  bf16: 2.9,
  f16: 3.8,
  f32: 14,
  q4_k: 1,
  q5_k: 1,
  q6_k: 1,
};

/** A matrix's multiply-adds for one row counted as q4_0 ones (pass-threads.ts PassWork.q4Macs). */
function q4Macs(m: MatrixRef): number {
  return m.rows * m.cols * DECODE_COST[m.type];
}

/** KV types, stored as such (layout.ts kvGeometry): f16 and q8_0 caches take 1/2 and 17/64 of the f32 memory. */
const KV_TYPES: readonly KvType[] = ['f32', 'f16', 'q8_0'];

export class WasmRunner implements ModelRunner, KvCacheOwner {
  readonly backendName = 'wasm';
  readonly finalHidden = true;
  readonly config: MptConfig;
  private queue: Promise<unknown> = Promise.resolve();
  private logitsBuf: SharedArrayBuffer | ArrayBuffer | null = null;
  private tokensBuf: SharedArrayBuffer | ArrayBuffer | null = null;
  private hiddenBuf: SharedArrayBuffer | ArrayBuffer | null = null;
  private disposed = false;
  /** Multiply-adds of the layers' weight matrices for one row. */
  private readonly layerMacsPerRow: number;
  /** The same counted as q4_0 ones (q4Macs), and the output matrix's. */
  private readonly layerQ4MacsPerRow: number;
  private readonly headQ4Macs: number;
  /** Threads the last pass ran on (diagnostics, tests). */
  lastPassThreads = 0;
  /**
   * On a pool of 2-3 threads, whether light decode passes run on one thread or on all, by their
   * measured times (pass-tuning.ts adaptiveLight); null: the fixed rule (one thread).
   */
  readonly lightShare: LightShare | null;

  constructor(
    readonly layout: ModelLayout,
    readonly arenas: Arenas,
    private readonly pool: PassPool,
  ) {
    this.config = layout.config;
    const t = pool.tuning;
    this.lightShare =
      pool.threads > 1 && pool.threads < 4 && t.lightPassMacs > 0 && t.adaptiveLight ? new LightShare() : null;
    const matrices = layout.layers.flatMap((ly) => [ly.qkv, ly.out, ly.up, ly.gate, ly.down].filter((m) => !!m));
    this.layerMacsPerRow = matrices.reduce((t, m) => t + m.rows * m.cols, 0);
    this.layerQ4MacsPerRow = matrices.reduce((t, m) => t + q4Macs(m), 0);
    this.headQ4Macs = q4Macs(layout.head.lm);
  }

  /** Per worker thread, timings of each parallel operation of a pass (team.ts PROFILE; MPT_WASM_PROFILE=1), else null. */
  opProfile(): Float64Array[] | null {
    return this.pool.opProfile?.() ?? null;
  }

  /** Worker threads started (the most a pass uses). */
  get threads(): number {
    return this.pool.threads;
  }

  /**
   * Multiply-adds of a pass of `rows` rows with `logitRows` output rows, and, for a decode pass
   * (one row a sequence, which streams the weights), the same with the weight matrices' counted
   * as q4_0 ones (pass-threads.ts PassWork; a prompt pass reuses each weight over its rows).
   */
  private passWork(rows: number, seqs: PassSequence[], logitRows: number): { macs: number; q4Macs: number } {
    const c = this.config;
    let attention = 0;
    for (const sq of seqs) attention += sq.n * (sq.past + sq.n) * (2 * c.dModel + ATTENTION_HEAD_COST * c.nHeads);
    attention *= c.nLayers;
    const lm = this.layout.head.lm;
    return {
      macs: rows * this.layerMacsPerRow + attention + logitRows * lm.rows * lm.cols,
      q4Macs:
        rows === seqs.length
          ? rows * this.layerQ4MacsPerRow + attention + logitRows * this.headQ4Macs
          : rows * this.layerMacsPerRow + attention + logitRows * lm.rows * lm.cols,
    };
  }

  /**
   * Threads for a pass of `work` and `rows` rows with `logitRows` output rows (pass-threads.ts);
   * `share`: a light pass on the whole pool too (lightShare).
   */
  private threadsFor(work: { macs: number; q4Macs: number }, rows: number, logitRows: number, share = false): number {
    const c = this.config;
    // Barriers: 5 a layer in small passes, up to 10 in wide ones (executor.ts), the output matrix
    // (sampling adds none). A small pass whose layers are light now runs them on one thread and
    // meets once before the output matrix (executor.ts SOLO_LAYER_MACS); it is still counted as
    // 5 a layer, the schedule the 16-vCPU calibration of pass-threads.ts was measured with.
    const barriers = c.nLayers * (rows <= PRIVATE_ROWS ? 5 : 10) + (logitRows ? 1 : 0);
    return passThreads(
      { ...work, barriers },
      this.pool.threads,
      this.pool.cores,
      share ? 0 : this.pool.tuning.lightPassMacs,
    );
  }

  createCache(options: KvCacheOptions): KvCache {
    const cap = options.capacity;
    if (!Number.isInteger(cap) || cap < 1)
      throw new InputError(`KV cache capacity must be a positive integer, got ${cap}`);
    const kvType = options.kvType ?? 'f32';
    if (!KV_TYPES.includes(kvType))
      throw new UnsupportedError(`unknown KV cache type "${String(kvType)}" (f32, f16, q8_0)`);
    const regions: number[] = [],
      sizes: number[] = [];
    try {
      this.layout.arenas.forEach((a, i) => {
        if (a.layers.length === 0) {
          regions.push(0);
          sizes.push(0);
          return;
        }
        const size = kvRegionBytes(this.config, a.layers.length, cap, kvType);
        regions.push(this.arenas.alloc(i, size));
        sizes.push(size);
      });
    } catch (e) {
      regions.forEach((r, i) => {
        if (r) this.arenas.release(i, r, sizes[i]!);
      });
      throw e;
    }
    return new WasmKvCache(this, cap, kvType, regions, sizes);
  }

  /** @internal */
  releaseCache(c: WasmKvCache): void {
    c.regions.forEach((r, i) => {
      if (r) this.arenas.release(i, r, c.sizes[i]!);
    });
  }

  forward(batch: SequenceInput[], options: ForwardOptions): Promise<SequenceOutput[]> {
    const run = this.queue.then(() => this.forwardNow(batch, options));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private validate(batch: SequenceInput[], options: ForwardOptions): WasmKvCache[] {
    if (this.disposed) throw new InputError('this runner has been disposed');
    return validateBatch(
      batch,
      options,
      this.config.vocabSize,
      (c): c is WasmKvCache => c instanceof WasmKvCache && c.runner === this,
      'wasm',
    );
  }

  private async forwardNow(batch: SequenceInput[], options: ForwardOptions): Promise<SequenceOutput[]> {
    const caches = this.validate(batch, options);
    const L = this.layout,
      c = this.config,
      V = c.vocabSize;
    const modeOf = (s: SequenceInput) => s.logits ?? options.logits;
    const rowsOf = (s: SequenceInput) => {
      const T = s.tokens.length,
        mode = modeOf(s);
      return mode === 'all' ? T : mode === 'last' && T > 0 ? 1 : 0;
    };
    // With reuseLogits every pass writes its rows straight into one buffer the outputs view.
    const reuse = options.reuseLogits === true;
    const firstRow: number[] = [];
    let totalRows = 0;
    for (const s of batch) {
      firstRow.push(totalRows);
      totalRows += rowsOf(s);
    }
    // A call of one pass whose logit rows fit the LM head's scratch (a decode step) leaves them
    // there: the outputs view the head arena's memory (executor.ts Pass.logitsInPlace).
    const inPlace =
      reuse && totalRows > 0 && totalRows <= L.logitRows && batch.reduce((n, s) => n + s.tokens.length, 0) <= L.maxRows;
    if (reuse && !inPlace) this.ensureLogitsBuffer(totalRows * V * 4);
    // Tokens chosen in the workers (ForwardOptions.sample), one Int32 per logit row of the call.
    const sampling =
      options.sample && batch.some((s, i) => modeOf(s) === 'last' && options.sample![i]) ? options.sample : null;
    if (sampling && (!this.tokensBuf || this.tokensBuf.byteLength < totalRows * 4))
      this.tokensBuf = this.pool.buffer(Math.max(64, totalRows * 8));
    const d = c.dModel;
    const ha = L.head.arena;
    const outputs: SequenceOutput[] = batch.map((s, i) => ({
      logits: inPlace
        ? new Float32Array(
            this.arenas.memories[ha]!.buffer,
            L.arenas[ha]!.scratch.logits + firstRow[i]! * V * 4,
            rowsOf(s) * V,
          )
        : reuse
          ? new Float32Array(this.logitsBuf!, firstRow[i]! * V * 4, rowsOf(s) * V)
          : new Float32Array(rowsOf(s) * V),
      ...(s.finalHidden ? { finalHidden: new Float32Array(s.tokens.length * d) } : {}),
    }));
    const done = batch.map(() => 0); // tokens of each sequence already run
    // Positions of learned position embeddings: shifted left past padding (facts.ts positionIds).
    const facts = mptFacts(c);
    const padsSoFar = facts.learnedPositions ? caches.map((cache) => this.countPads(cache)) : [];
    for (;;) {
      // Next pass: as many pending tokens as fit, sequence by sequence.
      const seqs: PassSequence[] = [];
      const pieces: Array<{ i: number; t0: number; n: number }> = [];
      let rows = 0;
      batch.forEach((s, i) => {
        const left = s.tokens.length - done[i]!;
        if (left <= 0 || rows >= L.maxRows) return;
        const n = Math.min(left, L.maxRows - rows);
        const cache = caches[i]!;
        seqs.push({
          rowStart: rows,
          n,
          past: cache.len,
          capacity: cache.capacity,
          kv: cache.regions,
          kvType: cache.kvType,
        });
        pieces.push({ i, t0: done[i]!, n });
        rows += n;
      });
      if (rows === 0) break;
      const tokens = new Int32Array(rows);
      const wpePos = facts.learnedPositions ? new Int32Array(rows) : undefined;
      const logitRows: number[] = [];
      const logitDest: Array<[number, number]> = [];
      const hiddenRows: number[] = [];
      const hiddenDest: Array<[number, number]> = [];
      for (let k = 0; k < pieces.length; k++) {
        const { i, t0, n } = pieces[k]!;
        const s = batch[i]!,
          sq = seqs[k]!,
          cache = caches[i]!;
        const mask = s.padMask;
        if (wpePos) {
          const at = positionIds(facts, sq.past, padsSoFar[i]!, n, mask && ((t) => !!mask[t0 + t]));
          wpePos.set(at.positions, sq.rowStart);
          padsSoFar[i] = at.padsAfter;
        }
        for (let t = 0; t < n; t++) {
          const r = sq.rowStart + t;
          tokens[r] = s.tokens[t0 + t]!;
          this.setValid(cache, sq.past + t, mask ? (mask[t0 + t] ? 1 : 0) : 1);
          const T = s.tokens.length,
            tt = t0 + t;
          if (s.finalHidden) {
            hiddenRows.push(r);
            hiddenDest.push([i, tt]);
          }
          const mode = modeOf(s);
          if (mode === 'all') {
            logitRows.push(r);
            logitDest.push([i, tt]);
          } else if (mode === 'last' && tt === T - 1) {
            logitRows.push(r);
            logitDest.push([i, 0]);
          }
        }
      }
      const need = logitRows.length * V * 4;
      if (!reuse && need > 0) this.ensureLogitsBuffer(need);
      // A pass holds whole sequences but maybe the first and last, in batch order, so its logit
      // rows are consecutive rows of the whole call's output.
      const offset = reuse && logitDest.length ? (firstRow[logitDest[0]![0]]! + logitDest[0]![1]) * V : 0;
      if (reuse)
        logitDest.forEach(([i, row], j) => {
          if ((firstRow[i]! + row) * V !== offset + j * V)
            throw new Error('internal: logit rows of a pass are not consecutive');
        });
      const work = this.passWork(rows, seqs, logitRows.length),
        macs = work.macs;
      // Only decode passes (one row a sequence) may block the caller: a prompt chunk's time grows
      // with its context in ways the count above only estimates.
      const decode = rows === seqs.length;
      // A light decode pass (one thread by the fixed rule): its way is chosen by measured times.
      const light = this.lightShare && decode && work.q4Macs < this.pool.tuning.lightPassMacs ? this.lightShare : null;
      const pass: Pass = {
        rows,
        tokens,
        wpePos,
        seqs,
        threads: this.threadsFor(work, rows, logitRows.length, light?.next()),
        logitRows: Int32Array.from(logitRows),
        logitsOut: need > 0 && !inPlace ? this.logitsBuf! : undefined,
        logitsOffset: offset,
      };
      if (inPlace) pass.logitsInPlace = true;
      if (hiddenRows.length) {
        if (!this.hiddenBuf || this.hiddenBuf.byteLength < hiddenRows.length * d * 4) {
          this.hiddenBuf = this.pool.buffer(L.maxRows * d * 4);
        }
        pass.hiddenRows = Int32Array.from(hiddenRows);
        pass.hiddenOut = this.hiddenBuf;
      }
      if (sampling && logitDest.length) {
        pass.sample = logitDest.map(([i]) => (modeOf(batch[i]!) === 'last' ? (sampling[i] ?? null) : null));
        pass.tokensOut = this.tokensBuf!;
      }
      this.lastPassThreads = pass.threads;
      await this.pool.run(pass, macs < HERE_PASS_MACS && decode);
      if (light && this.pool.lastRunMs !== undefined) light.record(pass.threads > 1, this.pool.lastRunMs);
      if (!reuse && need > 0) {
        const all = new Float32Array(this.logitsBuf!, 0, logitRows.length * V);
        logitDest.forEach(([i, row], j) => {
          outputs[i]!.logits.set(all.subarray(j * V, (j + 1) * V), row * V);
        });
      }
      if (hiddenRows.length) {
        const all = new Float32Array(this.hiddenBuf!, 0, hiddenRows.length * d);
        hiddenDest.forEach(([i, tt], j) => {
          outputs[i]!.finalHidden!.set(all.subarray(j * d, (j + 1) * d), tt * d);
        });
      }
      if (pass.sample) {
        const chosen = new Int32Array(this.tokensBuf!);
        logitDest.forEach(([i], j) => {
          const t = chosen[offset / V + j]!;
          if (pass.sample![j] && t >= 0) outputs[i]!.token = t;
        });
      }
      pieces.forEach(({ i, n }) => {
        caches[i]!.len += n;
        done[i]! += n;
      });
    }
    return outputs;
  }

  private ensureLogitsBuffer(bytes: number): void {
    if (bytes > 0 && (!this.logitsBuf || this.logitsBuf.byteLength < bytes)) this.logitsBuf = this.pool.buffer(bytes);
  }

  /** Marks position `pos` of a cache as a real token (1) or padding (0), in every arena. */
  private setValid(cache: WasmKvCache, pos: number, v: number): void {
    cache.regions.forEach((r, a) => {
      if (r) this.arenas.u8(a)[r + pos] = v;
    });
  }

  private countPads(cache: WasmKvCache): number {
    const a = cache.regions.findIndex((r) => r !== 0);
    const u8 = this.arenas.u8(a);
    let n = 0;
    for (let j = 0; j < cache.len; j++) if (!u8[cache.regions[a]! + j]) n++;
    return n;
  }

  // Prompt cache support (kv-snapshot.ts).
  saveCache(cache: KvCache): KvSnapshot {
    return snapshotWasmCache(this, cache);
  }

  restoreCache(snapshot: KvSnapshot, options: KvCacheOptions): KvCache {
    return restoreWasmCache(this, snapshot, options);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    await this.queue;
    await this.pool.close();
  }
}
