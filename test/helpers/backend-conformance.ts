/**
 * What every fast backend must reproduce, shared by the backend tests (wasm, webgpu): MosaicML's
 * goldens for every fixture (all-position logits, one token per call on a cache, chunked prefill,
 * a left-padded batch and its greedy continuation, greedy generation) and configurations the
 * fixtures do not cover, on random weights, against the reference backend.
 */
import assert from 'node:assert/strict';
import type { ModelRunner, SequenceInput } from '../../src/backends/backend.js';
import type { TensorInfo, TensorSource } from '../../src/formats/tensor-source.js';
import type { MptConfig } from '../../src/model/config.js';
import { expectedTensors } from '../../src/model/weights-layout.js';
import { type Goldens, argmaxRows, maxAbsDiff } from './goldens.js';

/** Logits agreement with MosaicML's code (f32). */
export const TOL = 5e-4;

export const GOLDEN_FIXTURES = [
  'tiny-alibi',
  'tiny-alibi-bin',
  'tiny-alibi-sharded',
  'tiny-alibi-bf16',
  'tiny-alibi-fp16',
  'tiny-alibi-bin-sharded-bf16',
  'tiny-alibi-msl32',
  'tiny-bias',
  'tiny-storywriter',
  'tiny-gqa',
  'tiny-exp2',
  'tiny-rmsnorm',
  'tiny-learned-pos',
  'tiny-neox-vocab',
  'gguf-tiny-q',
];

/** Configurations no fixture covers (random weights; compared with the reference backend). */
const base = { d_model: 64, n_heads: 4, n_layers: 2, vocab_size: 300, max_seq_len: 48, expansion_ratio: 3 };
export const UNCOVERED_CONFIGS: Array<[string, Record<string, unknown>]> = [
  [
    'learned_pos_emb, biases, no ALiBi, tanh GELU',
    {
      ...base,
      learned_pos_emb: true,
      no_bias: false,
      attn_config: { alibi: false },
      ffn_config: { ffn_act_fn: { name: 'gelu', approximate: 'tanh' } },
    },
  ],
  [
    'RMSNorm, GLU with SiLU, multi-query, clip_qkv, logit_scale',
    {
      ...base,
      no_bias: true,
      norm_type: 'rmsnorm',
      logit_scale: 'inv_sqrt_d_model',
      attn_config: { alibi: true, attn_type: 'multiquery_attention', clip_qkv: 0.5 },
      ffn_config: { ffn_type: 'mptglu', ffn_act_fn: { name: 'silu' }, ffn_hidden_size: 100 },
    },
  ],
  [
    'qk_ln with biases, GQA, 6 heads (non power-of-two ALiBi), ReLU, alibi_bias_max 16',
    {
      ...base,
      d_model: 96,
      n_heads: 6,
      no_bias: false,
      attn_config: {
        alibi: true,
        alibi_bias_max: 16,
        qk_ln: true,
        attn_type: 'grouped_query_attention',
        kv_n_heads: 2,
        softmax_scale: 0.2,
      },
      ffn_config: { ffn_act_fn: { name: 'relu' } },
    },
  ],
];

export async function logitsOf(r: ModelRunner, ids: number[], capacity = 128): Promise<Float32Array> {
  const cache = r.createCache({ capacity });
  const [o] = await r.forward([{ cache, tokens: ids }], { logits: 'all' });
  cache.dispose();
  return o!.logits;
}

export function argmax(x: Float32Array): number {
  let b = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[b]!) b = i;
  return b;
}

/** Checks a runner loaded from a fixture against that fixture's goldens. */
export async function checkGoldens(r: ModelRunner, g: Goldens): Promise<void> {
  const V = r.config.vocabSize;
  for (const t of g.tensorNames().filter((n) => n.startsWith('logits/'))) {
    const seq = t.slice('logits/'.length);
    const got = await logitsOf(r, g.json.inputs[seq]);
    assert.ok(maxAbsDiff(got, g.tensor(t).data) <= TOL, `${t}: ${maxAbsDiff(got, g.tensor(t).data)}`);
  }
  if (g.has('kv_incremental/seq7/step_logits')) {
    // one token per call on top of the cache
    const ids: number[] = g.json.inputs.seq7;
    const cache = r.createCache({ capacity: 64 });
    const steps = new Float32Array(ids.length * V);
    for (let i = 0; i < ids.length; i++) {
      const [o] = await r.forward([{ cache, tokens: [ids[i]!] }], { logits: 'last' });
      steps.set(o!.logits, i * V);
    }
    assert.ok(maxAbsDiff(steps, g.tensor('kv_incremental/seq7/step_logits').data) <= TOL);
    // chunked prefill of seq64 (multi-token queries on top of a cache)
    const chunks: Array<[number, number]> = g.json.kv_incremental.seq64_chunked.chunks;
    const s64: number[] = g.json.inputs.seq64;
    const c2 = r.createCache({ capacity: 64 });
    const all = new Float32Array(64 * V);
    for (const [a, b] of chunks) {
      const [o] = await r.forward([{ cache: c2, tokens: s64.slice(a, b) }], { logits: 'all' });
      all.set(o!.logits, a * V);
    }
    assert.ok(maxAbsDiff(all, g.tensor('logits/seq64').data) <= TOL);
    assert.equal(c2.length, 64);
  }
  if (g.has('batch_left_pad/logits')) await checkLeftPadded(r, g, { padRows: true });
  if (g.json.generate?.new_tokens) {
    const ids: number[] = [...g.json.generate.prompt_ids];
    const cache = r.createCache({ capacity: 64 });
    const out: number[] = [];
    let [o] = await r.forward([{ cache, tokens: ids }], { logits: 'last' });
    for (let s = 0; s < g.json.generate.new_tokens.length; s++) {
      const t = argmax(o!.logits);
      out.push(t);
      [o] = await r.forward([{ cache, tokens: [t] }], { logits: 'last' });
    }
    assert.deepEqual(out, g.json.generate.new_tokens);
  }
}

/**
 * The fixture's left-padded batch (`batch_left_pad`): its logits, then 10 greedy steps of both rows
 * together, the mask growing by ones as in MosaicML's loop. Pad-position rows are compared only with
 * `padRows`: MosaicML gives a row whose keys are all masked a uniform softmax over every key of the
 * call, so its value depends on how the prompt is split into calls (a runner's passes included).
 */
export async function checkLeftPadded(r: ModelRunner, g: Goldens, { padRows }: { padRows: boolean }): Promise<void> {
  const V = r.config.vocabSize;
  const bp = g.json.batch_left_pad;
  const T: number = bp.input_ids[0].length;
  const gold = g.tensor('batch_left_pad/logits').data;
  const caches = [r.createCache({ capacity: 32 }), r.createCache({ capacity: 32 })];
  const out = await r.forward(
    bp.input_ids.map(
      (ids: number[], i: number): SequenceInput => ({ cache: caches[i]!, tokens: ids, padMask: bp.attention_mask[i] }),
    ),
    { logits: 'all' },
  );
  out.forEach((o, i) => {
    for (let t = 0; t < T; t++) {
      if (!padRows && !bp.attention_mask[i][t]) continue;
      const d = maxAbsDiff(o.logits.subarray(t * V, (t + 1) * V), gold.subarray((i * T + t) * V, (i * T + t + 1) * V));
      assert.ok(d <= TOL, `batch_left_pad row ${i} position ${t}: max abs diff ${d}`);
    }
  });
  const gen: number[][] = [[], []];
  let last = out.map((o) => argmax(o.logits.subarray((T - 1) * V)));
  for (let s = 0; s < 10; s++) {
    gen[0]!.push(last[0]!);
    gen[1]!.push(last[1]!);
    const o = await r.forward(
      [
        { cache: caches[0]!, tokens: [last[0]!] },
        { cache: caches[1]!, tokens: [last[1]!] },
      ],
      { logits: 'last' },
    );
    last = o.map((x) => argmax(x.logits));
  }
  assert.deepEqual(
    gen,
    bp.generate_10_greedy.map((row: number[]) => row.slice(T)),
  );
  for (const c of caches) c.dispose();
}

export /** In-memory random checkpoint for a config (canonical names, f32). */
function randomSource(c: MptConfig, seed: number): TensorSource {
  const infos: TensorInfo[] = expectedTensors(c).map((e) => ({
    name: e.name,
    dtype: 'f32',
    shape: e.shape,
    byteLength: e.shape.reduce((a, b) => a * b, 1) * 4,
  }));
  let s = seed >>> 0;
  const data = new Map<string, Float32Array>();
  for (const i of infos) {
    const n = i.byteLength / 4;
    const a = new Float32Array(n);
    const isNormW = /(norm_\d|norm_f|q_ln|k_ln)\.weight$/.test(i.name);
    const scale = i.shape.length === 2 ? 1.5 / Math.sqrt(i.shape[1]!) : 0.1;
    for (let k = 0; k < n; k++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const u = (s / 2 ** 32) * 2 - 1;
      a[k] = isNormW ? 1 + 0.2 * u : u * scale;
    }
    data.set(i.name, a);
  }
  return {
    list: () => infos,
    info: (n) => infos.find((i) => i.name === n),
    read: async (n) => new Uint8Array(data.get(n)!.buffer.slice(0)),
    close: async () => {},
  };
}

/**
 * A runner on random weights against the reference backend on the same weights: a 40-token
 * prompt's logits, a left-padded prompt (learned positions shift past pads in MosaicML's code),
 * and the greedy choice at every position.
 */
export async function checkAgainstReference(ref: ModelRunner, r: ModelRunner): Promise<void> {
  const c = r.config;
  const ids = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % c.vocabSize);
  const a = await logitsOf(ref, ids, 48),
    b = await logitsOf(r, ids, 48);
  assert.ok(maxAbsDiff(a, b) <= TOL, `max abs ${maxAbsDiff(a, b)}`);
  const pm = [0, 0, 1, 1, 1, 1, 1, 1];
  const run = async (rr: ModelRunner) =>
    (
      await rr.forward([{ cache: rr.createCache({ capacity: 16 }), tokens: ids.slice(0, 8), padMask: pm }], {
        logits: 'all',
      })
    )[0]!.logits;
  assert.ok(maxAbsDiff(await run(ref), await run(r)) <= TOL);
  assert.deepEqual(argmaxRows(b, ids.length, c.vocabSize), argmaxRows(a, ids.length, c.vocabSize));
}
