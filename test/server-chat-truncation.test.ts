/**
 * `truncate: "oldest_turns"` drops the fewest oldest turns that make the prompt fit (the same
 * choice as dropping them one at a time and tokenizing each), with a number of renders that grows
 * with the logarithm of the conversation's length, and without holding the server's event loop
 * (nor bringing the token ids of conversations too long for the context to its thread).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { type ChatMessage, jinjaFormat, plainFormat, type PromptFormat } from '../src/runtime/chat-template.js';
import { MptServer } from '../src/server/http-server.js';
import { servedModelFrom } from '../src/server/model-host.js';
import { fixturePath } from './helpers/goldens.js';
import { tinyModel } from './helpers/serve-fixture.js';

const mptChat = JSON.parse(readFileSync(fixturePath('mpt-configs/mpt-7b-chat.tokenizer_config.json'), 'utf8')) as {
  chat_template: string;
};

/**
 * MPT-7B-Chat's template, counting its renders: rendered in place (without `jinja`, the server's
 * prompt worker cannot rebuild it in its thread), so that the count is this thread's.
 */
function countingFormat(): { format: PromptFormat; renders: () => number; lastRenderEnd: () => number } {
  const { jinja: _inWorker, ...inner } = jinjaFormat(mptChat.chat_template, {
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
  });
  let n = 0;
  let end = 0;
  const format: PromptFormat = {
    ...inner,
    render(messages, o) {
      n++;
      const text = inner.render(messages, o);
      end = performance.now();
      return text;
    },
  };
  return { format, renders: () => n, lastRenderEnd: () => end };
}

/** The parts of a chat answer (or error) these tests read. */
interface ChatAnswer {
  usage: { prompt_tokens: number };
  error: { param: string };
}

async function serve(ctx: number, format: PromptFormat) {
  const m = await tinyModel();
  const served = servedModelFrom(m.runner, m.tokenizer, { id: m.id, ctx, format });
  const server = new MptServer(served, { port: 0, host: '127.0.0.1', maxBodyBytes: 4 * 1024 * 1024 });
  const { url } = await server.listen();
  const post = async (body: unknown) => {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: m.id, truncate: 'oldest_turns', ...(body as object) }),
    });
    return { status: r.status, json: (await r.json()) as ChatAnswer };
  };
  return { m, url, post, close: () => server.shutdown(0) };
}

test('oldest_turns keeps what dropping turns one at a time keeps', { timeout: 60_000 }, async () => {
  const { format, renders } = countingFormat();
  const C = 256;
  const s = await serve(C, format);
  try {
    const words = ['alpha', 'a somewhat longer turn, with punctuation; and more words', 'ok', 'naïve café — über'];
    const messages: ChatMessage[] = [
      { role: 'system', content: 'You are terse.' },
      { role: 'system', content: 'Answer in English.' },
      ...Array.from({ length: 40 }, (_, i) => ({
        role: i % 2 ? 'assistant' : 'user',
        content: `${i}: ${words[i % words.length]!.repeat(1 + (i % 5))}`,
      })),
    ];
    const render = (list: readonly ChatMessage[]) => format.render(list, { addGenerationPrompt: true });
    for (const asked of [1, 40, 100, 200, undefined]) {
      // The reference: drop the oldest non-system turn one at a time, tokenizing each.
      const reserve = Math.min(asked ?? C, C / 2);
      let kept = [...messages];
      let want = s.m.tokenizer.encode(render(kept));
      while (want.length + reserve > C && kept.length > 3) {
        kept = [...kept.slice(0, 2), ...kept.slice(3)];
        want = s.m.tokenizer.encode(render(kept));
      }
      assert.ok(kept.length < messages.length && kept.length > 3, `asked ${asked}: some turns dropped, not all`);
      const r = await s.post({ messages, max_tokens: asked });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.equal(r.json.usage.prompt_tokens, want.length, `asked ${asked}`);
    }
    // A conversation that fits is rendered once.
    const fits = s.m.tokenizer.encode(render(messages.slice(0, 6))).length;
    const before = renders();
    const short = await s.post({ messages: messages.slice(0, 6), max_tokens: 1 });
    assert.equal(short.status, 200, JSON.stringify(short.json));
    assert.equal(short.json.usage.prompt_tokens, fits);
    assert.equal(renders() - before, 1);
    // Not even the latest turn fits: the context error names the messages.
    const huge = await s.post({ messages: [...messages, { role: 'user', content: 'word '.repeat(400) }] });
    assert.equal(huge.status, 400);
    assert.equal(huge.json.error.param, 'messages');
  } finally {
    await s.close();
  }
});

test('oldest_turns over 2,048 turns renders a few dozen times and keeps the server answering', {
  timeout: 120_000,
}, async (t) => {
  const { format, renders, lastRenderEnd } = countingFormat();
  const s = await serve(2048, format);
  try {
    // Each turn is about ten tokens, so most of them must go; their bytes alone do not show it.
    const messages = Array.from({ length: 2048 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content: `turn ${i} says hello there`,
    }));
    let answered = false;
    const big = s.post({ messages, max_tokens: 1 }).then((r) => {
      answered = true;
      return r;
    });
    const gaps: { from: number; to: number }[] = [];
    let last = performance.now();
    while (!answered) {
      const h = await fetch(`${s.url}/health`);
      assert.equal(h.status, 200);
      await h.arrayBuffer();
      const now = performance.now();
      gaps.push({ from: last, to: now });
      last = now;
    }
    const r = await big;
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.ok(r.json.usage.prompt_tokens + 1 <= 2048);
    // A doubling search: at most 2 (log2 2048 + 1) + 2 renders; one at a time took over a thousand.
    assert.ok(renders() <= 26, `${renders()} renders`);
    // While the prompt was being chosen (the reply's prefill, on this backend's main thread, is not
    // what is measured).
    const worst = Math.max(...gaps.filter((g) => g.from < lastRenderEnd()).map((g) => g.to - g.from));
    t.diagnostic(`${renders()} renders, longest wait for /health ${worst.toFixed(0)} ms`);
    assert.ok(worst < 2000, `the event loop was held for ${worst.toFixed(0)} ms (${gaps.length} health answers)`);
  } finally {
    await s.close();
  }
});

test('oldest_turns learns the length of a conversation too long for the context without its token ids', {
  timeout: 120_000,
}, async () => {
  // The prompt worker's replies to this thread, and the length of each id list among them.
  let replies = 0;
  const received: number[] = [];
  const emit = Worker.prototype.emit;
  Worker.prototype.emit = function (this: Worker, event: string | symbol, ...args: unknown[]) {
    const value = (args[0] as { value?: unknown } | undefined)?.value;
    if (event === 'message') replies++;
    if (event === 'message' && value instanceof Int32Array) received.push(value.length);
    return emit.call(this, event, ...args);
  };
  const C = 512;
  const s = await serve(C, plainFormat());
  try {
    // Each probe's text is far longer than the texts encoded in place, and most turns must go.
    const messages = Array.from({ length: 512 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content: `turn ${i} says hello there, and a little more`,
    }));
    const r = await s.post({ messages, max_tokens: 1 });
    assert.equal(r.status, 200, JSON.stringify(r.json));
    assert.ok(r.json.usage.prompt_tokens < C && r.json.usage.prompt_tokens > C / 2, `${r.json.usage.prompt_tokens}`);
    assert.ok(replies > 0, 'the long probes were encoded in the prompt worker');
    // Only prompts that fit come back as ids (thousands of ids per probe otherwise).
    assert.ok(
      received.every((n) => n < C),
      `id lists of ${received.join(', ')}`,
    );
  } finally {
    Worker.prototype.emit = emit;
    await s.close();
  }
});
