/**
 * The HTTP server behind `mpt serve`, on Node's own `node:http`: routing, body limits, API key,
 * CORS, the OpenAI-compatible endpoints, health and metrics, the chat page, graceful shutdown.
 *
 * Routes: POST /v1/completions, POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models[/ID], POST /tokenize,
 * POST /detokenize, GET /health, GET /metrics, GET / (the chat page) and its assets. Every failure is OpenAI's error JSON.
 */
import { timingSafeEqual } from 'node:crypto';
import {
  createServer,
  maxHeaderSize,
  STATUS_CODES,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { ApiError, badRequest, toApiError } from './api-error.js';
import { handleChat } from './chat-completions.js';
import { handleCompletion } from './completions.js';
import type { GenerationContext } from './generation-job.js';
import { servedModelNote } from './generation-request.js';
import { GrammarCache } from './grammar.js';
import { handleEmbeddings } from './embeddings.js';
import { Metrics } from './metrics.js';
import { PromptWorker } from './prompt-worker.js';
import { readJsonBody } from './request-body.js';
import { sendError, sendJson } from './respond.js';
import type { ServedModel } from './model-host.js';
import { DEFAULT_HOST, DEFAULT_PORT } from './listen-address.js';
import { Scheduler } from './scheduler.js';
import { handleDetokenize, handleTokenize } from './tokenize.js';
import { loadWebAssets, type WebAsset } from './web-assets.js';

/** Sequences decoded at once when `parallel` is not given. */
export const DEFAULT_PARALLEL = 8;

export interface ServerOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Most sequences decoded together. Default 8. */
  parallel?: number;
  /** Most sequences waiting for a slot before 429. Default 64. */
  queue?: number;
  /** Per-request time limit in seconds (queue wait included); 0 = none. Default 600. */
  timeoutS?: number;
  /** Required as `Authorization: Bearer KEY` on /v1/* when set. */
  apiKey?: string;
  /** Allowed origin(s) for cross-origin browser calls: "*", one origin, or a comma-separated list. */
  cors?: string;
  /** Largest request body accepted, in bytes. Default 1 MiB. */
  maxBodyBytes?: number;
  /** Prompt tokens processed per batched step. Default 256. */
  prefillChunk?: number;
  /**
   * Finished sequences' caches kept for prompts that start the same way (chat turns re-send the
   * conversation), at most this many; 0 = off (default). A reused prefix was computed in other
   * batches, so logits may differ from a fresh run in their last bits.
   */
  prefixCache?: number;
  /** Log one line per request to this function. */
  log?: (line: string) => void;
}

function endpointLabel(path: string): string {
  if (path.startsWith('/v1/models/')) return '/v1/models/:id';
  const known = [
    '/v1/completions',
    '/v1/chat/completions',
    '/v1/embeddings',
    '/v1/models',
    '/tokenize',
    '/detokenize',
    '/health',
    '/metrics',
    '/',
  ];
  if (known.includes(path)) return path;
  if (path.startsWith('/static/')) return '/static';
  return 'other';
}

/** What a request Node's HTTP parser refused (or that timed out half-read) gets. */
function parserError(err: NodeJS.ErrnoException): ApiError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW': {
      const message = `The request's headers (URL included) exceed the ${maxHeaderSize} bytes this server accepts.`;
      return new ApiError(431, message, 'invalid_request_error', null, 'headers_too_large');
    }
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW': {
      const message = 'The chunk extensions of the request body are too large.';
      return new ApiError(413, message, 'invalid_request_error', null, 'request_too_large');
    }
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return new ApiError(408, 'The request did not arrive in time.', 'timeout_error', null, 'request_timeout');
    default:
      return badRequest(`The request could not be parsed as HTTP/1.1 (${err.message}).`, null, 'bad_request');
  }
}

export class MptServer {
  readonly scheduler: Scheduler;
  readonly metrics = new Metrics();
  private readonly server: Server;
  private readonly prompts: PromptWorker;
  /** Computes JSON-constraint masks (grammar.ts). */
  private readonly masks: PromptWorker;
  private readonly ctx: GenerationContext;
  private readonly jobs = new Set<{ cancel(reason: 'shutdown'): void; done: Promise<void> }>();
  private readonly web: Map<string, WebAsset>;
  private draining = false;
  /** A large body's parse error, found by a whole parse in the prompt worker. */
  private readonly jsonErrorOf = (text: string) => this.prompts.jsonError(text);
  private shutdownPromise: Promise<void> | null = null;
  readonly options: Required<Omit<ServerOptions, 'apiKey' | 'cors' | 'log'>> &
    Pick<ServerOptions, 'apiKey' | 'cors' | 'log'>;

  constructor(
    readonly model: ServedModel,
    options: ServerOptions = {},
  ) {
    this.options = {
      host: options.host ?? DEFAULT_HOST,
      port: options.port ?? DEFAULT_PORT,
      parallel: options.parallel ?? DEFAULT_PARALLEL,
      queue: options.queue ?? 64,
      timeoutS: options.timeoutS ?? 600,
      maxBodyBytes: options.maxBodyBytes ?? 1024 * 1024,
      prefillChunk: options.prefillChunk ?? 256,
      prefixCache: options.prefixCache ?? 0,
      apiKey: options.apiKey,
      cors: options.cors,
      log: options.log,
    };
    this.scheduler = new Scheduler(model.runner, {
      maxActive: this.options.parallel,
      maxQueue: this.options.queue,
      prefillChunk: this.options.prefillChunk,
      kvType: model.kvType,
      prefixCache: this.options.prefixCache,
    });
    this.prompts = new PromptWorker(model.tokenizer, { format: model.format });
    // A thread of its own (started on the first JSON-constrained request): a mask can take the
    // better part of a second, which other requests' prompts should not wait behind.
    this.masks = new PromptWorker(model.tokenizer);
    this.ctx = {
      model,
      scheduler: this.scheduler,
      metrics: this.metrics,
      grammars: new GrammarCache(this.masks),
      prompts: this.prompts,
      timeoutMs: this.options.timeoutS * 1000,
      headers: {},
      track: (job) => {
        this.jobs.add(job);
        void job.done.finally(() => this.jobs.delete(job));
      },
    };
    this.web = loadWebAssets();
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.clientError(err, socket));
    this.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      const message = `Expect: ${req.headers.expect} is not supported (only 100-continue).`;
      const e = new ApiError(417, message, 'invalid_request_error', null, 'expectation_failed');
      sendError(res, e, this.corsHeaders(req));
    });
    this.server.keepAliveTimeout = 5000;
    // Slow or stalled uploads cannot hold a connection forever.
    this.server.requestTimeout = 60_000;
    this.server.headersTimeout = 30_000;
  }

  /** Starts listening; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number; url: string }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        this.prompts.start();
        const a = this.server.address() as AddressInfo;
        const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
        resolve({ host: a.address, port: a.port, url: `http://${host}:${a.port}` });
      });
    });
  }

  /** Requests being generated right now. */
  get inFlight(): number {
    return this.jobs.size;
  }

  /**
   * Stops accepting requests, lets in-flight ones finish for up to `graceMs`, cancels the rest,
   * then closes every connection. Resolves when nothing is left running.
   */
  shutdown(graceMs = 10_000): Promise<void> {
    this.shutdownPromise ??= (async () => {
      this.draining = true;
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      this.server.closeIdleConnections();
      const pending = Promise.all([...this.jobs].map((j) => j.done));
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((r) => {
        timer = setTimeout(r, graceMs);
      });
      await Promise.race([pending, expired]);
      clearTimeout(timer);
      for (const j of this.jobs) j.cancel('shutdown');
      const stopping = new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down');
      this.prompts.close(stopping);
      this.masks.close(stopping);
      await Promise.all([...this.jobs].map((j) => j.done));
      await this.scheduler.close();
      this.server.closeAllConnections();
      await closed;
    })();
    return this.shutdownPromise;
  }

  /**
   * A request Node's parser refused never reaches a handler: there is only the socket, on which
   * the response is written by hand (Node's own would have no body).
   */
  private clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const started = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage?.headersSent === true;
    if (err.code === 'ECONNRESET' || !socket.writable || started) {
      socket.destroy();
      return;
    }
    const e = parserError(err);
    const body = JSON.stringify(e.toBody());
    socket.end(
      [
        `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}`,
        'Content-Type: application/json',
        `Content-Length: ${Buffer.byteLength(body)}`,
        'Connection: close',
        '',
        body,
      ].join('\r\n'),
    );
    this.metrics.countRequest('other', e.status);
    this.options.log?.(`- - ${e.status} (${err.code ?? err.message})`);
  }

  private corsHeaders(req: IncomingMessage): Record<string, string> {
    const cors = this.options.cors;
    if (!cors) return {};
    const origin = req.headers.origin;
    const allowed = cors
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    let allow: string | undefined;
    if (allowed.includes('*')) allow = '*';
    else if (origin && allowed.includes(origin)) allow = origin;
    if (!allow) return {};
    return {
      'Access-Control-Allow-Origin': allow,
      'Access-Control-Allow-Methods': 'GET, POST, OPTIONS',
      'Access-Control-Allow-Headers': 'Authorization, Content-Type',
      'Access-Control-Max-Age': '600',
      ...(allow === '*' ? {} : { Vary: 'Origin' }),
    };
  }

  /** Throws the 401 unless the request carries the API key (when the server has one). */
  private checkApiKey(req: IncomingMessage): void {
    const key = this.options.apiKey;
    if (!key) return;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    const given = Buffer.from(m ? m[1]!.trim() : '');
    const want = Buffer.from(key);
    if (m && given.length === want.length && timingSafeEqual(given, want)) return;
    throw new ApiError(
      401,
      'Incorrect or missing API key: send it as "Authorization: Bearer KEY".',
      'invalid_request_error',
      null,
      'invalid_api_key',
      { 'WWW-Authenticate': 'Bearer' },
    );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    let path = '/';
    try {
      path = new URL(req.url ?? '/', 'http://localhost').pathname;
    } catch {
      path = 'invalid';
    }
    const endpoint = endpointLabel(path);
    const headers = this.corsHeaders(req);
    res.on('close', () => {
      // A client that left before any response is counted as nginx does: 499.
      const status = res.headersSent ? res.statusCode : 499;
      this.metrics.countRequest(endpoint, status);
      this.options.log?.(`${req.method} ${path} ${status} ${(performance.now() - started).toFixed(0)}ms`);
    });
    try {
      await this.route(req, res, path, headers);
    } catch (e) {
      const err = toApiError(e);
      if (err.status >= 500 && !(e instanceof ApiError))
        this.options.log?.(`error: ${(e as Error)?.stack ?? String(e)}`);
      sendError(res, err, headers);
      // A body we refused to read must not be parsed as the next request on this connection.
      if (err.status === 413 || err.status === 415) req.resume();
    }
  }

  private async route(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    headers: Record<string, string>,
  ): Promise<void> {
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') {
      res.writeHead(204, { ...headers, Allow: 'GET, POST, OPTIONS', 'Content-Length': '0' });
      res.end();
      return;
    }
    const allow = (methods: string[]) => {
      if (!methods.includes(method)) {
        throw new ApiError(
          405,
          `Method ${method} is not allowed on ${path} (use ${methods.join(' or ')}).`,
          'invalid_request_error',
          null,
          'method_not_allowed',
          { Allow: methods.join(', ') },
        );
      }
    };
    if (path === '/health') {
      allow(['GET', 'HEAD']);
      const ok = !this.draining;
      sendJson(
        res,
        ok ? 200 : 503,
        {
          status: ok ? 'ok' : 'shutting_down',
          model: this.model.id,
          active: this.scheduler.activeCount,
          queued: this.scheduler.queued,
        },
        headers,
      );
      return;
    }
    if (path === '/metrics') {
      allow(['GET', 'HEAD']);
      const text = this.metrics.render(this.scheduler.stats(), {
        parallel: this.options.parallel,
        queueLimit: this.options.queue,
      });
      res.writeHead(200, {
        ...headers,
        'Content-Type': 'text/plain; version=0.0.4; charset=utf-8',
        'Content-Length': Buffer.byteLength(text),
      });
      res.end(method === 'HEAD' ? undefined : text);
      return;
    }
    if (path === '/tokenize' || path === '/detokenize') {
      allow(['POST']);
      this.checkApiKey(req);
      const body = await readJsonBody(req, this.options.maxBodyBytes, this.jsonErrorOf);
      if (path === '/tokenize') await handleTokenize({ ...this.ctx, headers }, body, res);
      else await handleDetokenize({ ...this.ctx, headers }, body, res);
      return;
    }
    if (!path.startsWith('/v1/')) {
      const asset = this.web.get(path === '/' ? '/index.html' : path);
      if (!asset) throw new ApiError(404, `Unknown path ${path}.`, 'invalid_request_error', null, 'not_found');
      allow(['GET', 'HEAD']);
      res.writeHead(200, {
        ...headers,
        'Content-Type': asset.type,
        'Content-Length': asset.body.length,
        'Cache-Control': 'no-cache',
        'X-Content-Type-Options': 'nosniff',
        'Content-Security-Policy':
          "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        'Referrer-Policy': 'no-referrer',
      });
      res.end(method === 'HEAD' ? undefined : asset.body);
      return;
    }
    this.checkApiKey(req);
    if (path === '/v1/models') {
      allow(['GET']);
      sendJson(res, 200, { object: 'list', data: [this.modelCard()] }, headers);
      return;
    }
    if (path.startsWith('/v1/models/')) {
      allow(['GET']);
      let id: string;
      try {
        id = decodeURIComponent(path.slice('/v1/models/'.length));
      } catch {
        throw badRequest('The model id in the path is not valid percent-encoding.', null, 'invalid_path');
      }
      if (id !== this.model.id)
        throw new ApiError(
          404,
          `The model \`${id}\` does not exist. ${servedModelNote(this.model.id)}`,
          'invalid_request_error',
          'model',
          'model_not_found',
        );
      sendJson(res, 200, this.modelCard(), headers);
      return;
    }
    const handlers: Record<string, typeof handleChat> = {
      '/v1/chat/completions': handleChat,
      '/v1/completions': handleCompletion,
      '/v1/embeddings': handleEmbeddings,
    };
    const handler = handlers[path];
    if (!handler) throw new ApiError(404, `Unknown path ${path}.`, 'invalid_request_error', null, 'not_found');
    allow(['POST']);
    if (this.draining)
      throw new ApiError(503, 'The server is shutting down.', 'server_error', null, 'shutting_down', {
        Connection: 'close',
      });
    const body = await readJsonBody(req, this.options.maxBodyBytes, this.jsonErrorOf);
    await handler({ ...this.ctx, headers }, body, res);
  }

  private modelCard() {
    const c = this.model.runner.config;
    return {
      id: this.model.id,
      object: 'model',
      created: this.model.created,
      owned_by: 'mpt-ts',
      // Extras (OpenAI clients ignore unknown fields).
      context_length: this.model.contextLength,
      backend: this.model.runner.backendName,
      d_model: c.dModel,
      n_layers: c.nLayers,
      vocab_size: c.vocabSize,
    };
  }
}
