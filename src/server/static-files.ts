/**
 * A static file server for pages that run the model themselves (`mpt web`): it serves files from
 * a fixed set of roots (URL prefix → folder, or URL → one file) and a few generated bodies, and
 * nothing else. Every answer carries the cross-origin isolation headers a page needs for
 * SharedArrayBuffer (its Web Workers share the wasm memories). GET and HEAD, single byte ranges
 * (206, 416; what url-source.ts reads weights with), ETag / Last-Modified revalidation (304).
 * Names are checked segment by segment (no `..`, no hidden files, no separators or NULs) and the
 * real path of every file must lie inside its root's real path, so neither a crafted URL nor a
 * symlink reaches outside the roots. Files are streamed, never read whole.
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';

/** Headers on every answer: cross-origin isolation (COOP + COEP) and only same-origin embedding. */
export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'X-Content-Type-Options': 'nosniff',
};

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.md': 'text/markdown; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.jsonl': 'text/plain; charset=utf-8',
  '.gguf': 'application/octet-stream',
  '.safetensors': 'application/octet-stream',
  '.bin': 'application/octet-stream',
  '.map': 'application/json',
};

/** The Content-Type of a file name (application/octet-stream when unknown). */
export function contentType(name: string): string {
  return TYPES[extname(name).toLowerCase()] ?? 'application/octet-stream';
}

/** A folder served under a URL prefix ending in '/', or one file served at one URL. */
export type StaticRoot = { prefix: string; dir: string } | { path: string; file: string };

/** A body made at start-up (a rendered page, a JSON file), served as a file is. */
export interface GeneratedBody {
  type: string;
  body: Uint8Array;
}

/** Longest URL path accepted (a file name this long is an attack, not a model). */
const MAX_PATH = 2048;

/**
 * The decoded segments of a URL path, or null when any is unacceptable: empty (`//`), `.`/`..`,
 * hidden (`.git`), or holding a separator, a NUL, a control character, or bad %-escapes.
 */
export function safeSegments(urlPath: string): string[] | null {
  if (!urlPath.startsWith('/') || urlPath.length > MAX_PATH) return null;
  const raw = urlPath.slice(1).split('/');
  const out: string[] = [];
  for (let i = 0; i < raw.length; i++) {
    const last = i === raw.length - 1;
    let s: string;
    try {
      s = decodeURIComponent(raw[i]!);
    } catch {
      return null;
    }
    if (s === '' && last) {
      out.push(s); // a trailing slash: the caller decides (index.html or nothing)
      continue;
    }
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (s === '' || s.startsWith('.') || /[/\\\u0000-\u001f\u007f]/.test(s)) return null;
    out.push(s);
  }
  return out;
}

interface Entity {
  type: string;
  size: number;
  etag: string;
  mtime: Date | null;
  /** Writes bytes [start, end] (inclusive) to the response. */
  send(res: ServerResponse, start: number, end: number): Promise<void>;
}

/** One byte range of a `Range` header: [start, end] inclusive; 'none' to send the whole body; 'unsatisfiable'. */
export function parseRange(header: string | undefined, size: number): [number, number] | 'none' | 'unsatisfiable' {
  if (header === undefined) return 'none';
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  // Several ranges or a syntax this server does not know: RFC 9110 lets it answer with the whole body.
  if (!m || (m[1] === '' && m[2] === '')) return 'none';
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return [Math.max(0, size - suffix), size - 1];
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (!Number.isSafeInteger(start) || start >= size) return 'unsatisfiable';
  if (end < start) return 'none';
  return [start, end];
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag.replace(/^W\//, '') === etag;
  });
}

/** A site of static roots and generated bodies; `handle` answers one request. */
export class StaticSite {
  private readonly roots: StaticRoot[];
  /** Real paths of the roots, resolved once (the root itself may be a symlink, e.g. node_modules). */
  private readonly real = new Map<StaticRoot, Promise<string | null>>();
  private readonly generatedTags = new WeakMap<GeneratedBody, string>();

  constructor(
    roots: readonly StaticRoot[],
    private readonly generated: ReadonlyMap<string, GeneratedBody> = new Map(),
  ) {
    // Longest prefix first, so /dist/src/ wins over /.
    this.roots = [...roots].sort(
      (a, b) => ('prefix' in b ? b.prefix.length : b.path.length) - ('prefix' in a ? a.prefix.length : a.path.length),
    );
    for (const r of this.roots) {
      this.real.set(
        r,
        realpath('dir' in r ? r.dir : r.file).catch(() => null),
      );
    }
  }

  /** Answers a request; never throws (a failure after the headers went out ends the connection). */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      await this.answer(req, res);
    } catch {
      if (!res.headersSent) this.fail(res, 500, 'internal error');
      else res.destroy();
    }
  }

  private fail(res: ServerResponse, status: number, message: string, extra: Record<string, string> = {}): void {
    const body = `${status} ${message}\n`;
    res.writeHead(status, {
      ...ISOLATION_HEADERS,
      ...extra,
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') return this.fail(res, 405, 'method not allowed', { Allow: 'GET, HEAD' });
    const target = req.url ?? '/';
    if (!target.startsWith('/')) return this.fail(res, 400, 'bad request');
    const q = target.indexOf('?');
    const urlPath = q < 0 ? target : target.slice(0, q);
    const segments = safeSegments(urlPath);
    if (segments === null) return this.fail(res, 404, 'not found');
    if (segments.at(-1) === '') segments[segments.length - 1] = 'index.html';
    const path = `/${segments.join('/')}`;
    const entity = this.generatedEntity(path) ?? (await this.fileEntity(segments));
    if (entity === 'forbidden') return this.fail(res, 403, 'forbidden');
    if (entity === null) return this.fail(res, 404, 'not found');
    this.sendEntity(req, res, entity);
  }

  private generatedEntity(path: string): Entity | null {
    const g = this.generated.get(path);
    if (!g) return null;
    let etag = this.generatedTags.get(g);
    if (etag === undefined) {
      // FNV-1a of the body: the tag changes when a restart with another model changes the page.
      let h = 0x811c9dc5;
      for (const b of g.body) h = Math.imul(h ^ b, 0x01000193) >>> 0;
      etag = `"g${g.body.length.toString(16)}-${h.toString(16)}"`;
      this.generatedTags.set(g, etag);
    }
    return {
      type: g.type,
      size: g.body.length,
      etag,
      mtime: null,
      send: async (res, start, end) => {
        res.end(g.body.subarray(start, end + 1));
      },
    };
  }

  /** The file a URL names under the roots; 'forbidden' when its real path leaves its root. */
  private async fileEntity(segments: string[]): Promise<Entity | null | 'forbidden'> {
    const path = `/${segments.join('/')}`;
    for (const root of this.roots) {
      let candidate: string;
      if ('path' in root) {
        if (path !== root.path) continue;
        candidate = root.file;
      } else {
        const prefixSegs = root.prefix.split('/').filter((s) => s !== '');
        if (!prefixSegs.every((s, i) => segments[i] === s) || segments.length <= prefixSegs.length) continue;
        candidate = join(root.dir, ...segments.slice(prefixSegs.length));
      }
      const base = await this.real.get(root);
      if (!base) return null;
      let real: string;
      try {
        real = await realpath(candidate);
      } catch {
        return null;
      }
      const inside = 'path' in root ? real === base : real.startsWith(base.endsWith(sep) ? base : base + sep);
      if (!inside) return 'forbidden';
      const st = await stat(real).catch(() => null);
      if (!st?.isFile()) return null;
      return {
        type: contentType(real),
        size: st.size,
        etag: `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`,
        mtime: st.mtime,
        send: (res, start, end) => pipeline(createReadStream(real, { start, end }), res),
      };
    }
    return null;
  }

  private sendEntity(req: IncomingMessage, res: ServerResponse, e: Entity): void {
    const headers: Record<string, string | number> = {
      ...ISOLATION_HEADERS,
      'Content-Type': e.type,
      'Accept-Ranges': 'bytes',
      ETag: e.etag,
      // Revalidate every time: a rebuilt page or model is seen at once, unchanged files cost a 304.
      'Cache-Control': 'no-cache',
    };
    if (e.mtime) headers['Last-Modified'] = e.mtime.toUTCString();
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    const notModified =
      inm !== undefined
        ? etagMatches(inm, e.etag)
        : ims !== undefined && e.mtime !== null && Math.floor(e.mtime.getTime() / 1000) <= Date.parse(ims) / 1000;
    if (notModified) {
      res.writeHead(304, headers);
      res.end();
      return;
    }
    const ifRange = req.headers['if-range'];
    const rangeHeader = ifRange === undefined || ifRange === e.etag ? req.headers.range : undefined;
    const range = parseRange(rangeHeader, e.size);
    if (range === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'Content-Range': `bytes */${e.size}`, 'Content-Length': 0 });
      res.end();
      return;
    }
    const [start, end] = range === 'none' ? [0, e.size - 1] : range;
    const length = e.size === 0 ? 0 : end - start + 1;
    if (range !== 'none') headers['Content-Range'] = `bytes ${start}-${end}/${e.size}`;
    headers['Content-Length'] = length;
    res.writeHead(range === 'none' ? 200 : 206, headers);
    if (req.method === 'HEAD' || length === 0) {
      res.end();
      return;
    }
    e.send(res, start, end).catch(() => res.destroy());
  }
}
