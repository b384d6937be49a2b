// The WebGPU backend (WGSL kernels) against MosaicML's goldens for every fixture and the reference
// backend on configurations the fixtures do not cover; KV caches, logits per sequence, errors.
// Runs wherever WebGPU finds an adapter: in CI, lavapipe (a CPU Vulkan driver) installed by
// .ci/run through scripts/setup-lavapipe.sh; skipped, with the reason, where there is none (never in CI).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { referenceBackend } from '../src/backends/reference/index.js';
import { openGpu } from '../src/backends/webgpu/gpu.js';
import { loadWebGpuRunner, type WebGpuKvCache, type WebGpuRunner } from '../src/backends/webgpu/index.js';
import { InputError, UnsupportedError } from '../src/errors.js';
import type { ModelRunner } from '../src/backends/backend.js';
import { parseMptConfig } from '../src/model/config.js';
import { expectedTensors } from '../src/model/weights-layout.js';
import { loadRunner } from '../src/backends/registry.js';
import { openCheckpoint } from '../src/model/load.js';
import {
  GOLDEN_FIXTURES,
  TOL,
  UNCOVERED_CONFIGS,
  argmax,
  checkAgainstReference,
  checkGoldens,
  checkLeftPadded,
  logitsOf,
  randomSource,
} from './helpers/backend-conformance.js';
import { Goldens, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { skipUnlessPresent } from './helpers/requirement.js';

let why: string | null = null;
try {
  const gpu = await openGpu();
  gpu.device.destroy();
} catch (e) {
  why = `no WebGPU adapter here: ${(e as Error).message}`;
}
const skip = skipUnlessPresent(why);

async function load(name: string, maxRows?: number): Promise<WebGpuRunner> {
  const ck = await openCheckpoint(fixturePath(name));
  try {
    return await loadWebGpuRunner(ck.config, ck.tensors, { maxRows });
  } finally {
    await ck.tensors.close();
  }
}

describe('webgpu backend equals the MosaicML goldens', { skip }, () => {
  for (const name of GOLDEN_FIXTURES) {
    it(name, async () => {
      const r = await load(name);
      try {
        // half-precision checkpoints stay half on the GPU (read exactly by the kernels)
        const stored = /bf16/.test(name) ? 'bf16' : /fp16/.test(name) ? 'f16' : null;
        if (stored) assert.deepEqual(r.matrixTypes, [stored]);
        await checkGoldens(r, new Goldens(fixturePath(name)));
      } finally {
        await r.dispose();
      }
    });
  }
});

describe('options the fixtures do not cover, against the reference backend', { skip }, () => {
  for (const [label, raw] of UNCOVERED_CONFIGS) {
    it(label, async () => {
      const c = parseMptConfig(raw);
      const src = randomSource(c, label.length);
      const ref = await referenceBackend.load(c, src);
      // 16 rows a command buffer: the 40-token prompt runs in three, on top of the cache.
      const r = await loadWebGpuRunner(c, src, { maxRows: 16 });
      try {
        await checkAgainstReference(ref, r);
      } finally {
        await r.dispose();
        await ref.dispose();
      }
    });
  }
});

describe('webgpu runner', { skip }, () => {
  let r: WebGpuRunner;
  before(async () => {
    r = await load('tiny-alibi', 5);
  });
  after(async () => {
    await r?.dispose();
  });

  it('a batch of sequences, logits chosen per sequence, caches truncated and reused', async () => {
    const V = r.config.vocabSize;
    const a = [5, 9, 2, 7, 1, 3, 8],
      b = [4, 4, 6];
    const ca = r.createCache({ capacity: 16 }),
      cb = r.createCache({ capacity: 16 }),
      cc = r.createCache({ capacity: 16 });
    const out = await r.forward(
      [
        { cache: ca, tokens: a, logits: 'all' },
        { cache: cb, tokens: b },
        { cache: cc, tokens: b, logits: 'none' },
      ],
      { logits: 'last' },
    );
    assert.equal(out[0]!.logits.length, 7 * V);
    assert.equal(out[2]!.logits.length, 0);
    assert.equal(cc.length, 3);
    assert.ok(maxAbsDiff(out[0]!.logits, await logitsOf(r, a)) <= 1e-6);
    assert.ok(maxAbsDiff(out[1]!.logits, (await logitsOf(r, b)).subarray(2 * V)) <= 1e-6);
    // rolling back and feeding other tokens gives what a fresh cache gives
    ca.truncate(3);
    const [again] = await r.forward([{ cache: ca, tokens: [11, 12] }], { logits: 'all' });
    assert.ok(maxAbsDiff(again!.logits, (await logitsOf(r, [5, 9, 2, 11, 12])).subarray(3 * V)) <= 1e-6);
    assert.equal(argmax(again!.logits.subarray(V)), argmax((await logitsOf(r, [5, 9, 2, 11, 12])).subarray(4 * V)));
    for (const c of [ca, cb, cc]) c.dispose();
  });

  it("left padding split over command buffers of 3 rows: MosaicML's logits at real tokens and greedy continuation", async () => {
    for (const name of ['tiny-learned-pos', 'tiny-rmsnorm']) {
      const small = await load(name, 3);
      try {
        await checkLeftPadded(small, new Goldens(fixturePath(name)), { padRows: false });
      } finally {
        await small.dispose();
      }
    }
  });

  it('sequences decoding together (one submission a step) give the bits each gives alone', async () => {
    const prompts = [
      [5, 9, 2, 7, 1, 3, 8],
      [4, 4, 6],
      [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22],
    ];
    const greedy = async (group: number[][]) => {
      const caches = group.map(() => r.createCache({ capacity: 32 }));
      let out = await r.forward(
        group.map((p, i) => ({ cache: caches[i]!, tokens: p })),
        { logits: 'last' },
      );
      const steps: Float32Array[][] = group.map(() => []);
      for (let k = 0; k < 5; k++) {
        out.forEach((o, i) => {
          steps[i]!.push(Float32Array.from(o.logits));
        });
        out = await r.forward(
          out.map((o, i) => ({ cache: caches[i]!, tokens: [argmax(o.logits)] })),
          { logits: 'last' },
        );
      }
      for (const c of caches) c.dispose();
      return steps;
    };
    const together = await greedy(prompts);
    for (let i = 0; i < prompts.length; i++)
      assert.deepEqual(together[i], (await greedy([prompts[i]!]))[0], `sequence ${i}`);
  });

  it('caches share pool buffers: one created while another holds positions (the pool grows, moving them), one freed and its range reused', async () => {
    const V = r.config.vocabSize;
    const a = [5, 9, 2, 7, 1, 3, 8];
    const ca = r.createCache({ capacity: 20 }) as WebGpuKvCache;
    await r.forward([{ cache: ca, tokens: a.slice(0, 4) }], { logits: 'none' });
    const before = ca.keys[0];
    const cb = r.createCache({ capacity: 40 }) as WebGpuKvCache;
    assert.equal(cb.pool, ca.pool);
    assert.notEqual(ca.keys[0], before, 'the pool grew into new buffers');
    const cc = r.createCache({ capacity: 8 }) as WebGpuKvCache;
    cc.dispose();
    const cd = r.createCache({ capacity: 8 }) as WebGpuKvCache;
    assert.equal(cd.offset, cc.offset, 'a freed range is reused');
    const [outA, outD] = await r.forward(
      [
        { cache: ca, tokens: a.slice(4) },
        { cache: cd, tokens: a },
      ],
      { logits: 'all' },
    );
    const full = await logitsOf(r, a);
    assert.ok(maxAbsDiff(outA!.logits, full.subarray(4 * V)) <= 1e-6, 'the moved cache');
    // (its rows fall in other rounds than the fresh cache's: ALiBi's offsets differ, so the last bits may)
    assert.ok(maxAbsDiff(outD!.logits, full) <= TOL, 'the reused range');
    for (const c of [ca, cb, cd]) c.dispose();
  });

  it('f16 KV caches: within tolerance of the reference backend with f16 caches, half the memory', async () => {
    const ck = await openCheckpoint(fixturePath('tiny-alibi'));
    const ref = await referenceBackend.load(ck.config, ck.tensors);
    await ck.tensors.close();
    const ids = Array.from({ length: 30 }, (_, i) => (i * 7 + 3) % r.config.vocabSize);
    const run = async (rr: ModelRunner, kvType: 'f32' | 'f16') => {
      const cache = rr.createCache({ capacity: 40, kvType });
      // a prompt in chunks (maxRows 5), then one token at a time
      const [a] = await rr.forward([{ cache, tokens: ids.slice(0, 24) }], { logits: 'all' });
      const steps = [a!.logits];
      for (const t of ids.slice(24))
        steps.push((await rr.forward([{ cache, tokens: [t] }], { logits: 'last' }))[0]!.logits);
      cache.dispose();
      return Float32Array.from(steps.flatMap((x) => [...x]));
    };
    const gpu16 = await run(r, 'f16'),
      ref16 = await run(ref, 'f16'),
      gpu32 = await run(r, 'f32');
    assert.ok(maxAbsDiff(gpu16, ref16) <= TOL, `f16 KV: ${maxAbsDiff(gpu16, ref16)}`);
    assert.ok(maxAbsDiff(gpu16, gpu32) > 0, 'the f16 cache rounds');
    const c16 = r.createCache({ capacity: 64, kvType: 'f16' }) as WebGpuKvCache;
    const c32 = r.createCache({ capacity: 64 }) as WebGpuKvCache;
    assert.equal(c16.keys[0]!.size * 2, c32.keys[0]!.size);
    c16.dispose();
    c32.dispose();
    await ref.dispose();
  });

  it('refuses bad input with typed errors', async () => {
    const c = r.createCache({ capacity: 4 });
    await assert.rejects(r.forward([{ cache: c, tokens: [r.config.vocabSize] }], { logits: 'last' }), InputError);
    await assert.rejects(
      r.forward([{ cache: c, tokens: [1, 2, 3, 4, 5] }], { logits: 'last' }),
      /exceed the KV cache capacity 4/,
    );
    await assert.rejects(r.forward([{ cache: c, tokens: [1], padMask: [1, 1] }], { logits: 'last' }), /padMask/);
    assert.equal(c.length, 0, 'a refused call leaves the cache alone');
    assert.throws(() => r.createCache({ capacity: 4, kvType: 'q8_0' }), /f32 or f16 KV caches/);
    c.dispose();
    await assert.rejects(r.forward([{ cache: c, tokens: [1] }], { logits: 'last' }), /disposed/);
  });

  it("without subgroup operations: tiny-gqa's goldens, a q4_k GGUF as the reference backend", async () => {
    const ck = await openCheckpoint(fixturePath('tiny-gqa'));
    const plain = await loadWebGpuRunner(ck.config, ck.tensors, { subgroups: false, maxRows: 16 });
    await ck.tensors.close();
    try {
      assert.equal(plain.gpu.subgroups, false);
      await checkGoldens(plain, new Goldens(fixturePath('tiny-gqa')));
    } finally {
      await plain.dispose();
    }
    const GGUF = fixturePath('gguf-tiny-q');
    const q = await openCheckpoint(`${GGUF}/tiny-q-q4_k.gguf`);
    const ref = await referenceBackend.load(q.config, q.tensors);
    const gpu = await loadWebGpuRunner(q.config, q.tensors, { subgroups: false });
    await q.tensors.close();
    try {
      const ids: number[] = new Goldens(GGUF).json.inputs.seq64;
      assert.ok(maxAbsDiff(await logitsOf(gpu, ids), await logitsOf(ref, ids)) <= TOL);
    } finally {
      await gpu.dispose();
      await ref.dispose();
    }
  });

  it('loads through loadRunner as backend "webgpu"', async () => {
    const { runner } = await loadRunner(fixturePath('tiny-gqa'), { backend: 'webgpu' });
    try {
      assert.equal(runner.backendName, 'webgpu');
      const g = new Goldens(fixturePath('tiny-gqa'));
      assert.ok(maxAbsDiff(await logitsOf(runner, g.json.inputs.seq7), g.tensor('logits/seq7').data) <= TOL);
    } finally {
      await runner.dispose();
    }
  });
});

describe('webgpu refusals', { skip }, () => {
  it('a matrix larger than one binding of this adapter is refused, naming it, before anything is read', async () => {
    const gpu = await openGpu();
    const limit = Math.min(gpu.device.limits['maxStorageBufferBindingSize']!, gpu.device.limits['maxBufferSize']!);
    gpu.device.destroy();
    const c = parseMptConfig({
      d_model: 64,
      n_heads: 4,
      n_layers: 1,
      vocab_size: Math.floor(limit / 256) + 1,
      max_seq_len: 16,
    });
    // Shapes as the config wants them, bytes never read.
    const infos = expectedTensors(c).map((e) => ({
      name: e.name,
      dtype: 'f32' as const,
      shape: e.shape,
      byteLength: e.shape.reduce((a, b) => a * b, 1) * 4,
    }));
    const src = {
      list: () => infos,
      info: (n: string) => infos.find((i) => i.name === n),
      read: async (): Promise<Uint8Array> => {
        throw new Error('read');
      },
      close: async () => {},
    };
    await assert.rejects(
      loadWebGpuRunner(c, src),
      (e: Error) =>
        e instanceof UnsupportedError &&
        /tensor transformer\.wte\.weight takes .* bytes on the GPU, more than this GPU binds in one buffer/.test(
          e.message,
        ),
    );
  });
});

describe('GGUF files: q8_0, q4_0 and k-quant matrices read in their blocks, other types as f32', { skip }, () => {
  const GGUF = fixturePath('gguf-tiny-q');
  for (const [type, stored] of [
    ['q8_0', 'q8_0'],
    ['q4_0', 'q4_0'],
    ['q4_k', 'q4_k'],
    ['q5_k', 'q5_k'],
    ['q6_k', 'q6_k'],
    ['q4_k_m', 'q4_k'],
    ['q5_0', 'f32'],
    ['f16', 'f16'],
  ] as const) {
    it(`tiny-q-${type}.gguf equals the reference backend on the same file`, async () => {
      const ck = await openCheckpoint(`${GGUF}/tiny-q-${type}.gguf`);
      const ref = await referenceBackend.load(ck.config, ck.tensors);
      const r = await loadWebGpuRunner(ck.config, ck.tensors);
      await ck.tensors.close();
      try {
        assert.ok(r.matrixTypes.includes(stored), `${type}: stored as ${r.matrixTypes}`);
        const ids: number[] = new Goldens(GGUF).json.inputs.seq64;
        const a = await logitsOf(ref, ids),
          b = await logitsOf(r, ids);
        assert.ok(maxAbsDiff(a, b) <= TOL, `${type}: max abs ${maxAbsDiff(a, b)}`);
      } finally {
        await r.dispose();
        await ref.dispose();
      }
    });
  }
});

describe('cache copies on the GPU (copyCache)', { skip }, () => {
  it('a copy continues as its source does, f32 and f16; a copy that cannot hold it is refused', async () => {
    const r = await load('tiny-alibi');
    try {
      for (const kvType of ['f32', 'f16'] as const) {
        const src = r.createCache({ capacity: 32, kvType });
        await r.forward([{ cache: src, tokens: [5, 9, 2, 7, 1, 3] }], { logits: 'none' });
        const copy = r.copyCache(src, 40);
        assert.equal(copy.length, 6);
        assert.equal(copy.kvType, kvType);
        const [a] = await r.forward([{ cache: src, tokens: [8, 4] }], { logits: 'all' });
        const [b] = await r.forward([{ cache: copy, tokens: [8, 4] }], { logits: 'all' });
        assert.deepEqual(b!.logits, a!.logits, kvType);
        assert.throws(() => r.copyCache(src, 4), /capacity of at least 8/);
        src.dispose();
        copy.dispose();
      }
    } finally {
      await r.dispose();
    }
  });

  it('the server scheduler shares a prompt between choices through it (read once, HF greedy tokens)', async () => {
    const { Scheduler } = await import('../src/server/scheduler.js');
    const g = new Goldens(fixturePath('tiny-neox-vocab'));
    const seq7: number[] = g.json.inputs.seq7,
      want: number[] = g.json.generate.new_tokens.slice(0, 5);
    const inner = await load('tiny-neox-vocab');
    let copies = 0,
      promptFed = 0;
    const runner: ModelRunner = {
      config: inner.config,
      backendName: 'webgpu',
      createCache: (o) => inner.createCache(o),
      copyCache: (c, cap) => {
        copies++;
        return inner.copyCache(c, cap);
      },
      forward: (batch, o) => {
        promptFed += batch.filter((s) => s.tokens.length > 1).reduce((a, s) => a + s.tokens.length, 0);
        return inner.forward(batch, o);
      },
      dispose: () => inner.dispose(),
    };
    const sched = new Scheduler(runner, { maxActive: 4, maxQueue: 4 });
    const runs = [0, 1, 2].map(() => {
      const tokens: number[] = [];
      let done!: () => void;
      const finished = new Promise<void>((res) => {
        done = res;
      });
      const client = {
        prompt: seq7,
        capacity: 16,
        next(logits: Float32Array) {
          tokens.push(argmax(logits));
          return tokens.length >= 5 ? null : tokens.at(-1)!;
        },
        onEnd() {
          done();
        },
      };
      return { tokens, client, finished };
    });
    sched.submitAll(runs.map((x) => x.client));
    await Promise.all(runs.map((x) => x.finished));
    for (const x of runs) assert.deepEqual(x.tokens, want);
    assert.equal(copies, 2);
    assert.equal(promptFed, 7, 'the prompt read once; the copies fed only its last token');
    await sched.close();
    await inner.dispose();
  });
});
