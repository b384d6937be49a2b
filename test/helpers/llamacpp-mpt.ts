/**
 * A small MPT forward pass that follows llama.cpp's CPU arithmetic (see
 * test/fixtures/gguf-tiny-q/README.md, "What llama.cpp computes"), used to check our ggml block
 * decoding and `QuantMatrix` dot products against the logits llama.cpp itself produced:
 * activations converted to each weight type's vec_dot_type before every matrix product, GELU
 * through ggml's fp16 table, LayerNorm and attention in float32/64 with the f32 KV cache the
 * fixture used, ALiBi as `soft_max_ext` applies it. Batch mode only (the whole sequence at once).
 */
import { dequantize } from '../../src/formats/ggml-quants.js';
import { QuantMatrix } from './llamacpp-dot.js';
import { f16ToF32, f32ToF16 } from '../../src/formats/dtypes.js';
import { openGgufCheckpoint } from '../../src/model/gguf-model.js';
import type { MptConfig } from '../../src/model/config.js';

const fr = Math.fround;

let geluTable: Float32Array | undefined;
/** ggml's `ggml_table_gelu_f16`: tanh-approximate GELU of every fp16 input, rounded to fp16. */
function geluFp16Table(): Float32Array {
  if (geluTable) return geluTable;
  const t = new Float32Array(65536);
  const A = fr(0.044715),
    S = fr(0.7978845608028654);
  for (let h = 0; h < 65536; h++) {
    const x = f16ToF32(h);
    const inner = fr(fr(S * x) * fr(1 + fr(fr(A * x) * x)));
    const g = fr(fr(fr(0.5 * x) * fr(1 + fr(Math.tanh(inner)))));
    t[h] = f16ToF32(f32ToF16(g));
  }
  geluTable = t;
  return t;
}

/** ggml_vec_gelu_f32 with GGML_GELU_FP16. */
export function geluLlamaCpp(x: number): number {
  if (x <= -10) return 0;
  if (x >= 10) return x;
  return geluFp16Table()[f32ToF16(x)]!;
}

function layerNorm(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  const n = x.length;
  let mean = 0;
  for (let i = 0; i < n; i++) mean += x[i]!;
  mean /= n;
  let v = 0;
  for (let i = 0; i < n; i++) v += (x[i]! - mean) ** 2;
  const scale = fr(1 / Math.sqrt(fr(v / n + eps)));
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) y[i] = fr(fr(fr(x[i]! - mean) * scale) * w[i]!);
  return y;
}

interface Layer {
  attnNorm: Float32Array;
  qkv: QuantMatrix;
  out: QuantMatrix;
  ffnNorm: Float32Array;
  up: QuantMatrix;
  down: QuantMatrix;
}

export class LlamaCppMpt {
  private constructor(
    readonly config: MptConfig,
    private readonly embd: Float32Array,
    private readonly output: QuantMatrix,
    private readonly layers: Layer[],
    private readonly outNorm: Float32Array,
  ) {}

  /** Loads a GGUF file; the tied output matrix is the token embedding in its stored type. */
  static async load(path: string): Promise<LlamaCppMpt> {
    const ck = await openGgufCheckpoint(path);
    const c = ck.config;
    try {
      const raw = async (n: string) => ({ info: ck.tensors.info(n)!, bytes: await ck.tensors.read(n) });
      const vec = async (n: string) => {
        const { info, bytes } = await raw(n);
        return dequantize(
          info.dtype,
          bytes,
          info.shape.reduce((a, b) => a * b, 1),
        );
      };
      const mat = async (n: string) => {
        const { info, bytes } = await raw(n);
        return new QuantMatrix(info.dtype, bytes, info.shape[0]!, info.shape[1]!);
      };
      const layers: Layer[] = [];
      for (let l = 0; l < c.nLayers; l++) {
        const p = `transformer.blocks.${l}.`;
        layers.push({
          attnNorm: await vec(`${p}norm_1.weight`),
          qkv: await mat(`${p}attn.Wqkv.weight`),
          out: await mat(`${p}attn.out_proj.weight`),
          ffnNorm: await vec(`${p}norm_2.weight`),
          up: await mat(`${p}ffn.up_proj.weight`),
          down: await mat(`${p}ffn.down_proj.weight`),
        });
      }
      const head = c.tieWordEmbeddings ? 'transformer.wte.weight' : 'lm_head.weight';
      return new LlamaCppMpt(
        c,
        await vec('transformer.wte.weight'),
        await mat(head),
        layers,
        await vec('transformer.norm_f.weight'),
      );
    } finally {
      await ck.tensors.close();
    }
  }

  /** Logits [ids.length, vocab] for one sequence processed as one batch (no cache). */
  forward(ids: number[]): Float32Array {
    const c = this.config;
    const d = c.dModel,
      H = c.nHeads,
      hd = c.headDim,
      T = ids.length,
      V = c.vocabSize;
    const eps = c.layerNormEpsilon;
    const nLog2 = 2 ** Math.floor(Math.log2(H));
    const m0 = 2 ** (-c.attn.alibiBiasMax / nLog2);
    const m1 = 2 ** (-c.attn.alibiBiasMax / 2 / nLog2);
    const slope = (h: number) => (h < nLog2 ? m0 ** (h + 1) : m1 ** (2 * (h - nLog2) + 1));
    const scale = fr(1 / Math.sqrt(hd));
    let x: Float32Array[] = ids.map((id) => this.embd.slice(id * d, (id + 1) * d));
    for (const L of this.layers) {
      const qkv = x.map((row) => L.qkv.matvec(layerNorm(row, L.attnNorm, eps)));
      const attn = x.map(() => new Float32Array(d));
      for (let h = 0; h < H; h++) {
        const s = c.attn.alibi ? slope(h) : 0;
        for (let i = 0; i < T; i++) {
          const p = new Float64Array(i + 1);
          let max = -Infinity;
          for (let j = 0; j <= i; j++) {
            let dot = 0;
            for (let e = 0; e < hd; e++) dot += qkv[i]![h * hd + e]! * qkv[j]![d + h * hd + e]!;
            p[j] = fr(fr(fr(dot) * scale) + fr(s * -(i - j)));
            if (p[j]! > max) max = p[j]!;
          }
          let sum = 0;
          for (let j = 0; j <= i; j++) sum += p[j] = Math.exp(p[j]! - max);
          for (let e = 0; e < hd; e++) {
            let acc = 0;
            for (let j = 0; j <= i; j++) acc += fr(p[j]! / sum) * qkv[j]![2 * d + h * hd + e]!;
            attn[i]![h * hd + e] = fr(acc);
          }
        }
      }
      const h1 = x.map((row, i) => {
        const o = L.out.matvec(attn[i]!);
        for (let e = 0; e < d; e++) o[e] = fr(o[e]! + row[e]!);
        return o;
      });
      x = h1.map((row) => {
        const up = L.up.matvec(layerNorm(row, L.ffnNorm, eps));
        for (let e = 0; e < up.length; e++) up[e] = geluLlamaCpp(up[e]!);
        const down = L.down.matvec(up);
        for (let e = 0; e < d; e++) down[e] = fr(down[e]! + row[e]!);
        return down;
      });
    }
    const logits = new Float32Array(T * V);
    x.forEach((row, i) => {
      logits.set(this.output.matvec(layerNorm(row, this.outNorm, eps)), i * V);
    });
    return logits;
  }
}

/** Per-position comparison of two logit matrices: KL(P_ref ‖ P_test) in nats, top-1 agreement, max abs diff. */
export function compareLogits(ref: Float32Array, test: Float32Array, rows: number, vocab: number) {
  const kl: number[] = [];
  let agree = 0,
    maxAbs = 0;
  for (let r = 0; r < rows; r++) {
    const a = ref.subarray(r * vocab, (r + 1) * vocab),
      b = test.subarray(r * vocab, (r + 1) * vocab);
    let ma = -Infinity,
      mb = -Infinity,
      ia = 0,
      ib = 0;
    for (let v = 0; v < vocab; v++) {
      if (a[v]! > ma) {
        ma = a[v]!;
        ia = v;
      }
      if (b[v]! > mb) {
        mb = b[v]!;
        ib = v;
      }
      maxAbs = Math.max(maxAbs, Math.abs(a[v]! - b[v]!));
    }
    let za = 0,
      zb = 0;
    for (let v = 0; v < vocab; v++) {
      za += Math.exp(a[v]! - ma);
      zb += Math.exp(b[v]! - mb);
    }
    const la = Math.log(za),
      lb = Math.log(zb);
    let k = 0;
    for (let v = 0; v < vocab; v++) {
      const lpa = a[v]! - ma - la,
        lpb = b[v]! - mb - lb;
      k += Math.exp(lpa) * (lpa - lpb);
    }
    kl.push(Math.max(0, k));
    if (ia === ib) agree++;
  }
  return { klMean: kl.reduce((s, v) => s + v, 0) / rows, klMax: Math.max(...kl), top1: agree / rows, maxAbs };
}
