/** `mpt serve [MODEL]`: an OpenAI-compatible HTTP server with continuous batching and a chat page. */
import type { KvType } from '../../backends/backend.js';
import { InputError } from '../../errors.js';
import { defaultModelPath } from '../../model/default-model.js';
import type { BackendName } from '../../backends/registry.js';
import { DEFAULT_PARALLEL, MptServer } from '../../server/http-server.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../../server/listen-address.js';
import { resolveBackendName } from '../../runtime/model.js';
import { loadServedModel } from '../../server/model-host.js';
import { writeAddressLine } from '../address-line.js';
import { parseArgs } from '../args.js';
import { checkTokenizerOption } from '../model-options.js';

export const summary = 'serve a model over an OpenAI-compatible HTTP API, with a web chat page';
export const help = `usage: mpt serve [MODEL] [options]

Serves MODEL (a Hugging Face MPT folder or a GGUF file; default: the shipped model) over HTTP:
  POST /v1/completions, POST /v1/chat/completions (stream: true for server-sent events),
  POST /v1/embeddings, GET /v1/models, GET /health, GET /metrics (Prometheus), POST /tokenize,
  POST /detokenize (llama-server's shapes), and a chat page at /. Requests name the model
  ("model": the --model-name, listed by /v1/models), as OpenAI's API requires.
Requests are decoded together in one batch (continuous batching): sequences join and leave
the shared decode step as they arrive and finish.

options:
  --host HOST          address to bind (default ${DEFAULT_HOST}; 0.0.0.0 exposes it to the network)
  --port N             port (default ${DEFAULT_PORT}; 0 picks a free one)
  --parallel N         most sequences decoded at once (default ${DEFAULT_PARALLEL})
  --queue N            most sequences waiting for a slot; beyond it 429 + Retry-After (default 64)
  --prefix-cache N     keep up to N finished sequences' caches for prompts that start the same way
                       (chat turns re-send the conversation: only the new part is read); default 0.
                       Reused positions come from other batches: logits may differ in their last bits
  --ctx N              context length per sequence (default: the model's max_seq_len)
  --timeout S          per-request time limit in seconds, queue wait included (default 600; 0 = none)
  --backend NAME       reference | wasm | webgpu | auto (default auto: wasm when built, else reference)
  --threads N          worker threads for the wasm backend
  --api-key KEY        require "Authorization: Bearer KEY" on /v1/* (or set MPT_API_KEY)
  --cors ORIGIN        allow browser calls from ORIGIN ("*", or a comma-separated list)
  --max-body BYTES     largest request body (default 1048576)
  --model-name NAME    the id clients send as "model" (default: the folder name)
  --template NAME      chat prompt format: auto, chatml, instruct, none, jinja (default auto)
  --tokenizer PATH     a tokenizer.json (or a folder holding one) instead of the model's
  --kv-type TYPE       KV cache storage: f32, f16, q8_0 (default f32)
  --grace S            on SIGTERM/SIGINT, seconds to let requests finish before cancelling (default 10)
  -q, --quiet          no per-request log lines`;

function positiveInt(name: string, v: unknown, min = 1): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
    throw new InputError(`--${name} must be an integer >= ${min}, got ${String(v)}`);
  return v;
}

async function pickBackend(name: string | undefined): Promise<BackendName> {
  if (name !== undefined && !['reference', 'wasm', 'webgpu', 'auto'].includes(name))
    throw new InputError(`--backend must be auto, wasm, webgpu or reference, got "${name}"`);
  return resolveBackendName(name as BackendName | 'auto' | undefined);
}

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      host: { type: 'string' },
      port: { type: 'number' },
      parallel: { type: 'number' },
      queue: { type: 'number' },
      ctx: { type: 'number' },
      timeout: { type: 'number' },
      backend: { type: 'string' },
      threads: { type: 'number' },
      'api-key': { type: 'string' },
      cors: { type: 'string' },
      'max-body': { type: 'number' },
      'model-name': { type: 'string' },
      template: { type: 'string' },
      tokenizer: { type: 'string' },
      'kv-type': { type: 'string' },
      grace: { type: 'number' },
      quiet: { type: 'boolean', short: 'q' },
      'prefix-cache': { type: 'number' },
    },
    'serve',
  );
  if (positionals.length > 1) throw new InputError(`serve takes one MODEL, got ${positionals.length}`);
  const path = positionals[0] ?? defaultModelPath();
  const port = positiveInt('port', options['port'], 0) ?? DEFAULT_PORT;
  if (port > 65535) throw new InputError(`--port must be <= 65535, got ${port}`);
  const parallel = positiveInt('parallel', options['parallel']);
  const queue = positiveInt('queue', options['queue'], 0);
  const prefixCache = positiveInt('prefix-cache', options['prefix-cache'], 0);
  const ctx = positiveInt('ctx', options['ctx']);
  const threads = positiveInt('threads', options['threads']);
  const maxBody = positiveInt('max-body', options['max-body']);
  const timeout = options['timeout'] as number | undefined;
  if (timeout !== undefined && !(timeout >= 0)) throw new InputError(`--timeout must be >= 0 seconds, got ${timeout}`);
  const grace = (options['grace'] as number | undefined) ?? 10;
  if (!(grace >= 0)) throw new InputError(`--grace must be >= 0 seconds, got ${grace}`);
  const kvType = options['kv-type'] as string | undefined;
  if (kvType !== undefined && !['f32', 'f16', 'q8_0'].includes(kvType))
    throw new InputError(`--kv-type must be f32, f16 or q8_0, got "${kvType}"`);
  const apiKey = (options['api-key'] as string | undefined) ?? process.env['MPT_API_KEY'];
  const quiet = options['quiet'] === true;
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);

  const tokenizer = options['tokenizer'] as string | undefined;
  if (tokenizer !== undefined) checkTokenizerOption(tokenizer);
  const backend = await pickBackend(options['backend'] as string | undefined);
  const t0 = performance.now();
  const model = await loadServedModel(path, {
    backend,
    threads,
    ctx,
    name: options['model-name'] as string | undefined,
    template: options['template'] as string | undefined,
    tokenizer,
    kvType: kvType as KvType | undefined,
    parallel: parallel ?? DEFAULT_PARALLEL,
    onNote: (m) => log(`note: ${m}`),
  });
  // Fail at start-up, not on the first request, when the backend cannot store this KV type.
  model.runner.createCache({ capacity: 1, kvType: model.kvType }).dispose();
  const server = new MptServer(model, {
    host: options['host'] as string | undefined,
    port,
    parallel,
    queue,
    prefixCache,
    timeoutS: timeout,
    apiKey,
    cors: options['cors'] as string | undefined,
    maxBodyBytes: maxBody,
    log: quiet ? undefined : log,
  });
  const addr = await server.listen();
  log(
    `loaded ${model.id} (${backend} backend, context ${model.contextLength}, prompt format ${model.format.name}) in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  log(`listening on ${addr.url} (parallel ${server.options.parallel}, queue ${server.options.queue})`);
  log(`chat page at ${addr.url}/; OpenAI API at ${addr.url}/v1 with "model": ${JSON.stringify(model.id)}`);
  writeAddressLine(addr.url);

  return await new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) {
        log(`${signal} again: exiting now`);
        process.exit(1);
      }
      stopping = true;
      log(`${signal}: finishing ${server.inFlight} request(s) (up to ${grace} s), then exiting`);
      server
        .shutdown(grace * 1000)
        .then(() => model.runner.dispose())
        .then(
          () => {
            log('stopped');
            resolve(0);
          },
          (e) => {
            log(`shutdown failed: ${(e as Error).message}`);
            resolve(1);
          },
        );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
