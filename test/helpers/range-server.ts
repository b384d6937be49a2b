/**
 * A static file server on 127.0.0.1 for tests of reading over HTTP: it serves a folder with
 * single-range `Range: bytes=a-b` support (206 / 416, Content-Range) and HEAD, and records every
 * request with the body bytes it sent. Options make it misbehave as real servers do.
 */
import { readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';

export interface RangeServerOptions {
  /** false: ignore Range headers and send whole files with 200, as a plain server does. */
  ranges?: boolean;
  /** Leave Content-Range out of 206 answers (what a cross-origin answer that does not expose it looks like). */
  hideContentRange?: boolean;
  /** Send whole-file answers without Content-Length (chunked). */
  chunked?: boolean;
  /** A status to answer for a path (e.g. 403 for a gated file), instead of serving it. */
  statusFor?: (path: string) => number | undefined;
  /** Headers added to every answer (COOP/COEP for a page, say). */
  headers?: Readonly<Record<string, string>>;
  /** Headers added to the answers for a path (Cache-Control for the page's modules, say). */
  headersFor?: (path: string) => Readonly<Record<string, string>> | undefined;
  /** Whole-file answers for a path stop after this many body bytes, the connection cut (a failed download). */
  cutWholeAfter?: (path: string) => number | undefined;
  /** HTML pages served at these paths instead of files (a test's page). */
  pages?: Readonly<Record<string, string>>;
}

/** Content types by extension, for pages and module scripts (a browser refuses a script served otherwise). */
export const CONTENT_TYPES: Record<string, string> = {
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.html': 'text/html',
};

export interface ServedRequest {
  method: string;
  /** The URL path, decoded. */
  path: string;
  range: string | undefined;
  status: number;
  /** Body bytes sent. */
  bytes: number;
}

export interface RangeServer {
  /** The base URL of the folder, ending in '/'. */
  readonly url: string;
  readonly requests: ServedRequest[];
  close(): Promise<void>;
}

function answer(root: string, options: RangeServerOptions, req: IncomingMessage, res: ServerResponse): ServedRequest {
  const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
  const record: ServedRequest = { method: req.method ?? 'GET', path, range: req.headers.range, status: 200, bytes: 0 };
  const send = (status: number, headers: Record<string, string | number>, body?: Uint8Array) => {
    record.status = status;
    res.writeHead(status, { ...options.headers, ...options.headersFor?.(path), ...headers });
    if (body !== undefined && req.method !== 'HEAD') {
      record.bytes = body.length;
      res.end(body);
    } else res.end();
  };
  const forced = options.statusFor?.(path);
  if (forced !== undefined) {
    send(forced, { 'Content-Type': 'text/plain' }, new TextEncoder().encode(`status ${forced}`));
    return record;
  }
  const page = options.pages?.[path];
  if (page !== undefined) {
    send(200, { 'Content-Type': 'text/html' }, new TextEncoder().encode(page));
    return record;
  }
  const file = normalize(join(root, path));
  const isFile = file.startsWith(root + sep) && statSync(file, { throwIfNoEntry: false })?.isFile() === true;
  if (!isFile) {
    send(404, { 'Content-Type': 'text/plain' }, new TextEncoder().encode('not found'));
    return record;
  }
  const bytes = readFileSync(file);
  const stat = statSync(file);
  // What a static server says of a file's version: its size and modification time.
  const version = {
    'Content-Type': CONTENT_TYPES[extname(file)] ?? 'application/octet-stream',
    'Last-Modified': stat.mtime.toUTCString(),
    ETag: `"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`,
  };
  const whole = () => {
    const cut = req.method === 'HEAD' ? undefined : options.cutWholeAfter?.(path);
    if (cut === undefined)
      return send(200, options.chunked ? version : { ...version, 'Content-Length': bytes.length }, bytes);
    record.status = 200;
    record.bytes = cut;
    res.writeHead(200, { ...options.headers, ...version, 'Content-Length': bytes.length });
    res.write(bytes.subarray(0, cut), () => res.destroy());
  };
  const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  if (req.method === 'HEAD' || options.ranges === false || m === null) {
    whole();
    return record;
  }
  const start = Number(m[1]);
  const end = Math.min(Number(m[2]), bytes.length - 1);
  if (start >= bytes.length) {
    send(416, { 'Content-Range': `bytes */${bytes.length}` });
    return record;
  }
  const headers: Record<string, string | number> = { ...version, 'Content-Length': end - start + 1 };
  if (!options.hideContentRange) headers['Content-Range'] = `bytes ${start}-${end}/${bytes.length}`;
  send(206, headers, bytes.subarray(start, end + 1));
  return record;
}

/** Serves the folder `root` until closed. */
export async function serveFolder(root: string, options: RangeServerOptions = {}): Promise<RangeServer> {
  const requests: ServedRequest[] = [];
  const base = normalize(root).replace(/[\\/]+$/, '');
  const server = createServer((req, res) => requests.push(answer(base, options, req, res)));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
