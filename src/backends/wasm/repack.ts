/**
 * Row-interleaved ("x4") forms of q4_0 / q8_0 / q4_K weight matrices, as the decode and prompt
 * kernels stream them: one activation block then serves four weight rows, and the four rows'
 * fp16 scales sit side by side (one load converts them together).
 *
 * Layout of a matrix of N rows × K columns (nb = K/32 blocks a row), rows grouped by 4
 * (group g = rows 4g..4g+3, G = floor(N/4) groups):
 *   q4_0x4: group g at g·nb·72; inside it, block b (K order) at b·72: the 4 rows' scales
 *           (8 bytes, row order; fp16 re-encoded by x4ScaleBits), then each row's 16 quant bytes (64 bytes, row order; nibbles as
 *           ggml's q4_0: low nibbles = elements 0..15, high nibbles = 16..31).
 *   q8_0x4: likewise with 8 bytes of scales then 4 × 32 int8 (block stride 136).
 *   q4_Kx4: per group and 256-value super-block (nb = K/256, stride 576): the 4 rows' d
 *           (8 bytes), their dmin (8 bytes), both fp16 re-encoded by x4ScaleBits, the 4 rows' 32 6-bit scales and 32 mins in
 *           three 16-byte vectors A, B, C (at 16, 32, 48) that unpack with a few and / shift / or
 *           into the byte orders the tiles use (assembly/gemm-k.ts unpack_x4): scale j of row r
 *           is byte i = 4(j & 3) + r of A (low nibble for j < 4, high for j >= 4) and of C
 *           (bits 0-1 / 2-3) as its bits 4-5; min j of row r is byte i = 8((j >> 1) & 1) + 2r +
 *           (j & 1) of B (low / high nibble) and of C (bits 4-5 / 6-7). Then the quants in chunk form: chunk j (a row's
 *           bytes 32j..32j+31: low nibbles = values 64j..64j+31, high nibbles = 64j+32..64j+63)
 *           at 64 + 128j, bytes 4k..4k+3 of row r at 64 + 128j + 16k + 4r, so that one vector
 *           holds 4-byte pieces of the 4 rows (lanes = rows: the tiles need no horizontal sums
 *           and no transposes, as llama.cpp's q4_K_8x8 repack; assembly/gemm-k-x4.ts).
 *   q6_Kx4: per group and super-block (stride 840 = 4 × 210): 16 triples of 16-byte vectors, sub-block
 *           j (values 16j..16j+15, scale j) at 48j, byte 4r + e of its vector i (0-2) = q(r, 16j +
 *           4i + e) | ((q(r, 16j + 12 + e) >> 2i) & 3) << 6 with q the 6-bit quant (0..63) of row
 *           r; then the scales, byte 768 + 8p + 2r + s = scale 2p + s of row r; then the 4 rows'
 *           fp16 d at 832 + 2r (assembly/gemm-q6k-x4.ts says why).
 * Rows 4G..N-1 (fewer than 4) stay plain q4_0 / q8_0 rows after the groups, where they would be
 * in the plain matrix. The repacked matrix has exactly the plain matrix's size.
 */
import { platform } from '../../platform/index.js';
import { GGML_TYPES } from '../../formats/ggml-types.js';
import { scaleMinK4 } from '../../formats/kquant-scales.js';

/** Types with a row-interleaved form. */
export type PackableType = 'q4_0' | 'q8_0' | 'q4_k' | 'q6_k';

/** Rows interleaved per group. */
export const PACK_ROWS = 4;

export function isPackable(t: string): t is PackableType {
  return t === 'q4_0' || t === 'q8_0' || t === 'q4_k' || t === 'q6_k';
}

/**
 * Whether the model layout keeps a matrix row-interleaved: q4_0 / q8_0 / q4_K of 4 rows or more;
 * MPT_WASM_Q4K_X4=0 keeps q4_K in plain rows (gemm_k, the plain-row prompt tile), for A/B runs;
 * MPT_WASM_Q6K_X4=0 likewise q6_K.
 * The 7B shape's q4_K decode once lost with x4 (0.84×, quiet): the test files' subnormal fp16 d
 * went through subnormal f32 arithmetic in the x4 tiles only; with d through the fp16 table the
 * x4 decode step is 1.2-1.3× plain on the 1B and 7B widths (docs/cpu-profile.md).
 */
export function keptPacked(t: string, rows: number): boolean {
  if (!isPackable(t) || rows < PACK_ROWS) return false;
  if (t === 'q4_k') return platform.env('MPT_WASM_Q4K_X4') !== '0';
  if (t === 'q6_k') return platform.env('MPT_WASM_Q6K_X4') !== '0';
  return true;
}

/** Binades x4ScaleBits moves an fp16 exponent up (assembly/x4-scale.ts X4_SCALE_SHIFT). */
const X4_SCALE_SHIFT = 10;

/**
 * A q4_0 / q8_0 block's fp16 scale bits h (or a q4_K super-block's d or dmin) as the x4 form stores them (assembly/x4-scale.ts says
 * why): sign | E << 10 | m with E = e + 10 for d = 2^(e-15)·(1 + m/1024), a subnormal half
 * normalized first; shifted into an f32 it reads d·2^-102, never subnormal. -1 where there is no
 * such encoding: |d| >= 2^7, inf, NaN.
 */
export function x4ScaleBits(h: number): number {
  const s = h & 0x8000,
    a = h & 0x7fff;
  if (a === 0) return s;
  let e = a >> 10,
    m = a & 0x3ff;
  if (e === 0) {
    const p = 31 - Math.clz32(m);
    e = p - 9;
    m = (m << (10 - p)) & 0x3ff;
  }
  const E = e + X4_SCALE_SHIFT;
  return E > 31 ? -1 : s | (E << 10) | m;
}

/** Bytes of one plain block: fp16 scale + quants (18 for q4_0, 34 for q8_0), 144 for q4_K, 210 for q6_K. */
function blockBytes(t: PackableType): number {
  return GGML_TYPES[t].typeSize;
}

/** Rows in whole groups of PACK_ROWS (the rest stay plain). */
export function packedRows(rows: number): number {
  return rows - (rows % PACK_ROWS);
}

/**
 * Byte offsets, inside the repacked matrix, of row r's block b: its fp16 scale and its first
 * quant byte.
 */
export function packedBlockPlace(
  t: 'q4_0' | 'q8_0',
  rows: number,
  K: number,
  r: number,
  b: number,
): { scale: number; quants: number } {
  const bs = blockBytes(t),
    nb = K / GGML_TYPES[t].blockSize;
  if (r >= packedRows(rows)) {
    const at = r * nb * bs + b * bs;
    return { scale: at, quants: at + 2 };
  }
  const g = Math.floor(r / PACK_ROWS),
    i = r % PACK_ROWS;
  const at = g * nb * bs * PACK_ROWS + b * bs * PACK_ROWS;
  return { scale: at + 2 * i, quants: at + 2 * PACK_ROWS + i * (bs - 2) };
}

/**
 * The q4_Kx4 header's 48 scale bytes (vectors A, B, C; see the layout above) for the 4 rows whose
 * 12 scale bytes are at `at + r·stride`, written at out[to..to + 48).
 */
function packScalesX4(p: Uint8Array, at: number, stride: number, out: Uint8Array, to: number): void {
  for (let i = 0; i < 16; i++) {
    const u0 = scaleMinK4(i >> 2, p, at + (i & 3) * stride)[0],
      u1 = scaleMinK4((i >> 2) + 4, p, at + (i & 3) * stride)[0];
    const mr = (i >> 1) & 3,
      mj = 2 * (i >> 3) + (i & 1);
    const e0 = scaleMinK4(mj, p, at + mr * stride)[1],
      e1 = scaleMinK4(mj + 4, p, at + mr * stride)[1];
    out[to + i] = (u0 & 15) | ((u1 & 15) << 4);
    out[to + 16 + i] = (e0 & 15) | ((e1 & 15) << 4);
    out[to + 32 + i] = (u0 >> 4) | ((u1 >> 4) << 2) | ((e0 >> 4) << 4) | ((e1 >> 4) << 6);
  }
}

/** The 256 quants (0..63) of the q6_K super-block at p[at..] (dequantize_row_q6_K's order, without the -32). */
function quantsQ6K(p: Uint8Array, at: number): Uint8Array {
  const q = new Uint8Array(256);
  for (let n = 0; n < 2; n++)
    for (let l = 0; l < 32; l++) {
      const a = p[at + 64 * n + l]!,
        c = p[at + 64 * n + 32 + l]!,
        h = p[at + 128 + 32 * n + l]!;
      q[128 * n + l] = (a & 15) | ((h & 3) << 4);
      q[128 * n + 32 + l] = (c & 15) | (((h >> 2) & 3) << 4);
      q[128 * n + 64 + l] = (a >> 4) | (((h >> 4) & 3) << 4);
      q[128 * n + 96 + l] = (c >> 4) | (((h >> 6) & 3) << 4);
    }
  return q;
}

/** Group super-block b of the 4 plain q6_K rows at plain[src + r·rowBytes..] as q6_Kx4 at out[at..at + 840). */
function packQ6KX4(plain: Uint8Array, src: number, rowBytes: number, out: Uint8Array, at: number): void {
  for (let r = 0; r < PACK_ROWS; r++) {
    const o = src + r * rowBytes,
      q = quantsQ6K(plain, o);
    for (let j = 0; j < 16; j++)
      for (let i = 0; i < 3; i++)
        for (let e = 0; e < 4; e++)
          out[at + 48 * j + 16 * i + 4 * r + e] =
            q[16 * j + 4 * i + e]! | (((q[16 * j + 12 + e]! >> (2 * i)) & 3) << 6);
    for (let j = 0; j < 16; j++) out[at + 768 + 8 * (j >> 1) + 2 * r + (j & 1)] = plain[o + 192 + j]!;
    out[at + 832 + 2 * r] = plain[o + 208]!;
    out[at + 833 + 2 * r] = plain[o + 209]!;
  }
}

/**
 * Repacks `rows` plain rows of K values (ggml q4_0 / q8_0 / q4_K / q6_K blocks, `plain`) into the x4
 * layout; returns a new array of the same length. (A RangeError for a q4_0 / q8_0 scale or a q4_K
 * d / dmin without an x4 encoding.)
 */
export function repackX4(t: PackableType, plain: Uint8Array, rows: number, K: number): Uint8Array {
  const bs = blockBytes(t),
    block = GGML_TYPES[t].blockSize,
    nb = K / block,
    qb = bs - 2;
  const total = rows * nb * bs;
  if (!Number.isInteger(nb) || plain.length < total)
    throw new RangeError(`repackX4: ${rows} × ${K} ${t} needs ${total} bytes and K a multiple of ${block}`);
  const out = new Uint8Array(total);
  const grouped = packedRows(rows);
  if (t === 'q6_k') {
    for (let g = 0; g < grouped / PACK_ROWS; g++)
      for (let b = 0; b < nb; b++)
        packQ6KX4(plain, (g * PACK_ROWS * nb + b) * bs, nb * bs, out, (g * nb + b) * bs * PACK_ROWS);
  } else if (t === 'q4_k') {
    for (let r = 0; r < grouped; r++) {
      const i = r % PACK_ROWS;
      for (let b = 0; b < nb; b++) {
        const src = (r * nb + b) * bs,
          at = (Math.floor(r / PACK_ROWS) * nb + b) * bs * PACK_ROWS;
        for (const [from, to, what] of [
          [src, at + 2 * i, 'd'],
          [src + 2, at + 8 + 2 * i, 'dmin'],
        ] as const) {
          const h = x4ScaleBits(plain[from]! | (plain[from + 1]! << 8));
          if (h < 0)
            throw new RangeError(
              `repackX4: row ${r} super-block ${b}: a q4_k ${what} of 128 or more, inf or NaN has no x4 form`,
            );
          out[to] = h & 0xff;
          out[to + 1] = h >> 8;
        }
        if (i === PACK_ROWS - 1) packScalesX4(plain, src - 3 * nb * bs + 4, nb * bs, out, at + 16);
        for (let j = 0; j < 4; j++)
          for (let k = 0; k < 8; k++)
            out.set(
              plain.subarray(src + 16 + 32 * j + 4 * k, src + 20 + 32 * j + 4 * k),
              at + 64 + 128 * j + 16 * k + 4 * i,
            );
      }
    }
  } else
    for (let r = 0; r < grouped; r++) {
      for (let b = 0; b < nb; b++) {
        const src = (r * nb + b) * bs;
        const p = packedBlockPlace(t, rows, K, r, b);
        const h = x4ScaleBits(plain[src]! | (plain[src + 1]! << 8));
        if (h < 0)
          throw new RangeError(`repackX4: row ${r} block ${b}: a ${t} scale of 128 or more, inf or NaN has no x4 form`);
        out[p.scale] = h & 0xff;
        out[p.scale + 1] = h >> 8;
        out.set(plain.subarray(src + 2, src + 2 + qb), p.quants);
      }
    }
  out.set(plain.subarray(grouped * nb * bs, total), grouped * nb * bs);
  return out;
}
