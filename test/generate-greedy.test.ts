/**
 * Generation against the fixtures' greedy goldens (MosaicML / HF `generate`), plus the loop's
 * contracts: streaming equals the final text, stop strings spanning tokens, stop ids,
 * cancellation, the context policy, batched stepping, and chat sessions.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { InputError } from '../src/errors.js';
import { ChatSession } from '../src/runtime/chat-session.js';
import { GenerationSequence, stepSequences } from '../src/runtime/generate.js';
import { Sampler } from '../src/runtime/sampling.js';
import { loadModel, type MptModel } from '../src/runtime/model.js';
import * as api from '../src/index.js';
import { FIXTURES, fixturePath, Goldens, maxAbsDiff } from './helpers/goldens.js';
import { makeChatModelFolder } from './helpers/model-folders.js';

const withGenerate = readdirSync(FIXTURES).filter((d) => {
  const p = `${FIXTURES}${d}/goldens.json`;
  return existsSync(p) && JSON.parse(readFileSync(p, 'utf8')).generate !== undefined;
});

test('greedy generation equals every fixture golden', async () => {
  assert.ok(withGenerate.length >= 10, `fixtures with generate goldens: ${withGenerate.join(', ')}`);
  for (const name of withGenerate) {
    const g = JSON.parse(readFileSync(`${FIXTURES}${name}/goldens.json`, 'utf8'));
    const model = await loadModel(fixturePath(name), { backend: 'reference', onNote: () => {} });
    try {
      const expected: number[] = g.generate.top5_ids_per_step
        ? g.generate.top5_ids_per_step.map((r: number[]) => r[0])
        : g.generate.new_tokens;
      assert.deepEqual(g.generate.prompt_ids, g.inputs.seq7);
      const r = await model.generate(g.inputs.seq7, { temperature: 0, maxTokens: expected.length });
      assert.deepEqual(r.tokens, expected, name);
      assert.deepEqual([...g.inputs.seq7, ...r.tokens], g.generate.sequences, name);
      assert.equal(r.finishReason, 'length');
      assert.deepEqual(r.usage, {
        promptTokens: 7,
        completionTokens: expected.length,
        totalTokens: 7 + expected.length,
      });
    } finally {
      await model.dispose();
    }
  }
});

let neox: MptModel | undefined;
async function neoxModel(): Promise<MptModel> {
  neox ??= await loadModel(fixturePath('tiny-neox-vocab'), { backend: 'reference', onNote: () => {} });
  return neox;
}

test('text prompts, streaming and the final text agree (tiny-neox-vocab with the shipped tokenizer)', async () => {
  const model = await neoxModel();
  const g = JSON.parse(readFileSync(fixturePath('tiny-neox-vocab/goldens.json'), 'utf8'));
  assert.deepEqual(model.tokenizer.encode(g.inputs_text.seq7), g.inputs.seq7);
  const stream = model.stream(g.inputs_text.seq7, { temperature: 0, maxTokens: 20 });
  const chunks: { token: number; text: string }[] = [];
  for await (const c of stream) chunks.push(c);
  const r = await stream.result;
  assert.deepEqual(
    chunks.map((c) => c.token),
    g.generate.new_tokens,
  );
  assert.equal(chunks.map((c) => c.text).join(''), r.text);
  assert.equal(r.text, model.tokenizer.decode(g.generate.new_tokens));
  // Callbacks see the same chunks.
  const seen: string[] = [];
  const r2 = await model.generate(g.inputs_text.seq7, {
    temperature: 0,
    maxTokens: 20,
    onToken: (c) => seen.push(c.text),
  });
  assert.equal(seen.join(''), r2.text);
  assert.equal(r2.text, r.text);
});

test('a fixed seed reproduces a sampled run; ids past the tokenizer are never sampled', async () => {
  const model = await neoxModel();
  const opts = { seed: 1234, temperature: 1.5, topK: 0, topP: 1, minP: 0, maxTokens: 40 };
  const a = await model.generate('Once upon a time', opts);
  const b = await model.generate('Once upon a time', opts);
  assert.deepEqual(a.tokens, b.tokens);
  assert.equal(a.text, b.text);
  assert.equal(a.seed, 1234);
  const c = await model.generate('Once upon a time', { ...opts, seed: 1235 });
  assert.notDeepEqual(a.tokens, c.tokens);
  for (const t of [...a.tokens, ...c.tokens]) assert.ok(t < model.tokenizer.size, `token ${t} is a padding row`);
});

test('stop strings spanning several tokens end generation and never appear', async () => {
  const model = await neoxModel();
  const g = JSON.parse(readFileSync(fixturePath('tiny-neox-vocab/goldens.json'), 'utf8'));
  // Greedy text: the decode of the golden tokens. Pick a stop string that starts inside token 2
  // and ends inside token 4, so it spans three tokens and starts mid-token.
  const pieces = g.generate.new_tokens.map((id: number) => model.tokenizer.decode([id]));
  const full = pieces.join('');
  const start = pieces[0].length + 1;
  const end = pieces[0].length + pieces[1].length + pieces[2].length + 2;
  const stop = full.slice(start, end);
  assert.ok(stop.length > 3 && full.indexOf(stop) === start, JSON.stringify({ full, stop }));
  const stream = model.stream(g.inputs.seq7, { temperature: 0, maxTokens: 20, stopStrings: [stop] });
  const texts: string[] = [];
  for await (const c of stream) texts.push(c.text);
  const r = await stream.result;
  assert.equal(r.text, full.slice(0, start));
  assert.equal(texts.join(''), full.slice(0, start));
  assert.equal(r.finishReason, 'stop');
  assert.deepEqual(r.stoppedBy, { string: stop });
  assert.equal(r.tokens.length, 4, 'generation ended at the token that completed the stop string');
  // A stop id ends generation at once; its text is not output.
  const second = g.generate.new_tokens[1];
  const r2 = await model.generate(g.inputs.seq7, { temperature: 0, maxTokens: 20, stopTokenIds: [second] });
  assert.deepEqual(r2.tokens, g.generate.new_tokens.slice(0, 2));
  assert.equal(r2.text, pieces[0]);
  assert.deepEqual(r2.stoppedBy, { token: second });
});

test('an AbortSignal cancels generation between tokens', async () => {
  const model = await neoxModel();
  const controller = new AbortController();
  let n = 0;
  const r = await model.generate('Hello', {
    temperature: 0,
    maxTokens: 500,
    signal: controller.signal,
    onToken: () => {
      if (++n === 5) controller.abort();
    },
  });
  assert.equal(r.finishReason, 'abort');
  assert.equal(r.tokens.length, 5);
  const pre = new AbortController();
  pre.abort();
  const r0 = await model.generate('Hello', { maxTokens: 10, signal: pre.signal });
  assert.equal(r0.finishReason, 'abort');
  assert.equal(r0.tokens.length, 0);
  // Breaking out of a stream ends generation too, and the result reports it.
  const stream = model.stream('Hello', { temperature: 0, maxTokens: 100 });
  let k = 0;
  for await (const _c of stream) if (++k === 3) break;
  const rs = await stream.result;
  assert.equal(rs.finishReason, 'abort');
  assert.equal(rs.tokens.length, 3);
});

test('context policy: generation stops at the context end ("length"); a longer prompt is an InputError', async () => {
  const model = await loadModel(fixturePath('tiny-alibi'), { backend: 'reference' });
  try {
    const prompt = Array.from({ length: 120 }, (_, i) => 2 + ((i * 37) % 500));
    const r = await model.generate(prompt, { temperature: 0, maxTokens: 50 });
    assert.equal(model.config.maxSeqLen, 128);
    assert.equal(r.tokens.length, 8, 'prompt + new tokens fill the 128 positions');
    assert.equal(r.finishReason, 'length');
    await assert.rejects(
      model.generate(
        Array.from({ length: 129 }, () => 5),
        { maxTokens: 1 },
      ),
      InputError,
    );
    await assert.rejects(model.generate([600], { maxTokens: 1 }), /outside the vocabulary/);
    // ALiBi extrapolation at the caller's request: a larger context accepts the longer prompt.
    const long = await model.generate(
      Array.from({ length: 130 }, (_, i) => 2 + ((i * 11) % 500)),
      { temperature: 0, maxTokens: 3, contextLength: 160 },
    );
    assert.equal(long.tokens.length, 3);
  } finally {
    await model.dispose();
  }
});

test('batched stepping of several sequences equals generating each alone', async () => {
  const model = await loadModel(fixturePath('tiny-gqa'), { backend: 'reference' });
  try {
    const g = JSON.parse(readFileSync(fixturePath('tiny-gqa/goldens.json'), 'utf8'));
    const prompts = [g.inputs.seq7, g.inputs.seq4b, g.inputs.seq1];
    const alone = [];
    for (const p of prompts) alone.push((await model.generate(p, { temperature: 0, maxTokens: 6 + p.length })).tokens);
    const seqs = prompts.map(
      (p: number[], i: number) =>
        new GenerationSequence({
          promptIds: p,
          cache: model.runner.createCache({ capacity: 128 }),
          config: model.config,
          temperature: 0,
          maxTokens: 6 + p.length,
          prefillChunk: 3 + i,
        }),
    );
    while (seqs.some((s) => !s.done)) await stepSequences(model.runner, seqs);
    assert.deepEqual(
      seqs.map((s) => s.tokens),
      alone,
    );
    assert.deepEqual(seqs[0]!.tokens.slice(0, 6), g.generate.new_tokens.slice(0, 6));
  } finally {
    await model.dispose();
  }
});

test('seeded sampling, batched on the wasm backend (tokens chosen in its workers), equals a main-thread loop per sequence', async () => {
  const model = await loadModel(fixturePath('tiny-gqa'), { backend: 'wasm', threads: 2 });
  try {
    const g = JSON.parse(readFileSync(fixturePath('tiny-gqa/goldens.json'), 'utf8'));
    const prompts: number[][] = [g.inputs.seq7, g.inputs.seq4b, g.inputs.seq1];
    const options = (i: number) => ({
      temperature: 1.1,
      topP: 0.9,
      topK: 0,
      minP: 0,
      presencePenalty: 0.4,
      seed: 10 + i,
    });
    const steps = 12;
    // reference: one sequence at a time, every token chosen on this thread from the logits
    const alone: number[][] = [];
    for (const [i, p] of prompts.entries()) {
      const sampler = new Sampler(options(i));
      const cache = model.runner.createCache({ capacity: 64 });
      const history = [...p];
      let input = p;
      for (let t = 0; t < steps; t++) {
        const [o] = await model.runner.forward([{ cache, tokens: input }], { logits: 'last' });
        const token = sampler.sample(o!.logits, history, p.length);
        history.push(token);
        input = [token];
      }
      cache.dispose();
      alone.push(history.slice(p.length));
    }
    const seqs = prompts.map(
      (p, i) =>
        new GenerationSequence({
          promptIds: p,
          cache: model.runner.createCache({ capacity: 128 }),
          config: model.config,
          maxTokens: steps,
          prefillChunk: 2 + i,
          ...options(i),
        }),
    );
    while (seqs.some((s) => !s.done)) await stepSequences(model.runner, seqs);
    assert.deepEqual(
      seqs.map((s) => s.tokens),
      alone,
    );
  } finally {
    await model.dispose();
  }
});

test('a chat session renders the template, reuses its cache and drops old turns to fit', async () => {
  const { dir, cleanup } = makeChatModelFolder();
  const model = await loadModel(dir, { backend: 'reference', onNote: () => {}, contextLength: 96 });
  try {
    assert.equal(model.format.name, 'jinja');
    const session = new ChatSession(model, { temperature: 0, maxTokens: 8, system: 'Be brief.' });
    const r1 = await session.send('Hi').result;
    assert.equal(
      r1.usage.promptTokens,
      model.tokenizer.encode(
        model.applyChatTemplate([
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Hi' },
        ]),
      ).length,
    );
    assert.deepEqual(
      session.messages.map((m) => m.role),
      ['system', 'user', 'assistant'],
    );
    // The reply equals a fresh generation from the same rendered prompt (cache reuse is exact).
    const r2 = await session.send('And then?').result;
    const fresh = await model.generate(session.messages.slice(0, 4), { temperature: 0, maxTokens: 8 });
    assert.deepEqual(r2.tokens, fresh.tokens);
    // Long turns overflow the 96-token context: the oldest ones go, the system prompt stays.
    for (let i = 0; i < 4; i++) await session.send('tell me more about the weather today please '.repeat(2)).result;
    assert.ok(session.lastDropped > 0);
    assert.equal(session.messages[0]!.role, 'system');
    session.reset();
    assert.deepEqual(session.messages, [{ role: 'system', content: 'Be brief.' }]);
    session.dispose();
  } finally {
    await model.dispose();
    cleanup();
  }
});

test('model.logits equals the golden logits; the package entry exports the API', async () => {
  const model = await api.loadModel(fixturePath('tiny-bias'), { backend: 'reference' });
  try {
    const g = new Goldens(fixturePath('tiny-bias'));
    const golden = g.tensor('logits/seq7');
    const logits = await model.logits(g.json.inputs.seq7);
    assert.equal(logits.length, golden.data.length);
    assert.ok(maxAbsDiff(logits, golden.data) < 5e-4);
    assert.throws(() => model.tokenizer, api.InputError);
    assert.equal(model.hasTokenizer, false);
  } finally {
    await model.dispose();
  }
  for (const name of [
    'loadModel',
    'MptModel',
    'MptTokenizer',
    'Sampler',
    'topLogprobs',
    'GenerationSequence',
    'stepSequences',
    'StreamDecoder',
    'StopStringMatcher',
    'ChatSession',
    'parseMptConfig',
    'referenceBackend',
    'InputError',
    'renderJinjaChatTemplate',
  ]) {
    assert.ok((api as Record<string, unknown>)[name] !== undefined, `index exports ${name}`);
  }
});

test('cleanup', async () => {
  await neox?.dispose();
});
