/**
 * Continuous batching against Hugging Face's own greedy generations (the fixture goldens):
 * sequences that join a running batch at different times, with different prompts, must each
 * produce exactly the tokens `model.generate` produced for them alone. Also: one forward per
 * step holding every active sequence, caches freed when sequences end or are cancelled, the
 * queue limit.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type {
  ForwardOptions,
  KvCache,
  KvCacheOptions,
  ModelRunner,
  SequenceInput,
  SequenceOutput,
} from '../src/backends/backend.js';
import { PROMPT_LOGITS_CHUNK } from '../src/runtime/generation-sequence.js';
import { QueueFullError, Scheduler, type EndReason, type SequenceClient } from '../src/server/scheduler.js';
import { Goldens } from './helpers/goldens.js';
import { TINY_NEOX, tinyModel } from './helpers/serve-fixture.js';

const goldens = new Goldens(TINY_NEOX);
const SEQ7: number[] = goldens.json.inputs.seq7;
const SEQ7_GREEDY: number[] = goldens.json.generate.new_tokens; // 20 tokens
const SEQ4B: number[] = goldens.json.inputs.seq4b;
const SEQ4B_GREEDY: number[] = (goldens.json.batch_left_pad.generate_10_greedy[1] as number[]).slice(7); // 10 tokens

/** Wraps a runner to record every forward's batch and every cache's life. */
class Recorder implements ModelRunner {
  readonly batches: number[][] = [];
  created = 0;
  disposed = 0;
  constructor(private readonly inner: ModelRunner) {}
  get config() {
    return this.inner.config;
  }
  get backendName() {
    return this.inner.backendName;
  }
  createCache(o: KvCacheOptions): KvCache {
    const c = this.inner.createCache(o);
    this.created++;
    const dispose = c.dispose.bind(c);
    c.dispose = () => {
      this.disposed++;
      dispose();
    };
    return c;
  }
  forward(batch: SequenceInput[], o: ForwardOptions): Promise<SequenceOutput[]> {
    this.batches.push(batch.map((s) => s.tokens.length));
    return this.inner.forward(batch, o);
  }
  dispose(): Promise<void> {
    return Promise.resolve();
  }
}

function argmax(x: Float32Array): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Greedy client: records tokens, ends after maxTokens. */
function greedy(prompt: number[], maxTokens: number, onStep?: (n: number) => void) {
  const tokens: number[] = [];
  let resolve!: (r: { tokens: number[]; reason: EndReason }) => void;
  const done = new Promise<{ tokens: number[]; reason: EndReason }>((r) => {
    resolve = r;
  });
  const client: SequenceClient = {
    prompt,
    capacity: prompt.length + maxTokens,
    next(logits) {
      tokens.push(argmax(logits));
      onStep?.(tokens.length);
      return tokens.length >= maxTokens ? null : tokens[tokens.length - 1]!;
    },
    onEnd(reason) {
      resolve({ tokens, reason });
    },
  };
  return { client, done };
}

test('sequences joining a running batch reproduce HF greedy generation exactly', async () => {
  const model = await tinyModel();
  const rec = new Recorder(model.runner);
  const sched = new Scheduler(rec, { maxActive: 4, maxQueue: 8, prefillChunk: 3 });
  const late: Promise<{ tokens: number[]; reason: EndReason }>[] = [];
  // A starts alone; B joins after A's 5th token, C after A's 9th (mid-decode of A and B).
  const a = greedy(SEQ7, 20, (n) => {
    if (n === 5) {
      const b = greedy(SEQ4B, 10);
      sched.submitAll([b.client]);
      late.push(b.done);
    }
    if (n === 9) {
      const c = greedy(SEQ7, 20);
      sched.submitAll([c.client]);
      late.push(c.done);
    }
  });
  sched.submitAll([a.client]);
  const ra = await a.done;
  const [rb, rc] = await Promise.all(late);
  assert.deepEqual(ra.tokens, SEQ7_GREEDY);
  assert.deepEqual(rb!.tokens, SEQ4B_GREEDY);
  assert.deepEqual(rc!.tokens, SEQ7_GREEDY);
  assert.equal(ra.reason, 'finished');
  // Batched steps happened: some forward held 3 sequences, some mixed a prompt chunk with decodes.
  assert.ok(
    rec.batches.some((b) => b.length === 3),
    `batches: ${JSON.stringify(rec.batches)}`,
  );
  assert.ok(
    rec.batches.some((b) => b.length >= 2 && b.some((n) => n > 1) && b.some((n) => n === 1)),
    'a prefill chunk shared a step with decoding',
  );
  // Prompt chunks respect the budget per step.
  for (const b of rec.batches) assert.ok(b.filter((n) => n > 1).reduce((x, y) => x + y, 0) <= 3);
  assert.equal(rec.created, 3);
  assert.equal(rec.disposed, 3);
  assert.equal(sched.activeCount, 0);
  await sched.close();
});

test('every active sequence is in each step; the batch never exceeds maxActive', async () => {
  const model = await tinyModel();
  const rec = new Recorder(model.runner);
  const sched = new Scheduler(rec, { maxActive: 3, maxQueue: 16 });
  const runs = Array.from({ length: 7 }, (_, i) => greedy(i % 2 ? SEQ4B : SEQ7, 4 + i));
  sched.submitAll(runs.map((r) => r.client));
  const results = await Promise.all(runs.map((r) => r.done));
  results.forEach((r, i) => {
    const want = (i % 2 ? SEQ4B_GREEDY : SEQ7_GREEDY).slice(0, 4 + i);
    assert.deepEqual(r.tokens, want, `sequence ${i}`);
  });
  assert.ok(rec.batches.every((b) => b.length <= 3));
  assert.equal(Math.max(...rec.batches.map((b) => b.length)), 3);
  assert.equal(rec.disposed, 7);
  await sched.close();
});

test('cancel frees the cache at once, queued sequences never get one, and a full queue refuses', async () => {
  const model = await tinyModel();
  const rec = new Recorder(model.runner);
  const sched = new Scheduler(rec, { maxActive: 1, maxQueue: 1 });
  let handleA: { cancel(): void } | undefined;
  const a = greedy(SEQ7, 1000, (n) => {
    if (n === 3) handleA!.cancel();
  });
  [handleA] = sched.submitAll([a.client]);
  const b = greedy(SEQ4B, 2);
  const [handleB] = sched.submitAll([b.client]);
  // Queue (1) is full now: a third sequence is refused.
  assert.throws(() => sched.submitAll([greedy(SEQ4B, 2).client]), QueueFullError);
  handleB!.cancel();
  assert.equal((await b.done).reason, 'cancelled');
  assert.equal(sched.queued, 0);
  const ra = await a.done;
  assert.equal(ra.reason, 'cancelled');
  assert.equal(ra.tokens.length, 3);
  assert.equal(rec.created, 1, 'the cancelled queued sequence never got a cache');
  assert.equal(rec.disposed, 1);
  await sched.close();
});

test('a client that throws ends only its own sequence', async () => {
  const model = await tinyModel();
  const sched = new Scheduler(model.runner, { maxActive: 4, maxQueue: 4 });
  const good = greedy(SEQ7, 6);
  let reason: EndReason | undefined;
  const bad: SequenceClient = {
    prompt: SEQ4B,
    capacity: 20,
    next() {
      throw new Error('boom');
    },
    onEnd(r) {
      reason = r;
    },
  };
  sched.submitAll([good.client, bad]);
  const r = await good.done;
  assert.deepEqual(r.tokens, SEQ7_GREEDY.slice(0, 6));
  assert.equal(reason, 'error');
  await sched.close();
});

/** A Recorder whose runner can copy caches (as both backends can): choices may share their prompt. */
class SharingRecorder extends Recorder {
  restored = 0;
  constructor(private readonly base: ModelRunner) {
    super(base);
  }
  saveCache(c: KvCache) {
    return this.base.saveCache!(c);
  }
  restoreCache(snap: Parameters<NonNullable<ModelRunner['restoreCache']>>[0], o: KvCacheOptions) {
    this.restored++;
    return this.base.restoreCache!(snap, o);
  }
}

test('choices with the same prompt read it once: the others copy its cache and feed only its last token', async () => {
  const model = await tinyModel();
  const rec = new SharingRecorder(model.runner);
  const sched = new Scheduler(rec, { maxActive: 4, maxQueue: 8 });
  const runs = [greedy(SEQ7, 6), greedy(SEQ7, 6), greedy(SEQ7, 6), greedy(SEQ4B, 4)];
  sched.submitAll(runs.map((r) => r.client));
  const results = await Promise.all(runs.map((r) => r.done));
  for (const [i, r] of results.slice(0, 3).entries())
    assert.deepEqual(r.tokens, SEQ7_GREEDY.slice(0, 6), `choice ${i}`);
  assert.deepEqual(results[3]!.tokens, SEQ4B_GREEDY.slice(0, 4));
  assert.equal(rec.restored, 2);
  // Prompt tokens forwarded: 7 once, then 1 for each of the two copies, 4 for the other prompt.
  const fedAsPrompt = rec.batches
    .flat()
    .filter((n) => n > 1)
    .reduce((a, b) => a + b, 0);
  assert.equal(fedAsPrompt, 7 + 4);
  assert.equal(rec.disposed, rec.created, "every cache freed (the copies replaced the followers' own)");
  assert.equal(sched.activeCount, 0);
  await sched.close();
});

test('when the choice that reads the prompt is cancelled first, the others read it themselves', async () => {
  const model = await tinyModel();
  const rec = new SharingRecorder(model.runner);
  const sched = new Scheduler(rec, { maxActive: 4, maxQueue: 8 });
  const runs = [greedy(SEQ7, 5), greedy(SEQ7, 5), greedy(SEQ7, 5)];
  const handles = sched.submitAll(runs.map((r) => r.client));
  handles[0]!.cancel();
  const results = await Promise.all(runs.map((r) => r.done));
  assert.equal(results[0]!.reason, 'cancelled');
  for (const [i, r] of results.slice(1).entries())
    assert.deepEqual(r.tokens, SEQ7_GREEDY.slice(0, 5), `choice ${i + 1}`);
  assert.equal(rec.created, rec.disposed);
  await sched.close();
});

test('prefixCache: a later prompt that starts with a finished sequence reuses its cache and feeds only the rest', async () => {
  const model = await tinyModel();
  const rec = new SharingRecorder(model.runner);
  const sched = new Scheduler(rec, { maxActive: 2, maxQueue: 8, prefixCache: 2 });
  const a = greedy(SEQ7, 6);
  sched.submitAll([a.client]);
  assert.deepEqual((await a.done).tokens, SEQ7_GREEDY.slice(0, 6));
  // The next "turn": the conversation so far plus more. Its cache holds SEQ7 + the 5 tokens fed.
  const before = rec.batches.length;
  const b = greedy([...SEQ7, ...SEQ7_GREEDY.slice(0, 4)], 6);
  sched.submitAll([b.client]);
  assert.deepEqual((await b.done).tokens, SEQ7_GREEDY.slice(4, 10), 'HF greedy continuation');
  const fed = rec.batches.slice(before).map((batch) => batch[0]!);
  assert.equal(fed[0], 1, 'only the last prompt token is read');
  assert.equal(sched.stats().cachedPromptTokens, 10);
  // A prompt sharing nothing reads everything.
  const c = greedy(SEQ4B, 3);
  sched.submitAll([c.client]);
  assert.deepEqual((await c.done).tokens, SEQ4B_GREEDY.slice(0, 3));
  assert.equal(sched.stats().cachedPromptTokens, 10);
  await sched.close();
  assert.equal(rec.created, rec.disposed, 'kept caches are freed on close');
});

test('prefixCache: kept caches give way when a new sequence needs their memory', async () => {
  const model = await tinyModel();
  // A runner with room for one cache at a time.
  class OneCache extends SharingRecorder {
    override createCache(o: KvCacheOptions): KvCache {
      if (this.created - this.disposed >= 1) throw new Error('out of KV memory');
      return super.createCache(o);
    }
  }
  const rec = new OneCache(model.runner);
  const sched = new Scheduler(rec, { maxActive: 1, maxQueue: 8, prefixCache: 4 });
  const a = greedy(SEQ7, 3);
  sched.submitAll([a.client]);
  await a.done;
  assert.equal(rec.created - rec.disposed, 1, 'kept');
  const b = greedy(SEQ4B, 4);
  sched.submitAll([b.client]);
  const rb = await b.done;
  assert.equal(rb.reason, 'finished');
  assert.deepEqual(rb.tokens, SEQ4B_GREEDY.slice(0, 4));
  await sched.close();
  assert.equal(rec.created, rec.disposed);
});

test('prompt rows whose logits are read are at most one chunk a step, over all sequences', async () => {
  const model = await tinyModel();
  const scored: number[] = [];
  const runner: ModelRunner = Object.assign(Object.create(model.runner) as ModelRunner, {
    forward(batch: SequenceInput[], o: ForwardOptions) {
      scored.push(batch.filter((s) => s.logits === 'all').reduce((n, s) => n + s.tokens.length, 0));
      return model.runner.forward(batch, o);
    },
  });
  const sched = new Scheduler(runner, { maxActive: 4, maxQueue: 4, prefillChunk: 512 });
  // Four echo-with-logprobs choices of a 150-token prompt: each reads every prompt row's logits.
  const prompt = Array.from({ length: 150 }, (_, i) => (i * 37) % 1000);
  const rows = new Array<number>(4).fill(0);
  const ends = [0, 1, 2, 3].map((k) => {
    const { client, done } = greedy(prompt, 1);
    Object.assign(client, {
      promptLogits: (r: Float32Array) => {
        rows[k]! += r.length / model.runner.config.vocabSize;
      },
    });
    sched.submitAll([client]);
    return done;
  });
  for (const r of await Promise.all(ends)) assert.equal(r.reason, 'finished');
  assert.deepEqual(rows, [150, 150, 150, 150], 'every prompt row was read once');
  assert.ok(Math.max(...scored) <= PROMPT_LOGITS_CHUNK, `rows scored a step: ${scored.join(' ')}`);
  await sched.close();
});
