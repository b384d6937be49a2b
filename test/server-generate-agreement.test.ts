/**
 * The server and the runtime's `generate()` give the same generation for the same request: with
 * the same seed and settings, the same token ids (scheduler level, several sequences batched
 * together) and the same text, token count and finish reason over HTTP, both when a stop string
 * ends the reply and when max_tokens cuts it. The stop string and the cut are taken from a
 * reference run, so each case really stops where it says.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generate, type GenerateResult } from '../src/runtime/generate.js';
import type { SamplingOptions } from '../src/runtime/sampling.js';
import { Scheduler } from '../src/server/scheduler.js';
import { ServerSequence, type FinishReason } from '../src/server/sequence.js';
import { startTestServer, type TestServer } from './helpers/serve-fixture.js';

let srv: TestServer;

before(async () => {
  srv = await startTestServer({ parallel: 8 });
});

after(async () => {
  await srv.close();
});

const MAX_TOKENS = 24;

interface Case {
  prompt: string;
  sampling: SamplingOptions & { seed: number };
}

/** What the server samples with when a request leaves a field out (OpenAI's defaults: no truncation, no penalty). */
const SERVER_DEFAULTS: SamplingOptions = {
  topP: 1,
  topK: 0,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
};

const CASES: Case[] = [
  { prompt: 'Once upon a time', sampling: { seed: 11, temperature: 0.9 } },
  { prompt: 'The river', sampling: { seed: 12, temperature: 1.1, topK: 40, presencePenalty: 0.5 } },
  { prompt: 'In the morning', sampling: { seed: 13, temperature: 0.7, topP: 0.9, repetitionPenalty: 1.2 } },
  { prompt: 'Numbers: 1, 2,', sampling: { seed: 14, temperature: 0 } },
];

function reference(c: Case, options: { maxTokens: number; stop?: string }): Promise<GenerateResult> {
  const m = srv.model;
  return generate(m.runner, m.tokenizer.encode(c.prompt), {
    ...SERVER_DEFAULTS,
    ...c.sampling,
    tokenizer: m.tokenizer,
    maxTokens: options.maxTokens,
    stopTokenIds: m.stopIds,
    vocabLimit: m.vocabLimit,
    stopStrings: options.stop ? [options.stop] : [],
  });
}

/** A short printable piece from the middle of a reference text (its first occurrence ends a reply there). */
function stopStringFrom(text: string): string {
  for (const len of [3, 2, 1]) {
    for (let at = Math.floor(text.length / 2); at + len <= text.length; at++) {
      const s = text.slice(at, at + len);
      if (/^[\x21-\x7e]+$/.test(s)) return s;
    }
  }
  throw new Error(`no printable piece in ${JSON.stringify(text)}`);
}

/** The request's three variants: to the end, ended by a stop string, cut by max_tokens. */
async function variants(c: Case): Promise<{ maxTokens: number; stop?: string; ref: GenerateResult }[]> {
  const full = await reference(c, { maxTokens: MAX_TOKENS });
  assert.ok(full.tokens.length >= 4, `case ${c.prompt}: the reference is long enough to cut`);
  const stop = stopStringFrom(full.text);
  const stopped = await reference(c, { maxTokens: MAX_TOKENS, stop });
  assert.equal(stopped.finishReason, 'stop');
  assert.deepEqual(stopped.stoppedBy, { string: stop });
  assert.ok(stopped.tokens.length < full.tokens.length || full.finishReason === 'stop');
  const cut = Math.floor(full.tokens.length / 2);
  const short = await reference(c, { maxTokens: cut });
  assert.equal(short.finishReason, 'length');
  assert.equal(short.tokens.length, cut);
  return [
    { maxTokens: MAX_TOKENS, ref: full },
    { maxTokens: MAX_TOKENS, stop, ref: stopped },
    { maxTokens: cut, ref: short },
  ];
}

test('scheduler: every sequence batched together gives generate()’s token ids and finish reason', async () => {
  const m = srv.model;
  const scheduler = new Scheduler(m.runner, { maxActive: 16, maxQueue: 16 });
  try {
    const runs: {
      what: string;
      ref: GenerateResult;
      seq: ServerSequence;
      out: { text: string };
      ended: Promise<FinishReason | null>;
    }[] = [];
    for (const c of CASES) {
      for (const v of await variants(c)) {
        let resolve!: (f: FinishReason | null) => void;
        const ended = new Promise<FinishReason | null>((r) => {
          resolve = r;
        });
        const out = { text: '' };
        const seq = new ServerSequence(
          m,
          {
            index: 0,
            prompt: m.tokenizer.encode(c.prompt),
            maxTokens: v.maxTokens,
            sampling: { ...SERVER_DEFAULTS, ...c.sampling },
            stopStrings: v.stop ? [v.stop] : [],
            logprobs: null,
            constraint: null,
          },
          {
            onDelta: (_i, t) => {
              out.text += t;
            },
            onFinish: (_i, finish) => resolve(finish),
          },
        );
        runs.push({ what: `${c.prompt} (stop ${v.stop}, max ${v.maxTokens})`, ref: v.ref, seq, out, ended });
      }
    }
    scheduler.submitAll(runs.map((r) => r.seq));
    for (const r of runs) {
      const finish = await r.ended;
      assert.deepEqual([...r.seq.tokens], r.ref.tokens, r.what);
      assert.equal(finish, r.ref.finishReason, r.what);
      assert.equal(r.out.text, r.ref.text, r.what);
    }
  } finally {
    await scheduler.close();
  }
});

test('HTTP: completions give generate()’s text, token count and finish reason (stop string, max_tokens)', async () => {
  const m = srv.model;
  for (const c of CASES) {
    for (const v of await variants(c)) {
      const s = c.sampling;
      const res = await fetch(`${srv.url}/v1/completions`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({
          model: m.id,
          prompt: m.tokenizer.encode(c.prompt),
          max_tokens: v.maxTokens,
          seed: s.seed,
          temperature: s.temperature,
          ...(s.topK ? { top_k: s.topK } : {}),
          ...(s.topP ? { top_p: s.topP } : {}),
          ...(s.presencePenalty ? { presence_penalty: s.presencePenalty } : {}),
          ...(s.repetitionPenalty ? { repetition_penalty: s.repetitionPenalty } : {}),
          ...(v.stop ? { stop: v.stop } : {}),
        }),
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as {
        choices: { text: string; finish_reason: string }[];
        usage: { completion_tokens: number };
      };
      const what = `${c.prompt} (stop ${v.stop}, max ${v.maxTokens})`;
      assert.equal(body.choices[0]!.text, v.ref.text, what);
      assert.equal(body.choices[0]!.finish_reason, v.ref.finishReason, what);
      assert.equal(body.usage.completion_tokens, v.ref.tokens.length, what);
    }
  }
});
