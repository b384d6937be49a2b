// How passes reach the wasm worker threads (pass-channel.ts, pool.ts): a pass written into the
// shared descriptor reads back as the same pass, and a KV type it cannot name is an error both
// ways; passes carried by the channel and passes carried by messages give the same results; a
// worker's error fails that call only; a worker that dies during a forward call fails it (never
// hangs it) and every later one. Passes run with the calling thread as thread 0 (`here`) give
// the same bits as passes run by the workers, and leave the event loop its turns; one it runs
// alone involves no worker at all.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Pass } from '../src/backends/wasm/executor.js';
import { loadRandomModel } from '../src/backends/wasm/index.js';
import { OptionIds, PassChannel, type ChannelShape, type WorkerKnows } from '../src/backends/wasm/pass-channel.js';
import type { PassPool } from '../src/backends/wasm/pool.js';
import type { WasmRunner } from '../src/backends/wasm/runner.js';
import { shapeConfig } from '../src/cli/commands/bench.js';
import { Sampler, chooseToken } from '../src/runtime/sampling.js';
import { SHARED_PASSES, withEnv } from './helpers/env.js';

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
    const ch = PassChannel.create(shape);
    const pass = samplePass();
    const ids = new OptionIds();
    const optionIds = pass.sample!.map((r) => (r ? ids.idOf(r.options) : -1));
    assert.equal(ch.encode(pass, optionIds), true);
    const knows: WorkerKnows = {
      logitsOut: pass.logitsOut,
      tokensOut: pass.tokensOut,
      hiddenOut: pass.hiddenOut,
      options: [],
    };
    knows.options[optionIds[1]!] = pass.sample![1]!.options;
    // As a worker sees it: its own PassChannel over the buffer it was sent.
    const theirs = new PassChannel(ch.buffer, shape);
    const got = theirs.decode(knows);
    assert.equal(theirs.descriptorThreads(), 2);
    assert.deepEqual(
      { ...got, sample: got.sample!.map((r) => r && { ...r, history: Array.from(r.history) }) },
      { ...pass, sample: pass.sample!.map((r) => r && { ...r, history: Array.from(r.history) }) },
    );
  });

  it('leaves out optional parts the pass lacks', () => {
    const ch = PassChannel.create(shape);
    const pass: Pass = {
      rows: 1,
      threads: 3,
      tokens: Int32Array.from([42]),
      seqs: [{ rowStart: 0, n: 1, past: 0, capacity: 2, kv: [8, 0], kvType: 'f32' }],
      logitRows: new Int32Array(0),
      logitsOffset: 0,
    };
    assert.equal(ch.encode(pass, null), true);
    assert.deepEqual(ch.decode({ options: [] }), pass);
  });

  it('refuses a KV type it cannot name when encoding, and a KV type code out of range when decoding', () => {
    const ch = PassChannel.create(shape);
    const pass = samplePass();
    (pass.seqs[1] as { kvType: string }).kvType = 'q4_0';
    assert.throws(() => ch.encode(pass, [-1, 0]), /KV type "q4_0"/);
    // Every code the channel writes decodes; one past them (a corrupt descriptor) does not.
    const good = samplePass();
    const knows: WorkerKnows = {
      logitsOut: good.logitsOut,
      tokensOut: good.tokensOut,
      hiddenOut: good.hiddenOut,
      options: [],
    };
    knows.options[0] = good.sample![1]!.options;
    assert.equal(ch.encode(good, [-1, 0]), true);
    // The body: 5 tokens (the third is 50000), 5 positions, then the first sequence's rowStart,
    // n, past, capacity and KV type code.
    const kvCodeWord = ch.words.indexOf(50000) - 2 + 5 + 5 + 4;
    assert.equal(ch.words[kvCodeWord], 1, "f16's code");
    for (const [code, type] of [
      [0, 'f32'],
      [1, 'f16'],
      [2, 'q8_0'],
    ] as const) {
      ch.words[kvCodeWord] = code;
      assert.equal(ch.decode(knows).seqs[0]!.kvType, type);
    }
    for (const bad of [3, -1]) {
      ch.words[kvCodeWord] = bad;
      assert.throws(() => ch.decode(knows), new RegExp(`KV type code ${bad}`));
    }
  });

  it('refuses a buffer smaller than its shape needs', () => {
    const ch = PassChannel.create(shape);
    assert.throws(() => new PassChannel(ch.buffer, { ...shape, maxRows: 64 }), /pass channel of/);
  });

  it('refuses what it cannot hold: a history past its room, more rows than the pool takes', () => {
    const ch = PassChannel.create(shape);
    const long = samplePass();
    long.sample![1]!.history = new Int32Array(1 << 17);
    assert.equal(ch.encode(long, [-1, 0]), false);
    const wide = samplePass();
    wide.rows = 9;
    wide.tokens = new Int32Array(9);
    assert.equal(ch.encode(wide, [-1, 0]), false);
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
  ranHere: number;
};

function poolOf(r: WasmRunner): Pool {
  return (r as unknown as { pool: Pool }).pool;
}

async function tinyRunner(maxRows = 16, threads = 2): Promise<WasmRunner> {
  // Every pass on the pool's threads, as light as it is: these tests are about the workers.
  return withEnv(SHARED_PASSES, () =>
    loadRandomModel(shapeConfig(64, 2, 2, 512, 4096), { type: 'q8_0', threads, maxRows }),
  );
}

describe('passes through the channel', { timeout: 120_000 }, () => {
  it('decode steps whose passes go through the channel equal the same steps sent as messages', async () => {
    const r = await tinyRunner();
    try {
      const pool = poolOf(r);
      // The same seeded decode, tokens chosen in the workers with penalties over the history.
      // 'channel': the sampler's options object and the reused logits buffer are known to the
      // workers after the first step, so every later pass goes through the descriptor.
      // 'message': each step's request carries a copy of the options, an object the workers
      // have not seen, so every pass goes as a message. 'fresh': fresh logits buffers each call
      // (reuseLogits false) still name the runner's one output buffer: channel after step 1.
      const run = async (transport: 'channel' | 'message' | 'fresh') => {
        const before = { ...pool.sent };
        const cache = r.createCache({ capacity: 64 });
        const sampler = new Sampler({
          seed: 7,
          temperature: 0.9,
          repetitionPenalty: 1.2,
          frequencyPenalty: 1.5,
          presencePenalty: 0.5,
        });
        // A prompt of 12 distinct tokens (one pass: 16 rows at most): the penalties that count only generated tokens
        // (from promptLength on) change the choice if the prompt were counted too.
        const history = Array.from({ length: 12 }, (_, i) => 1 + 37 * i);
        const promptLength = history.length;
        const out: Array<{ logits: number[]; token: number }> = [];
        let input = history.slice();
        for (let step = 0; step < 6; step++) {
          const request = sampler.request(history, promptLength);
          const sent = transport === 'message' ? { ...request, options: { ...request.options } } : request;
          const [o] = await r.forward([{ cache, tokens: input }], {
            logits: 'last',
            reuseLogits: transport !== 'fresh',
            sample: [sent],
          });
          assert.equal(o!.token, chooseToken(o!.logits, request), `${transport} step ${step}`);
          out.push({ logits: Array.from(o!.logits), token: o!.token! });
          history.push(o!.token!);
          input = [o!.token!];
        }
        cache.dispose();
        const sent = {
          descriptor: pool.sent.descriptor - before.descriptor,
          message: pool.sent.message - before.message,
        };
        return { out, sent };
      };
      const channel = await run('channel');
      assert.deepEqual(
        channel.sent,
        { descriptor: 5, message: 1 },
        'only the first step names new buffers and options',
      );
      const message = await run('message');
      assert.deepEqual(message.sent, { descriptor: 0, message: 6 }, 'every step went as a message');
      assert.deepEqual(channel.out, message.out);
      const fresh = await run('fresh');
      assert.deepEqual(fresh.sent, { descriptor: 5, message: 1 });
      assert.deepEqual(fresh.out, channel.out);
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

  /**
   * Runs a one-row pass that fails in the workers twice (a message, then the descriptor) and
   * checks that each call fails with the workers' error and that the runner still gives the
   * same logits as before.
   */
  async function failsThatCallOnly(bad: (kv: number[]) => Pick<Pass, 'seqs' | 'logitsOut'>): Promise<void> {
    const r = await tinyRunner();
    try {
      const cache = r.createCache({ capacity: 8 });
      const [before] = await r.forward([{ cache, tokens: [5] }], { logits: 'last' });
      const expected = Array.from(before!.logits);
      cache.truncate(0);
      const pass: Pass = {
        rows: 1,
        threads: 2,
        tokens: Int32Array.from([5]),
        logitRows: Int32Array.from([0]),
        logitsOffset: 0,
        ...bad(cacheRegions(cache)),
      };
      // On the workers, then with this thread as thread 0 (its own error, or the worker's).
      for (const here of [false, true])
        for (let i = 0; i < 2; i++)
          await assert.rejects(poolOf(r).run(pass, here), /wasm worker failed: .*(offset|bounds|range)/i);
      const [after] = await r.forward([{ cache, tokens: [5] }], { logits: 'last' });
      assert.deepEqual(Array.from(after!.logits), expected);
      cache.dispose();
    } finally {
      await r.dispose();
    }
  }

  it("a worker's error fails that call only, by either path", async () => {
    // Logits asked into a buffer too small for them: the workers' copy throws. The first pass
    // names the buffer (a message), the second one is in the descriptor.
    await failsThatCallOnly((kv) => ({
      seqs: [{ rowStart: 0, n: 1, past: 0, capacity: 8, kv, kvType: 'f32' }],
      logitsOut: new SharedArrayBuffer(4),
    }));
  });

  it('an error in the layers that thread 0 runs alone (a solo region) fails that call; the other thread does not hang', async () => {
    // d 64: every decode layer is under executor.ts SOLO_LAYER_MACS, so thread 0 runs the layers
    // while thread 1 waits at the join before the output matrix. A KV region past the end of the
    // wasm memory: storing K/V traps in the layers.
    await failsThatCallOnly((kv) => ({
      seqs: [{ rowStart: 0, n: 1, past: 0, capacity: 8, kv: kv.map(() => 2 ** 31), kvType: 'f32' }],
      logitsOut: new SharedArrayBuffer(512 * 4),
    }));
  });

  it('a KV type the workers do not know is refused when the pass would go as a message too', async () => {
    const r = await tinyRunner();
    try {
      const cache = r.createCache({ capacity: 8 });
      const pool = poolOf(r);
      const sent = { ...pool.sent };
      // Fresh output buffers: this pass would go as a message, which the channel never encodes.
      const bad: Pass = {
        rows: 1,
        threads: 2,
        tokens: Int32Array.from([5]),
        seqs: [{ rowStart: 0, n: 1, past: 0, capacity: 8, kv: cacheRegions(cache), kvType: 'q4_0' as 'f32' }],
        logitRows: Int32Array.from([0]),
        logitsOut: new SharedArrayBuffer(4 * 64 * 1024),
        logitsOffset: 0,
      };
      await assert.rejects(pool.run(bad), /a pass names KV type "q4_0"; the workers know f32, f16, q8_0/);
      assert.deepEqual(pool.sent, sent, 'nothing was sent');
      const [after] = await r.forward([{ cache, tokens: [5] }], { logits: 'last' });
      assert.ok(after!.logits.every(Number.isFinite), 'the pool still serves');
      cache.dispose();
    } finally {
      await r.dispose();
    }
  });

  it('passes with this thread as thread 0 give the bits of the same passes on the workers, 1 to 4 threads', async () => {
    for (const threads of [1, 2, 3, 4]) {
      const r = await tinyRunner(16, threads);
      try {
        const pool = poolOf(r);
        const cache = r.createCache({ capacity: 16 });
        const prompt = [3, 17, 250, 9];
        const V = r.config.vocabSize;
        let token = 5;
        for (let step = 0; step < 6; step++) {
          // One decode row (d 64: its layers run on thread 0 alone, then the LM head is shared),
          // and a 4-row pass (the layers shared too), each first on the workers, then here: the
          // second run rewrites the same K/V and must give the same logits.
          const rows = step === 0 ? prompt.length : 1;
          const tokens = step === 0 ? prompt : [token];
          const logitsOut = new SharedArrayBuffer(rows * V * 4);
          const pass: Pass = {
            rows,
            threads,
            tokens: Int32Array.from(tokens),
            seqs: [
              {
                rowStart: 0,
                n: rows,
                past: step === 0 ? 0 : prompt.length + step - 1,
                capacity: 16,
                kv: cacheRegions(cache),
                kvType: 'f32',
              },
            ],
            logitRows: Int32Array.from({ length: rows }, (_, i) => i),
            logitsOut,
            logitsOffset: 0,
          };
          const here = pool.ranHere;
          await pool.run(pass, false);
          const onWorkers = new Float32Array(logitsOut).slice();
          new Float32Array(logitsOut).fill(Number.NaN);
          await pool.run(pass, true);
          assert.equal(pool.ranHere, here + 1, 'the second run had this thread as thread 0');
          assert.deepEqual(new Float32Array(logitsOut), onWorkers, `${threads} threads, step ${step}`);
          const last = onWorkers.subarray((rows - 1) * V);
          token = last.indexOf(Math.max(...last));
        }
        cache.dispose();
      } finally {
        await r.dispose();
      }
    }
  });

  it('a pass this thread runs alone wakes no worker and sends nothing; it gives the bits of the workers and fails with its own error', async () => {
    const r = await tinyRunner();
    try {
      const pool = poolOf(r);
      const cache = r.createCache({ capacity: 8 });
      const V = r.config.vocabSize;
      const logitsOut = new SharedArrayBuffer(V * 4);
      const pass = (out: SharedArrayBuffer): Pass => ({
        rows: 1,
        threads: 1,
        tokens: Int32Array.from([5]),
        seqs: [{ rowStart: 0, n: 1, past: 0, capacity: 8, kv: cacheRegions(cache), kvType: 'f32' }],
        logitRows: Int32Array.from([0]),
        logitsOut: out,
        logitsOffset: 0,
      });
      await pool.run(pass(logitsOut), false);
      const onWorker = new Float32Array(logitsOut).slice();
      new Float32Array(logitsOut).fill(Number.NaN);
      const sent = { ...pool.sent },
        here = pool.ranHere;
      await pool.run(pass(logitsOut), true);
      assert.equal(pool.ranHere, here + 1, 'this thread ran it');
      assert.deepEqual(pool.sent, sent, 'neither a descriptor nor a message went to the workers');
      assert.deepEqual(new Float32Array(logitsOut), onWorker);
      // Logits asked into a buffer too small for them: its copy throws on this thread.
      for (let i = 0; i < 2; i++)
        await assert.rejects(
          pool.run(pass(new SharedArrayBuffer(4)), true),
          /wasm worker failed: .*(offset|bounds|range)/i,
        );
      await pool.run(pass(logitsOut), true);
      assert.deepEqual(new Float32Array(logitsOut), onWorker, 'the pool still serves, with the same bits');
      cache.dispose();
    } finally {
      await r.dispose();
    }
  });

  it('decode steps that alternate between caches of other capacities and KV types give the bits of each cache alone', async () => {
    // The executor keeps a one-row pass's attention items and KV places while the cache's
    // capacity and type stay (Executor.passShape): a step of another cache must not reuse them.
    const load = () => loadRandomModel(shapeConfig(64, 2, 2, 512, 4096), { type: 'q8_0', threads: 2, maxRows: 16 });
    const kinds = [
      { capacity: 16, kvType: 'f32' as const },
      { capacity: 40, kvType: 'q8_0' as const },
      { capacity: 24, kvType: 'f16' as const },
    ];
    const steps = (i: number) => Array.from({ length: 6 }, (_, t) => 1 + ((37 * i + 11 * t) % 500));
    const alone: number[][][] = [];
    for (const [i, kind] of kinds.entries()) {
      const r = await load();
      try {
        const cache = r.createCache(kind);
        const out: number[][] = [];
        for (const token of steps(i))
          out.push(Array.from((await r.forward([{ cache, tokens: [token] }], { logits: 'last' }))[0]!.logits));
        alone.push(out);
      } finally {
        await r.dispose();
      }
    }
    const r = await load();
    try {
      const caches = kinds.map((kind) => r.createCache(kind));
      for (let t = 0; t < 6; t++)
        for (const [i, cache] of caches.entries()) {
          const [o] = await r.forward([{ cache, tokens: [steps(i)[t]!] }], { logits: 'last' });
          assert.deepEqual(Array.from(o!.logits), alone[i]![t], `cache ${i}, step ${t}`);
        }
    } finally {
      await r.dispose();
    }
  });

  it('a run of decode steps with this thread as thread 0 leaves timers their turn', async () => {
    const r = await tinyRunner();
    try {
      const pool = poolOf(r);
      const cache = r.createCache({ capacity: 400 });
      let fired = -1,
        step = 0;
      // Each step may settle without a task of its own (the workers count out while this thread
      // looks): the pool must still yield to the event loop every few ms.
      setTimeout(() => {
        fired = step;
      }, 0);
      const here = pool.ranHere;
      for (; step < 400; step++)
        await r.forward([{ cache, tokens: [1 + step] }], { logits: 'last', reuseLogits: true });
      assert.ok(pool.ranHere - here >= 400, 'the steps ran with this thread as thread 0');
      assert.ok(fired >= 0 && fired < 400, `the timer fired during the steps (at step ${fired})`);
      cache.dispose();
    } finally {
      await r.dispose();
    }
  });

  it('a prompt chunk never runs on this thread, however light; a decode step of the same model does', async () => {
    // The light-pass rule of a 2-thread pool (the default tuning) would put both on one thread:
    // only the decode step may be this thread's (a prefill at a long context blocked a server's
    // event loop for 100-160 ms).
    const r = await loadRandomModel(shapeConfig(64, 2, 2, 512, 4096), { type: 'q8_0', threads: 2, maxRows: 16 });
    try {
      const pool = poolOf(r);
      const cache = r.createCache({ capacity: 64 });
      const before = pool.ranHere;
      await r.forward([{ cache, tokens: [1, 2, 3, 4] }], { logits: 'last' });
      assert.equal(pool.ranHere, before, 'the 4-token prompt ran on the workers');
      await r.forward([{ cache, tokens: [5] }], { logits: 'last' });
      assert.equal(pool.ranHere, before + 1, 'the decode step ran with this thread as thread 0');
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
