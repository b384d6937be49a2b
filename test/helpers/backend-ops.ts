/**
 * Single MPT operations through each fast backend's op-level entry points (the wasm kernels, the
 * WebGPU kernels), and the same operations in float64 (the reference backend's math and
 * model/facts.ts), for test/backend-ops.test.ts, which runs every op of every backend against the
 * float64 one, like llama.cpp's test-backend-ops. A new backend adds one `OpBackend`.
 */
import type { Activation } from '../../src/model/config.js';
import { alibiBias, kvHeadOf, type MptFacts, type NormKind } from '../../src/model/facts.js';
import { gelu, geluTanh, layerNorm, linear, rmsNorm, silu } from '../../src/backends/reference/math.js';
import {
  ACT,
  WTYPE,
  actQ8Bytes,
  actQ8KBytes,
  actKind,
  attentionScratchBytes,
  HALF_PANEL_BYTES,
} from '../../src/backends/wasm/kernels.js';
import type { WeightType } from '../../src/backends/wasm/kernels.js';
import { DispatchCache, Dispatches, emptyStats } from '../../src/backends/webgpu/dispatch.js';
import { MAP_READ, STORAGE, USAGE, openGpu, type GpuBuffer, type GpuContext } from '../../src/backends/webgpu/gpu.js';
import { matrixLayout, packMatrix } from '../../src/backends/webgpu/layout.js';
import { f32bits, productDispatch, type ProductSpec } from '../../src/backends/webgpu/matvec.js';
import { kernelSource } from '../../src/backends/webgpu/shaders.js';
import { Heap } from './wasm-heap.js';

/** One head group of attention: H query heads over kvH K/V heads, n new rows after `past` cached ones. */
export interface AttentionCase {
  facts: MptFacts;
  n: number;
  past: number;
  /** New rows' q [n][d_model]. */
  q: Float32Array;
  /** Keys and values of all past + n positions, [past + n][kvDim]. */
  k: Float32Array;
  v: Float32Array;
  /** 1 = a real token, 0 = padding, per position. */
  valid: Uint8Array;
}

/** A table of `rows` embedding rows of `d` values stored as `type` (ggml bytes), and learned positions. */
export interface EmbeddingCase {
  type: WeightType;
  table: Uint8Array;
  rows: number;
  d: number;
  ids: number[];
  /** Learned position rows [maxPos][d] (f32) and each id's position, or none. */
  wpe?: Float32Array;
  positions?: number[];
}

export interface OpBackend {
  name: string;
  /** The row counts the products are checked at: one for each of the backend's product paths. */
  productRows: number[];
  /** null where it runs here, else why not. */
  missing(): Promise<string | null>;
  /** Row-wise norm of x [rows][n] (RMSNorm has no bias). */
  norm(
    kind: NormKind,
    x: Float32Array,
    rows: number,
    n: number,
    w: Float32Array,
    b?: Float32Array,
  ): Promise<Float32Array>;
  /** scale · (x [rows][K] · Wᵀ + bias), W [N][K] stored as `type` (ggml bytes). */
  matmul(
    type: WeightType,
    w: Uint8Array,
    N: number,
    K: number,
    x: Float32Array,
    rows: number,
    bias?: Float32Array,
    scale?: number,
  ): Promise<Float32Array>;
  /** act(x) elementwise; with `gate`, GLU: act(gate) · x. */
  activation(act: Activation, x: Float32Array, gate?: Float32Array): Promise<Float32Array>;
  /** clamp(x, -c, c): clip_qkv. */
  clip(x: Float32Array, c: number): Promise<Float32Array>;
  /** Attention context [n][d_model] (softmax scale, ALiBi slopes and grouping from the facts). */
  attention(a: AttentionCase): Promise<Float32Array>;
  /** Embedding rows (+ learned position rows) [ids][d]. */
  embedding(e: EmbeddingCase): Promise<Float32Array>;
  close(): Promise<void>;
}

/** The float64 definitions (the reference backend's math; masked keys at facts.maskedScore). */
export const float64 = {
  norm(kind: NormKind, x: Float32Array, rows: number, n: number, w: Float32Array, b?: Float32Array): Float64Array {
    const x64 = Float64Array.from(x);
    return kind === 'rmsnorm' ? rmsNorm(x64, rows, n, w, 1e-5) : layerNorm(x64, rows, n, w, b, 1e-5);
  },
  matmul(w: Float32Array, N: number, K: number, x: Float32Array, rows: number, bias?: Float32Array, scale = 1) {
    return linear(Float64Array.from(x), rows, w, K, N, bias).map((y) => y * scale);
  },
  activation(act: Activation, x: Float32Array, gate?: Float32Array): Float64Array {
    const f = { gelu, gelu_tanh: geluTanh, silu, relu: (z: number) => Math.max(z, 0) }[act];
    return Float64Array.from(x, (v, i) => (gate ? f(gate[i]!) * v : f(v)));
  },
  attention(a: AttentionCase): Float64Array {
    const f = a.facts,
      d = f.dModel,
      hd = f.headDim,
      kvd = f.kvDim,
      K = a.past + a.n;
    const out = new Float64Array(a.n * d);
    const s = new Float64Array(K);
    for (let h = 0; h < f.nHeads; h++) {
      const g = kvHeadOf(f, h);
      for (let t = 0; t < a.n; t++) {
        let max = -Infinity;
        for (let j = 0; j < K; j++) {
          let dot = 0;
          for (let e = 0; e < hd; e++) dot += a.q[t * d + h * hd + e]! * a.k[j * kvd + g * hd + e]!;
          s[j] = j > a.past + t || !a.valid[j] ? f.maskedScore : dot * f.softmaxScale + alibiBias(f.slopes[h]!, j, K);
          max = Math.max(max, s[j]!);
        }
        let sum = 0;
        for (let j = 0; j < K; j++) sum += s[j] = Math.exp(s[j]! - max);
        for (let j = 0; j < K; j++)
          for (let e = 0; e < hd; e++) out[t * d + h * hd + e]! += (s[j]! / sum) * a.v[j * kvd + g * hd + e]!;
      }
    }
    return out;
  },
  embedding(e: EmbeddingCase, table: Float32Array): Float64Array {
    const out = new Float64Array(e.ids.length * e.d);
    e.ids.forEach((id, r) => {
      for (let i = 0; i < e.d; i++) {
        const pos = e.positions?.[r];
        out[r * e.d + i] = table[id * e.d + i]! + (e.wpe && pos !== undefined ? e.wpe[pos * e.d + i]! : 0);
      }
    });
    return out;
  },
};

/** The wasm backend's kernels (src/backends/wasm/kernels.ts), on one thread, as executor.ts calls them. */
export function wasmOps(): OpBackend {
  const h = new Heap();
  const out = (p: number, n: number) => h.f32(p, n).slice();
  return {
    name: 'wasm',
    // one row; a group of four rows and one left over (the kernels take rows four at a time)
    productRows: [1, 5],
    missing: async () => null,
    async norm(kind, x, rows, n, w, b) {
      const px = h.putF32(x),
        py = h.alloc(x.length * 4),
        pw = h.putF32(w);
      if (kind === 'rmsnorm') h.k.rmsnorm(px, n, py, n, rows, n, pw, 1e-5);
      else h.k.layernorm(px, n, py, n, rows, n, pw, b ? h.putF32(b) : 0, 1e-5);
      return out(py, x.length);
    },
    async matmul(type, w, N, K, x, rows, bias, scale = 1) {
      const px = h.putF32(x),
        pw = h.putU8(w),
        py = h.alloc(rows * N * 4);
      const kind = actKind(type);
      if (type === 'f32') h.k.gemm_f32(px, K, pw, K, py, N, rows, 0, N, K, 0);
      else if (type === 'f16' || type === 'bf16') {
        const gemm = type === 'f16' ? h.k.gemm_f16.bind(h.k) : h.k.gemm_bf16.bind(h.k);
        gemm(px, K, pw, K, py, N, rows, 0, N, K, 0, h.alloc(HALF_PANEL_BYTES));
      } else if (kind === 'q8') {
        const qa = h.alloc(actQ8Bytes(rows, K));
        h.k.quantize_act_q8(px, K, 0, rows, K, qa);
        (type === 'q8_0' ? h.k.gemm_q8_0.bind(h.k) : h.k.gemm_q4_0.bind(h.k))(qa, pw, py, N, rows, 0, N, K, 0);
      } else {
        const qk = h.alloc(actQ8KBytes(rows, K));
        h.k.quantize_act_q8k(px, K, 0, rows, K, qk);
        h.k.gemm_k(WTYPE[type], qk, pw, py, N, rows, 0, N, K, 0);
      }
      h.k.epilogue(py, N, rows, 0, N, bias ? h.putF32(bias) : 0, scale, ACT.none);
      return out(py, rows * N);
    },
    async activation(act, x, gate) {
      const px = h.putF32(x);
      if (gate) h.k.glu(px, h.putF32(gate), x.length, 1, 0, x.length, 0, 0, ACT[act]);
      else h.k.epilogue(px, x.length, 1, 0, x.length, 0, 1, ACT[act]);
      return out(px, x.length);
    },
    async clip(x, c) {
      const px = h.putF32(x);
      h.k.clip(px, x.length, c);
      return out(px, x.length);
    },
    async attention(a) {
      const f = a.facts,
        d = f.dModel,
        hd = f.headDim,
        kvd = f.kvDim;
      const pq = h.putF32(a.q),
        pk = h.putF32(a.k),
        pv = h.putF32(a.v),
        pvalid = h.putU8(a.valid),
        po = h.alloc(a.n * d * 4),
        ps = h.alloc(attentionScratchBytes(hd));
      for (let hh = 0; hh < f.nHeads; hh++) {
        const g = kvHeadOf(f, hh) * hd * 4;
        const K = a.past + a.n;
        h.k.attention(
          pq + hh * hd * 4,
          d,
          a.n,
          a.past,
          pk + g,
          pv + g,
          kvd,
          pvalid,
          K,
          hd,
          f.softmaxScale,
          f.slopes[hh]!,
          po + hh * hd * 4,
          d,
          ps,
        );
      }
      return out(po, a.n * d);
    },
    async embedding(e) {
      const pw = h.putU8(e.table),
        py = h.alloc(e.ids.length * e.d * 4);
      const pwpe = e.wpe ? h.putF32(e.wpe) : 0;
      e.ids.forEach((id, r) => {
        h.k.dequant_row(WTYPE[e.type], pw, e.d, id, py + r * e.d * 4);
        if (e.wpe) h.k.add_to(py + r * e.d * 4, pwpe + e.positions![r]! * e.d * 4, e.d);
      });
      return out(py, e.ids.length * e.d);
    },
    close: async () => undefined,
  };
}

/** The WebGPU backend's kernels (src/backends/webgpu: fused products, attention, embedding), one dispatch each. */
export function webgpuOps(): OpBackend {
  let gpu: GpuContext | null = null;
  let why: string | null | undefined;
  let cache: DispatchCache;
  let dummy: GpuBuffer;
  const pipelines = new Map<string, ReturnType<GpuContext['device']['createComputePipeline']>>();
  const buffer = (data: Float32Array | Uint32Array | Uint8Array): GpuBuffer => {
    const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
    const b = gpu!.device.createBuffer({ size, usage: STORAGE, mappedAtCreation: true });
    new Uint8Array(b.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    b.unmap();
    return b;
  };
  /** One dispatch; returns `words` floats of `out`. */
  const run = async (
    kernel: string,
    bindings: GpuBuffer[],
    params: number[],
    groups: number[],
    out: GpuBuffer,
    words: number,
  ): Promise<Float32Array> => {
    const dev = gpu!.device;
    dev.pushErrorScope('validation');
    const enc = dev.createCommandEncoder();
    const plan = new Dispatches(cache, enc);
    plan.add(kernel, bindings, params, groups);
    plan.finish();
    const staging = dev.createBuffer({ size: words * 4, usage: USAGE.MAP_READ | USAGE.COPY_DST });
    enc.copyBufferToBuffer(out, 0, staging, 0, words * 4);
    dev.queue.submit([enc.finish()]);
    const err = await dev.popErrorScope();
    if (err) throw new Error(err.message);
    await staging.mapAsync(MAP_READ);
    const got = new Float32Array(staging.getMappedRange().slice(0));
    staging.destroy();
    return got;
  };
  const product = async (
    spec: Omit<ProductSpec, 'W' | 'ldx' | 'ldy'>,
    type: WeightType,
    w: Uint8Array,
    N: number,
    K: number,
    x: Float32Array,
    extra: { bias?: Float32Array; nw?: Float32Array; nb?: Float32Array; G?: Float32Array } = {},
  ) => {
    const L = matrixLayout(type, N, K);
    const packed = new Uint8Array(L.bytes);
    packMatrix(L, w, packed);
    const Y = buffer(new Float32Array(spec.rows * N));
    const p = productDispatch({ ...spec, W: L, ldx: K, ldy: N });
    const opt = (a?: Float32Array) => (a ? buffer(a) : dummy);
    const binds = [buffer(x), buffer(packed), opt(extra.bias), Y, opt(extra.nw), opt(extra.nb), dummy, opt(extra.G)];
    return run(p.kernel, binds, p.params, p.groups, Y, spec.rows * N);
  };
  /** The n × n identity as f32: a product with it is the fused prologue / epilogue alone. */
  const identity = (n: number) => {
    const I = new Float32Array(n * n);
    for (let i = 0; i < n; i++) I[i * n + i] = 1;
    return new Uint8Array(I.buffer);
  };
  return {
    name: 'webgpu',
    // the one-row kernel and one built for more (matvec.ts). Kernels for 1, 2, 4 and 8 rows are built
    // from one template, each a pipeline that lavapipe compiles for seconds: webgpu-kernels.test.ts
    // checks every type at 1 and 2 rows and every row count on f32.
    productRows: [1, 2],
    async missing() {
      if (why === undefined) {
        try {
          gpu = await openGpu();
          cache = new DispatchCache(
            gpu.device,
            (name) => {
              let p = pipelines.get(name);
              if (!p) {
                const module = gpu!.device.createShaderModule({
                  code: kernelSource(name, { subgroups: gpu!.subgroups }),
                });
                p = gpu!.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
                pipelines.set(name, p);
              }
              return p;
            },
            { current: emptyStats() },
          );
          dummy = buffer(new Float32Array(4));
          why = null;
        } catch (e) {
          why = `no WebGPU adapter here: ${(e as Error).message}`;
        }
      }
      return why;
    },
    norm(kind, x, rows, n, w, b) {
      const norm = { weight: true, bias: !!b, rms: kind === 'rmsnorm', eps: 1e-5 };
      return product({ rows, norm }, 'f32', identity(n), n, n, x, { nw: w, nb: b });
    },
    matmul(type, w, N, K, x, rows, bias, scale) {
      return product({ rows, bias: !!bias, scale }, type, w, N, K, x, { bias });
    },
    activation(act, x, gate) {
      const n = x.length;
      return product({ rows: 1, act: ACT[act], glu: !!gate }, 'f32', identity(n), n, n, x, { G: gate });
    },
    clip(x, c) {
      const n = x.length;
      return product({ rows: 1, clip: c }, 'f32', identity(n), n, n, x);
    },
    attention(a) {
      // As the runner encodes it (webgpu/runner.ts): new keys and values come from the fused qkv
      // rows and are stored into the cache at past .. past+n-1; q is read from the same rows.
      const f = a.facts,
        d = f.dModel,
        kvd = f.kvDim,
        qn = f.qkvDim,
        cap = a.past + a.n;
      const qkv = new Float32Array(a.n * qn);
      for (let t = 0; t < a.n; t++) {
        qkv.set(a.q.subarray(t * d, (t + 1) * d), t * qn + f.qkvSplit.q);
        qkv.set(a.k.subarray((a.past + t) * kvd, (a.past + t + 1) * kvd), t * qn + f.qkvSplit.k);
        qkv.set(a.v.subarray((a.past + t) * kvd, (a.past + t + 1) * kvd), t * qn + f.qkvSplit.v);
      }
      const keys = buffer(Float32Array.from(a.k.subarray(0, cap * kvd)).fill(0, a.past * kvd)),
        values = buffer(Float32Array.from(a.v.subarray(0, cap * kvd)).fill(0, a.past * kvd));
      const qkvBuf = buffer(qkv),
        ctx = buffer(new Float32Array(a.n * d));
      const params = [
        a.n,
        a.past,
        f.headDim,
        kvd,
        qn,
        0,
        f.queriesPerKvHead,
        1,
        f32bits(f.softmaxScale),
        qn,
        f.qkvSplit.k,
        f.qkvSplit.v,
        d,
        0, // the cache's first row in its pool
        0, // where the row table starts
      ];
      // The one-row kernel's table, a row per new token: (cache offset, past, n << 16 | t, base).
      const table = new Uint32Array(4 * a.n);
      for (let t = 0; t < a.n; t++) table.set([0, a.past, (a.n << 16) | t, 0], 4 * t);
      const binds = [
        qkvBuf,
        keys,
        values,
        buffer(Uint32Array.from(a.valid)),
        buffer(f.slopes),
        ctx,
        qkvBuf,
        buffer(table),
      ];
      return run('attention.f32', binds, params, [a.n, f.nHeads], ctx, a.n * d);
    },
    embedding(e) {
      const L = matrixLayout(e.type, e.rows, e.d);
      const packed = new Uint8Array(L.bytes);
      packMatrix(L, e.table, packed);
      const R = e.ids.length;
      const ids = new Uint32Array(3 * R);
      e.ids.forEach((id, r) => {
        ids[r] = id;
        ids[R + r] = e.positions?.[r] ?? 0;
      });
      const wpe = e.wpe ? matrixLayout('f32', e.wpe.length / e.d, e.d) : undefined;
      let wpeBuf = dummy;
      if (e.wpe && wpe) {
        const wp = new Uint8Array(wpe.bytes);
        packMatrix(wpe, new Uint8Array(e.wpe.buffer, e.wpe.byteOffset, e.wpe.byteLength), wp);
        wpeBuf = buffer(wp);
      }
      const x = buffer(new Float32Array(R * e.d));
      const params = [R, e.d, wpe ? 1 : 0, R, L.stride, L.scaleAt, wpe?.stride ?? 0, wpe?.scaleAt ?? 0];
      return run(
        `embed.${e.type}.f32`,
        [buffer(ids), buffer(packed), wpeBuf, x],
        params,
        [Math.ceil(e.d / 64), R],
        x,
        R * e.d,
      );
    },
    async close() {
      gpu?.device.destroy();
    },
  };
}
