/**
 * Plain-JS f32 kernels for the trainer (the fallback when the wasm kernels are not built, and an
 * independent implementation for tests). Strided "NT" product and transpose, the two primitives
 * every other layout reduces to.
 */

/**
 * y[m·ldy + n] (+)= Σ_k x[m·ldx + k] · w[n·ldw + k] for m < M, n < N (offsets in elements).
 * Register-blocked 2×4 so that each loaded value feeds several multiply-adds.
 */
export function gemmNTJs(
  y: Float32Array,
  yOff: number,
  ldy: number,
  x: Float32Array,
  xOff: number,
  ldx: number,
  w: Float32Array,
  wOff: number,
  ldw: number,
  M: number,
  N: number,
  K: number,
  acc: boolean,
): void {
  const JB = Math.max(4, Math.min(N, Math.floor(16384 / Math.max(1, K)) & ~3));
  for (let jb = 0; jb < N; jb += JB) {
    const jEnd = Math.min(N, jb + JB);
    let i = 0;
    for (; i + 1 < M; i += 2) {
      const a0 = xOff + i * ldx,
        a1 = a0 + ldx;
      const o0 = yOff + i * ldy,
        o1 = o0 + ldy;
      let j = jb;
      for (; j + 3 < jEnd; j += 4) {
        const b0 = wOff + j * ldw,
          b1 = b0 + ldw,
          b2 = b1 + ldw,
          b3 = b2 + ldw;
        let s00 = 0,
          s01 = 0,
          s02 = 0,
          s03 = 0,
          s10 = 0,
          s11 = 0,
          s12 = 0,
          s13 = 0;
        for (let k = 0; k < K; k++) {
          const x0 = x[a0 + k]!,
            x1 = x[a1 + k]!;
          const y0 = w[b0 + k]!,
            y1 = w[b1 + k]!,
            y2 = w[b2 + k]!,
            y3 = w[b3 + k]!;
          s00 += x0 * y0;
          s01 += x0 * y1;
          s02 += x0 * y2;
          s03 += x0 * y3;
          s10 += x1 * y0;
          s11 += x1 * y1;
          s12 += x1 * y2;
          s13 += x1 * y3;
        }
        if (acc) {
          y[o0 + j]! += s00;
          y[o0 + j + 1]! += s01;
          y[o0 + j + 2]! += s02;
          y[o0 + j + 3]! += s03;
          y[o1 + j]! += s10;
          y[o1 + j + 1]! += s11;
          y[o1 + j + 2]! += s12;
          y[o1 + j + 3]! += s13;
        } else {
          y[o0 + j] = s00;
          y[o0 + j + 1] = s01;
          y[o0 + j + 2] = s02;
          y[o0 + j + 3] = s03;
          y[o1 + j] = s10;
          y[o1 + j + 1] = s11;
          y[o1 + j + 2] = s12;
          y[o1 + j + 3] = s13;
        }
      }
      for (; j < jEnd; j++) {
        const b0 = wOff + j * ldw;
        let s0 = 0,
          s1 = 0;
        for (let k = 0; k < K; k++) {
          const v = w[b0 + k]!;
          s0 += x[a0 + k]! * v;
          s1 += x[a1 + k]! * v;
        }
        if (acc) {
          y[o0 + j]! += s0;
          y[o1 + j]! += s1;
        } else {
          y[o0 + j] = s0;
          y[o1 + j] = s1;
        }
      }
    }
    for (; i < M; i++) {
      const a0 = xOff + i * ldx,
        o0 = yOff + i * ldy;
      for (let j = jb; j < jEnd; j++) {
        const b0 = wOff + j * ldw;
        let s = 0;
        for (let k = 0; k < K; k++) s += x[a0 + k]! * w[b0 + k]!;
        if (acc) y[o0 + j]! += s;
        else y[o0 + j] = s;
      }
    }
  }
}

/** dst[c·ldd + r] = src[r·lds + c] for an R×C block (offsets in elements), tiled for cache reuse. */
export function transposeJs(
  dst: Float32Array,
  dOff: number,
  ldd: number,
  src: Float32Array,
  sOff: number,
  lds: number,
  R: number,
  C: number,
): void {
  const TL = 32;
  for (let r0 = 0; r0 < R; r0 += TL) {
    const r1 = Math.min(R, r0 + TL);
    for (let c0 = 0; c0 < C; c0 += TL) {
      const c1 = Math.min(C, c0 + TL);
      for (let r = r0; r < r1; r++) {
        const s = sOff + r * lds;
        for (let c = c0; c < c1; c++) dst[dOff + c * ldd + r] = src[s + c]!;
      }
    }
  }
}
