/**
 * The packed sub-block scales of ggml's k-quant blocks: q4_K / q5_K's eight 6-bit (scale, min)
 * pairs in 12 bytes (`get_scale_min_k4` and its inverse) and q3_K's sixteen signed 6-bit scales.
 * Its own module, below both the dequantizers (ggml-quants.ts) and the quantizers
 * (kquant-quantize.ts), because ggml-quants.ts imports the quantizers: either one holding it would
 * make the other import back into it, a cycle.
 */

/** get_scale_min_k4: the j-th 6-bit scale and min packed in q4_K / q5_K's 12 scale bytes at `o`. */
export function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j]! & 63, q[o + j + 4]! & 63];
  return [(q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >> 6) << 4), (q[o + j + 4]! >> 4) | ((q[o + j]! >> 6) << 4)];
}

/** Packs 8 six-bit scales and mins into q4_K / q5_K's 12 scale bytes at `o` (inverse of scaleMinK4). */
export function packScalesMinsK4(ls: Uint8Array, lm: Uint8Array, out: Uint8Array, o: number): void {
  for (let j = 0; j < 8; j++) {
    if (j < 4) {
      out[o + j] = ls[j]!;
      out[o + j + 4] = lm[j]!;
    } else {
      out[o + j + 4] = (ls[j]! & 0xf) | ((lm[j]! & 0xf) << 4);
      out[o + j - 4]! |= (ls[j]! >> 4) << 6;
      out[o + j]! |= (lm[j]! >> 4) << 6;
    }
  }
}

/** The 16 signed 6-bit scales of a q3_K block (already minus 32), from its 12 scale bytes at `o`. */
export function q3kScales(b: Uint8Array, o: number, out: Int32Array): void {
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? b[o + j]! & 0xf : b[o + j - 8]! >> 4;
    const high = (b[o + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3;
    out[j] = (low | (high << 4)) - 32;
  }
}
