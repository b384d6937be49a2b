/**
 * What a `GenerationSequence` does besides choosing tokens, as the server uses it and `generate()`
 * offers it: log probabilities of the prompt and of each generated token (against a float64 log
 * softmax of the model's own logits for every prompt position), the same when batched with another
 * sequence, a prompt read only to be scored (max tokens 0), and a token constraint (greedy picks
 * the best allowed token; "stop" when the constraint is finished or allows nothing).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  GenerationSequence,
  stepSequences,
  type GenerationChunk,
  type TokenConstraint,
  type TokenLogprobInfo,
} from '../src/runtime/generate.js';
import { loadModel, type MptModel } from '../src/runtime/model.js';
import { logSoftmax } from '../src/runtime/sampling.js';
import { fixturePath } from './helpers/goldens.js';

const g = JSON.parse(readFileSync(fixturePath('tiny-gqa/goldens.json'), 'utf8'));
const PROMPT: number[] = g.inputs.seq7;
const OTHER: number[] = g.inputs.seq4b;
const TOP = 3;

/** The model's logits after every prompt position (rows of vocab_size), read in one call. */
async function promptRows(model: MptModel, prompt: number[]): Promise<Float32Array[]> {
  const cache = model.runner.createCache({ capacity: 64 });
  try {
    const [out] = await model.runner.forward([{ cache, tokens: prompt }], { logits: 'all' });
    const V = model.config.vocabSize;
    return prompt.map((_, i) => out!.logits.slice(i * V, (i + 1) * V));
  } finally {
    cache.dispose();
  }
}

/** A token's score and its top alternatives from a float64 log softmax of one row. */
function expectedInfo(row: Float32Array, token: number): { logprob: number; top: number[] } {
  const lp = logSoftmax(row);
  const ids = Array.from(lp.keys()).sort((a, b) => lp[b]! - lp[a]! || a - b);
  return { logprob: lp[token]!, top: ids.slice(0, TOP) };
}

function assertInfo(got: TokenLogprobInfo, row: Float32Array, token: number, what: string): void {
  const want = expectedInfo(row, token);
  const lp = logSoftmax(row);
  assert.equal(got.token, token, what);
  assert.ok(Math.abs(got.logprob - want.logprob) < 1e-5, `${what}: ${got.logprob} vs ${want.logprob}`);
  assert.deepEqual(
    got.top.map((t) => t.token),
    want.top,
    what,
  );
  for (const t of got.top) assert.ok(Math.abs(t.logprob - lp[t.token]!) < 1e-5, what);
}

function sequence(
  model: MptModel,
  prompt: number[],
  extra: Partial<ConstructorParameters<typeof GenerationSequence>[0]>,
) {
  return new GenerationSequence({
    promptIds: prompt,
    cache: model.runner.createCache({ capacity: 64 }),
    config: model.config,
    temperature: 0,
    maxTokens: 4,
    ...extra,
  });
}

async function run(model: MptModel, seqs: GenerationSequence[]): Promise<GenerationChunk[][]> {
  const chunks: GenerationChunk[][] = seqs.map(() => []);
  while (seqs.some((s) => !s.done)) {
    const step = await stepSequences(model.runner, seqs);
    step.forEach((c, i) => {
      if (c) chunks[i]!.push(c);
    });
  }
  for (const s of seqs) s.cache?.dispose();
  return chunks;
}

test('prompt and token log probabilities equal a float64 log softmax of the logits, alone and batched', async () => {
  const model = await loadModel(fixturePath('tiny-gqa'), { backend: 'reference', onNote: () => {} });
  try {
    const rows = await promptRows(model, PROMPT);
    const scored = () => sequence(model, PROMPT, { logprobs: TOP, promptLogprobs: true, prefillChunk: 3 });
    const alone = scored();
    const [chunks] = await run(model, [alone]);
    const r = alone.result();
    assert.equal(r.promptLogprobs?.length, PROMPT.length - 1);
    for (const [i, info] of r.promptLogprobs!.entries())
      assertInfo(info, rows[i]!, PROMPT[i + 1]!, `prompt token ${i + 1}`);
    assert.equal(chunks!.length, 4);
    // Greedy: the first token is the top of the last prompt row, and its score is that row's.
    const first = chunks![0]!;
    assert.equal(first.token, expectedInfo(rows[PROMPT.length - 1]!, 0).top[0]);
    assertInfo(first.logprob!, rows[PROMPT.length - 1]!, first.token, 'first generated token');
    for (const c of chunks!) assert.ok(c.logprob && c.logprob.top.length === TOP);

    // Batched beside a sequence that only generates: the same scores and tokens.
    const batched = scored();
    const plain = sequence(model, OTHER, { prefillChunk: 2 });
    const [bchunks] = await run(model, [batched, plain]);
    assert.deepEqual(batched.result().promptLogprobs, r.promptLogprobs);
    assert.deepEqual(bchunks, chunks);
    assert.equal(plain.result().promptLogprobs, undefined);
  } finally {
    await model.dispose();
  }
});

test('max tokens 0: a scoring sequence reads its prompt and ends "length"; a plain one ends at once', async () => {
  const model = await loadModel(fixturePath('tiny-gqa'), { backend: 'reference', onNote: () => {} });
  try {
    const rows = await promptRows(model, PROMPT);
    const scoring = sequence(model, PROMPT, { maxTokens: 0, logprobs: TOP, promptLogprobs: true });
    assert.equal(scoring.done, false);
    assert.equal(scoring.sampleRequest(), null, 'no token will be drawn');
    const [chunks] = await run(model, [scoring]);
    assert.deepEqual(chunks, []);
    const r = scoring.result();
    assert.equal(r.finishReason, 'length');
    assert.deepEqual(r.tokens, []);
    assert.equal(r.promptLogprobs?.length, PROMPT.length - 1);
    assertInfo(r.promptLogprobs![0]!, rows[0]!, PROMPT[1]!, 'prompt token 1');

    const plain = sequence(model, PROMPT, { maxTokens: 0 });
    assert.equal(plain.done, true);
    assert.deepEqual(plain.nextInput(), []);
    plain.cache?.dispose();
  } finally {
    await model.dispose();
  }
});

/** Allows even ids only; finished after `after` tokens (Infinity: never). `none`: allows nothing. */
class EvenIds implements TokenConstraint {
  accepted: number[] = [];
  constructor(
    private readonly after: number,
    private readonly none = false,
  ) {}
  apply(logits: Float32Array): number {
    let allowed = 0;
    for (let i = 0; i < logits.length; i++) {
      if (!this.none && i % 2 === 0) allowed++;
      else logits[i] = -Infinity;
    }
    return allowed;
  }
  accept(token: number): void {
    this.accepted.push(token);
  }
  get finished(): boolean {
    return this.accepted.length >= this.after;
  }
}

test('a token constraint masks the logits before sampling and ends the sequence when finished', async () => {
  const model = await loadModel(fixturePath('tiny-gqa'), { backend: 'reference', onNote: () => {} });
  try {
    const rows = await promptRows(model, PROMPT);
    const last = rows[PROMPT.length - 1]!;
    let best = 0;
    for (let i = 0; i < last.length; i += 2) if (last[i]! > last[best]!) best = i;

    const c = new EvenIds(3);
    const seq = sequence(model, PROMPT, { constraint: c, maxTokens: 10, prefillChunk: 4 });
    assert.equal(seq.sampleRequest(PROMPT.length), null, 'the runner cannot choose a masked token');
    await run(model, [seq]);
    const r = seq.result();
    assert.equal(r.tokens[0], best, 'greedy picks the best allowed token');
    assert.ok(
      r.tokens.every((t) => t % 2 === 0),
      `only allowed tokens: ${r.tokens}`,
    );
    assert.deepEqual(c.accepted, r.tokens);
    assert.equal(r.tokens.length, 3);
    assert.equal(r.finishReason, 'stop');
    assert.equal(r.stoppedBy, undefined);

    const blocked = sequence(model, PROMPT, { constraint: new EvenIds(Infinity, true), maxTokens: 10 });
    await run(model, [blocked]);
    assert.deepEqual(blocked.result().tokens, []);
    assert.equal(blocked.result().finishReason, 'stop');
  } finally {
    await model.dispose();
  }
});
