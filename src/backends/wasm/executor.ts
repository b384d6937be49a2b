/**
 * The MPT forward pass as every worker thread runs it: the same sequence of operations in every
 * thread, each operation split into work items (row blocks of a weight matrix, (sequence, head,
 * query tile) units of attention, row ranges of norms) that the threads claim through atomic
 * counters, with a barrier after each operation. The semantics follow the reference backend
 * (src/backends/reference/forward.ts) step for step.
 *
 * Two schedules, same arithmetic:
 * - wide passes (prefill): row-wise steps (norms, activation quantization, qkv post-processing)
 *   are split between threads too, each followed by a barrier (10 per layer; 9 where the up_proj
 *   items quantize the hidden values they made, as below);
 * - small passes (decode, at most PRIVATE_ROWS rows): every thread computes the cheap row-wise
 *   steps itself, into its own private buffers, leaving 5 barriers per layer: after the qkv
 *   product, attention, out_proj, up_proj, down_proj. What a product's work item can finish on
 *   its own outputs it does there, once, instead of every thread on the whole row: the qkv items
 *   clip and store the K/V values they made (storeKvCols), the up_proj items quantize the hidden
 *   values they made for down_proj (quantCols); norms need whole rows and stay per thread.
 *   When a small pass's layers are light (SOLO_LAYER_MACS: the shipped model's decode row), thread
 *   0 runs them all alone (team.ts solo) and the others meet it once, before the LM head.
 */
import { HALF_PANEL_BYTES, WTYPE, actKind, type Kernels, type WeightType } from './kernels.js';
import { DEFAULT_TUNING, type PassTuning } from './pass-tuning.js';
import type { KvType } from '../backend.js';
import { kvHeadOf, mptFacts, type MptFacts } from '../../model/facts.js';
import {
  applyEdits,
  chooseToken,
  greedyOptions,
  noEdits,
  penaltyEdits,
  type PenaltyEdits,
  type SampleRequest,
} from '../sampling/sampler.js';
import {
  PRIVATE_ROWS,
  kvGeometry,
  kvHeadPlace,
  kvLayerOffset,
  privateLayout,
  type KvGeometry,
  type LayerLayout,
  type MatrixRef,
  type ModelLayout,
  type NormRef,
} from './layout.js';
import type { Team } from './team.js';

/** One sequence's share of a pass. */
export interface PassSequence {
  /** First row of this sequence in the pass. */
  rowStart: number;
  /** New tokens (rows) of this sequence in the pass. */
  n: number;
  /** Positions already in its cache before this pass. */
  past: number;
  capacity: number;
  /** Per arena: byte offset of this sequence's KV region (0 for arenas without layers). */
  kv: number[];
  /** Storage type of its KV cache (layout.ts kvGeometry). */
  kvType: KvType;
}

/** A unit of work sent to every worker: up to maxRows rows of tokens. */
export interface Pass {
  rows: number;
  /** Worker threads taking part: tids 0 .. threads-1 (pass-threads.ts); the others stay idle. */
  threads: number;
  tokens: Int32Array;
  /** Learned position ids per row (models with wpe). */
  wpePos?: Int32Array;
  seqs: PassSequence[];
  /** Rows whose logits are wanted, and where they go in `logitsOut` (row i → logitsOffset + i·V floats). */
  logitRows: Int32Array;
  /** Shared with the workers (a plain buffer where the pass runs on the page's own thread, inline-pool.ts). */
  logitsOut?: SharedArrayBuffer | ArrayBuffer;
  /**
   * Leave the logits where the LM head writes them, in the head arena's `logits` scratch (logit
   * row i at scratch.logits + i·V floats; at most layout.logitRows rows), instead of copying them
   * to logitsOut: a decode step of the shipped model copied 200 KB there (25-45 µs).
   */
  logitsInPlace?: boolean;
  logitsOffset: number;
  /**
   * Per logit row (or null): choose its token once the logits are in (ForwardOptions.sample),
   * rows shared between the threads; row i's token goes to tokensOut[logitsOffset / V + i] as an
   * Int32, or -1 when none can be chosen (the caller then reports why).
   */
  sample?: Array<SampleRequest | null>;
  tokensOut?: SharedArrayBuffer | ArrayBuffer;
  /** Rows whose final hidden states (after norm_f) are wanted; row i → hiddenOut[i·d_model ...]. */
  hiddenRows?: Int32Array;
  hiddenOut?: SharedArrayBuffer | ArrayBuffer;
}

/**
 * Activation rows from which x4 q4_0 / q8_0 products take the prompt tiles (4 weight rows × 8 tokens,
 * assembly/gemm-q-prompt.ts); row chunks start at multiples of 4 (chunkRows), as they need.
 */
const PROMPT_TILE_ROWS = 4;
/**
 * Activation rows from which plain q4_K / q5_K / q6_K products take the plain-row prompt tiles
 * (gemm_q4_k_prompt / gemm_q5_k_prompt / gemm_q6_k_prompt, same file): below it gemm_k
 * (`kprompt-ab A A --path-a gemm_k --path-b plain [--type q5_k|q6_k]`, busy host, CPU time; q4_K:
 * 0.89-0.94× at 4 rows, 1.07-1.19× at 8, 1.25-1.30× at 16-128; q6_K: 0.93-0.97× at 4, 1.18-1.32×
 * at 8, 1.44-1.64× at 16-128).
 */
const PROMPT_TILE_ROWS_K_PLAIN = 8;

/** Least multiply-adds of a matrix product's work item (chunkRows), so that its JS calls stay small beside it. */
const CHUNK_MACS = 1 << 18;

/**
 * Multiply-adds of a small pass's layer below which thread 0 runs every layer alone (Team.solo)
 * while the others wait at one barrier before the LM head: a layer that small (the shipped model's
 * decode row: 0.8 M) takes tens of µs on one thread, about what its 5 barriers cost with two.
 */
const SOLO_LAYER_MACS = 1 << 22;

/** Query rows per attention work item (the kernel works in tiles of 4 inside). */
const ATTN_ROWS = 16;

/** Per (sequence, K/V head): byte offset in a layer's KV part, then e0 (Executor.kvPlaces). */
type KvPlaces = number[];

/** What a pass's layers need besides the pass: Executor.passShape. */
interface PassShape {
  /** Per row, its sequence's index. */
  rowSeq: Int32Array;
  /** Attention work items: (sequence, head, query tile) triples. */
  units: Int32Array;
  places: KvPlaces;
}

/** Where a step reads its input: f32 rows, and its q8_0 / q8_K quantized copies. */
interface Input {
  x: number;
  qa: number;
  qk: number;
  /**
   * qa holds a row record (quantFor: one row, read by q4_0 matrices only), not group records. Set
   * by this thread's own quantFor: a single row always goes through the private (per-thread)
   * buffers (R, m <= PRIVATE_ROWS), so every thread that reads qa has quantized it itself.
   */
  rowRecord?: boolean;
}

/**
 * How an input is quantized for the matrices that read it (quantFor), worked out once per model
 * rather than at every step: q8_0 group records (or one row record), q8_K records.
 */
interface QuantPlan {
  q8: boolean;
  /** Every q8 reader is q4_0: a single row goes into a row record. */
  q8RowRecord: boolean;
  q8k: boolean;
}

/** Whether work items of `per` rows (chunkRows) start and end on a block of the quantization `plan` asks for. */
function quantInItems(per: number, plan: QuantPlan): boolean {
  return (!plan.q8 || per % 32 === 0) && (!plan.q8k || per % 256 === 0) && (plan.q8 || plan.q8k);
}

/** Rows of the pieces a prompt's last chunk a thread is cut into (Executor.rowItems): a quarter, rounded up to a multiple of `align`. */
function tailRows(per: number, align: number): number {
  return Math.ceil(Math.max(4, Math.ceil(per / 16) * 4) / align) * align;
}

/** Values in a block of the quantization `plan` asks for (q8_K's 256 hold whole q8_0 blocks too); 0: none. */
function quantUnit(plan: QuantPlan): number {
  return plan.q8k ? 256 : plan.q8 ? 32 : 0;
}

function quantPlan(...consumers: WeightType[]): QuantPlan {
  const q8 = consumers.filter((t) => actKind(t) === 'q8');
  return {
    q8: q8.length > 0,
    q8RowRecord: q8.length > 0 && q8.every((t) => t === 'q4_0'),
    q8k: consumers.some((t) => actKind(t) === 'q8k'),
  };
}

/** Where one thread's private buffers lie in an arena (layout.ts privateLayout). */
interface PrivateSlice {
  xn: number;
  qkv: number;
  qa: number;
  qk: number;
}

/** Per layer, the quantization of the inputs of its products. */
interface LayerPlans {
  qkv: QuantPlan;
  out: QuantPlan;
  /** The up (and gate) matrices'. */
  up: QuantPlan;
  down: QuantPlan;
}

export class Executor {
  private readonly c;
  /** What the config implies (model/facts.ts). */
  private readonly f: MptFacts;
  private readonly eps: number;
  private readonly rms: boolean;
  private readonly attnScratch: number;
  private readonly pl;
  private readonly geo: Record<KvType, KvGeometry>;
  private readonly plans: LayerPlans[];
  /** Per arena, this thread's private slice (the team's tid never changes). */
  private readonly privs: PrivateSlice[];
  private readonly lmPlan: QuantPlan;
  /** Multiply-adds of a layer's products for one row (all layers have the same shape; lightLayers). */
  private readonly layerWeightMacs: number;
  /** The last one-row pass's shape and the cache it was for (passShape). */
  private lastShape: { capacity: number; kvType: KvType; shape: PassShape } | null = null;

  constructor(
    private readonly L: ModelLayout,
    private readonly k: Kernels[],
    private readonly memories: WebAssembly.Memory[],
    private readonly team: Team,
    /** The pool's scheduling settings (pass-tuning.ts), the same in every thread. */
    private readonly tuning: PassTuning = DEFAULT_TUNING,
  ) {
    this.c = L.config;
    this.f = mptFacts(this.c);
    this.eps = this.f.norm.eps;
    this.rms = this.f.norm.kind === 'rmsnorm';
    this.attnScratch = Math.ceil(((4 * 32 + 4 * this.f.headDim) * 4) / 64) * 64;
    this.pl = privateLayout(this.c);
    this.geo = { f32: kvGeometry(this.c, 'f32'), f16: kvGeometry(this.c, 'f16'), q8_0: kvGeometry(this.c, 'q8_0') };
    this.plans = L.layers.map((ly) => ({
      qkv: quantPlan(ly.qkv.type),
      out: quantPlan(ly.out.type),
      up: ly.gate ? quantPlan(ly.up.type, ly.gate.type) : quantPlan(ly.up.type),
      down: quantPlan(ly.down.type),
    }));
    this.lmPlan = quantPlan(L.head.lm.type);
    const ly = L.layers[0];
    this.layerWeightMacs = ly
      ? [ly.qkv, ly.out, ly.up, ly.gate, ly.down].reduce((n, m) => n + (m ? m.rows * m.cols : 0), 0)
      : 0;
    this.privs = L.arenas.map(({ scratch: s }) => {
      const base = s.priv + team.tid * s.privateBytes;
      return { xn: base + this.pl.xn, qkv: base + this.pl.qkv, qa: base + this.pl.qa, qk: base + this.pl.qk };
    });
  }

  private f32(arena: number): Float32Array {
    return new Float32Array(this.memories[arena]!.buffer);
  }

  /** This thread's private slice in an arena. */
  private priv(a: number): PrivateSlice {
    return this.privs[a]!;
  }

  /**
   * Quantizes rows [r0, r1) of src (K values a row; M rows in all) as the consuming matrices need
   * them (plan). A single row (M = 1, decode) read only by q4_0 matrices goes into a row record, which
   * gemmRows reads with gemv_q4_0x4 (its dense quants stay in L1 at K = 8192; with q8_0 weights
   * the same layout measured 0.85× in docs/cpu-profile.md, so q8_0 keeps the group record).
   */
  private quantFor(
    k: Kernels,
    src: number,
    K: number,
    r0: number,
    r1: number,
    M: number,
    into: Input,
    plan: QuantPlan,
  ): void {
    if (plan.q8) {
      into.rowRecord = M === 1 && plan.q8RowRecord;
      if (into.rowRecord) k.quantize_act_q8_row(src, K, into.qa);
      else k.quantize_act_q8(src, K, r0, r1, K, into.qa);
    }
    if (plan.q8k) k.quantize_act_q8k(src, K, r0, r1, K, into.qk);
  }

  /** This thread's f32 panel for half-precision products in an arena (0 if none). */
  private panel(a: number): number {
    const s = this.L.arenas[a]!.scratch;
    return s.panel ? s.panel + this.team.tid * HALF_PANEL_BYTES : 0;
  }

  /** Splits `rows` rows into chunks for parallelFor. */
  private rowChunks(rows: number, fn: (r0: number, r1: number) => void): void {
    const per = Math.max(1, Math.ceil(rows / (this.team.sharing * 4)));
    const n = Math.ceil(rows / per);
    this.team.parallelFor(n, (i) => fn(i * per, Math.min(rows, (i + 1) * per)));
  }

  private norm(k: Kernels, x: number, ldx: number, y: number, ldy: number, M: number, n: number, p: NormRef): void {
    if (this.rms) k.rmsnorm(x, ldx, y, ldy, M, n, p.w, this.eps);
    else k.layernorm(x, ldx, y, ldy, M, n, p.w, p.b, this.eps);
  }

  /** Rows [r0, r1) of into.x = norm(x) (leading dimension d; M rows in all), quantized for the consumers. */
  private normRows(
    k: Kernels,
    x: number,
    into: Input,
    r0: number,
    r1: number,
    M: number,
    p: NormRef,
    plan: QuantPlan,
  ): void {
    const d = this.c.dModel;
    this.norm(k, x + r0 * d * 4, d, into.x + r0 * d * 4, d, r1 - r0, d, p);
    this.quantFor(k, into.x, d, r0, r1, M, into, plan);
  }

  /** Runs a product over rows [n0, n1) of m into Y (input: f32 rows, or its quantized copy). */
  private gemmRows(
    k: Kernels,
    m: MatrixRef,
    X: Input,
    M: number,
    Y: number,
    ldy: number,
    n0: number,
    n1: number,
    acc: number,
  ): void {
    const K = m.cols;
    switch (m.type) {
      case 'f32':
        k.gemm_f32(X.x, K, m.ptr, K, Y, ldy, M, n0, n1, K, acc);
        break;
      case 'f16':
        k.gemm_f16(X.x, K, m.ptr, K, Y, ldy, M, n0, n1, K, acc, this.panel(m.arena));
        break;
      case 'bf16':
        k.gemm_bf16(X.x, K, m.ptr, K, Y, ldy, M, n0, n1, K, acc, this.panel(m.arena));
        break;
      case 'q8_0':
        if (m.packed && M >= PROMPT_TILE_ROWS) k.gemm_q8_0x4_prompt(X.qa, m.ptr, Y, ldy, M, m.rows, n0, n1, K, acc);
        else if (m.packed) k.gemm_q8_0x4(X.qa, m.ptr, Y, ldy, M, m.rows, n0, n1, K, acc);
        else k.gemm_q8_0(X.qa, m.ptr, Y, ldy, M, n0, n1, K, acc);
        break;
      case 'q4_0':
        if (X.rowRecord)
          k.gemv_q4_0x4(X.qa, m.ptr, Y, m.rows, n0, n1, K, acc); // M = 1 (quantFor)
        else if (m.packed && M >= PROMPT_TILE_ROWS)
          k.gemm_q4_0x4_prompt(X.qa, m.ptr, Y, ldy, M, m.rows, n0, n1, K, acc);
        else if (m.packed) k.gemm_q4_0x4(X.qa, m.ptr, Y, ldy, M, m.rows, n0, n1, K, acc);
        else k.gemm_q4_0(X.qa, m.ptr, Y, ldy, M, n0, n1, K, acc);
        break;
      case 'q4_k':
        // any M: the decode tile for one row, the prompt tile for more (assembly/gemm-k-x4.ts)
        if (m.packed) k.gemm_q4_kx4(X.qk, m.ptr, Y, ldy, M, m.rows, n0, n1, K, acc);
        else if (M >= PROMPT_TILE_ROWS_K_PLAIN) k.gemm_q4_k_prompt(X.qk, m.ptr, Y, ldy, M, n0, n1, K, acc);
        else k.gemm_k(WTYPE.q4_k, X.qk, m.ptr, Y, ldy, M, n0, n1, K, acc);
        break;
      case 'q5_k':
        if (M >= PROMPT_TILE_ROWS_K_PLAIN) k.gemm_q5_k_prompt(X.qk, m.ptr, Y, ldy, M, n0, n1, K, acc);
        else k.gemm_k(WTYPE.q5_k, X.qk, m.ptr, Y, ldy, M, n0, n1, K, acc);
        break;
      case 'q6_k':
        // any M: the decode tile for 1-3 rows, the prompt tile for more (assembly/gemm-q6k-x4.ts)
        if (m.packed) k.gemm_q6_kx4(X.qk, m.ptr, Y, ldy, M, m.rows, n0, n1, K, acc);
        else if (M >= PROMPT_TILE_ROWS_K_PLAIN) k.gemm_q6_k_prompt(X.qk, m.ptr, Y, ldy, M, n0, n1, K, acc);
        else k.gemm_k(WTYPE.q6_k, X.qk, m.ptr, Y, ldy, M, n0, n1, K, acc);
        break;
    }
  }

  /**
   * Output-row chunk size for a matrix of N rows and K columns times M activation rows: about 8
   * chunks a thread, at most 256 rows; but each chunk at least CHUNK_MACS multiply-adds while
   * every thread still gets one. A chunk costs a few JS calls whatever its size (the claim, the
   * kernel, the epilogue, the caller's `after`): a decode row of the shipped model's 50432 × 256
   * output matrix in 256-row chunks was 197 chunks of ~2 µs of kernel work each. Decode rows on
   * one thread (tuning.oneChunk): the whole matrix in one item, no per-chunk calls at all.
   */
  private chunkRows(N: number, K: number, M: number): number {
    const nt = this.team.sharing;
    if (nt === 1 && M <= PRIVATE_ROWS && this.tuning.oneChunk) return Math.max(1, N);
    const up4 = (x: number) => Math.ceil(x / 4) * 4;
    const floor = Math.min(up4(N / nt), up4(CHUNK_MACS / (K * M)));
    return Math.max(16, floor, Math.min(256, up4(N / (nt * 8))));
  }

  /**
   * A product's work items: `n` chunks of chunkRows rows, item i from row start(i) to start(i + 1)
   * (at most N). A prompt's last chunk a thread (tuning.fineTail) is cut in quarters, so that the
   * threads finish within a quarter chunk of each other (one 128-row chunk of a 1B prompt's
   * down_proj is ~3 ms: the waits at its barrier were half that a thread on average). `align`:
   * the quarters' rows are rounded up to a multiple of it (an item that quantizes its outputs).
   */
  private rowItems(N: number, K: number, M: number, align = 4): { n: number; start: (i: number) => number } {
    const per = this.chunkRows(N, K, M),
      nt = this.team.sharing;
    const whole = Math.ceil(N / per);
    if (!this.tuning.fineTail || M <= PRIVATE_ROWS || nt === 1 || whole <= nt)
      return { n: whole, start: (i) => i * per };
    const q = tailRows(per, align),
      head = (whole - nt) * per;
    return {
      n: whole - nt + Math.ceil((N - head) / q),
      start: (i) => (i * per <= head ? i * per : head + (i - head / per) * q),
    };
  }

  /**
   * Y[M][N] (=|+=) X·Wᵀ, then bias, scale, activation; split over rows of W. `after` runs on the
   * finished chunk (same thread), before the closing barrier. `last`: the pass's last parallel
   * operation (Team.parallelFor).
   */
  private matmul(
    m: MatrixRef,
    X: Input,
    M: number,
    Y: number,
    ldy: number,
    acc: number,
    scale: number,
    act: number,
    after?: (n0: number, n1: number) => void,
    last = false,
    align = 4,
  ): void {
    const k = this.k[m.arena]!;
    const items = this.rowItems(m.rows, m.cols, M, align);
    const plain = m.bias === 0 && scale === 1 && act === 0;
    this.team.parallelFor(
      items.n,
      (i) => {
        const n0 = items.start(i),
          n1 = Math.min(m.rows, items.start(i + 1));
        this.gemmRows(k, m, X, M, Y, ldy, n0, n1, acc);
        if (!plain) k.epilogue(Y, ldy, M, n0, n1, m.bias, scale, act);
        after?.(n0, n1);
      },
      last,
    );
  }

  /** The GLU MLP's first half: U = act(X·Gᵀ + bg) ⊙ (X·Uᵀ + bu), per row chunk. */
  private gluMatmul(
    up: MatrixRef,
    gate: MatrixRef,
    X: Input,
    M: number,
    U: number,
    G: number,
    ld: number,
    act: number,
  ): void {
    const k = this.k[up.arena]!;
    const items = this.rowItems(up.rows, up.cols, M);
    this.team.parallelFor(items.n, (i) => {
      const n0 = items.start(i),
        n1 = Math.min(up.rows, items.start(i + 1));
      this.gemmRows(k, up, X, M, U, ld, n0, n1, 0);
      this.gemmRows(k, gate, X, M, G, ld, n0, n1, 0);
      k.glu(U, G, ld, M, n0, n1, up.bias, gate.bias, act);
    });
  }

  /** clip_qkv, qk_ln (in place on rows [r0, r1) of qkv, leading dimension qn), then K/V into the cache. */
  private postQkv(
    k: Kernels,
    ly: LayerLayout,
    p: Pass,
    rowSeq: Int32Array,
    qkv: number,
    r0: number,
    r1: number,
    kvBase: number[],
  ): void {
    const f = this.f,
      d = f.dModel,
      kvd = f.kvDim,
      qn = f.qkvDim,
      kAt = f.qkvSplit.k * 4,
      vAt = f.qkvSplit.v * 4;
    const clip = f.clipQkv;
    for (let r = r0; r < r1; r++) {
      const row = qkv + r * qn * 4;
      if (clip !== null) k.clip(row, qn, clip);
      if (ly.qLn) {
        this.norm(k, row, qn, row, qn, 1, d, ly.qLn);
        this.norm(k, row + kAt, qn, row + kAt, qn, 1, kvd, ly.kLn!);
      }
      const si = rowSeq[r]!,
        sq = p.seqs[si]!;
      const geo = this.geo[sq.kvType];
      const base = kvBase[si]!;
      k.store_kv(
        row + kAt,
        row + vAt,
        kvd,
        geo.seg,
        geo.mode,
        base,
        base + sq.capacity * geo.rowBytes,
        sq.capacity,
        sq.past + (r - sq.rowStart),
      );
    }
  }

  /**
   * Whether every work item of the product of m with M rows starts and ends on a multiple of
   * `unit` rows of m (rowItems with that alignment), with the last chunks still cut at least in
   * halves (a 1B q4_K up_proj's 256-row chunks would not be cut at all for q8_K's 256).
   */
  private itemsOn(m: MatrixRef, M: number, unit: number): boolean {
    if (unit === 0 || m.rows % unit !== 0) return false;
    const per = this.chunkRows(m.rows, m.cols, M);
    if (per % unit !== 0 || tailRows(per, unit) > per / 2) return false;
    const items = this.rowItems(m.rows, m.cols, M, unit);
    for (let i = 0; i < items.n; i++) if (items.start(i) % unit !== 0) return false;
    return true;
  }

  /**
   * Whether a small pass's qkv items can store their own K/V values: every item's rows (of m, R
   * activation rows) start and end on a cache segment of every sequence's KV type, as do the K
   * and V parts.
   */
  private kvInItems(p: Pass, m: MatrixRef, R: number): boolean {
    const f = this.f,
      per = this.chunkRows(m.rows, m.cols, R);
    return p.seqs.every(({ kvType }) => {
      const seg = this.geo[kvType].seg;
      return per % seg === 0 && f.qkvSplit.k % seg === 0 && f.qkvSplit.v % seg === 0 && f.kvDim % seg === 0;
    });
  }

  /**
   * A qkv work item's share of postQkv for rows [0, R) of `qkv`: clip_qkv on its columns
   * [n0, n1), then the K/V values among them into each row's cache (whole segments: kvInItems).
   */
  private storeKvCols(
    k: Kernels,
    p: Pass,
    rowSeq: Int32Array,
    qkv: number,
    R: number,
    n0: number,
    n1: number,
    kvBase: number[],
  ): void {
    const f = this.f,
      qn = f.qkvDim,
      kvd = f.kvDim,
      kAt = f.qkvSplit.k,
      vAt = f.qkvSplit.v,
      clip = f.clipQkv;
    for (let r = 0; r < R; r++) {
      const row = qkv + r * qn * 4;
      if (clip !== null) k.clip(row + n0 * 4, n1 - n0, clip);
      const si = rowSeq[r]!,
        sq = p.seqs[si]!,
        geo = this.geo[sq.kvType],
        seg = geo.seg,
        pos = sq.past + (r - sq.rowStart);
      const kLo = Math.max(n0, kAt),
        kHi = Math.min(n1, kAt + kvd),
        vLo = Math.max(n0, vAt),
        vHi = Math.min(n1, vAt + kvd);
      if (kLo < kHi)
        k.store_kv_segs(
          row + kAt * 4,
          (kLo - kAt) / seg,
          (kHi - kAt) / seg,
          seg,
          geo.mode,
          kvBase[si]!,
          sq.capacity,
          pos,
        );
      if (vLo < vHi) {
        const Vc = kvBase[si]! + sq.capacity * geo.rowBytes;
        k.store_kv_segs(row + vAt * 4, (vLo - vAt) / seg, (vHi - vAt) / seg, seg, geo.mode, Vc, sq.capacity, pos);
      }
    }
  }

  /** quantFor of columns [n0, n1) of rows [0, M) of src (K values a row; whole blocks: quantInItems) into `into`. */
  private quantCols(
    k: Kernels,
    src: number,
    K: number,
    M: number,
    n0: number,
    n1: number,
    into: Input,
    plan: QuantPlan,
  ): void {
    if (plan.q8) {
      if (into.rowRecord) k.quantize_act_q8_row_span(src, K, into.qa, n0 / 32, n1 / 32);
      else k.quantize_act_q8_span(src, K, 0, M, K, into.qa, n0 / 32, n1 / 32);
    }
    if (plan.q8k) k.quantize_act_q8k_span(src, K, 0, M, K, into.qk, n0 / 256, n1 / 256);
  }

  /** Attention work items of a pass, with queries read from `qkv` (rows of qn floats). */
  private attention(
    k: Kernels,
    a: number,
    p: Pass,
    units: Int32Array,
    qkv: number,
    ctx: number,
    kvBase: number[],
    places: KvPlaces,
  ): void {
    const f = this.f,
      L = this.L,
      d = f.dModel,
      hd = f.headDim,
      qn = f.qkvDim;
    const scratch = L.arenas[a]!.scratch.attn + this.team.tid * this.attnScratch;
    this.team.parallelFor(units.length / 3, (u) => {
      const si = units[3 * u]!,
        sq = p.seqs[si]!,
        hh = units[3 * u + 1]!,
        t = units[3 * u + 2]!;
      const i0 = t * ATTN_ROWS,
        nq = Math.min(ATTN_ROWS, sq.n - i0);
      const pi = 2 * (si * f.kvHeads + kvHeadOf(f, hh));
      const geo = this.geo[sq.kvType];
      const Kc = kvBase[si]! + places[pi]!,
        Vc = Kc + sq.capacity * geo.rowBytes;
      const row = sq.rowStart + i0;
      k.attention_kv(
        geo.mode,
        qkv + (row * qn + hh * hd) * 4,
        qn,
        nq,
        sq.past + i0,
        Kc,
        Vc,
        geo.segBytes,
        places[pi + 1]!,
        sq.kv[a]!,
        sq.past + sq.n,
        hd,
        f.softmaxScale,
        f.slopes[hh]!,
        ctx + (row * d + hh * hd) * 4,
        d,
        scratch,
      );
    });
  }

  /**
   * Which sequence each row of a pass belongs to, its attention work items (sequence, head, query
   * tile) and its KV places. A decode step of one sequence (one row) has the same ones as the last
   * such step while the cache's capacity and type stay: kept, not rebuilt at every step (in a
   * fresh process this JS runs interpreted for hundreds of steps). Read only by the pass.
   */
  private passShape(p: Pass): PassShape {
    const sq0 = p.seqs[0]!;
    const single = p.rows === 1 && p.seqs.length === 1;
    const last = this.lastShape;
    if (single && last && last.capacity === sq0.capacity && last.kvType === sq0.kvType) return last.shape;
    const H = this.f.nHeads;
    const rowSeq = new Int32Array(p.rows);
    p.seqs.forEach((s, i) => {
      rowSeq.fill(i, s.rowStart, s.rowStart + s.n);
    });
    const unitList: number[] = [];
    p.seqs.forEach((sq, si) => {
      const tiles = Math.ceil(sq.n / ATTN_ROWS);
      // Longest first (tuning.longFirst): a tile attends to every key up to its last query.
      if (this.tuning.longFirst)
        for (let t = tiles - 1; t >= 0; t--) for (let hh = 0; hh < H; hh++) unitList.push(si, hh, t);
      else for (let hh = 0; hh < H; hh++) for (let t = 0; t < tiles; t++) unitList.push(si, hh, t);
    });
    const shape: PassShape = { rowSeq, units: Int32Array.from(unitList), places: this.kvPlaces(p) };
    if (single) this.lastShape = { capacity: sq0.capacity, kvType: sq0.kvType, shape };
    return shape;
  }

  /**
   * Per sequence and K/V head g, where the head's keys start inside a layer's KV part and the
   * values of its first q8_0 block that belong to earlier heads (layout.ts kvHeadPlace), worked
   * out once per pass rather than per attention work item of every layer.
   */
  private kvPlaces(p: Pass): KvPlaces {
    const G = this.f.kvHeads,
      places: KvPlaces = new Array(2 * p.seqs.length * G);
    p.seqs.forEach((sq, si) => {
      for (let g = 0; g < G; g++) {
        const at = kvHeadPlace(this.c, this.geo[sq.kvType], g, sq.capacity);
        places[2 * (si * G + g)] = at.offset;
        places[2 * (si * G + g) + 1] = at.e0;
      }
    });
    return places;
  }

  /**
   * Rows of the residual stream (in arena `from`) through norm_f into `p.hiddenOut`, normalised
   * in the head arena's shared xn scratch (maxRows rows; the logits step reuses it afterwards).
   */
  private finalHidden(p: Pass, from: number): void {
    const rows = p.hiddenRows;
    if (!rows || rows.length === 0) return;
    const d = this.c.dModel,
      h = this.L.head,
      ha = h.arena,
      hk = this.k[ha]!;
    const xn = this.L.arenas[ha]!.scratch.xn,
      xoff = this.L.arenas[from]!.scratch.x / 4;
    const src = this.f32(from),
      dst = this.f32(ha),
      out = new Float32Array(p.hiddenOut!);
    this.rowChunks(rows.length, (i0, i1) => {
      for (let i = i0; i < i1; i++) {
        dst.set(src.subarray(xoff + rows[i]! * d, xoff + (rows[i]! + 1) * d), xn / 4 + i * d);
      }
      this.norm(hk, xn + i0 * d * 4, d, xn + i0 * d * 4, d, i1 - i0, d, h.normF);
      out.set(dst.subarray(xn / 4 + i0 * d, xn / 4 + i1 * d), i0 * d);
    });
  }

  /**
   * Whether a small pass's layers are too light to share: every layer below SOLO_LAYER_MACS
   * multiply-adds (all layers have the same shape; attention over each sequence's cache counted).
   */
  private lightLayers(p: Pass): boolean {
    if (this.L.layers.length === 0) return true;
    const f = this.f;
    let macs = this.layerWeightMacs * p.rows;
    for (const sq of p.seqs) macs += 2 * sq.n * f.nHeads * (sq.past + sq.n) * f.headDim;
    return macs < SOLO_LAYER_MACS;
  }

  /** The embedding (+ learned positions) into the head arena's residual stream, then every layer. */
  private layers(p: Pass, small: boolean, rowSeq: Int32Array, units: Int32Array, places: KvPlaces): void {
    const L = this.L,
      c = this.c,
      f = this.f;
    const d = f.dModel,
      qn = f.qkvDim,
      ff = f.ffnHidden;
    const R = p.rows;
    const h = L.head;
    let cur = h.arena;
    {
      const k = this.k[cur]!,
        s = L.arenas[cur]!.scratch;
      const wt = WTYPE[h.wte.type];
      const embed = (r0: number, r1: number, into: number) => {
        for (let r = r0; r < r1; r++) {
          const dst = into + r * d * 4;
          if (h.wte.packed && wt === WTYPE.q4_k) k.dequant_row_q4_kx4(h.wte.ptr, h.wte.rows, d, p.tokens[r]!, dst);
          else if (h.wte.packed && wt === WTYPE.q6_k) k.dequant_row_q6_kx4(h.wte.ptr, h.wte.rows, d, p.tokens[r]!, dst);
          else if (h.wte.packed)
            k.dequant_row_x4(wt === WTYPE.q4_0 ? 1 : 0, h.wte.ptr, h.wte.rows, d, p.tokens[r]!, dst);
          else k.dequant_row(wt, h.wte.ptr, d, p.tokens[r]!, dst);
          if (h.wpe) k.add_to(dst, h.wpe + p.wpePos![r]! * d * 4, d);
        }
      };
      if (small) {
        // Every thread writes the whole residual stream here, so it must only ever store final
        // values: rows built in place (token row, then += position row) let one thread read, or
        // add to, another's half-built row. Built privately, then copied (same bytes from all).
        const own = this.priv(cur).xn;
        embed(0, R, own);
        k.copy_bytes(s.x, own, R * d * 4);
      } else this.rowChunks(R, (r0, r1) => embed(r0, r1, s.x));
    }

    // Once a pass (the layers have the same shapes): whether the qkv items store their K/V values
    // and how many rows an up_proj item has (quantInItems).
    const ly0 = L.layers[0];
    const kvSplit = small && ly0 !== undefined && this.kvInItems(p, ly0.qkv, R);
    const upPer = small && ly0 !== undefined ? this.chunkRows(ly0.up.rows, ly0.up.cols, R) : 0;
    for (let l = 0; l < c.nLayers; l++) {
      // Alone (Team.solo): the others wake now and spin at the join, ready for the LM head.
      if (l === c.nLayers - 1) this.team.nudge();
      const ly = L.layers[l]!;
      const a = ly.arena,
        k = this.k[a]!,
        s = L.arenas[a]!.scratch;
      if (a !== cur) {
        const from = L.arenas[cur]!.scratch.x,
          src = this.f32(cur),
          dst = this.f32(a);
        const copy = (r0: number, r1: number) =>
          dst.set(src.subarray(from / 4 + r0 * d, from / 4 + r1 * d), s.x / 4 + r0 * d);
        if (small) copy(0, R);
        else this.rowChunks(R, copy);
        cur = a;
      }
      const plan = this.plans[l]!;
      const kvBase = p.seqs.map((sq) => sq.kv[a]! + kvLayerOffset(c, ly.slot, sq.capacity, sq.kvType));
      if (small) {
        const pv = this.priv(a);
        const own: Input = { x: pv.xn, qa: pv.qa, qk: pv.qk };
        this.normRows(k, s.x, own, 0, R, R, ly.norm1, plan.qkv);
        // The qkv product's items clip and store the K/V values they made, in the shared rows:
        // no thread repeats the whole row's store, nor copies it (qk_ln needs whole rows).
        const kvInItems = kvSplit && !ly.qLn;
        if (kvInItems)
          this.matmul(ly.qkv, own, R, s.qkv, qn, 0, 1, 0, (n0, n1) =>
            this.storeKvCols(k, p, rowSeq, s.qkv, R, n0, n1, kvBase),
          );
        else {
          this.matmul(ly.qkv, own, R, s.qkv, qn, 0, 1, 0);
          k.copy_bytes(pv.qkv, s.qkv, R * qn * 4);
          this.postQkv(k, ly, p, rowSeq, pv.qkv, 0, R, kvBase);
        }
        this.attention(k, a, p, units, kvInItems ? s.qkv : pv.qkv, s.ctx, kvBase, places);
        const ctxIn: Input = { x: s.ctx, qa: pv.qa, qk: pv.qk };
        this.quantFor(k, s.ctx, d, 0, R, R, ctxIn, plan.out);
        this.matmul(ly.out, ctxIn, R, s.x, d, 1, 1, 0);
        this.normRows(k, s.x, own, 0, R, R, ly.norm2, plan.up);
        if (!ly.gate && quantInItems(upPer, plan.down)) {
          // The up product's items quantize the hidden values they made for down_proj, into the
          // shared records, instead of every thread quantizing the whole row after the barrier.
          const hidIn: Input = { x: s.hid, qa: s.qa, qk: s.qk, rowRecord: R === 1 && plan.down.q8RowRecord };
          this.matmul(ly.up, own, R, s.hid, ff, 0, 1, L.act, (n0, n1) =>
            this.quantCols(k, s.hid, ff, R, n0, n1, hidIn, plan.down),
          );
          this.matmul(ly.down, hidIn, R, s.x, d, 1, 1, 0);
          continue;
        }
        if (ly.gate) this.gluMatmul(ly.up, ly.gate, own, R, s.hid, s.gate, ff, L.act);
        else this.matmul(ly.up, own, R, s.hid, ff, 0, 1, L.act);
        const hidIn: Input = { x: s.hid, qa: pv.qa, qk: pv.qk };
        this.quantFor(k, s.hid, ff, 0, R, R, hidIn, plan.down);
        this.matmul(ly.down, hidIn, R, s.x, d, 1, 1, 0);
      } else {
        const shared: Input = { x: s.xn, qa: s.qa, qk: s.qk };
        this.rowChunks(R, (r0, r1) => this.normRows(k, s.x, shared, r0, r1, R, ly.norm1, plan.qkv));
        this.matmul(ly.qkv, shared, R, s.qkv, qn, 0, 1, 0);
        this.rowChunks(R, (r0, r1) => this.postQkv(k, ly, p, rowSeq, s.qkv, r0, r1, kvBase));
        this.attention(k, a, p, units, s.qkv, s.ctx, kvBase, places);
        const ctxIn: Input = { x: s.ctx, qa: s.qa, qk: s.qk };
        if (actKind(ly.out.type) !== 'f32')
          this.rowChunks(R, (r0, r1) => this.quantFor(k, s.ctx, d, r0, r1, R, ctxIn, plan.out));
        this.matmul(ly.out, ctxIn, R, s.x, d, 1, 1, 0);
        const hidIn: Input = { x: s.hid, qa: s.qa, qk: s.qk };
        const unit = quantUnit(plan.down);
        if (!ly.gate && this.itemsOn(ly.up, R, unit)) {
          // As in small passes, the up product's items quantize the hidden values they made (all
          // rows of their columns) into the shared records: one operation and barrier fewer a
          // layer, and the values are still in cache. The up product's own quantized input must
          // then lie elsewhere: in ctx and qkv, which nothing reads again in this layer (ctx
          // holds R·d floats, more than R·d values' q8_0 records; qkv more than their q8_K).
          const upIn: Input = { x: s.xn, qa: s.ctx, qk: s.qkv };
          this.rowChunks(R, (r0, r1) => this.normRows(k, s.x, upIn, r0, r1, R, ly.norm2, plan.up));
          const quant = (n0: number, n1: number) => this.quantCols(k, s.hid, ff, R, n0, n1, hidIn, plan.down);
          this.matmul(ly.up, upIn, R, s.hid, ff, 0, 1, L.act, quant, false, unit);
        } else {
          this.rowChunks(R, (r0, r1) => this.normRows(k, s.x, shared, r0, r1, R, ly.norm2, plan.up));
          if (ly.gate) this.gluMatmul(ly.up, ly.gate, shared, R, s.hid, s.gate, ff, L.act);
          else this.matmul(ly.up, shared, R, s.hid, ff, 0, 1, L.act);
          if (actKind(ly.down.type) !== 'f32')
            this.rowChunks(R, (r0, r1) => this.quantFor(k, s.hid, ff, r0, r1, R, hidIn, plan.down));
        }
        this.matmul(ly.down, hidIn, R, s.x, d, 1, 1, 0);
      }
    }
  }

  /** Runs one pass. */
  run(p: Pass): void {
    const L = this.L,
      c = this.c,
      team = this.team;
    const f = this.f;
    const d = f.dModel;
    const R = p.rows;
    const small = R <= PRIVATE_ROWS;
    team.reset(p.threads);
    // Thread 0 clears every thread's greedy slots (greedyRows) before the others can reach the LM
    // head (they meet thread 0 at a barrier or the join first): a thread that claims no LM-head
    // chunk (still on its way when the last one is finished, Team.parallelFor `last`) leaves a
    // cleared slot for sampleRows, not the previous pass's.
    const greedy = this.greedyRows(p, f.vocabSize);
    if (greedy && team.tid === 0) this.clearBestSlots(greedy, p.threads);

    const { rowSeq, units, places } = this.passShape(p);

    // The residual stream ends in the last layer's arena (the head's when there are none).
    const h = L.head;
    const cur = c.nLayers > 0 ? L.layers[c.nLayers - 1]!.arena : h.arena;
    if (small && this.lightLayers(p)) team.solo(() => this.layers(p, small, rowSeq, units, places));
    else this.layers(p, small, rowSeq, units, places);
    team.join();

    this.finalHidden(p, cur);

    // Final norm and LM head for the rows that want logits, `logitRows` rows at a time; each
    // thread copies the vocabulary chunks it computed straight into the output.
    const nl = p.logitRows.length;
    if (nl === 0) return;
    const ha = h.arena,
      hk = this.k[ha]!,
      hs = L.arenas[ha]!.scratch;
    const V = f.vocabSize;
    const inPlace = p.logitsInPlace === true;
    // Where sampling reads row i: out[base + i·V ...].
    const out = inPlace ? this.f32(ha) : new Float32Array(p.logitsOut!),
      base = inPlace ? hs.logits / 4 : p.logitsOffset;
    if (inPlace && nl > L.logitRows)
      throw new Error(`internal: ${nl} logit rows left in place, room for ${L.logitRows}`);
    const scale = f.logitScale;
    // Greedy rows are chosen as the chunks come out of the LM head: each thread applies the
    // penalties to its chunk (sampler.ts applyEdits: the same logits the caller's row would give)
    // and merges the chunk's argmax into its slot for the row; the slots are merged once every
    // chunk is finished (sampleRows). No full pass over the row, and no second copy of it.
    for (let c0 = 0; c0 < nl; c0 += L.logitRows) {
      const c1 = Math.min(nl, c0 + L.logitRows),
        m = c1 - c0;
      const xsrc = this.f32(cur),
        xdst = this.f32(ha),
        xoff = L.arenas[cur]!.scratch.x / 4;
      const gather = (into: Input, i0: number, i1: number) => {
        for (let i = i0; i < i1; i++) {
          const r = p.logitRows[c0 + i]!;
          xdst.set(xsrc.subarray(xoff + r * d, xoff + (r + 1) * d), into.x / 4 + i * d);
        }
        this.normRows(hk, into.x, into, i0, i1, m, h.normF, this.lmPlan);
      };
      let input: Input;
      if (m <= PRIVATE_ROWS) {
        const pv = this.priv(ha);
        input = { x: pv.xn, qa: pv.qa, qk: pv.qk };
        gather(input, 0, m);
      } else {
        input = { x: hs.xn, qa: hs.qa, qk: hs.qk };
        this.rowChunks(m, (i0, i1) => gather(input, i0, i1));
      }
      const lg = this.f32(ha),
        lo = hs.logits / 4;
      const chosen = greedy?.filter((g) => g.row >= c0 && g.row < c1);
      const rowViews = chosen?.map((g) => lg.subarray(lo + (g.row - c0) * V, lo + (g.row - c0 + 1) * V));
      // The last chunk of rows ends the pass's parallel work (sampleRows only reads its results).
      this.matmul(
        h.lm,
        input,
        m,
        hs.logits,
        V,
        0,
        scale,
        0,
        (n0, n1) => {
          if (!inPlace)
            for (let i = 0; i < m; i++)
              out.set(lg.subarray(lo + i * V + n0, lo + i * V + n1), p.logitsOffset + (c0 + i) * V + n0);
          chosen?.forEach((g, j) => {
            if (g.edits) applyEdits(rowViews![j]!, n0, n1, g.edits);
            hk.sampling_argmax(hs.logits + (g.row - c0) * V * 4, n0, n1, this.bestSlot(this.team.tid, g.row));
          });
        },
        c1 === nl,
      );
    }
    if (p.sample) this.sampleRows(p, p.sample, out, base, V);
  }

  /** Sets threads 0 .. nt-1's slots of the greedy rows to (-Infinity, no id). */
  private clearBestSlots(greedy: Array<{ row: number }>, nt: number): void {
    const ha = this.L.head.arena,
      bf = this.f32(ha),
      bi = new Int32Array(this.memories[ha]!.buffer);
    for (let t = 0; t < nt; t++)
      for (const g of greedy) {
        const at = this.bestSlot(t, g.row) / 4;
        bf[at] = -Infinity;
        bi[at + 1] = -1;
      }
  }

  /** Byte offset of thread t's (f32 value, i32 id) slot for greedy logit row `row` (head arena). */
  private bestSlot(t: number, row: number): number {
    return this.L.arenas[this.L.head.arena]!.scratch.best + (t * this.L.maxRows + row) * 8;
  }

  /** The logit rows of a pass whose requests are greedy, with their penalty edits (null when none edits a logit). */
  private greedyRows(p: Pass, V: number): Array<{ row: number; edits: PenaltyEdits | null }> | null {
    const sample = p.sample;
    if (!sample) return null;
    const rows: Array<{ row: number; edits: PenaltyEdits | null }> = [];
    sample.forEach((r, row) => {
      if (!r || !greedyOptions(r.options)) return;
      const e = penaltyEdits(r.history, r.promptLength, r.options, V);
      rows.push({ row, edits: noEdits(e, V) ? null : e });
    });
    return rows.length ? rows : null;
  }

  /**
   * Chooses the tokens of the sampled rows once every LM-head chunk is in: row i by thread
   * i mod nt, greedy rows from the threads' slots (greatest logit, then lowest id), the others
   * by chooseToken over the row (out[base + i·V ...]). No barrier after it: the pass ends when
   * every thread is out.
   */
  private sampleRows(p: Pass, sample: Array<SampleRequest | null>, out: Float32Array, base: number, V: number): void {
    const tokens = new Int32Array(p.tokensOut!),
      first = p.logitsOffset / V,
      nt = this.team.nt;
    const bf = this.f32(this.L.head.arena),
      bi = new Int32Array(this.memories[this.L.head.arena]!.buffer);
    for (let i = this.team.tid; i < sample.length; i += nt) {
      const request = sample[i];
      if (!request) continue;
      let token = -1;
      if (greedyOptions(request.options)) {
        let v = -Infinity;
        for (let t = 0; t < nt; t++) {
          const at = this.bestSlot(t, i) / 4;
          const id = bi[at + 1]!;
          if (id >= 0 && (bf[at]! > v || (bf[at] === v && id < token))) {
            v = bf[at]!;
            token = id;
          }
        }
      } else {
        try {
          token = chooseToken(out.subarray(base + i * V, base + (i + 1) * V), request);
        } catch {
          // no token can be chosen: the caller chooses again and reports why
        }
      }
      tokens[first + i] = token;
    }
  }
}
