/**
 * Weights from a TensorSource into the arenas, never the whole checkpoint in JS memory. A matrix
 * kept in its stored type is read with positioned reads straight into its arena
 * (`TensorSource.readInto`, 16 MiB row-aligned pieces, several in flight: no intermediate copy);
 * anything else is read one tensor at a time and converted in row chunks through the arena's
 * scratch space (f32/f16/bf16 → f16/bf16/q8_0/q4_0 by the wasm kernels; other ggml types
 * dequantized by ggml-quants.ts, then requantized).
 */
import { WeightsError } from '../../errors.js';
import { dequantize, byteLengthOf, GGML_TYPES } from '../../formats/ggml-quants.js';
import type { DType, TensorInfo, TensorSource } from '../../formats/tensor-source.js';
import type { MptConfig } from '../../model/config.js';
import { blockPrefix } from '../../model/weights-layout.js';
import { checkTensorsAgainstConfig } from '../../model/weights-layout.js';
import type { Arenas } from './arenas.js';
import { WEIGHT_TYPES, rowBytes, typeFits, type WeightType } from './kernels.js';
import type { MatrixRef, ModelLayout, NormRef } from './layout.js';
import { PACK_ROWS, packedRows } from './repack.js';

/** How the loader picks storage types: keep what the file has, or convert every matrix. */
export type WeightTypeChoice = 'auto' | WeightType;

/**
 * Storage type of a matrix: `auto` keeps f32/f16/bf16/q8_0/q4_0/q4_K/q5_K/q6_K as stored and
 * converts other ggml types to q8_0; an explicit type (f32, f16, bf16, q8_0, q4_0) converts every
 * matrix to it, except that quantized types need rows that are a whole number of blocks (f32 then).
 */
export function chooseMatrixType(info: TensorInfo, choice: WeightTypeChoice): WeightType {
  const K = info.shape[info.shape.length - 1]!;
  if (choice === 'auto') {
    if ((WEIGHT_TYPES as readonly string[]).includes(info.dtype) && typeFits(info.dtype as WeightType, K))
      return info.dtype as WeightType;
    return typeFits('q8_0', K) ? 'q8_0' : 'f32';
  }
  return typeFits(choice, K) ? choice : 'f32';
}

/** Canonical names of the matrices stored in the arenas (not vectors, not wpe). */
export function isMatrixName(name: string): boolean {
  return (
    name === 'transformer.wte.weight' ||
    name === 'lm_head.weight' ||
    /\.(attn\.Wqkv|attn\.out_proj|ffn\.up_proj|ffn\.gate_proj|ffn\.down_proj)\.weight$/.test(name)
  );
}

function isFloatType(t: DType): t is 'f32' | 'f16' | 'bf16' {
  return t === 'f32' || t === 'f16' || t === 'bf16';
}

/**
 * q4_0 / q8_0 x4 scales and q4_Kx4 d / dmin of the models in these arenas: encoded (assembly/x4-scale.ts) until a
 * matrix holds a finite scale of 128 or more, which has no encoding; then every x4 matrix keeps
 * raw fp16 scales (the ranges packed so far rewritten) and the kernels read them raw.
 */
interface X4Scales {
  raw: boolean;
  /** Ranges packed with encoded scales (rewritten on a switch to raw). */
  packed: Array<{ ref: MatrixRef; r0: number; rows: number }>;
}
const x4Scales = new WeakMap<Arenas, X4Scales>();

/** x4_scales_check's kind of a packed type: 0 q8_0, 1 q4_0, 2 q4_K (its d and dmin). */
function scaleKind(t: string): number {
  return t === 'q4_k' ? 2 : t === 'q4_0' ? 1 : 0;
}

/** Switches every arena's kernels and every x4 range packed so far to raw fp16 scales. */
function switchToRawScales(arenas: Arenas, st: X4Scales): void {
  for (const { ref, r0, rows } of st.packed)
    arenas.kernels[ref.arena]!.x4_scales_to_raw(
      scaleKind(ref.type),
      ref.ptr + r0 * rowBytes(ref.type, ref.cols),
      rows,
      ref.cols,
    );
  for (const k of arenas.kernels) k.x4_raw_scales();
  st.raw = true;
  st.packed = [];
}

/**
 * Rewrites rows [r0, r1) of a packed matrix (r0 a multiple of 4), written plain, as x4 groups in
 * place (repack.ts); a last partial group stays plain, as the layout wants. The arena's scratch
 * holds the 4 rows being moved. An inf / NaN q4_0 / q8_0 scale or q4_K d / dmin is refused (WeightsError naming
 * the tensor); a finite one of 128 or more switches the model to raw x4 scales.
 */
export function repackInArena(
  arenas: Arenas,
  L: ModelLayout,
  ref: MatrixRef,
  r0: number,
  r1: number,
  name = 'matrix',
): void {
  const rb = rowBytes(ref.type, ref.cols),
    s = L.arenas[ref.arena]!.scratch;
  // q6_K also unpacks a super-block's quants of the 4 rows (1 KiB) after them
  const need = PACK_ROWS * rb + (ref.type === 'q6_k' ? 1024 : 0);
  if (s.end - s.start < need) throw new WeightsError(`no scratch room to repack ${PACK_ROWS} rows of ${rb} bytes`);
  const whole = packedRows(Math.min(r1, ref.rows) - r0);
  if (whole <= 0) return;
  const k = arenas.kernels[ref.arena]!;
  if (ref.type === 'q6_k') {
    k.repack_q6_kx4(ref.ptr + r0 * rb, whole, ref.cols, s.start);
    return;
  }
  const kind = scaleKind(ref.type),
    at = ref.ptr + r0 * rb;
  let st = x4Scales.get(arenas);
  if (!st) {
    st = { raw: false, packed: [] };
    x4Scales.set(arenas, st);
  }
  const check = k.x4_scales_check(kind, at, whole, ref.cols);
  if (check & 2)
    throw new WeightsError(
      `tensor ${name} (${ref.type}, ${ref.rows} × ${ref.cols}) has an inf or NaN block scale in rows ${r0}-${r0 + whole - 1}: the file is damaged`,
    );
  if (check & 1 && !st.raw) switchToRawScales(arenas, st);
  if (kind === 2) k.repack_q4_kx4(at, whole, ref.cols, s.start, st.raw ? 1 : 0);
  else k.repack_x4(kind, at, whole, ref.cols, s.start, st.raw ? 1 : 0);
  if (!st.raw) st.packed.push({ ref, r0, rows: whole });
}

/** Writes a matrix whose bytes are `bytes` (stored as info.dtype) into its arena as ref.type. */
export function writeMatrix(arenas: Arenas, L: ModelLayout, ref: MatrixRef, info: TensorInfo, bytes: Uint8Array): void {
  const a = ref.arena,
    k = arenas.kernels[a]!;
  const K = ref.cols,
    N = ref.rows;
  if (info.dtype === ref.type) {
    arenas.u8(a).set(bytes.subarray(0, N * rowBytes(ref.type, K)), ref.ptr);
    if (ref.type === 'q8_0') k.clamp_q8_0(ref.ptr, N * K);
    if (ref.packed) repackInArena(arenas, L, ref, 0, N, info.name);
    return;
  }
  // Row chunks through the scratch: [raw source bytes | f32 values].
  const s = L.arenas[a]!.scratch;
  const srcRow = byteLengthOf(info.dtype, K);
  const room = s.end - s.start;
  const chunk = Math.max(1, Math.floor(room / (srcRow + K * 4 + 128)));
  const raw = s.start;
  const f = Math.ceil((raw + chunk * srcRow) / 64) * 64;
  const dstRow = rowBytes(ref.type, K);
  for (let r0 = 0; r0 < N; r0 += chunk) {
    const r1 = Math.min(N, r0 + chunk),
      n = (r1 - r0) * K;
    const part = bytes.subarray(r0 * srcRow, r1 * srcRow);
    if (isFloatType(info.dtype)) {
      if (info.dtype === 'f32') arenas.u8(a).set(part, f);
      else {
        arenas.u8(a).set(part, raw);
        if (info.dtype === 'f16') k.f16_to_f32_array(raw, n, f);
        else k.bf16_to_f32_array(raw, n, f);
      }
    } else {
      arenas.f32(a).set(dequantize(info.dtype, part, n), f / 4);
    }
    const dst = ref.ptr + r0 * dstRow;
    switch (ref.type) {
      case 'f32':
        arenas.u8(a).copyWithin(dst, f, f + n * 4);
        break;
      case 'f16':
        k.f32_to_f16_array(f, n, dst);
        break;
      case 'bf16':
        k.f32_to_bf16_array(f, n, dst);
        break;
      case 'q8_0':
        k.quantize_q8_0(f, n, dst);
        break;
      case 'q4_0':
        k.quantize_q4_0(f, n, dst);
        break;
    }
  }
  if (ref.packed) repackInArena(arenas, L, ref, 0, N, info.name); // after the conversion: it used the scratch
}

function writeVector(arenas: Arenas, arena: number, ptr: number, info: TensorInfo, bytes: Uint8Array): void {
  const n = info.shape.reduce((x, y) => x * y, 1);
  arenas.f32(arena).set(dequantize(info.dtype, bytes, n), ptr / 4);
}

/**
 * Reads in flight at once on the direct path. Loading a kept-type model is bound by the kernel
 * copying page-cache pages into fresh wasm pages (page faults included); concurrent positioned
 * reads run on libuv's thread pool and so spread that work over the cores.
 */
const READ_CONCURRENCY = 4;
/** Bytes per positioned read on the direct path (whole rows, so q8_0 clamping can follow each piece). */
const READ_CHUNK = 16 * 1024 * 1024;

/** One piece of work: a range read straight into an arena, or a whole tensor read and converted. */
type LoadTask = () => Promise<number>;

/** Tuning of the direct path (tests use small pieces). */
export interface LoadWeightsOptions {
  /** Bytes per positioned read, rounded down to whole rows (default 16 MiB). */
  readChunk?: number;
  /** Reads in flight (default 4). */
  concurrency?: number;
}

/**
 * Loads every tensor of the checkpoint into the planned places. A matrix kept in its stored type
 * is read with positioned reads straight into its arena (`TensorSource.readInto`, several reads
 * in flight), without any intermediate buffer; anything else is read whole and converted.
 */
export async function loadWeights(
  config: MptConfig,
  tensors: TensorSource,
  L: ModelLayout,
  arenas: Arenas,
  onProgress?: (done: number, total: number) => void,
  options: LoadWeightsOptions = {},
): Promise<void> {
  checkTensorsAgainstConfig(config, tensors);
  const jobs: Array<{ name: string; ref?: MatrixRef; write: (info: TensorInfo, bytes: Uint8Array) => void }> = [];
  const matrix = (name: string, ref: MatrixRef) => {
    jobs.push({ name, ref, write: (info, bytes) => writeMatrix(arenas, L, ref, info, bytes) });
    if (ref.bias) {
      const bname = name.replace(/\.weight$/, '.bias');
      jobs.push({ name: bname, write: (info, bytes) => writeVector(arenas, ref.arena, ref.bias, info, bytes) });
    }
  };
  const norm = (name: string, arena: number, ref: NormRef) => {
    if (ref.w) jobs.push({ name: `${name}.weight`, write: (i, b) => writeVector(arenas, arena, ref.w, i, b) });
    if (ref.b) jobs.push({ name: `${name}.bias`, write: (i, b) => writeVector(arenas, arena, ref.b, i, b) });
  };
  const h = L.head;
  matrix('transformer.wte.weight', h.wte);
  if (h.wpe) jobs.push({ name: 'transformer.wpe.weight', write: (i, b) => writeVector(arenas, h.arena, h.wpe, i, b) });
  norm('transformer.norm_f', h.arena, h.normF);
  if (!config.tieWordEmbeddings) matrix('lm_head.weight', h.lm);
  L.layers.forEach((ly, l) => {
    const p = blockPrefix(l);
    norm(`${p}norm_1`, ly.arena, ly.norm1);
    matrix(`${p}attn.Wqkv.weight`, ly.qkv);
    if (ly.qLn) norm(`${p}attn.q_ln`, ly.arena, ly.qLn);
    if (ly.kLn) norm(`${p}attn.k_ln`, ly.arena, ly.kLn);
    matrix(`${p}attn.out_proj.weight`, ly.out);
    norm(`${p}norm_2`, ly.arena, ly.norm2);
    if (ly.gate) matrix(`${p}ffn.gate_proj.weight`, ly.gate);
    matrix(`${p}ffn.up_proj.weight`, ly.up);
    matrix(`${p}ffn.down_proj.weight`, ly.down);
  });
  const infos = jobs.map((j) => {
    const info = tensors.info(j.name);
    if (!info) throw new WeightsError(`missing tensor ${j.name}`);
    return info;
  });
  const total = infos.reduce((s, i) => s + i.byteLength, 0);

  // Direct pieces run several at a time; whole-tensor reads one at a time (each holds a tensor in
  // JS memory while it is converted).
  const tasks: LoadTask[] = [],
    buffered: LoadTask[] = [];
  jobs.forEach((job, i) => {
    const info = infos[i]!,
      ref = job.ref;
    if (ref && tensors.readInto && info.dtype === ref.type) {
      // Direct: row-aligned pieces read straight into the arena.
      const rb = rowBytes(ref.type, ref.cols),
        bytes = ref.rows * rb;
      if (info.byteLength < bytes)
        throw new WeightsError(`tensor ${info.name}: ${info.byteLength} bytes stored, ${bytes} expected`);
      // whole groups of 4 rows per piece for a packed matrix, each repacked once it is in
      const unit = ref.packed ? PACK_ROWS : 1;
      const step = Math.max(unit, Math.floor((options.readChunk ?? READ_CHUNK) / rb / unit) * unit) * rb;
      for (let start = 0; start < bytes; start += step) {
        const len = Math.min(step, bytes - start);
        tasks.push(async () => {
          await tensors.readInto!(
            info.name,
            arenas.u8(ref.arena).subarray(ref.ptr + start, ref.ptr + start + len),
            start,
          );
          if (ref.type === 'q8_0') arenas.kernels[ref.arena]!.clamp_q8_0(ref.ptr + start, (len / rb) * ref.cols);
          if (ref.packed) repackInArena(arenas, L, ref, start / rb, (start + len) / rb, info.name);
          return len;
        });
      }
      if (info.byteLength > bytes) tasks.push(async () => info.byteLength - bytes); // padding, for progress
    } else {
      buffered.push(async () => {
        const bytes = await tensors.read(info.name);
        if (bytes.byteLength < info.byteLength)
          throw new WeightsError(`tensor ${info.name}: ${bytes.byteLength} bytes read, ${info.byteLength} expected`);
        job.write(info, bytes);
        return info.byteLength;
      });
    }
  });

  let done = 0,
    failed = false;
  const run = async (list: LoadTask[], lanes: number) => {
    let next = 0;
    const lane = async () => {
      while (next < list.length && !failed) {
        const task = list[next++]!;
        try {
          const n = await task(); // (not `done += await task()`: that reads `done` before awaiting)
          done += n;
        } catch (e) {
          failed = true;
          throw e;
        }
        onProgress?.(done, total);
      }
    };
    const settled = await Promise.allSettled(Array.from({ length: lanes }, lane));
    const err = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (err) throw err.reason;
  };
  await run(tasks, Math.max(1, options.concurrency ?? READ_CONCURRENCY));
  await run(buffered, 1);
}

/** Types in a source that `auto` converts (for a one-line warning). */
export function convertedTypes(tensors: TensorSource): string[] {
  const seen = new Set<string>();
  for (const t of tensors.list()) {
    if (isMatrixName(t.name) && !(WEIGHT_TYPES as readonly string[]).includes(t.dtype))
      seen.add(GGML_TYPES[t.dtype]?.name ?? t.dtype);
  }
  return [...seen];
}
