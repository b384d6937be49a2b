/**
 * The chat page's files (src/web/: HTML, CSS, JS written for browsers directly, no build step
 * and no external resources), read once at start-up and served from memory by `mpt serve`.
 * `mpt web` serves the same folder as static files (web-app.ts), with what runs the model in the
 * tab: the files below, which `mpt serve` leaves out.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
    out.set(`/${name}`, { type, body: readFileSync(join(dir, name)) });
  }
  return out;
}
