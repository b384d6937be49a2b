/**
 * The chat page's files (src/web/: HTML, CSS, JS written for browsers directly, no build step
 * and no external resources), read once at start-up and served from memory by `mpt serve`.
 * `mpt web` serves the same folder as static files (web-app.ts), with what runs the model in the
 * tab: the files below, which `mpt serve` leaves out.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SAMPLING } from '../backends/sampling/sampler.js';
import { DEFAULT_MAX_TOKENS } from '../runtime/generation-sequence.js';

export interface WebAsset {
  type: string;
  body: Buffer;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

/** The files of src/web that only a page running the model itself uses (`mpt web`). */
export const IN_TAB_ONLY = new Set(['local-backend.js', 'bench.html', 'bench.js', 'sw.js']);

/**
 * The chat page's settings before the user changes them: the CLI's and the library's defaults,
 * written into each page (<script type="application/json" id="mpt-defaults">) by both servers.
 */
export const PAGE_DEFAULTS = {
  temperature: DEFAULT_SAMPLING.temperature,
  topP: DEFAULT_SAMPLING.topP,
  maxTokens: DEFAULT_MAX_TOKENS,
} as const;

/** JSON that is safe inside a <script> element (no `</script>`, no `<!--`). */
export function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

/** `html` with `head` (elements for its <head>) put before </head>. */
export function intoHead(html: string, head: string): string {
  const at = html.indexOf('</head>');
  if (at < 0) return head + html;
  return `${html.slice(0, at)}  ${head}${html.slice(at)}`;
}

/** A page with PAGE_DEFAULTS written in. */
export function withPageDefaults(html: string): string {
  return intoHead(html, `<script type="application/json" id="mpt-defaults">${scriptJson(PAGE_DEFAULTS)}</script>\n`);
}

/** src/web from both the source layout (src/server) and the compiled one (dist/src/server). */
export function webDir(): string | null {
  for (const rel of ['../web', '../../../src/web']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(join(p, 'index.html'))) return p;
  }
  return null;
}

/** URL path ("/index.html", "/app.js") → asset. Empty when the page is not installed. */
export function loadWebAssets(): Map<string, WebAsset> {
  const out = new Map<string, WebAsset>();
  const dir = webDir();
  if (!dir) return out;
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (!type || IN_TAB_ONLY.has(name)) continue;
    const body = readFileSync(join(dir, name));
    out.set(`/${name}`, {
      type,
      body: name.endsWith('.html') ? Buffer.from(withPageDefaults(body.toString('utf8'))) : body,
    });
  }
  return out;
}
