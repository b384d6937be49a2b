/**
 * The longest time one request holds the server's event loop: requests at the body limit (a
 * 2,048-message chat, with and without `truncate`, a long completion prompt, /tokenize with pieces,
 * /detokenize, a first JSON-schema request) and at the limits of the fields that multiply
 * per-token work (n, logprobs / top_logprobs, echo with the prompt's logprobs, stop, logit_bias),
 * and bodies that are one large list or record (a token-id prompt, logit_bias or metadata at the
 * body limit, a token-id prompt that is not valid JSON),
 * sent one at a time to a server in this process on the tiny GPT-NeoX-vocabulary fixture (wasm
 * backend: the model's own work is in worker threads), with the prompt formats that matter: the
 * shipped model's (plain), MPT-7B-Chat's Jinja template, and a hostile template that spends the
 * whole render budget. For each: the event loop's longest delay while the request ran
 * (`monitorEventLoopDelay`, 1 ms resolution) in each repetition, and the request's wall time. The
 * first row, a trivial request, is the floor: on a busy machine compare the others to it.
 *   node dist/bench/server-stall.js [--max-body 1048576] [--reps 2] [--formats plain,mpt-7b-chat,hostile] [--only SUBSTRING]
 * Each repetition is a fresh server on a fresh served model (nothing cached: grammars, the
 * constraint vocabulary), so "first JSON-schema request" is first in every repetition; what the
 * tokenizer object caches itself (token texts for logprobs) is only cold in repetition 1, which is
 * why `stalls_ms` lists every repetition. Bodies are built and sent as bytes and answers read as
 * bytes, so the client adds no stall.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { jinjaFormat, plainFormat, type PromptFormat } from '../src/runtime/chat-template.js';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel, servedModelFrom } from '../src/server/model-host.js';
import { words } from './fixed-words.js';

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? (process.argv[at + 1] ?? fallback) : fallback;
}

const maxBody = Number(option('max-body', String(1024 * 1024)));
const reps = Number(option('reps', '2'));
const formatNames = option('formats', 'plain,mpt-7b-chat,hostile').split(',');
const only = option('only', '');
const fixtures = fileURLToPath(new URL('../../test/fixtures/', import.meta.url));
const mptChatTemplate = (
  JSON.parse(readFileSync(`${fixtures}mpt-configs/mpt-7b-chat.tokenizer_config.json`, 'utf8')) as {
    chat_template: string;
  }
).chat_template;

/** A template that loops until just under the work budget before it renders the messages as ChatML. */
const HOSTILE_TEMPLATE =
  '{% set ns = namespace(n=0) %}{% for i in range(15000) %}{% set ns.n = ns.n + 1 %}{% endfor %}' +
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

const specials = { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>' };
const formats: Record<string, () => PromptFormat> = {
  plain: () => plainFormat(),
  'mpt-7b-chat': () => jinjaFormat(mptChatTemplate, specials),
  hostile: () => jinjaFormat(HOSTILE_TEMPLATE, specials),
};

/** The largest JSON body below the limit made by `make(n)` for growing n (n: characters of content). */
function fill(make: (chars: number) => unknown): Buffer {
  let lo = 0;
  let hi = maxBody;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (Buffer.byteLength(JSON.stringify(make(mid))) <= maxBody) lo = mid;
    else hi = mid - 1;
  }
  return Buffer.from(JSON.stringify(make(lo)));
}

function chatBody(model: string, extra: object): Buffer {
  return fill((chars) => {
    const each = Math.floor(chars / 2048);
    const messages = Array.from({ length: 2048 }, (_, i) => ({
      role: i % 2 ? 'assistant' : 'user',
      content: words(each, i + 1),
    }));
    return { model, messages, max_tokens: 1, ...extra };
  });
}

function post(url: string, path: string, body: Buffer): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}${path}`,
      { method: 'POST', headers: { 'Content-Type': 'application/json', 'Content-Length': body.length } },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => {
          bytes += c.length;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const loaded = await loadServedModel(`${fixtures}tiny-neox-vocab/`, {
  backend: 'wasm',
  threads: 1,
  onNote: () => {},
});
const model = loaded.id;
const tok = loaded.tokenizer;
/** `{...fields, [key]: ids}` with as many pseudo-random token ids as fit the body limit. */
function idsBody(key: string, fields: object = {}): Buffer {
  const ids: number[] = [];
  let length = JSON.stringify({ ...fields, [key]: [] }).length;
  let x = 3;
  for (;;) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const id = (x >>> 8) % 50_000;
    length += String(id).length + 1;
    if (length > maxBody) break;
    ids.push(id);
  }
  return Buffer.from(JSON.stringify({ ...fields, [key]: ids }));
}
const idsText = idsBody('tokens');
const schemaBody = (() => {
  const properties: Record<string, unknown> = {};
  for (let i = 0; i < 64; i++) properties[`field_${i}`] = { type: 'string', maxLength: 8 };
  return Buffer.from(
    JSON.stringify({
      model,
      prompt: 'Give JSON:',
      max_tokens: 1,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties } } },
    }),
  );
})();

/** Token ids 1, 2, … (none of them the end-of-text id 0) filling `length` positions. */
const promptIds = (length: number) => Array.from({ length }, (_, i) => 1 + ((i * 7919) % 50_000));
const json = (o: object) => Buffer.from(JSON.stringify(o));
/** The end-of-text token is banned so every choice runs to max_tokens. */
const noEos = { '0': -100 };
// The context is 2,048 tokens.
const longPrompt = promptIds(2048 - 64);
const stopList = Array.from({ length: 4 }, (_, i) => `${String.fromCharCode(0x41 + i)}${'z'.repeat(255)}`);
const bias: Record<string, number> = { ...noEos };
for (let i = 1; Object.keys(bias).length < 300; i++) bias[String(i * 167)] = (i % 2 ? 1 : -1) * (i % 100);

const cases: { name: string; path: string; body: Buffer; chatOnly?: boolean }[] = [
  {
    name: 'trivial completion (the floor)',
    path: '/v1/completions',
    body: json({ model, prompt: 'Hello', max_tokens: 1 }),
  },
  { name: 'chat, 2048 messages', path: '/v1/chat/completions', body: chatBody(model, {}), chatOnly: true },
  {
    name: 'chat, 2048 messages, truncate',
    path: '/v1/chat/completions',
    body: chatBody(model, { truncate: 'oldest_turns' }),
    chatOnly: true,
  },
  {
    name: 'completion, long prompt',
    path: '/v1/completions',
    body: fill((chars) => ({ model, prompt: words(chars, 7), max_tokens: 1 })),
  },
  {
    name: 'tokenize with pieces',
    path: '/tokenize',
    body: Buffer.from(JSON.stringify({ content: words(200_000, 7), with_pieces: true })),
  },
  { name: 'detokenize', path: '/detokenize', body: idsText },
  {
    // Refused (longer than the context), after the prompt's lists have been tried.
    name: 'completion, token-id prompt at the body limit',
    path: '/v1/completions',
    body: idsBody('prompt', { model }),
  },
  {
    name: 'logit_bias at the body limit (refused: over 300 entries)',
    path: '/v1/completions',
    body: fill((chars) => {
      const logit_bias: Record<string, number> = {};
      for (let i = 0; i < chars / 10; i++) logit_bias[String(i)] = 1;
      return { model, prompt: 'Hello', max_tokens: 1, logit_bias };
    }),
  },
  {
    name: 'metadata at the body limit (refused: over 16 pairs)',
    path: '/v1/completions',
    body: fill((chars) => {
      const metadata: Record<string, string> = {};
      for (let i = 0; i < chars / 16; i++) metadata[`key_${i}`] = `v${i}`;
      return { model, prompt: 'Hello', max_tokens: 1, metadata };
    }),
  },
  {
    // Refused: one stray comma at the end of the token ids (the message names its position).
    name: 'invalid JSON at the body limit',
    path: '/v1/completions',
    body: Buffer.concat([idsBody('prompt', { model }).subarray(0, maxBody - 3), Buffer.from(',]}')]),
  },
  { name: 'first JSON-schema request', path: '/v1/completions', body: schemaBody },
  {
    name: 'n 64, long prompt, 16 tokens',
    path: '/v1/completions',
    body: json({ model, prompt: promptIds(2048 - 16), n: 64, max_tokens: 16, logit_bias: noEos }),
  },
  {
    name: 'logit_bias 300 entries, n 64, 16 tokens',
    path: '/v1/completions',
    body: json({ model, prompt: 'Hello', n: 64, max_tokens: 16, logit_bias: bias }),
  },
  {
    name: 'stop 4 x 256 chars, n 64, 64 tokens',
    path: '/v1/completions',
    body: json({ model, prompt: 'Hello', n: 64, max_tokens: 64, stop: stopList, logit_bias: noEos }),
  },
  {
    name: 'logprobs 5, n 64, 64 tokens',
    path: '/v1/completions',
    body: json({ model, prompt: 'Hello', n: 64, max_tokens: 64, logprobs: 5, logit_bias: noEos }),
  },
  {
    name: 'chat top_logprobs 20, n 64, 64 tokens',
    path: '/v1/chat/completions',
    body: json({
      model,
      messages: [{ role: 'user', content: 'Hello' }],
      n: 64,
      max_tokens: 64,
      logprobs: true,
      top_logprobs: 20,
      logit_bias: noEos,
    }),
  },
  {
    name: 'echo + logprobs 5, 1,984-token prompt',
    path: '/v1/completions',
    body: json({ model, prompt: longPrompt, max_tokens: 0, echo: true, logprobs: 5 }),
  },
  {
    name: 'echo + logprobs 5, 1,984-token prompt, n 8',
    path: '/v1/completions',
    body: json({ model, prompt: longPrompt, n: 8, max_tokens: 1, echo: true, logprobs: 5, logit_bias: noEos }),
  },
];

console.error(`bodies built: ${cases.map((c) => c.body.length).join(', ')} bytes`);
const results = [];
const histogram = monitorEventLoopDelay({ resolution: 1 });
for (const formatName of formatNames) {
  const make = formats[formatName];
  if (!make) throw new Error(`unknown format ${formatName} (${Object.keys(formats).join(', ')})`);
  for (const c of cases) {
    if (formatName !== formatNames[0] && !c.chatOnly) continue;
    if (only && !c.name.includes(only)) continue;
    const stalls: number[] = [];
    let wall = Infinity;
    let status = 0;
    let bytes = 0;
    for (let r = 0; r < reps; r++) {
      // A fresh server on a fresh served model each time: nothing cached from the last request
      // (grammars are per server, the constraint vocabulary per served model).
      const served = servedModelFrom(loaded.runner, tok, { id: model, ctx: 2048, format: make() });
      const server = new MptServer(served, { port: 0, host: '127.0.0.1', maxBodyBytes: maxBody });
      const { url } = await server.listen();
      // Starts the tokenizer's worker thread, which is not what is measured.
      await post(
        url,
        '/v1/completions',
        Buffer.from(JSON.stringify({ model, prompt: '-'.repeat(3000), max_tokens: 1 })),
      );
      histogram.reset();
      histogram.enable();
      // The monitor's first sample only sets its clock: a stall before it would go unseen.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const start = performance.now();
      const answer = await post(url, c.path, c.body);
      wall = Math.min(wall, performance.now() - start);
      histogram.disable();
      stalls.push(Math.round(histogram.max / 1e6));
      status = answer.status;
      bytes = answer.bytes;
      await server.shutdown(0);
    }
    results.push({
      request: c.name,
      format: c.chatOnly ? formatName : 'any',
      body_bytes: c.body.length,
      status,
      answer_bytes: bytes,
      longest_stall_ms: Math.max(...stalls),
      stalls_ms: stalls,
      wall_ms: Math.round(wall),
    });
    console.error(JSON.stringify(results.at(-1)));
  }
}
console.log(JSON.stringify({ max_body: maxBody, reps, results }, null, 1));
await loaded.runner.dispose();
