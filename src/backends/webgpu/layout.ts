/**
 * How each matrix type lies in its GPU buffer, in one place: the packing done at load (CPU), the
 * WGSL that reads one element (embedding rows) and the WGSL that reads a whole chunk of a row in
 * 16-byte loads (the products, matvec.ts).
 *
 * Layouts (every row and block 16-byte aligned, so a chunk is a few vec4<u32> loads):
 * - f32, f16, bf16: rows as stored, padded with zeros to a multiple of 8 elements (`stride`).
 * - q4_k (144 bytes), q5_k (176 bytes): ggml's super-blocks as stored, already 16-byte multiples.
 * - q8_0, q4_0, q6_k: each block without its f16 scale `d` (32, 16 and 208 bytes), then every
 *   block's `d`, two to a u32 word, from word `scaleAt`. The bits are ggml's; only their places move.
 *
 * The arithmetic of every reader is ggml's dequantization (dequantize_row_*), operation for
 * operation: q8_0 q·d; q4_0 (q − 8)·d; q4_k (d·sc)·q − dmin·m; q5_k the same with a fifth bit;
 * q6_k (d·sc)·(q − 32).
 */
import { UnsupportedError } from '../../errors.js';
import { GGML_TYPES } from '../../formats/ggml-types.js';

/** How a matrix is stored on the GPU. */
export type GpuWeightType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q5_k' | 'q6_k';

interface TypeInfo {
  /** Weights per block (1 for plain types). */
  block: number;
  /** Bytes per block as ggml stores it, and in our layout without a split-off scale. */
  ggmlBytes: number;
  bytes: number;
  /** The block's f16 scale is moved to the scale area (its byte offset in ggml's block). */
  scaleByte?: number;
  /** Elements of a row a thread reads at once in a product, and the 8-element parts of it. */
  chunk: number;
  parts: number;
}

/** ggml's block geometry (block, ggmlBytes) from GGML_TYPES; the rest is this backend's layout. */
function gpuType(t: GpuWeightType, rest: Omit<TypeInfo, 'block' | 'ggmlBytes'>): TypeInfo {
  return { block: GGML_TYPES[t].blockSize, ggmlBytes: GGML_TYPES[t].typeSize, ...rest };
}

const TYPES: Record<GpuWeightType, TypeInfo> = {
  f32: gpuType('f32', { bytes: 4, chunk: 8, parts: 1 }),
  f16: gpuType('f16', { bytes: 2, chunk: 8, parts: 1 }),
  bf16: gpuType('bf16', { bytes: 2, chunk: 8, parts: 1 }),
  q8_0: gpuType('q8_0', { bytes: 32, scaleByte: 0, chunk: 32, parts: 4 }),
  q4_0: gpuType('q4_0', { bytes: 16, scaleByte: 0, chunk: 32, parts: 4 }),
  q4_k: gpuType('q4_k', { bytes: GGML_TYPES.q4_k.typeSize, chunk: 32, parts: 4 }),
  q5_k: gpuType('q5_k', { bytes: GGML_TYPES.q5_k.typeSize, chunk: 32, parts: 4 }),
  q6_k: gpuType('q6_k', { bytes: 208, scaleByte: 208, chunk: 64, parts: 8 }),
};

/** A matrix's place in its buffer. */
export interface MatrixLayout {
  type: GpuWeightType;
  rows: number;
  cols: number;
  /** Elements from one row's start to the next (cols, or cols padded to a multiple of 8). */
  stride: number;
  /** u32 word of the first block scale (q8_0, q4_0, q6_k); 0 otherwise. */
  scaleAt: number;
  /** Bytes of the buffer. */
  bytes: number;
}

export function matrixLayout(type: GpuWeightType, rows: number, cols: number): MatrixLayout {
  const t = TYPES[type];
  if (cols % t.block) {
    throw new UnsupportedError(`a ${type} matrix needs rows of whole ${t.block}-weight blocks, got ${cols} columns`);
  }
  const stride = t.block === 1 ? Math.ceil(cols / 8) * 8 : cols;
  const blocks = (rows * stride) / t.block;
  const main = blocks * t.bytes;
  const scaleAt = t.scaleByte === undefined ? 0 : main / 4;
  const bytes = main + (t.scaleByte === undefined ? 0 : Math.ceil(blocks / 2) * 4);
  return { type, rows, cols, stride, scaleAt, bytes: Math.max(16, Math.ceil(bytes / 16) * 16) };
}

/** Elements a product's thread reads at a time, and how many 8-element parts that is. */
export function chunkOf(type: GpuWeightType): { chunk: number; parts: number } {
  return TYPES[type];
}

/** A matrix as ggml (or safetensors) stores it, written in our layout into `out` (L.bytes, zeroed). */
export function packMatrix(L: MatrixLayout, src: Uint8Array, out: Uint8Array): void {
  const t = TYPES[L.type];
  if (t.block === 1) {
    const rowBytes = L.cols * t.bytes;
    if (L.stride === L.cols) out.set(src.subarray(0, L.rows * rowBytes));
    else
      for (let r = 0; r < L.rows; r++) {
        out.set(src.subarray(r * rowBytes, (r + 1) * rowBytes), r * L.stride * t.bytes);
      }
    return;
  }
  if (t.scaleByte === undefined) {
    out.set(src.subarray(0, ((L.rows * L.cols) / t.block) * t.ggmlBytes));
    return;
  }
  // Blocks without their scale, then the scales: 16-bit units (every offset here is even).
  const blocks = (L.rows * L.cols) / t.block;
  const s = src.byteOffset % 2 ? src.slice() : src;
  const from = new Uint16Array(s.buffer, s.byteOffset, (blocks * t.ggmlBytes) / 2);
  const to = new Uint16Array(out.buffer, out.byteOffset, out.byteLength / 2);
  const inB = t.ggmlBytes / 2,
    outB = t.bytes / 2,
    sc = t.scaleByte / 2,
    scales = L.scaleAt * 2;
  for (let b = 0; b < blocks; b++) {
    const i = b * inB,
      o = b * outB;
    for (let k = 0; k < sc; k++) to[o + k] = from[i + k]!;
    for (let k = sc; k < outB; k++) to[o + k] = from[i + k + 1]!;
    to[scales + b] = from[i + sc]!;
  }
}

/** Helpers every reader of a `array<vec4<u32>>` binding `n` uses. */
function wordHelpers(n: string): string {
  return `
fn ${n}_word(w: u32) -> u32 { return ${n}[w >> 2u][w & 3u]; }
fn ${n}_byte(o: u32) -> u32 { return (${n}_word(o >> 2u) >> ((o & 3u) * 8u)) & 0xffu; }
fn ${n}_half(o: u32) -> f32 { return unpack2x16float(${n}_word(o >> 2u) >> ((o & 2u) * 8u)).x; }`;
}

/** WGSL declaration of a matrix binding: vec4 words (f32 matrices as vec4<f32>). */
export function matrixBinding(name: string, binding: number, type: GpuWeightType): string {
  return `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec4<${type === 'f32' ? 'f32' : 'u32'}>>;`;
}

/**
 * `fn name_at(i: u32, sat: u32) -> f32`: element i (row · stride + column) of a matrix bound as
 * `name` (matrixBinding), `sat` its scaleAt. For gathers of a few rows (embeddings).
 */
export function elementReader(name: string, binding: number, type: GpuWeightType): string {
  const decl = matrixBinding(name, binding, type);
  const n = name;
  const k4 = `
fn ${n}_scale_min(o: u32, j: u32) -> vec2<f32> {
  if (j < 4u) { return vec2<f32>(f32(${n}_byte(o + j) & 63u), f32(${n}_byte(o + j + 4u) & 63u)); }
  let a = ${n}_byte(o + j + 4u);
  return vec2<f32>(f32((a & 15u) | ((${n}_byte(o + j - 4u) >> 6u) << 4u)),
    f32((a >> 4u) | ((${n}_byte(o + j) >> 6u) << 4u)));
}`;
  switch (type) {
    case 'f32':
      return `${decl}\nfn ${n}_at(i: u32, sat: u32) -> f32 { return ${n}[i >> 2u][i & 3u]; }\n`;
    case 'f16':
      return `${decl}${wordHelpers(n)}
fn ${n}_at(i: u32, sat: u32) -> f32 { return unpack2x16float(${n}_word(i >> 1u) >> ((i & 1u) * 16u)).x; }\n`;
    case 'bf16':
      return `${decl}${wordHelpers(n)}
fn ${n}_at(i: u32, sat: u32) -> f32 {
  let u = ${n}_word(i >> 1u);
  return bitcast<f32>(select(u << 16u, u & 0xffff0000u, (i & 1u) == 1u));
}\n`;
    case 'q8_0':
      return `${decl}${wordHelpers(n)}
fn ${n}_at(i: u32, sat: u32) -> f32 {
  let b = i >> 5u;
  let q = bitcast<i32>(${n}_byte(b * 32u + (i & 31u)) << 24u) >> 24u;
  return f32(q) * ${n}_half(sat * 4u + b * 2u);
}\n`;
    case 'q4_0':
      return `${decl}${wordHelpers(n)}
fn ${n}_at(i: u32, sat: u32) -> f32 {
  let b = i >> 5u; let j = i & 31u;
  let q = ${n}_byte(b * 16u + (j & 15u));
  return (f32(select(q & 15u, q >> 4u, j >= 16u)) - 8.0) * ${n}_half(sat * 4u + b * 2u);
}\n`;
    case 'q4_k':
    case 'q5_k': {
      const q5 = type === 'q5_k';
      return `${decl}${wordHelpers(n)}${k4}
fn ${n}_at(i: u32, sat: u32) -> f32 {
  let o = (i >> 8u) * ${GGML_TYPES[type].typeSize}u;
  let r = i & 255u; let j = r >> 6u; let hi = (r >> 5u) & 1u; let l = r & 31u;
  let sm = ${n}_scale_min(o + 4u, 2u * j + hi);
  let qb = ${n}_byte(o + ${q5 ? 48 : 16}u + 32u * j + l);
  var q = select(qb & 15u, qb >> 4u, hi == 1u);
  ${q5 ? `if ((${n}_byte(o + 16u + l) & (1u << (2u * j + hi))) != 0u) { q += 16u; }` : ''}
  return (${n}_half(o) * sm.x) * f32(q) - ${n}_half(o + 2u) * sm.y;
}\n`;
    }
    case 'q6_k':
      return `${decl}${wordHelpers(n)}
fn ${n}_at(i: u32, sat: u32) -> f32 {
  let b = i >> 8u; let o = b * 208u;
  let r = i & 255u; let h = r >> 7u; let qd = (r >> 5u) & 3u; let l = r & 31u;
  let lb = ${n}_byte(o + 64u * h + l + 32u * (qd & 1u));
  let low = select(lb & 15u, lb >> 4u, qd >= 2u);
  let hb = (${n}_byte(o + 128u + 32u * h + l) >> (2u * qd)) & 3u;
  let q = i32(low | (hb << 4u)) - 32;
  let sc = bitcast<i32>(${n}_byte(o + 192u + 8u * h + (l >> 4u) + 2u * qd) << 24u) >> 24u;
  return (${n}_half(sat * 4u + b * 2u) * f32(sc)) * f32(q);
}\n`;
  }
}

/**
 * The chunk reader of a product's matrix, bound as `W` (binding 2), `p.d.x` its stride and
 * `p.d.y` its scaleAt:
 *   struct Raw; fn w_raw(n, ch) -> Raw      chunk ch of row n, loaded whole (vec4 loads);
 *   fn w_part(raw, i) -> Part               its part i: 8 weights, lo and hi runs of 4;
 *   fn w_koff(ch, i) -> vec2<u32>           the columns where those runs start.
 */
export function chunkReader(type: GpuWeightType): string {
  const decl = matrixBinding('W', 2, type);
  const half = `
fn w_half(b: u32) -> f32 {
  let w = p.d.y + (b >> 1u);
  return unpack2x16float(W[w >> 2u][w & 3u] >> ((b & 1u) * 16u)).x;
}
fn bytes4(u: u32) -> vec4<u32> { return (vec4<u32>(u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u); }`;
  const k4 = `
fn kbyte(h: vec4<u32>, k: u32) -> u32 { let o = 4u + k; return (h[o >> 2u] >> ((o & 3u) * 8u)) & 255u; }
// get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 bytes after d and dmin.
fn scale_min(h: vec4<u32>, j: u32) -> vec2<f32> {
  let lo = vec2<u32>(kbyte(h, j) & 63u, kbyte(h, j + 4u) & 63u);
  let a = kbyte(h, j + 4u);
  let hi = vec2<u32>((a & 15u) | ((kbyte(h, max(j, 4u) - 4u) >> 6u) << 4u), (a >> 4u) | ((kbyte(h, j) >> 6u) << 4u));
  return vec2<f32>(select(hi, lo, j < 4u));
}`;
  switch (type) {
    case 'f32':
      return `${decl}
struct Raw { a: vec4<f32>, b: vec4<f32> }
fn w_raw(n: u32, ch: u32) -> Raw { let v = ((n * p.d.x) >> 2u) + 2u * ch; return Raw(W[v], W[v + 1u]); }
fn w_part(r: Raw, i: u32) -> Part { return Part(r.a, r.b); }
fn w_koff(ch: u32, i: u32) -> vec2<u32> { return vec2<u32>(8u * ch, 8u * ch + 4u); }`;
    case 'f16':
    case 'bf16': {
      const two =
        type === 'f16' ? 'unpack2x16float(u)' : 'vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u))';
      return `${decl}
fn two(u: u32) -> vec2<f32> { return ${two}; }
struct Raw { q: vec4<u32> }
fn w_raw(n: u32, ch: u32) -> Raw { return Raw(W[((n * p.d.x) >> 3u) + ch]); }
fn w_part(r: Raw, i: u32) -> Part { return Part(vec4<f32>(two(r.q.x), two(r.q.y)), vec4<f32>(two(r.q.z), two(r.q.w))); }
fn w_koff(ch: u32, i: u32) -> vec2<u32> { return vec2<u32>(8u * ch, 8u * ch + 4u); }`;
    }
    case 'q8_0':
      return `${decl}${half}
fn i8x4(u: u32) -> vec4<f32> { return vec4<f32>(bitcast<vec4<i32>>(bytes4(u) << vec4<u32>(24u)) >> vec4<u32>(24u)); }
struct Raw { a: vec4<u32>, b: vec4<u32>, d: f32 }
fn w_raw(n: u32, ch: u32) -> Raw { let b = n * (p.d.x >> 5u) + ch; return Raw(W[2u * b], W[2u * b + 1u], w_half(b)); }
fn w_part(r: Raw, i: u32) -> Part {
  let q = select(r.a, r.b, i >= 2u);
  return Part(i8x4(q[(2u * i) & 3u]) * r.d, i8x4(q[(2u * i + 1u) & 3u]) * r.d);
}
fn w_koff(ch: u32, i: u32) -> vec2<u32> { return vec2<u32>(32u * ch + 8u * i, 32u * ch + 8u * i + 4u); }`;
    case 'q4_0':
      return `${decl}${half}
struct Raw { q: vec4<u32>, d: f32 }
fn w_raw(n: u32, ch: u32) -> Raw { let b = n * (p.d.x >> 5u) + ch; return Raw(W[b], w_half(b)); }
fn w_part(r: Raw, i: u32) -> Part {
  let q = bytes4(r.q[i]);
  return Part((vec4<f32>(q & vec4<u32>(15u)) - 8.0) * r.d, (vec4<f32>(q >> vec4<u32>(4u)) - 8.0) * r.d);
}
fn w_koff(ch: u32, i: u32) -> vec2<u32> { return vec2<u32>(32u * ch + 4u * i, 32u * ch + 16u + 4u * i); }`;
    case 'q4_k':
    case 'q5_k': {
      const q5 = type === 'q5_k',
        words = q5 ? 11 : 9;
      // Chunk ch of a row: super-block ch / 8, then j = (ch % 8) / 2 (64 weights: sub-blocks 2j
      // and 2j + 1) and s = ch % 2 (which 16 of the 32 bytes of quants: l in [16s, 16s + 16)).
      return `${decl}${k4}
fn bytes4(u: u32) -> vec4<u32> { return (vec4<u32>(u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u); }
struct Raw { q: vec4<u32>, ${q5 ? 'h: vec4<u32>, j: u32, ' : ''}dm: vec4<f32> }
fn w_raw(n: u32, ch: u32) -> Raw {
  let sb = n * (p.d.x >> 8u) + (ch >> 3u); let j = (ch >> 1u) & 3u; let s = ch & 1u;
  let h = W[${words}u * sb];
  let d = unpack2x16float(h.x);
  let a = scale_min(h, 2u * j); let b = scale_min(h, 2u * j + 1u);
  return Raw(W[${words}u * sb + ${q5 ? 3 : 1}u + 2u * j + s], ${q5 ? `W[${words}u * sb + 1u + s], j, ` : ''}
    vec4<f32>(d.x * a.x, d.y * a.y, d.x * b.x, d.y * b.y));
}
fn w_part(r: Raw, i: u32) -> Part {
  let q = bytes4(r.q[i]);
  var lo = q & vec4<u32>(15u); var hi = q >> vec4<u32>(4u);
  ${
    q5
      ? `let qh = bytes4(r.h[i]);
  lo += ((qh >> vec4<u32>(2u * r.j)) & vec4<u32>(1u)) * 16u;
  hi += ((qh >> vec4<u32>(2u * r.j + 1u)) & vec4<u32>(1u)) * 16u;`
      : ''
  }
  return Part(r.dm.x * vec4<f32>(lo) - r.dm.y, r.dm.z * vec4<f32>(hi) - r.dm.w);
}
fn w_koff(ch: u32, i: u32) -> vec2<u32> {
  let k = 256u * (ch >> 3u) + 64u * ((ch >> 1u) & 3u) + 16u * (ch & 1u) + 4u * i;
  return vec2<u32>(k, k + 32u);
}`;
    }
    case 'q6_k':
      // Chunk ch of a row: super-block ch / 4, half h = (ch % 4) / 2 (128 weights), s = ch % 2
      // (l in [16s, 16s + 16)): weights l, l + 32, l + 64 and l + 96 of the half, 64 in all.
      return `${decl}${half}
fn i8(u: u32) -> f32 { return f32(bitcast<i32>(u << 24u) >> 24u); }
struct Raw { a: vec4<u32>, b: vec4<u32>, h: vec4<u32>, sc: vec4<f32> }
fn w_raw(n: u32, ch: u32) -> Raw {
  let sb = n * (p.d.x >> 8u) + (ch >> 2u); let h = (ch >> 1u) & 1u; let s = ch & 1u;
  let o = 13u * sb;
  let sw = W[o + 12u];
  let d = w_half(sb);
  let k = 8u * h + s;
  let sc = vec4<f32>(i8(sw[k >> 2u] >> ((k & 3u) * 8u)), i8(sw[(k + 2u) >> 2u] >> (((k + 2u) & 3u) * 8u)),
    i8(sw[(k + 4u) >> 2u] >> (((k + 4u) & 3u) * 8u)), i8(sw[(k + 6u) >> 2u] >> (((k + 6u) & 3u) * 8u)));
  return Raw(W[o + 4u * h + s], W[o + 4u * h + 2u + s], W[o + 8u + 2u * h + s], d * sc);
}
fn w_part(r: Raw, i: u32) -> Part {
  let w = i >> 1u; let up = (i & 1u) * 4u;
  let la = (bytes4(r.a[w]) >> vec4<u32>(up)) & vec4<u32>(15u);
  let lb = (bytes4(r.b[w]) >> vec4<u32>(up)) & vec4<u32>(15u);
  let qh = bytes4(r.h[w]) >> vec4<u32>(up);
  let qa = vec4<i32>(la | ((qh & vec4<u32>(3u)) << vec4<u32>(4u))) - 32;
  let qb = vec4<i32>(lb | (((qh >> vec4<u32>(2u)) & vec4<u32>(3u)) << vec4<u32>(4u))) - 32;
  let sa = select(r.sc.x, r.sc.z, up != 0u); let sb = select(r.sc.y, r.sc.w, up != 0u);
  return Part(sa * vec4<f32>(qa), sb * vec4<f32>(qb));
}
fn w_koff(ch: u32, i: u32) -> vec2<u32> {
  let k = 256u * (ch >> 2u) + 128u * ((ch >> 1u) & 1u) + 16u * (ch & 1u) + 4u * (i >> 1u) + 64u * (i & 1u);
  return vec2<u32>(k, k + 32u);
}`;
  }
}
