// Per-op conformance, like llama.cpp's test-backend-ops: every op of every fast backend (norms,
// products for each stored weight type with bias and logit scale, activations and GLU, clip_qkv,
// attention with ALiBi / padding / grouped-query heads / softmax_scale, embeddings with learned
// positions) on small random inputs against the same op in float64 (test/helpers/backend-ops.ts).
// A new backend adds one row to BACKENDS; the whole-model goldens are in backend-conformance.ts.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { WeightType } from '../src/backends/wasm/kernels.js';
import { dequantize, quantize } from '../src/formats/ggml-quants.js';
import type { Activation } from '../src/model/config.js';
import { parseMptConfig } from '../src/model/config.js';
import { mptFacts, type NormKind } from '../src/model/facts.js';
import { float64, wasmOps, webgpuOps, type AttentionCase, type OpBackend } from './helpers/backend-ops.js';
import { rand } from './helpers/wasm-heap.js';
import { skipUnlessPresent } from './helpers/requirement.js';

const BACKENDS: Array<() => OpBackend> = [wasmOps, webgpuOps];

const TYPES: WeightType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'];
/**
 * Products: max |got − float64| relative to Σ|x||w| + 1 (float64 on ggml's dequantized weights).
 * The wasm backend quantizes activations for quantized weights as llama.cpp does (q8_0 / q8_K
 * blocks), which bounds its error by about 1/127 of that sum; f32 activations are within f32 rounding.
 */
const productTolerance = (backend: string, type: WeightType) =>
  backend === 'wasm' && !['f32', 'f16', 'bf16'].includes(type) ? 1e-2 : 2e-6;

function assertClose(got: Float32Array, want: Float64Array, tol: (i: number) => number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++)
    assert.ok(Math.abs(got[i]! - want[i]!) <= tol(i), `${what} [${i}]: ${got[i]} vs ${want[i]} (within ${tol(i)})`);
}

const attentionConfigs: Array<[string, Record<string, unknown>]> = [
  [
    'GQA (6 heads over 2), ALiBi with 6 heads, softmax_scale',
    {
      n_heads: 6,
      attn_config: { alibi: true, attn_type: 'grouped_query_attention', kv_n_heads: 2, softmax_scale: 0.3 },
    },
  ],
  ['multi-head, no ALiBi (learned positions)', { n_heads: 4, attn_config: { alibi: false } }],
  [
    'multi-query, ALiBi bias max 16',
    { n_heads: 4, attn_config: { alibi: true, alibi_bias_max: 16, attn_type: 'multiquery_attention' } },
  ],
];

for (const make of BACKENDS) {
  const ops = make();
  const skip = skipUnlessPresent(await ops.missing());
  describe(`${ops.name} ops against float64`, { skip }, () => {
    after(() => ops.close());

    for (const kind of ['layernorm', 'rmsnorm'] as NormKind[]) {
      it(`${kind} (rows of 7 and 130 features, a row with a large mean)`, async () => {
        for (const n of [7, 130]) {
          const rows = 3;
          const x = rand(rows * n, n, 3);
          for (let i = 0; i < n; i++) x[i]! += 5;
          const w = rand(n, n + 1).map((v) => 1 + 0.3 * v),
            b = kind === 'layernorm' ? rand(n, n + 2, 0.2) : undefined;
          const got = await ops.norm(kind, x, rows, n, w, b);
          assertClose(got, float64.norm(kind, x, rows, n, w, b), () => 2e-5, `${kind} n${n}`);
        }
      });
    }

    for (const type of TYPES) {
      it(`product with ${type} weights, bias and a logit scale (${ops.productRows.join(' and ')} rows)`, async () => {
        const N = 37,
          K = type.endsWith('_k') ? 512 : 96;
        const wq = quantize(type, rand(N * K, 7, 2 / Math.sqrt(K)));
        const w = dequantize(type, wq, N * K);
        const bias = rand(N, 5, 0.1);
        for (const rows of ops.productRows) {
          const x = rand(rows * K, rows + 3, 2);
          const got = await ops.matmul(type, wq, N, K, x, rows, bias, 0.5);
          const want = float64.matmul(w, N, K, x, rows, bias, 0.5);
          const mag = float64.matmul(w.map(Math.abs), N, K, x.map(Math.abs), rows);
          const tol = productTolerance(ops.name, type);
          assertClose(got, want, (i) => tol * (mag[i]! + 1), `${type} ${rows} rows`);
        }
      });
    }

    for (const act of ['gelu', 'gelu_tanh', 'silu', 'relu'] as Activation[]) {
      it(`activation ${act}, alone and as GLU`, async () => {
        const x = rand(200, 17, 6),
          gate = rand(200, 19, 6);
        assertClose(await ops.activation(act, x), float64.activation(act, x), () => 2e-6, act);
        assertClose(await ops.activation(act, x, gate), float64.activation(act, x, gate), () => 1e-5, `${act} GLU`);
      });
    }

    it('clip_qkv clamps to [-c, c]', async () => {
      const x = rand(64, 23, 3);
      const want = Float64Array.from(x, (v) => Math.fround(Math.min(1.2, Math.max(-1.2, v))));
      assertClose(await ops.clip(x, 1.2), want, () => 0, 'clip');
    });

    for (const [what, attn] of attentionConfigs) {
      it(`attention: ${what}; a cache with left padding, new rows on top`, async () => {
        const f = mptFacts(parseMptConfig({ d_model: 96, n_layers: 1, vocab_size: 10, ...attn }));
        for (const [n, past] of [
          [1, 9],
          [5, 4],
          [3, 0],
        ] as const) {
          const K = past + n;
          const valid = new Uint8Array(K).fill(1);
          valid[0] = 0;
          if (K > 2) valid[1] = 0;
          const a: AttentionCase = {
            facts: f,
            n,
            past,
            q: rand(n * f.dModel, n * 5 + past, 1.5),
            k: rand(K * f.kvDim, 31 + past, 1.5),
            v: rand(K * f.kvDim, 37 + past),
            valid,
          };
          assertClose(await ops.attention(a), float64.attention(a), () => 1e-5, `n${n} past${past}`);
        }
      });
    }

    for (const type of ['f32', 'f16', 'q8_0', 'q4_0', 'q6_k'] as WeightType[]) {
      it(`embedding rows stored as ${type}, plus learned positions`, async () => {
        const rows = 11,
          d = type.endsWith('_k') ? 256 : 64;
        const table = quantize(type, rand(rows * d, 41, 1));
        const wpe = rand(8 * d, 43, 0.5);
        const e = { type, table, rows, d, ids: [3, 0, 10, 3], wpe, positions: [0, 1, 2, 7] };
        const want = float64.embedding(e, dequantize(type, table, rows * d));
        assertClose(await ops.embedding(e), want, () => 1e-6, type);
      });
    }
  });
}
