// Element-wise passes over blocks of matrix-product outputs: bias, scale, activation, GLU,
// clipping, residual adds, and embedding-row gathers.
import { activate_f32, activate_f32x4, gelu8_store_f32x4 } from './math';
import { f16_to_f32, bf16_to_f32, hi16_to_hi32, lo16_to_hi32, f16hi_to_f32x4 } from './half';
import { dequant_row_k } from './gemm-k';

/**
 * Y[m, n] = act((Y[m, n] + bias[n]) · scale) for m < M, n in [n0, n1). bias 0 = none; scale 1
 * skips the multiply; act as in math.ts (0 = identity).
 */
export function epilogue(Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, bias: usize, scale: f32, act: i32): void {
  if (!bias && scale == 1 && act == 0) return;
  if (act == 1) epilogue_gelu(Y, ldy, M, n0, n1, bias, scale);
  else if (act == 2) epilogue_gelu_tanh(Y, ldy, M, n0, n1, bias, scale);
  else if (act == 3) epilogue_silu(Y, ldy, M, n0, n1, bias, scale);
  else epilogue_other(Y, ldy, M, n0, n1, bias, scale, act);
}

/**
 * One function per activation: with the activation a runtime value V8 compiled one loop holding
 * every activation's code, whose constants (rematerialized, three instructions each) and spills
 * made the GELU epilogue of a prompt chunk cost about as much as its matrix product (the shipped
 * model's up_proj). Same operations per element, so the same bits.
 */
// @ts-ignore: decorator
@inline function epilogue_body(Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, bias: usize, scale: f32, act: i32): void {
  const vs = f32x4.splat(scale);
  for (let m = 0; m < M; m++) {
    const y = Y + (<usize>m * <usize>ldy << 2);
    let n = n0;
    if (act == 1) {
      // GELU eight vectors at a time (its latency-bound chains side by side), the rest one at a time
      for (; n + 32 <= n1; n += 32) {
        const o = <usize>n << 2;
        let a = v128.load(y + o), b = v128.load(y + o, 16), c = v128.load(y + o, 32), e = v128.load(y + o, 48);
        let f = v128.load(y + o, 64), g = v128.load(y + o, 80), h = v128.load(y + o, 96), i = v128.load(y + o, 112);
        if (bias) {
          a = f32x4.add(a, v128.load(bias + o)); b = f32x4.add(b, v128.load(bias + o, 16));
          c = f32x4.add(c, v128.load(bias + o, 32)); e = f32x4.add(e, v128.load(bias + o, 48));
          f = f32x4.add(f, v128.load(bias + o, 64)); g = f32x4.add(g, v128.load(bias + o, 80));
          h = f32x4.add(h, v128.load(bias + o, 96)); i = f32x4.add(i, v128.load(bias + o, 112));
        }
        if (scale != 1) {
          a = f32x4.mul(a, vs); b = f32x4.mul(b, vs); c = f32x4.mul(c, vs); e = f32x4.mul(e, vs);
          f = f32x4.mul(f, vs); g = f32x4.mul(g, vs); h = f32x4.mul(h, vs); i = f32x4.mul(i, vs);
        }
        gelu8_store_f32x4(y + o, a, b, c, e, f, g, h, i);
      }
    }
    for (; n + 4 <= n1; n += 4) {
      const o = <usize>n << 2;
      let v = v128.load(y + o);
      if (bias) v = f32x4.add(v, v128.load(bias + o));
      if (scale != 1) v = f32x4.mul(v, vs);
      v128.store(y + o, activate_f32x4(v, act));
    }
    for (; n < n1; n++) {
      const o = <usize>n << 2;
      let v = load<f32>(y + o);
      if (bias) v += load<f32>(bias + o);
      if (scale != 1) v *= scale;
      store<f32>(y + o, activate_f32(v, act));
    }
  }
}

function epilogue_gelu(Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, bias: usize, scale: f32): void { epilogue_body(Y, ldy, M, n0, n1, bias, scale, 1); }
function epilogue_gelu_tanh(Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, bias: usize, scale: f32): void { epilogue_body(Y, ldy, M, n0, n1, bias, scale, 2); }
function epilogue_silu(Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, bias: usize, scale: f32): void { epilogue_body(Y, ldy, M, n0, n1, bias, scale, 3); }
function epilogue_other(Y: usize, ldy: i32, M: i32, n0: i32, n1: i32, bias: usize, scale: f32, act: i32): void { epilogue_body(Y, ldy, M, n0, n1, bias, scale, act); }

/**
 * GLU: U[m, n] = act(G[m, n] + bg[n]) · (U[m, n] + bu[n]) for m < M, n in [n0, n1) (biases
 * optional). U and G share the leading dimension.
 */
export function glu(U: usize, G: usize, ld: i32, M: i32, n0: i32, n1: i32, bu: usize, bg: usize, act: i32): void {
  for (let m = 0; m < M; m++) {
    const u = U + (<usize>m * <usize>ld << 2), g = G + (<usize>m * <usize>ld << 2);
    let n = n0;
    for (; n + 4 <= n1; n += 4) {
      const o = <usize>n << 2;
      let a = v128.load(g + o), b = v128.load(u + o);
      if (bg) a = f32x4.add(a, v128.load(bg + o));
      if (bu) b = f32x4.add(b, v128.load(bu + o));
      v128.store(u + o, f32x4.mul(activate_f32x4(a, act), b));
    }
    for (; n < n1; n++) {
      const o = <usize>n << 2;
      let a = load<f32>(g + o), b = load<f32>(u + o);
      if (bg) a += load<f32>(bg + o);
      if (bu) b += load<f32>(bu + o);
      store<f32>(u + o, activate_f32(a, act) * b);
    }
  }
}

/** X[i] = clamp(X[i], -c, c) for n values. */
export function clip(X: usize, n: i32, c: f32): void {
  const lo = f32x4.splat(-c), hi = f32x4.splat(c);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(X + o, f32x4.min(f32x4.max(v128.load(X + o), lo), hi));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(X + o, min(max(load<f32>(X + o), -c), c));
  }
}

/** Copies n bytes (regions may overlap). */
export function copy_bytes(dst: usize, src: usize, n: usize): void {
  memory.copy(dst, src, n);
}

/** Y[i] += X[i] for n values. */
export function add_to(Y: usize, X: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>i << 2;
    v128.store(Y + o, f32x4.add(v128.load(Y + o), v128.load(X + o)));
  }
  for (; i < n; i++) {
    const o = <usize>i << 2;
    store<f32>(Y + o, load<f32>(Y + o) + load<f32>(X + o));
  }
}

/** Weight storage types, as the host numbers them. */
export const T_F32: i32 = 0, T_F16: i32 = 1, T_BF16: i32 = 2, T_Q8_0: i32 = 3, T_Q4_0: i32 = 4, T_Q4_K: i32 = 5, T_Q5_K: i32 = 6, T_Q6_K: i32 = 7;

/** Bytes of one row of K values in storage type t. */
export function row_bytes(t: i32, K: i32): usize {
  if (t == T_F32) return <usize>K << 2;
  if (t == T_F16 || t == T_BF16) return <usize>K << 1;
  if (t == T_Q8_0) return <usize>(K >> 5) * 34;
  if (t == T_Q4_0) return <usize>(K >> 5) * 18;
  return <usize>(K >> 8) * (t == T_Q4_K ? 144 : t == T_Q5_K ? 176 : 210);
}

/** out[0..K) = row `r` of matrix W (storage type t, K columns), widened to f32. */
export function dequant_row(t: i32, W: usize, K: i32, r: i32, out: usize): void {
  if (t >= T_Q4_K) {
    dequant_row_k(t, W, K, r, out);
    return;
  }
  const src = W + <usize>r * row_bytes(t, K);
  if (t == T_F32) {
    memory.copy(out, src, <usize>K << 2);
  } else if (t == T_F16 || t == T_BF16) {
    let i = 0;
    for (; i + 8 <= K; i += 8) {
      const v = v128.load(src + (<usize>i << 1));
      const o = out + (<usize>i << 2);
      if (t == T_F16) {
        v128.store(o, f16hi_to_f32x4(lo16_to_hi32(v)));
        v128.store(o, f16hi_to_f32x4(hi16_to_hi32(v)), 16);
      } else {
        v128.store(o, lo16_to_hi32(v));
        v128.store(o, hi16_to_hi32(v), 16);
      }
    }
    for (; i < K; i++) {
      const h = <u32>load<u16>(src + (<usize>i << 1));
      store<f32>(out + (<usize>i << 2), t == T_F16 ? f16_to_f32(h) : bf16_to_f32(h));
    }
  } else if (t == T_Q8_0) {
    for (let b = 0; b < (K >> 5); b++) {
      const p = src + <usize>b * 34;
      const d = f16_to_f32(load<u16>(p));
      const o = out + (<usize>b << 7);
      for (let j = 0; j < 32; j++) store<f32>(o + (<usize>j << 2), <f32>load<i8>(p + 2 + j) * d);
    }
  } else {
    for (let b = 0; b < (K >> 5); b++) {
      const p = src + <usize>b * 18;
      const d = f16_to_f32(load<u16>(p));
      const o = out + (<usize>b << 7);
      for (let j = 0; j < 16; j++) {
        const q = <i32>load<u8>(p + 2 + j);
        store<f32>(o + (<usize>j << 2), <f32>((q & 15) - 8) * d);
        store<f32>(o + (<usize>(j + 16) << 2), <f32>((q >> 4) - 8) * d);
      }
    }
  }
}
