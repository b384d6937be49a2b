// How passes reach the wasm worker threads (pass-channel.ts, pool.ts): a pass written into the
// shared descriptor reads back as the same pass; passes carried by the channel and passes carried
// by messages give the same results; a worker's error fails that call only; a worker that dies
// during a forward call fails it (never hangs it) and every later one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pass } from '../src/backends/wasm/executor.js';
import { loadRandomModel } from '../src/backends/wasm/index.js';
import {
  OptionIds,
  createChannel,
  decodePass,
  descriptorThreads,
  encodePass,
  type ChannelShape,
  type WorkerKnows,
} from '../src/backends/wasm/pass-channel.js';
import type { PassPool } from '../src/backends/wasm/pool.js';
import type { WasmRunner } from '../src/backends/wasm/runner.js';
import { shapeConfig } from '../src/cli/commands/bench.js';
import { Sampler, chooseToken } from '../src/runtime/sampling.js';

const shape: ChannelShape = { threads: 3, maxRows: 8, arenas: 2 };

function samplePass(): Pass {
  const logitsOut = new SharedArrayBuffer(64);
  return {
    rows: 5,
    threads: 2,
    tokens: Int32Array.from([7, 1, 50000, 3, 9]),
    wpePos: Int32Array.from([0, 1, 2, 0, 1]),
    seqs: [
      { rowStart: 0, n: 3, past: 4, capacity: 16, kv: [128, 0], kvType: 'f16' },
      { rowStart: 3, n: 2, past: 0, capacity: 9, kv: [4096, 64], kvType: 'q8_0' },
    ],
    logitRows: Int32Array.from([2, 4]),
    logitsOut,
    logitsOffset: 50432,
    hiddenRows: Int32Array.from([0, 2, 4]),
    hiddenOut: new SharedArrayBuffer(32),
    sample: [
      null,
      { options: { temperature: 0.7, repetitionPenalty: 1.1 }, history: [5, 6, 7], promptLength: 2, uniform: 0.3125 },
    ],
    tokensOut: new SharedArrayBuffer(16),
  };
}

describe('the pass descriptor', () => {
  it('reads back every field of the pass, with buffers and options the worker holds', () => {
    const ch = createChannel(shape);
    const pass = samplePass();
    const ids = new OptionIds();
    const optionIds = pass.sample!.map((r) => (r ? ids.idOf(r.options) : -1));
    assert.equal(encodePass(ch, shape, pass, optionIds), true);
    const knows: WorkerKnows = {
      logitsOut: pass.logitsOut,
      tokensOut: pass.tokensOut,
      hiddenOut: pass.hiddenOut,
      options: [],
    };
    knows.options[optionIds[1]!] = pass.sample![1]!.options;
    const got = decodePass(ch, shape, knows);
    assert.equal(descriptorThreads(new Int32Array(ch), shape), 2);
    assert.deepEqual(
      { ...got, sample: got.sample!.map((r) => r && { ...r, history: Array.from(r.history) }) },
      { ...pass, sample: pass.sample!.map((r) => r && { ...r, history: Array.from(r.history) }) },
    );
  });

  it('leaves out optional parts the pass lacks', () => {
    const ch = createChannel(shape);
    const pass: Pass = {
      rows: 1,
      threads: 3,
      tokens: Int32Array.from([42]),
      seqs: [{ rowStart: 0, n: 1, past: 0, capacity: 2, kv: [8, 0], kvType: 'f32' }],
      logitRows: new Int32Array(0),
      logitsOffset: 0,
    };
    assert.equal(encodePass(ch, shape, pass, null), true);
    assert.deepEqual(decodePass(ch, shape, { options: [] }), pass);
  });

  it('refuses what it cannot hold: a history past its room, more rows than the pool takes', () => {
    const ch = createChannel(shape);
    const long = samplePass();
    long.sample![1]!.history = new Int32Array(1 << 17);
    assert.equal(encodePass(ch, shape, long, [-1, 0]), false);
    const wide = samplePass();
    wide.rows = 9;
    wide.tokens = new Int32Array(9);
    assert.equal(encodePass(ch, shape, wide, [-1, 0]), false);
  });

  it('option ids are by identity and reissued when full', () => {
    const ids = new OptionIds(2);
    const a = { temperature: 1 },
      b = { temperature: 1 },
      c = { topK: 3 };
    assert.equal(ids.idOf(a), 0);
    assert.equal(ids.idOf(b), 1);
    assert.equal(ids.idOf(a), 0);
    assert.equal(ids.epoch, 0);
    assert.equal(ids.idOf(c), 0);
    assert.equal(ids.epoch, 1);
  });
});

type Pool = PassPool & {
  workers: Array<{ terminate(): Promise<void> }>;
  sent: { descriptor: number; message: number };
};

function poolOf(r: WasmRunner): Pool {
  return (r as unknown as { pool: Pool }).pool;
}

async function tinyRunner(maxRows = 16): Promise<WasmRunner> {
  return loadRandomModel(shapeConfig(64, 2, 2, 512, 4096), { type: 'q8_0', threads: 2, maxRows });
}

describe('passes through the channel', { timeout: 120_000 }, () => {
  it('decode steps with reused logits and tokens chosen in the workers equal fresh-buffer steps', async () => {
    const r = await tinyRunner();
    try {
      // Reused logits buffer and known sampling options: after the first step every pass goes
      // through the descriptor. Fresh logits buffers each call (reuseLogits false) still name
      // the runner's one output buffer. Both must give the same logits and tokens.
      const run = async (reuse: boolean) => {
        const cache = r.createCache({ capacity: 64 });
        const sampler = new Sampler({ seed: 7, temperature: 0.9, repetitionPenalty: 1.2 });
        const history: number[] = [1, 2, 3];
        const out: Array<{ logits: number[]; token: number }> = [];
        let input = history.slice();
        for (let step = 0; step < 6; step++) {
          const request = sampler.request(history, 3);
          const [o] = await r.forward([{ cache, tokens: input }], {
            logits: 'last',
            reuseLogits: reuse,
            sample: [request],
          });
          assert.equal(o!.token, chooseToken(o!.logits, request), `step ${step}`);
          out.push({ logits: Array.from(o!.logits), token: o!.token! });
          history.push(o!.token!);
          input = [o!.token!];
        }
        cache.dispose();
        return out;
      };
      const sent = poolOf(r).sent;
      const reused = await run(true);
      assert.deepEqual(sent, { descriptor: 5, message: 1 }, 'only the first step names new buffers and options');
      assert.deepEqual(reused, await run(false));
    } finally {
      await r.dispose();
    }
  });

  it('an engine without Atomics.waitAsync learns the end of each pass from a message, with the same results', async () => {
    const atomics = Atomics as unknown as { waitAsync?: unknown };
    const saved = atomics.waitAsync;
    delete atomics.waitAsync;
    let byMessage: WasmRunner;
    try {
      byMessage = await tinyRunner();
    } finally {
      atomics.waitAsync = saved;
    }
    const byWait = await tinyRunner();
    try {
      const decode = async (r: WasmRunner) => {
        const cache = r.createCache({ capacity: 16 });
        const rows: number[][] = [];
        let tok = 3;
        for (let step = 0; step < 5; step++) {
          const [o] = await r.forward([{ cache, tokens: [tok] }], { logits: 'last', reuseLogits: true });
          rows.push(Array.from(o!.logits));
          tok = rows[step]!.indexOf(Math.max(...rows[step]!));
        }
        cache.dispose();
        return rows;
      };
      assert.deepEqual(await decode(byMessage), await decode(byWait));
      assert.ok(poolOf(byMessage).sent.descriptor >= 4, 'the passes went through the channel');
    } finally {
      await byMessage.dispose();
      await byWait.dispose();
    }
  });

  it("a worker's error fails that call only, by either path", async () => {
    const r = await tinyRunner();
    try {
      const cache = r.createCache({ capacity: 8 });
      const [before] = await r.forward([{ cache, tokens: [5] }], { logits: 'last' });
      const expected = Array.from(before!.logits);
      cache.truncate(0);
      const pool = poolOf(r);
      // Logits asked into a buffer too small for them: the workers' copy throws. The first pass
      // names the buffer (a message), the second one is in the descriptor.
      const tooSmall = new SharedArrayBuffer(4);
      const bad: Pass = {
        rows: 1,
        threads: 2,
        tokens: Int32Array.from([5]),
        seqs: [{ rowStart: 0, n: 1, past: 0, capacity: 8, kv: cacheRegions(cache), kvType: 'f32' }],
        logitRows: Int32Array.from([0]),
        logitsOut: tooSmall,
        logitsOffset: 0,
      };
      for (let i = 0; i < 2; i++) await assert.rejects(pool.run(bad), /wasm worker failed: .*(offset|bounds|range)/i);
      const [after] = await r.forward([{ cache, tokens: [5] }], { logits: 'last' });
      assert.deepEqual(Array.from(after!.logits), expected);
      cache.dispose();
    } finally {
      await r.dispose();
    }
  });

  it('a worker that dies during a forward call fails it and every later call, without hanging', async () => {
    const r = await tinyRunner(4);
    try {
      const cache = r.createCache({ capacity: 4096 });
      // Many passes of 4 rows: the worker dies while they run.
      const call = r.forward([{ cache, tokens: Array.from({ length: 4000 }, (_, i) => 1 + (i % 500)) }], {
        logits: 'last',
      });
      // Kill it once passes go through the channel (the first one names the buffers by message).
      while (poolOf(r).sent.descriptor === 0) await new Promise((resolve) => setImmediate(resolve));
      await poolOf(r).workers[1]!.terminate();
      await assert.rejects(call, /worker thread 1 exited|cannot continue/);
      const c2 = r.createCache({ capacity: 4 });
      await assert.rejects(r.forward([{ cache: c2, tokens: [1] }], { logits: 'last' }), /cannot continue/);
    } finally {
      await r.dispose();
    }
  });

  it('a disposed runner whose workers waited on the channel refuses later calls', async () => {
    const r = await tinyRunner();
    const cache = r.createCache({ capacity: 4 });
    await r.forward([{ cache, tokens: [1] }], { logits: 'last' });
    await r.dispose();
    await assert.rejects(r.forward([{ cache, tokens: [1] }], { logits: 'last' }), /disposed/);
  });
});

function cacheRegions(cache: unknown): number[] {
  return (cache as { regions: number[] }).regions;
}
