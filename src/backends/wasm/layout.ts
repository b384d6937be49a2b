/**
 * Where everything lives: which wasm memory ("arena") holds which weights, and the byte offsets
 * of weights, scratch buffers and attention scratch inside each arena. A plain, structured-clone
 * friendly object computed once on the main thread and sent to every worker.
 *
 * Memory beyond 4 GiB: a wasm32 memory holds at most 4 GiB, so a model is spread over several
 * arenas by whole layers (pipeline placement): arena 0 holds the embedding / LM head and the
 * first layers, the next arenas the following layers. Every worker has one kernel instance per
 * arena and splits every operation of a layer across threads inside that layer's arena; the
 * residual stream is copied to the next arena at the boundary (a few KB per token). KV caches of
 * a layer live in that layer's arena.
 */
import type { KvType } from '../backend.js';
import { MemoryPlanError } from '../../errors.js';
import { byteLengthOf, GGML_TYPES, paddedByteLengthOf } from '../../formats/ggml-types.js';
import { qkvDim, type MptConfig } from '../../model/config.js';
import { mptFacts } from '../../model/facts.js';
import {
  ACT,
  HALF_PANEL_BYTES,
  TABLES_END,
  actKind,
  actQ8Bytes,
  actQ8KBytes,
  attentionScratchBytes,
  rowBytes,
  type WeightType,
} from './kernels.js';
import { keptPacked } from './repack.js';

/** A weight matrix [rows][cols] in an arena; bias is a pointer to rows f32, or 0. */
export interface MatrixRef {
  arena: number;
  ptr: number;
  type: WeightType;
  rows: number;
  cols: number;
  bias: number;
  /**
   * Stored row-interleaved (q4_0x4 / q8_0x4 / q4_Kx4, repack.ts) instead of plain rows: every
   * q4_0 / q8_0 matrix of at least 4 rows (q4_K on request, `keptPacked`), so the decode kernels
   * serve 4 rows per activation load. Same size.
   */
  packed: boolean;
}

/** LayerNorm / RMSNorm parameters: pointers to f32 vectors, 0 when absent. */
export interface NormRef {
  w: number;
  b: number;
}

export interface LayerLayout {
  arena: number;
  /** Index of this layer among the layers of its arena (its slot in a KV region). */
  slot: number;
  norm1: NormRef;
  norm2: NormRef;
  qLn?: NormRef;
  kLn?: NormRef;
  qkv: MatrixRef;
  out: MatrixRef;
  up: MatrixRef;
  gate?: MatrixRef;
  down: MatrixRef;
}

/** Scratch buffers of one arena (byte offsets), sized for `maxRows` tokens per pass. */
export interface ScratchLayout {
  start: number;
  x: number;
  xn: number;
  qkv: number;
  ctx: number;
  hid: number;
  gate: number;
  /** Quantized activations (group records of quant-act.ts). */
  qa: number;
  /** q8_K activations for k-quant weights (gemm-k.ts), or 0. */
  qk: number;
  /** Attention scratch, one slice per thread. */
  attn: number;
  /**
   * Per-thread buffers for small passes (at most PRIVATE_ROWS rows), one slice of
   * `privateBytes` per thread: normed rows [R][d], post-processed qkv rows [R][qkv], quantized
   * activations (group records) for R rows of max(d, ff).
   */
  priv: number;
  privateBytes: number;
  /** Per-thread f32 panels for half-precision weight products (HALF_PANEL_BYTES each), or 0. */
  panel: number;
  /** Logits of `logitRows` rows (LM-head arena only; 0 elsewhere). */
  logits: number;
  /**
   * Per thread, for each of maxRows logit rows, its greedy choice so far (f32 logit, i32 id;
   * assembly/sampling.ts sampling_argmax), merged over the LM-head chunks it computed (LM-head
   * arena only; 0 elsewhere).
   */
  best: number;
  end: number;
}

export interface ArenaLayout {
  /** End of the weights (the scratch starts here). */
  weightsEnd: number;
  scratch: ScratchLayout;
  /** Initial size in bytes (weights + scratch, page-aligned); KV caches are added after it. */
  initialBytes: number;
  /** Layers held here, in order. */
  layers: number[];
}

export interface HeadLayout {
  arena: number;
  /** Token embedding (also the LM head when tied). */
  wte: MatrixRef;
  /** Learned position embedding [maxSeqLen][d] f32, or 0. */
  wpe: number;
  normF: NormRef;
  lm: MatrixRef;
}

export interface ModelLayout {
  config: MptConfig;
  /** Tokens per pass (a forward call is split into passes of at most this many rows). */
  maxRows: number;
  /** Rows of logits computed at once. */
  logitRows: number;
  /** Worker threads the attention scratch is sized for. */
  threads: number;
  arenas: ArenaLayout[];
  layers: LayerLayout[];
  head: HeadLayout;
  /** ACT id of the MLP activation. */
  act: number;
}

/**
 * Storage type of each matrix, chosen by the loader, by canonical tensor name
 * (`transformer.wte.weight`, `transformer.blocks.3.ffn.up_proj.weight`, `lm_head.weight`, ...).
 */
export type MatrixTypeOf = (name: string) => WeightType;

export interface LayoutOptions {
  maxRows?: number;
  threads: number;
  /** Weight bytes per arena before another arena is used (default 3 GiB). */
  arenaBudget?: number;
  /** KV-cache bytes each layer's arena must keep free for the caches the caller will create. */
  kvBytesPerLayer?: number;
}

const ALIGN = 64;
const PAGE = 65536;
const MAX_ARENA = 4 * 1024 ** 3;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

/** Kernel numbering of the KV storage types (attention.ts). */
export const KV_MODE: Record<KvType, number> = { f32: 0, f16: 1, q8_0: 2 };

/**
 * How a KV type stores one layer's keys (and, after them, its values): a row of
 * kv_heads · head_dim values per position is cut into segments of `seg` values, each part laid
 * out [segment][capacity][segment's values as the type]. f32 / f16: one segment per head, so
 * head g's keys are contiguous, [kv_heads][capacity][head_dim]. q8_0: ggml blocks (fp16 scale +
 * 32 int8) along the row, as the reference backend rounds it; with head_dim a multiple of 32 a
 * block never crosses heads and the segment is a head, otherwise the segment is the whole row
 * ([capacity][blocks of the row], the last block possibly short) and a head may start inside a
 * block.
 */
export interface KvGeometry {
  mode: number;
  /** Values per segment. */
  seg: number;
  /** Bytes of one segment of one position. */
  segBytes: number;
  /** Bytes of one position's keys (the values take as many). */
  rowBytes: number;
}

const Q8_BLOCK = GGML_TYPES.q8_0.blockSize;

export function kvGeometry(c: MptConfig, kvType: KvType): KvGeometry {
  const hd = c.headDim,
    kvd = mptFacts(c).kvDim,
    mode = KV_MODE[kvType];
  const seg = mode === 2 && hd % Q8_BLOCK !== 0 ? kvd : hd;
  const segBytes = mode === 0 ? seg * 4 : mode === 1 ? seg * 2 : paddedByteLengthOf('q8_0', seg);
  return { mode, seg, segBytes, rowBytes: (kvd / seg) * segBytes };
}

/**
 * Where K/V head g's row of position 0 starts inside a layer's key (or value) part, in bytes, and
 * e0: values of its first q8_0 block that belong to earlier heads. Position p's row is
 * `segBytes` further per position.
 */
export function kvHeadPlace(
  c: MptConfig,
  geo: KvGeometry,
  g: number,
  capacity: number,
): { offset: number; e0: number } {
  const o = g * c.headDim,
    s = Math.floor(o / geo.seg),
    w = o - s * geo.seg;
  const inSeg = geo.mode === 0 ? w * 4 : geo.mode === 1 ? w * 2 : byteLengthOf('q8_0', w - (w % Q8_BLOCK));
  return { offset: s * capacity * geo.segBytes + inSeg, e0: geo.mode === 2 ? w % Q8_BLOCK : 0 };
}

/** Bytes of one KV-cache position for one layer (keys and values, stored as kvType). */
export function kvBytesPerPosition(c: MptConfig, kvType: KvType): number {
  return 2 * kvGeometry(c, kvType).rowBytes;
}

/** Bytes of a KV region in an arena holding `layers` layers, for `capacity` positions: validity bytes, then the layers. */
export function kvRegionBytes(c: MptConfig, layers: number, capacity: number, kvType: KvType): number {
  return align(capacity) + layers * align(capacity * kvBytesPerPosition(c, kvType));
}

/** Offset of layer `slot`'s keys inside a KV region; its values follow at + capacity · rowBytes. */
export function kvLayerOffset(c: MptConfig, slot: number, capacity: number, kvType: KvType): number {
  return align(capacity) + slot * align(capacity * kvBytesPerPosition(c, kvType));
}

/** Passes of at most this many rows take the low-synchronisation path (see executor.ts). */
export const PRIVATE_ROWS = 8;

/** Offsets inside one thread's private slice. */
export function privateLayout(c: MptConfig): { xn: number; qkv: number; qa: number; qk: number; bytes: number } {
  const qkvN = qkvDim(c);
  const maxK = Math.max(c.dModel, c.ffn.hiddenSize);
  const xn = 0;
  const qkv = align(PRIVATE_ROWS * c.dModel * 4);
  const qa = qkv + align(PRIVATE_ROWS * qkvN * 4);
  const qk = qa + align(actQ8Bytes(PRIVATE_ROWS, maxK));
  const bytes = qk + align(maxK % 256 === 0 ? actQ8KBytes(PRIVATE_ROWS, maxK) : 0);
  return { xn, qkv, qa, qk, bytes };
}

function activationId(c: MptConfig): number {
  return ACT[c.ffn.activation];
}

/** Plans arenas and offsets for a config and the chosen matrix types. */
export function planLayout(c: MptConfig, typeOf: MatrixTypeOf, opts: LayoutOptions): ModelLayout {
  const d = c.dModel,
    ff = c.ffn.hiddenSize,
    qn = qkvDim(c),
    V = c.vocabSize;
  const maxRows = Math.max(1, Math.floor(opts.maxRows ?? 512));
  const logitRows = Math.min(maxRows, 64);
  const threads = Math.max(1, opts.threads);
  const budget = opts.arenaBudget ?? 3 * 1024 ** 3;
  const bias = !c.noBias;
  const rms = mptFacts(c).norm.kind === 'rmsnorm';
  const glu = c.ffn.ffnType === 'mptglu';

  const matBytes = (t: WeightType, rows: number, cols: number) => align(rows * rowBytes(t, cols));
  const vec = (n: number) => align(n * 4);
  const normBytes = (n: number) => vec(n) + (bias && !rms ? vec(n) : 0);
  const linBytes = (name: string, o: number, i: number) => matBytes(typeOf(name), o, i) + (bias ? vec(o) : 0);
  const P = (l: number) => `transformer.blocks.${l}.`;
  const layerBytesOf = (l: number) =>
    normBytes(d) * 2 +
    (c.attn.qkLn ? normBytes(d) + normBytes(mptFacts(c).kvDim) : 0) +
    linBytes(`${P(l)}attn.Wqkv.weight`, qn, d) +
    linBytes(`${P(l)}attn.out_proj.weight`, d, d) +
    linBytes(`${P(l)}ffn.up_proj.weight`, ff, d) +
    (glu ? linBytes(`${P(l)}ffn.gate_proj.weight`, ff, d) : 0) +
    linBytes(`${P(l)}ffn.down_proj.weight`, d, ff);
  let layerBytes = Array.from({ length: c.nLayers }, (_, l) => layerBytesOf(l));
  const headBytes =
    matBytes(typeOf('transformer.wte.weight'), V, d) +
    (c.learnedPosEmb ? vec(c.maxSeqLen * d) : 0) +
    normBytes(d) +
    (c.tieWordEmbeddings ? 0 : matBytes(typeOf('lm_head.weight'), V, d));
  const matrixNames = ['transformer.wte.weight', ...(c.tieWordEmbeddings ? [] : ['lm_head.weight'])];
  for (let l = 0; l < c.nLayers; l++) {
    for (const m of ['attn.Wqkv', 'attn.out_proj', 'ffn.up_proj', 'ffn.down_proj', ...(glu ? ['ffn.gate_proj'] : [])])
      matrixNames.push(`${P(l)}${m}.weight`);
  }

  // Scratch per arena (same in all, plus logits in the head arena).
  const anyQ8 = matrixNames.some((nm) => actKind(typeOf(nm)) === 'q8');
  const anyQ8K = matrixNames.some((nm) => actKind(typeOf(nm)) === 'q8k');
  const anyHalf = matrixNames.some((nm) => typeOf(nm) === 'f16' || typeOf(nm) === 'bf16');
  const maxK = Math.max(d, ff);
  const scratchPlan = (start: number, withLogits: boolean): ScratchLayout => {
    let p = align(start);
    const take = (n: number) => {
      const q = p;
      p = align(p + n);
      return q;
    };
    const x = take(maxRows * d * 4);
    const xn = take(maxRows * d * 4);
    const qkv = take(maxRows * qn * 4);
    const ctx = take(maxRows * d * 4);
    const hid = take(maxRows * ff * 4);
    const gate = glu ? take(maxRows * ff * 4) : 0;
    const qa = anyQ8 ? take(actQ8Bytes(maxRows, maxK)) : 0;
    const qk = anyQ8K ? take(actQ8KBytes(maxRows, maxK)) : 0;
    const attn = take(threads * align(attentionScratchBytes(c.headDim)));
    const privateBytes = privateLayout(c).bytes;
    const priv = take(threads * privateBytes);
    const panel = anyHalf ? take(threads * HALF_PANEL_BYTES) : 0;
    const logits = withLogits ? take(logitRows * V * 4) : 0;
    const best = withLogits ? take(threads * maxRows * 8) : 0;
    return { start, x, xn, qkv, ctx, hid, gate, qa, qk, attn, priv, privateBytes, panel, logits, best, end: p };
  };
  const scratchBytes = scratchPlan(0, true).end;

  // Number of arenas: weights per arena within the budget, everything within 4 GiB. A layer
  // counts with the KV cache it will hold.
  const kvPerLayer = opts.kvBytesPerLayer ?? 0;
  const layerWeightBytes = layerBytes;
  layerBytes = layerBytes.map((b) => b + kvPerLayer);
  const total = headBytes + layerBytes.reduce((a, b) => a + b, 0);
  let n = Math.max(1, Math.ceil(total / budget));
  const perArenaMax = MAX_ARENA - scratchBytes - 64 * 1024 ** 2;
  const biggest = Math.max(0, ...layerBytes);
  if (headBytes + (layerBytes[0] ?? 0) > perArenaMax || biggest > perArenaMax) {
    const kv = kvPerLayer > 0 ? ` and its KV cache (${(kvPerLayer / 2 ** 30).toFixed(2)} GiB)` : '';
    throw new MemoryPlanError(
      `one layer (${(Math.max(0, ...layerWeightBytes) / 2 ** 30).toFixed(2)} GiB)${kv} plus the embedding does not fit in a 4 GiB wasm memory: use a smaller weight type (q8_0, q4_0)${kv ? ', a smaller KV type (--kv-type q8_0) or a shorter context (--ctx)' : ''}`,
    );
  }
  // Assign layers greedily to arenas of roughly equal size.
  let assign: number[] = [];
  for (; ; n++) {
    assign = [];
    const target = total / n;
    let arena = 0;
    let used = headBytes;
    let inArena = 0;
    let ok = true;
    for (let l = 0; l < c.nLayers; l++) {
      const lb = layerBytes[l]!;
      if (arena < n - 1 && inArena > 0 && used + lb > target + lb / 2) {
        arena++;
        used = 0;
        inArena = 0;
      }
      used += lb;
      inArena++;
      assign.push(arena);
      // an arena may always hold one layer (plus the head); more only within the budget
      if (inArena > 1 && used > Math.min(budget, perArenaMax)) ok = false;
    }
    if (ok) break;
    if (n > c.nLayers + 1) throw new MemoryPlanError('cannot place the layers in wasm memories of at most 4 GiB');
  }
  const nArenas = Math.max(...assign, 0) + 1;

  // Concrete offsets.
  const tops = new Array<number>(nArenas).fill(TABLES_END);
  const put = (a: number, bytes: number) => {
    const p = tops[a]!;
    tops[a] = align(p + bytes);
    return p;
  };
  const mat = (a: number, t: WeightType, rows: number, cols: number, withBias: boolean): MatrixRef => {
    const ptr = put(a, rows * rowBytes(t, cols));
    const packed = keptPacked(t, rows);
    return { arena: a, ptr, type: t, rows, cols, bias: withBias ? put(a, rows * 4) : 0, packed };
  };
  const norm = (a: number, nn: number): NormRef => ({ w: put(a, nn * 4), b: bias && !rms ? put(a, nn * 4) : 0 });

  const wte = mat(0, typeOf('transformer.wte.weight'), V, d, false);
  const wpe = c.learnedPosEmb ? put(0, c.maxSeqLen * d * 4) : 0;
  const normF = norm(0, d);
  const lm = c.tieWordEmbeddings ? wte : mat(0, typeOf('lm_head.weight'), V, d, false);
  const slotCount = new Array<number>(nArenas).fill(0);
  const layers: LayerLayout[] = [];
  const kvd = mptFacts(c).kvDim;
  for (let l = 0; l < c.nLayers; l++) {
    const a = assign[l]!;
    const t = (m: string) => typeOf(`${P(l)}${m}.weight`);
    layers.push({
      arena: a,
      slot: slotCount[a]!++,
      norm1: norm(a, d),
      qkv: mat(a, t('attn.Wqkv'), qn, d, bias),
      qLn: c.attn.qkLn ? norm(a, d) : undefined,
      kLn: c.attn.qkLn ? norm(a, kvd) : undefined,
      out: mat(a, t('attn.out_proj'), d, d, bias),
      norm2: norm(a, d),
      gate: glu ? mat(a, t('ffn.gate_proj'), ff, d, bias) : undefined,
      up: mat(a, t('ffn.up_proj'), ff, d, bias),
      down: mat(a, t('ffn.down_proj'), d, ff, bias),
    });
  }
  const arenas: ArenaLayout[] = [];
  for (let a = 0; a < nArenas; a++) {
    const scratch = scratchPlan(tops[a]!, a === 0);
    const initialBytes = Math.ceil(scratch.end / PAGE) * PAGE;
    if (initialBytes > MAX_ARENA)
      throw new MemoryPlanError(`arena ${a} needs ${initialBytes} bytes, more than a wasm memory holds`);
    arenas.push({
      weightsEnd: tops[a]!,
      scratch,
      initialBytes,
      layers: layers.flatMap((L, i) => (L.arena === a ? [i] : [])),
    });
  }
  return {
    config: c,
    maxRows,
    logitRows,
    threads,
    arenas,
    layers,
    head: { arena: 0, wte, wpe, normF, lm },
    act: activationId(c),
  };
}

/** Bytes of weights held in all arenas. */
export function weightBytes(L: ModelLayout): number {
  return L.arenas.reduce((s, a) => s + a.weightsEnd, 0);
}
