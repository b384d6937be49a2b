/**
 * The exports of the AssemblyScript kernel module (src/backends/wasm/assembly/), typed for the
 * host. Pointers are byte offsets into the instance's memory; they may exceed 2^31 (a wasm i32
 * parameter receives them modulo 2^32, which is the same bit pattern).
 */
import { GGML_TYPES } from '../../formats/ggml-types.js';

/** Weight storage types, numbered as the kernels number them. */
export const WTYPE = { f32: 0, f16: 1, bf16: 2, q8_0: 3, q4_0: 4, q4_k: 5, q5_k: 6, q6_k: 7 } as const;
export type WeightType = keyof typeof WTYPE;
export const WEIGHT_TYPES: readonly WeightType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'];
/** Types `weightType` may convert to at load time (k-quants are only kept as stored). */
export const TARGET_TYPES: readonly WeightType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];

/** Activation ids of epilogue/glu. */
export const ACT = { none: 0, gelu: 1, gelu_tanh: 2, silu: 3, relu: 4 } as const;

/** Bytes of one row of K values stored as type t. */
export function rowBytes(t: WeightType, K: number): number {
  return (K / GGML_TYPES[t].blockSize) * GGML_TYPES[t].typeSize;
}

/** Whether a matrix with K columns can be stored as t (quantized types need whole blocks). */
export function typeFits(t: WeightType, K: number): boolean {
  return K % GGML_TYPES[t].blockSize === 0;
}

/** How a matrix of type t wants its input: f32 rows, q8_0 blocks (quantize_act_q8) or q8_K (quantize_act_q8k). */
export type ActKind = 'f32' | 'q8' | 'q8k';
export function actKind(t: WeightType): ActKind {
  if (t === 'q8_0' || t === 'q4_0') return 'q8';
  if (t === 'q4_k' || t === 'q5_k' || t === 'q6_k') return 'q8k';
  return 'f32';
}

/** Quantized weight types read quantized activations. */
export function isQuantized(t: WeightType): boolean {
  return actKind(t) !== 'f32';
}

/** Bytes of q8_K activations for M rows of K values (see gemm-k.ts). */
export function actQ8KBytes(M: number, K: number): number {
  return M * Math.ceil(K / 256) * 368;
}

/** A product with x4 weights of N rows: rows [n0, n1) of Y [M][ldy] from the q8 activations at A. */
type GemmX4 = (
  A: number,
  W: number,
  Y: number,
  ldy: number,
  M: number,
  N: number,
  n0: number,
  n1: number,
  K: number,
  acc: number,
) => void;

export interface Kernels {
  gemm_f32(
    X: number,
    ldx: number,
    W: number,
    ldw: number,
    Y: number,
    ldy: number,
    M: number,
    n0: number,
    n1: number,
    K: number,
    acc: number,
  ): void;
  /** P: per-thread panel of HALF_PANEL_BYTES used when M >= 4 (0: widen on the fly). */
  gemm_f16(
    X: number,
    ldx: number,
    W: number,
    ldw: number,
    Y: number,
    ldy: number,
    M: number,
    n0: number,
    n1: number,
    K: number,
    acc: number,
    P: number,
  ): void;
  gemm_bf16(
    X: number,
    ldx: number,
    W: number,
    ldw: number,
    Y: number,
    ldy: number,
    M: number,
    n0: number,
    n1: number,
    K: number,
    acc: number,
    P: number,
  ): void;
  /** Quantized weights times activations quantized at A by quantize_act_q8. */
  gemm_q4_0(
    A: number,
    W: number,
    Y: number,
    ldy: number,
    M: number,
    n0: number,
    n1: number,
    K: number,
    acc: number,
  ): void;
  gemm_q8_0(
    A: number,
    W: number,
    Y: number,
    ldy: number,
    M: number,
    n0: number,
    n1: number,
    K: number,
    acc: number,
  ): void;
  /**
   * Products with x4 (row-interleaved, repack.ts) q4_0 / q8_0 weights of N rows; otherwise as
   * gemm_q4_0 / gemm_q8_0, each row's value with the bits of their 4-row tile.
   */
  gemm_q4_0x4: GemmX4;
  gemm_q8_0x4: GemmX4;
  /**
   * Prompt product (many activation rows) over x4 q4_0 / q8_0 weights, arguments as gemm_q4_0x4 with n0
   * a multiple of 4 (assembly/gemm-q-prompt.ts). The number returned means nothing.
   */
  gemm_q4_0x4_prompt(...args: Parameters<GemmX4>): number;
  gemm_q8_0x4_prompt(...args: Parameters<GemmX4>): number;
  /**
   * One activation row (a row record, quantize_act_q8_row) times x4 q4_0 weights of N rows (N < 4:
   * plain rows): rows [n0, n1) of Y[N]; each row's value as gemm_q4_0x4 gives it.
   */
  gemv_q4_0x4(A: number, W: number, Y: number, N: number, n0: number, n1: number, K: number, acc: number): void;
  /**
   * Rows [0, rows) (a multiple of 4) of a plain q4_0 (q4 = 1) / q8_0 matrix rewritten in place as
   * x4 groups, scales re-encoded (assembly/x4-scale.ts; raw = 1: fp16 as stored); tmp holds 4 rows.
   * Returns the number of scales with no x4 encoding (|d| >= 128, inf, NaN).
   */
  repack_x4(q4: number, W: number, rows: number, K: number, tmp: number, raw: number): number;
  /**
   * Bit 0: a finite fp16 scale of the plain rows [0, rows) at W has no x4 encoding (|d| >= 128); bit 1: one is inf / NaN.
   * kind: 0 q8_0, 1 q4_0, 2 q4_K (its d and dmin).
   */
  x4_scales_check(kind: number, W: number, rows: number, K: number): number;
  /** The encoded scales of x4 groups of rows [0, rows) at W rewritten as raw fp16 (a model switched to raw scales); kind as x4_scales_check. */
  x4_scales_to_raw(kind: number, W: number, rows: number, K: number): void;
  /** Switches this memory's kernels (DX1, the scale reads) to raw fp16 x4 scales. */
  x4_raw_scales(): void;
  /** Row r of an x4 matrix of N rows widened to f32 (as dequant_row). */
  dequant_row_x4(q4: number, W: number, N: number, K: number, r: number, out: number): void;
  /**
   * Products with q4_Kx4 weights (row-interleaved q4_K, repack.ts) of N rows times the q8_K
   * activations at A, any number of activation rows (assembly/gemm-k-x4.ts: one row through the
   * decode tile, more through the prompt tile); otherwise as gemm_q4_0x4, each row's value with
   * gemm_k's bits.
   */
  gemm_q4_kx4: GemmX4;
  /** gemm_q4_kx4 under the prompt kernels' name (benches and tests); the number returned means nothing. */
  gemm_q4_kx4_prompt(...args: Parameters<GemmX4>): number;
  /**
   * Prompt product over plain q4_K rows (assembly/gemm-k-prompt.ts: 4 rows × up to 16 tokens, the
   * 1-3 rows left through gemm_k), arguments as gemm_k's without the type; each value with gemm_k's
   * bits. The number returned means nothing.
   */
  gemm_q4_k_prompt(...args: Parameters<Kernels['gemm_q4_0']>): number;
  /** gemm_q4_k_prompt for plain q5_K rows (the 1-3 rows left through gemm_k); each value with gemm_k's bits. */
  gemm_q5_k_prompt(...args: Parameters<Kernels['gemm_q4_0']>): number;
  /** gemm_q4_k_prompt for plain q6_K rows (the 1-3 rows left through gemm_k); each value with gemm_k's bits. */
  gemm_q6_k_prompt(...args: Parameters<Kernels['gemm_q4_0']>): number;
  /**
   * Rows [0, rows) (a multiple of 4) of a plain q4_K matrix rewritten in place as q4_Kx4 groups, d and dmin re-encoded
   * (assembly/x4-scale.ts; raw = 1: fp16 as stored); tmp holds 4 rows.
   */
  repack_q4_kx4(W: number, rows: number, K: number, tmp: number, raw?: number): void;
  /** Row r of a q4_Kx4 matrix of N rows widened to f32 (as dequant_row). */
  dequant_row_q4_kx4(W: number, N: number, K: number, r: number, out: number): void;
  /**
   * Products with q6_Kx4 weights (row-interleaved q6_K, repack.ts; assembly/gemm-q6k-x4.ts: 1-3
   * activation rows through the decode tile, more through the q6_K prompt tile), as gemm_q4_kx4;
   * each row's value with gemm_k's bits. The number returned means nothing.
   */
  gemm_q6_kx4(...args: Parameters<GemmX4>): number;
  /** Rows [0, rows) (a multiple of 4) of a plain q6_K matrix rewritten in place as q6_Kx4 groups; tmp holds 4 rows + 1 KiB. */
  repack_q6_kx4(W: number, rows: number, K: number, tmp: number): void;
  /** Row r of a q6_Kx4 matrix of N rows widened to f32 (as dequant_row). */
  dequant_row_q6_kx4(W: number, N: number, K: number, r: number, out: number): void;
  transpose_f32(A: number, lda: number, B: number, ldb: number, R: number, C: number): void;
  /** Rows [m0, m1) of X into the q8 activation buffer at A (group records, see quant-act.ts). */
  quantize_act_q8(X: number, ldx: number, m0: number, m1: number, K: number, A: number): void;
  /** One row of K values at X into a row record at A (decode; see quant-act.ts), for gemv_q4_0x4. */
  quantize_act_q8_row(X: number, K: number, A: number): void;
  /** Blocks [b0, b1) of rows [m0, m1) as quantize_act_q8 writes them (its padding when b1 is the last block). */
  quantize_act_q8_span(
    X: number,
    ldx: number,
    m0: number,
    m1: number,
    K: number,
    A: number,
    b0: number,
    b1: number,
  ): void;
  /** Blocks [b0, b1) of quantize_act_q8_row's record (its padding when b1 is the last block). */
  quantize_act_q8_row_span(X: number, K: number, A: number, b0: number, b1: number): void;
  /** Fills the lookup tables at [0, TABLES_END); once per memory. */
  init_tables(): void;
  layernorm(
    X: number,
    ldx: number,
    Y: number,
    ldy: number,
    M: number,
    n: number,
    w: number,
    b: number,
    eps: number,
  ): void;
  rmsnorm(X: number, ldx: number, Y: number, ldy: number, M: number, n: number, w: number, eps: number): void;
  epilogue(Y: number, ldy: number, M: number, n0: number, n1: number, bias: number, scale: number, act: number): void;
  /** Merges the argmax of X[n0..n1) into the (f32 value, i32 index) at slot (assembly/sampling.ts). */
  sampling_argmax(X: number, n0: number, n1: number, slot: number): void;
  glu(U: number, G: number, ld: number, M: number, n0: number, n1: number, bu: number, bg: number, act: number): void;
  clip(X: number, n: number, c: number): void;
  add_to(Y: number, X: number, n: number): void;
  copy_bytes(dst: number, src: number, n: number): void;
  dequant_row(t: number, W: number, K: number, r: number, out: number): void;
  /** attention_kv on f32 rows with a leading dimension ldk in elements. */
  attention(
    Q: number,
    ldq: number,
    nq: number,
    pos0: number,
    K: number,
    V: number,
    ldk: number,
    valid: number,
    nKeys: number,
    hd: number,
    scale: number,
    slope: number,
    O: number,
    ldo: number,
    S: number,
  ): void;
  /**
   * Attention against K/V stored as `mode` (0 f32, 1 f16, 2 q8_0; layout.ts kvGeometry): K, V point at the
   * head's row of position 0, sk is the bytes between positions, e0 the head's start inside its first q8_0 block.
   */
  attention_kv(
    mode: number,
    Q: number,
    ldq: number,
    nq: number,
    pos0: number,
    K: number,
    V: number,
    sk: number,
    e0: number,
    valid: number,
    nKeys: number,
    hd: number,
    scale: number,
    slope: number,
    O: number,
    ldo: number,
    S: number,
  ): void;
  /** One position's key and value rows (n f32 each) stored as `mode` in segments of seg values (layout.ts kvGeometry). */
  store_kv(
    k: number,
    v: number,
    n: number,
    seg: number,
    mode: number,
    Kc: number,
    Vc: number,
    cap: number,
    pos: number,
  ): void;
  store_kv_row(src: number, n: number, seg: number, mode: number, C: number, cap: number, pos: number): void;
  /** Segments [s0, s1) of the row store_kv_row stores (src: the row's start). */
  store_kv_segs(
    src: number,
    s0: number,
    s1: number,
    seg: number,
    mode: number,
    C: number,
    cap: number,
    pos: number,
  ): void;
  /** One position's stored row widened back to n f32 (exactly the values attention reads). */
  load_kv_row(C: number, n: number, seg: number, mode: number, cap: number, pos: number, dst: number): void;
  /** Rounds n values through a KV type in place: 1 = f16, 2 = q8_0. */
  round_kv(p: number, n: number, mode: number): void;
  quantize_q8_0(src: number, n: number, dst: number): void;
  quantize_q4_0(src: number, n: number, dst: number): void;
  /** k-quant weights (kind 5 q4_K, 6 q5_K, 7 q6_K) times q8_K activations at A. */
  gemm_k(
    kind: number,
    A: number,
    W: number,
    Y: number,
    ldy: number,
    M: number,
    n0: number,
    n1: number,
    K: number,
    acc: number,
  ): void;
  /** Rows [m0, m1) of X to q8_K records at A (row stride K/256 records). */
  quantize_act_q8k(X: number, ldx: number, m0: number, m1: number, K: number, A: number): void;
  /** Super-blocks [b0, b1) of rows [m0, m1) as quantize_act_q8k writes them. */
  quantize_act_q8k_span(...args: Parameters<Kernels['quantize_act_q8_span']>): void;
  clamp_q8_0(p: number, n: number): number;
  fill_random_bytes(dst: number, n: number, seed: number): void;
  fill_random_weights(t: number, dst: number, n: number, seed: number, scale: number): void;
  fill_f32(dst: number, n: number, value: number): void;
  read_probe(p: number, n: number): number;
  f16_to_f32_array(src: number, n: number, dst: number): void;
  bf16_to_f32_array(src: number, n: number, dst: number): void;
  f32_to_f16_array(src: number, n: number, dst: number): void;
  f32_to_bf16_array(src: number, n: number, dst: number): void;
}

/** Scratch a thread passes to gemm_f16 / gemm_bf16 (see gemm-half.ts). */
export const HALF_PANEL_BYTES = 262144;

/** Every memory keeps its lookup tables (f16 → f32) in [0, TABLES_END). */
export const TABLES_END = 262144 + 256;

/** Bytes of the quantized-activation buffer for M rows of K values (see quant-act.ts). */
export function actQ8Bytes(M: number, K: number): number {
  const nb = Math.ceil(K / 32),
    nb4 = Math.ceil(nb / 4) * 4;
  return Math.ceil(M / 4) * (nb * 160 + nb4 * 32);
}

/** Bytes of attention scratch per thread for head_dim hd (see attention.ts). */
export function attentionScratchBytes(hd: number): number {
  return (4 * 32 + 4 * hd) * 4;
}

/** Instantiates the kernels against a memory (shared or not, matching the module variant). */
export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): Kernels {
  return new WebAssembly.Instance(module, { env: { memory } }).exports as unknown as Kernels;
}

/** Instantiates the kernels and fills the memory's lookup tables (first instance on a memory). */
export function instantiateKernelsAndTables(module: WebAssembly.Module, memory: WebAssembly.Memory): Kernels {
  const k = instantiateKernels(module, memory);
  k.init_tables();
  return k;
}
