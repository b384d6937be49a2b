// `mpt bench` through the command line: llama-bench-style JSON for the wasm backend and, where an
// adapter exists, the WebGPU backend; refusals name the option. Also the random-weight source
// the WebGPU benchmarks load through.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { referenceBackend } from '../src/backends/reference/index.js';
import { openGpu } from '../src/backends/webgpu/gpu.js';
import { dequantize } from '../src/formats/ggml-quants.js';
import { parseMptConfig } from '../src/model/config.js';
import { randomTensorSource } from '../src/model/random-source.js';
import { runCli } from './helpers/cli.js';

let noGpu: string | false = false;
try {
  (await openGpu()).device.destroy();
} catch (e) {
  noGpu = `no WebGPU adapter here: ${(e as Error).message}`;
}

interface Row {
  test: string;
  backend: string;
  device?: string;
  type: string;
  threads: number;
  tokens_per_second: number;
  reps: number;
}

async function bench(args: string[]): Promise<Row[]> {
  const r = await runCli(
    ['bench', '--shape', 'tiny', '--pp', '16', '--tg', '4', '--reps', '2', '--json', ...args],
    '',
    120_000,
  );
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { results: Row[] }).results;
}

describe('mpt bench', () => {
  it('wasm: pp and tg rows with their rates, threads and repetitions', async () => {
    const rows = await bench(['--type', 'q8_0', '--threads', '2']);
    assert.deepEqual(
      rows.map((r) => r.test),
      ['pp16', 'tg4'],
    );
    for (const r of rows) {
      assert.equal(r.backend, 'wasm');
      assert.equal(r.threads, 2);
      assert.equal(r.reps, 2);
      assert.ok(r.tokens_per_second > 0 && Number.isFinite(r.tokens_per_second));
    }
  });

  it('webgpu: the same rows, naming the adapter', { skip: noGpu }, async () => {
    const rows = await bench(['--backend', 'webgpu', '--type', 'f16']);
    assert.deepEqual(
      rows.map((r) => r.test),
      ['pp16', 'tg4'],
    );
    for (const r of rows) {
      assert.equal(r.backend, 'webgpu');
      assert.ok(r.device && r.device.length > 0);
      assert.ok(r.tokens_per_second > 0);
    }
  });

  it('refusals name the option', async () => {
    const bad = await runCli(['bench', '--backend', 'cuda']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--backend must be wasm or webgpu/);
    const conv = await runCli(['bench', 'models/default', '--backend', 'webgpu', '--type', 'q8_0']);
    assert.notEqual(conv.code, 0);
    assert.match(conv.stderr, /--type converts weights for the wasm backend only/);
  });
});

describe('random-weight tensor source', () => {
  const config = parseMptConfig({ d_model: 64, n_heads: 4, n_layers: 2, vocab_size: 256, max_seq_len: 32 });
  it('each type loads into the reference backend and gives finite logits; blocks hold the f32 values', async () => {
    const f32 = randomTensorSource(config, 'f32');
    const w = new Float32Array((await f32.read('transformer.wte.weight')).slice().buffer);
    for (const type of ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'] as const) {
      const src = randomTensorSource(config, type);
      const info = src.info('transformer.wte.weight')!;
      const bytes = await src.read(info.name);
      assert.equal(bytes.byteLength, info.byteLength, type);
      const back = dequantize(type, bytes, w.length);
      const err = Math.max(...back.map((v, i) => Math.abs(v - w[i]!)));
      assert.ok(err <= { f32: 0, f16: 1e-4, bf16: 1e-3, q8_0: 2e-3, q4_0: 3e-2 }[type], `${type}: ${err}`);
      const r = await referenceBackend.load(config, src);
      const cache = r.createCache({ capacity: 8 });
      const [o] = await r.forward([{ cache, tokens: [1, 2, 3] }], { logits: 'last' });
      assert.ok(o!.logits.every(Number.isFinite), type);
    }
  });
});

describe('mpt info --gpu', () => {
  it('what the webgpu backend would hold: half matrices as stored, 1-D tensors as f32, the KV cache', {
    skip: noGpu,
  }, async () => {
    const r = await runCli(['info', '--gpu', '--json', '--ctx', '100', '--kv-type', 'f16'], '', 120_000);
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout) as { gpu: Record<string, unknown>; n_layers: number; d_model: number };
    const { openCheckpoint } = await import('../src/model/load.js');
    const { defaultModelPath } = await import('../src/model/default-model.js');
    const ck = await openCheckpoint(defaultModelPath());
    const list = ck.tensors.list();
    await ck.tensors.close();
    const want = list.reduce(
      (s, t) => s + (t.shape.length === 2 ? t.byteLength : t.shape.reduce((a, b) => a * b, 1) * 4),
      0,
    );
    assert.equal(info.gpu['weight_bytes'], want);
    assert.equal(info.gpu['kv_type'], 'f16');
    assert.equal(info.gpu['kv_bytes'], info.n_layers * 2 * 100 * info.d_model * 2);
    assert.equal(info.gpu['largest_tensor'], 'transformer.wte.weight');
    assert.equal(info.gpu['fits_bindings'], true);
  });
});
