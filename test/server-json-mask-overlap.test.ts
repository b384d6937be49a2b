/**
 * A constrained sequence's next mask depends only on the grammar state after its last token, not
 * on the step's logits: the scheduler runs the sequence's forward while the mask is computed and
 * only its sampling waits for the mask. Observed with a mask worker the test controls (each mask
 * is computed in place, handed back when the test says), on the tiny GPT-NeoX-vocabulary model:
 * forwards start while a mask is pending, tokens are those of in-place masks with the same seed,
 * and a late or failed mask and a cancel behave as before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ForwardOptions, ModelRunner, SequenceInput, SequenceOutput } from '../src/backends/backend.js';
import { JsonAutomatonState } from '../src/server/constrain/json-automaton.js';
import {
  computeMask,
  type ConstraintVocabulary,
  JsonGrammar,
  type MaskWorker,
  type TokenMask,
} from '../src/server/constrain/json-constraint.js';
import type { ServedModel } from '../src/server/model-host.js';
import { Scheduler, type EndReason } from '../src/server/scheduler.js';
import { ServerSequence } from '../src/server/sequence.js';
import { constraintVocabulary, tinyModel, waitFor } from './helpers/serve-fixture.js';

const SCHEMA = {
  type: 'object',
  properties: { id: { type: 'integer', minimum: 0, maximum: 999 }, tag: { enum: ['ab', 'cd'] } },
  required: ['id', 'tag'],
  additionalProperties: false,
};

const SAMPLING = { temperature: 1, seed: 11, topP: 1, topK: 0, minP: 0 };

/** A grammar of SCHEMA whose worker's masks (computed in place) come back only when `release` is called. */
class HeldMasks {
  readonly pending: { resolve: () => void; fail: (e: unknown) => void }[] = [];
  asked = 0;
  readonly grammar: JsonGrammar;
  constructor(
    vocab: ConstraintVocabulary,
    private readonly failure: unknown = null,
  ) {
    const worker: MaskWorker = (output) =>
      new Promise<TokenMask>((resolve, reject) => {
        this.asked++;
        const state = JsonAutomatonState.initial(this.grammar.root).feedBytes(output)!;
        this.pending.push({ resolve: () => resolve(computeMask(vocab, state)), fail: reject });
      });
    this.grammar = new JsonGrammar(SCHEMA, vocab, worker);
  }
  /** Hands back the oldest pending mask (or fails it, with a failing worker). */
  release(): void {
    const p = this.pending.shift()!;
    if (this.failure) p.fail(this.failure);
    else p.resolve();
  }
}

/** The runner, noting at each forward's start how many masks are pending. */
function watched(inner: ModelRunner, masks: HeldMasks, log: number[]): ModelRunner {
  const r = Object.create(inner) as ModelRunner;
  r.forward = (batch: SequenceInput[], o: ForwardOptions): Promise<SequenceOutput[]> => {
    log.push(masks.pending.length);
    return inner.forward(batch, o);
  };
  return r;
}

function sequence(model: ServedModel, grammar: JsonGrammar, maxTokens: number) {
  let resolve!: (r: { reason: EndReason; error: unknown }) => void;
  const ended = new Promise<{ reason: EndReason; error: unknown }>((r) => {
    resolve = r;
  });
  let text = '';
  const seq = new ServerSequence(
    model,
    {
      index: 0,
      prompt: model.tokenizer.encode('JSON:'),
      maxTokens,
      sampling: SAMPLING,
      stopStrings: [],
      logprobs: null,
      constraint: grammar.start(),
    },
    {
      onDelta: (_i, t) => {
        text += t;
      },
      onFinish: (_i, _f, reason, error) => resolve({ reason, error }),
    },
  );
  return { seq, ended, text: () => text };
}

/** The same sequence's tokens with masks computed in place (no worker). */
async function inPlace(model: ServedModel, maxTokens: number): Promise<number[]> {
  const vocab = await constraintVocabulary(model);
  const sched = new Scheduler(model.runner, { maxActive: 1, maxQueue: 1 });
  const s = sequence(model, new JsonGrammar(SCHEMA, vocab), maxTokens);
  sched.submitAll([s.seq]);
  assert.equal((await s.ended).reason, 'finished');
  await sched.close();
  return [...s.seq.tokens];
}

test('the forward for the next token runs while its mask is computed; the tokens are those of in-place masks', async () => {
  const model = await tinyModel();
  const vocab = await constraintVocabulary(model);
  const masks = new HeldMasks(vocab);
  const log: number[] = [];
  const sched = new Scheduler(watched(model.runner, masks, log), { maxActive: 2, maxQueue: 2 });
  const s = sequence(model, masks.grammar, 24);
  sched.submitAll([s.seq]);
  let finished = false;
  void s.ended.then(() => {
    finished = true;
  });
  // Each mask goes back once a forward has started while it was pending, or after 300 ms (the
  // scheduler before the overlap ran no forward for a sequence whose mask was pending).
  for (;;) {
    await waitFor(() => finished || masks.pending.length > 0, 5000, 'a mask request or the end');
    if (finished) break;
    const forwards = log.length;
    const until = Date.now() + 300;
    await waitFor(() => log.length > forwards || Date.now() > until, 5000, 'a forward');
    masks.release();
  }
  assert.equal((await s.ended).reason, 'finished');
  const tokens = [...s.seq.tokens];
  assert.ok(tokens.length >= 6, `${tokens.length} tokens`);
  const overlapped = log.filter((pending) => pending > 0).length;
  // Every forward of the sequence but none at most (a cached mask) started with its mask pending.
  assert.ok(
    overlapped >= masks.asked - 1 && overlapped >= 4,
    `${overlapped} of ${log.length} forwards ran while a mask was pending (${masks.asked} masks asked)`,
  );
  assert.deepEqual(tokens, await inPlace(model, 24), 'the same seed gives the same tokens');
  const value = JSON.parse(s.text()) as { id: number; tag: string };
  assert.ok(Number.isInteger(value.id) && ['ab', 'cd'].includes(value.tag), s.text());
  await sched.close();
});

test('a late mask holds only its own sequence; a failed mask ends only its own; a cancel ends it at once', async () => {
  const model = await tinyModel();
  const vocab = await constraintVocabulary(model);
  const held = new HeldMasks(vocab);
  const failing = new HeldMasks(vocab, new Error('the mask thread is gone'));
  const log: number[] = [];
  const sched = new Scheduler(watched(model.runner, held, log), { maxActive: 4, maxQueue: 4 });
  const a = sequence(model, held.grammar, 24);
  const b = sequence(model, failing.grammar, 24);
  const inline = sequence(model, new JsonGrammar(SCHEMA, vocab), 24);
  const [handle] = sched.submitAll([a.seq, b.seq, inline.seq]);
  await waitFor(() => failing.pending.length > 0, 5000, 'the failing mask request');
  failing.release();
  const failed = await b.ended;
  assert.equal(failed.reason, 'error');
  assert.equal((failed.error as Error).message, 'the mask thread is gone');
  // The sequence whose masks are computed in place goes on while `a` waits for its first.
  assert.equal((await inline.ended).reason, 'finished');
  assert.equal(a.seq.tokens.length, 0, 'the sequence waiting for its mask sampled nothing');
  // Alone, its logits held for the mask: the loop sleeps (no step, no spinning).
  let steps = sched.stats().steps;
  await new Promise((r) => setTimeout(r, 60));
  assert.ok(sched.stats().steps - steps <= 1, `${sched.stats().steps - steps} steps while every sequence waited`);
  // The mask comes: its token is sampled at once, and the next forward runs with the next mask pending.
  steps = sched.stats().steps;
  held.release();
  await waitFor(() => sched.stats().steps > steps, 5000, 'the next step');
  assert.equal(a.seq.tokens.length, 1);
  assert.equal(held.pending.length, 1);
  assert.ok(log.at(-1)! > 0, 'the forward started with the mask pending');
  // Cancelled while its logits wait for that mask: it ends at once; the mask coming later changes nothing.
  const cancelledAt = performance.now();
  handle!.cancel();
  assert.equal((await a.ended).reason, 'cancelled');
  assert.ok(performance.now() - cancelledAt < 100, `${performance.now() - cancelledAt} ms to end`);
  held.release();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(a.seq.tokens.length, 1, 'no token after the cancel');
  assert.equal(sched.activeCount, 0);
  await sched.close();
});
