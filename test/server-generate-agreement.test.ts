/**
 * The server and the runtime's `generate()` give the same generation for the same request: with
 * the same seed and settings, the same token ids (scheduler level, several sequences batched
 * together) and the same text, token count and finish reason over HTTP, both when a stop string
 * ends the reply and when max_tokens cuts it. The stop string and the cut are taken from a
 * reference run, so each case really stops where it says. Cases with `logprobs` also agree on
 * every token's log probability and top alternatives; cases with a JSON schema (response_format)
 * give generate() the same grammar as a TokenConstraint, and agree on the constrained tokens.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generate, type GenerateResult, type TokenLogprobInfo } from '../src/runtime/generate.js';
import type { SamplingOptions } from '../src/runtime/sampling.js';
import { JsonGrammar } from '../src/server/constrain/json-constraint.js';
import { tokenText } from '../src/server/openai-format.js';
import { Scheduler } from '../src/server/scheduler.js';
import { ServerSequence, type FinishReason } from '../src/server/sequence.js';
import { constraintVocabulary, startTestServer, type TestServer } from './helpers/serve-fixture.js';

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
  /** Top alternatives to report with each token's log probability. */
  logprobs?: number;
  /** A JSON schema the reply must follow (response_format json_schema; {type: 'object'} is json_object). */
  schema?: Record<string, unknown>;
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
  { prompt: 'The weather today', sampling: { seed: 15, temperature: 0.8 }, logprobs: 3 },
  { prompt: 'A list of', sampling: { seed: 16, temperature: 1, topK: 40, repetitionPenalty: 1.1 }, logprobs: 5 },
  {
    prompt: 'The record:',
    // Short enough that the grammar ends the full reply (finish reason "stop" with no stop string).
    sampling: { seed: 17, temperature: 0.7 },
    schema: {
      type: 'object',
      properties: { color: { enum: ['red', 'green', 'blue'] }, ok: { type: 'boolean' } },
      required: ['color', 'ok'],
      additionalProperties: false,
    },
  },
  { prompt: 'JSON:', sampling: { seed: 18, temperature: 1.1, topP: 0.95 }, schema: { type: 'object' }, logprobs: 2 },
];

/** A reference run and the log probabilities its tokens reported (with `logprobs`). */
type Reference = GenerateResult & { tokenLogprobs: TokenLogprobInfo[] };

/** The case's grammar, compiled as the server compiles a request's (on the model's constraint vocabulary). */
async function grammarOf(c: Case): Promise<JsonGrammar | null> {
  return c.schema === undefined ? null : new JsonGrammar(c.schema, await constraintVocabulary(srv.model));
}

async function reference(c: Case, options: { maxTokens: number; stop?: string }): Promise<Reference> {
  const m = srv.model;
  const tokenLogprobs: TokenLogprobInfo[] = [];
  const result = await generate(m.runner, m.tokenizer.encode(c.prompt), {
    ...SERVER_DEFAULTS,
    ...c.sampling,
    tokenizer: m.tokenizer,
    maxTokens: options.maxTokens,
    stopTokenIds: m.stopIds,
    vocabLimit: m.vocabLimit,
    stopStrings: options.stop ? [options.stop] : [],
    logprobs: c.logprobs ?? null,
    constraint: (await grammarOf(c))?.start() ?? null,
    onToken: (chunk) => {
      if (chunk.logprob) tokenLogprobs.push(chunk.logprob);
    },
  });
  if (c.logprobs !== undefined) assert.equal(tokenLogprobs.length, result.tokens.length, 'one logprob entry a token');
  if (c.schema?.required !== undefined && options.stop === undefined && options.maxTokens === MAX_TOKENS) {
    assert.equal(result.finishReason, 'stop', `${c.prompt}: the grammar ends the reply`);
    const value = JSON.parse(result.text) as Record<string, unknown>;
    assert.deepEqual(Object.keys(value).sort(), [...(c.schema.required as string[])].sort(), result.text);
  }
  return { ...result, tokenLogprobs };
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
async function variants(c: Case): Promise<{ maxTokens: number; stop?: string; ref: Reference }[]> {
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
      ref: Reference;
      seq: ServerSequence;
      out: { text: string; logprobs: TokenLogprobInfo[] };
      ended: Promise<FinishReason | null>;
    }[] = [];
    for (const c of CASES) {
      for (const v of await variants(c)) {
        let resolve!: (f: FinishReason | null) => void;
        const ended = new Promise<FinishReason | null>((r) => {
          resolve = r;
        });
        const out = { text: '', logprobs: [] as TokenLogprobInfo[] };
        const seq = new ServerSequence(
          m,
          {
            index: 0,
            prompt: m.tokenizer.encode(c.prompt),
            maxTokens: v.maxTokens,
            sampling: { ...SERVER_DEFAULTS, ...c.sampling },
            stopStrings: v.stop ? [v.stop] : [],
            logprobs: c.logprobs ?? null,
            constraint: (await grammarOf(c))?.start() ?? null,
          },
          {
            onDelta: (_i, t, lp) => {
              out.text += t;
              if (lp) out.logprobs.push(lp);
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
      assert.deepEqual(r.out.logprobs, r.ref.tokenLogprobs, `${r.what}: log probabilities`);
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
          ...(c.logprobs !== undefined ? { logprobs: c.logprobs } : {}),
          ...(c.schema === undefined
            ? {}
            : { response_format: { type: 'json_schema', json_schema: { name: 'reply', schema: c.schema } } }),
        }),
      });
      assert.equal(res.status, 200);
      const body = (await res.json()) as {
        choices: {
          text: string;
          finish_reason: string;
          logprobs: { token_logprobs: number[]; top_logprobs: Record<string, number>[] } | null;
        }[];
        usage: { completion_tokens: number };
      };
      const what = `${c.prompt} (stop ${v.stop}, max ${v.maxTokens})`;
      const choice = body.choices[0]!;
      assert.equal(choice.text, v.ref.text, what);
      assert.equal(choice.finish_reason, v.ref.finishReason, what);
      assert.equal(body.usage.completion_tokens, v.ref.tokens.length, what);
      if (c.logprobs === undefined) {
        assert.equal(choice.logprobs, null, what);
        continue;
      }
      // OpenAI's legacy form: -Infinity (a token the grammar masks) travels as -9999.
      const sent = (x: number) => (Number.isFinite(x) ? x : -9999);
      const lp = choice.logprobs!;
      assert.deepEqual(
        lp.token_logprobs,
        v.ref.tokenLogprobs.map((l) => sent(l.logprob)),
        `${what}: token log probabilities`,
      );
      // Keyed by the token's text, where two ids with one text keep the first.
      const topOf = (l: TokenLogprobInfo) => {
        const out: Record<string, number> = {};
        for (const t of l.top) out[tokenText(m.tokenizer, t.token)] ??= sent(t.logprob);
        return out;
      };
      assert.deepEqual(lp.top_logprobs, v.ref.tokenLogprobs.map(topOf), `${what}: top alternatives`);
    }
  }
});
