/**
 * What `mpt web` serves: the chat app (src/web/) at /, the browser entry and its wasm at the
 * package's own layout (/dist/src/, /dist/wasm/, /models/default/, /assets/gpt-neox-20b/: the
 * entry finds them relative to its import.meta.url), the two ES modules it imports by name under
 * /node_modules/ (found through Node's package resolution, so an installed mpt-ts finds its
 * dependencies wherever npm put them), and the user's model under /model/. The HTML pages get an
 * import map for those two modules and the app's configuration (which model, as a URL) written in.
 * No model runs in Node: the page loads it.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError, quoteValue } from '../errors.js';
import type { GeneratedBody, StaticRoot } from './static-files.js';
import { intoHead, scriptJson, webDir, withPageDefaults } from './web-assets.js';

/** The modules the browser entry imports by bare name (README, "In the browser"). */
export const BARE_IMPORTS = ['@huggingface/tokenizers', '@huggingface/jinja'] as const;

/** What the page is told (JSON in the HTML, `<script type="application/json" id="mpt-web">`). */
export interface WebAppConfig {
  /** The model's URL: a folder ending in '/', or a .gguf file; relative to the page or absolute. */
  model: string;
  /** A short name to show. */
  name: string;
}

/** The mpt-ts package folder this module belongs to (the repository, or node_modules/mpt-ts). */
export function packageRoot(): string {
  for (const rel of ['../..', '../../..']) {
    const dir = fileURLToPath(new URL(rel, import.meta.url));
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'mpt-ts') return dir;
  }
  throw new InputError('cannot find the mpt-ts package folder (package.json) next to its modules');
}

/** A bare import as the page loads it: the entry file Node resolves, and the folder around it. */
export interface ResolvedModule {
  specifier: string;
  /** URL path the import map points at. */
  url: string;
  /** Folder served under the entry's URL folder. */
  dir: string;
  /** URL prefix (ending in '/') of that folder. */
  prefix: string;
}

/** Where Node finds `specifier`'s ES module entry, as a URL under /node_modules/<name>/. */
export function resolveBareImport(specifier: string): ResolvedModule {
  let file: string;
  try {
    file = fileURLToPath(import.meta.resolve(specifier));
  } catch (e) {
    throw new InputError(`cannot find ${specifier} (a dependency of mpt-ts): ${(e as Error).message}`);
  }
  // The package folder: the nearest package.json above the entry that names the package.
  let pkgDir = dirname(file);
  while (true) {
    const pkg = join(pkgDir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === specifier) break;
    const up = dirname(pkgDir);
    if (up === pkgDir) throw new InputError(`cannot find the package folder of ${specifier} above ${file}`);
    pkgDir = up;
  }
  const inside = relative(pkgDir, dirname(file)).split(sep).filter(Boolean);
  const prefix = ['', 'node_modules', ...specifier.split('/'), ...inside, ''].join('/');
  return { specifier, url: prefix + encodeURIComponent(basename(file)), dir: dirname(file), prefix };
}

function isUrl(s: string): boolean {
  return /^https?:\/\//i.test(s);
}

/**
 * The model's roots and URL: the shipped model when `model` is undefined, a Hugging Face folder
 * (served under /model/) or a .gguf file (/model/NAME), or an http(s) URL the page loads itself.
 */
export function modelRoute(model: string | undefined): { roots: StaticRoot[]; config: WebAppConfig } {
  if (model === undefined) return { roots: [], config: { model: '/models/default/', name: 'default' } };
  if (isUrl(model)) {
    let url: URL;
    try {
      url = new URL(model);
    } catch {
      throw new InputError(`${quoteValue(model)} is not a valid URL`);
    }
    const name = url.pathname.split('/').filter(Boolean).at(-1) ?? url.host;
    return { roots: [], config: { model: url.href, name } };
  }
  const path = resolve(model);
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) throw new InputError(`${model}: no such file or folder (give a model folder, a .gguf file or a URL)`);
  if (st.isDirectory()) {
    if (!existsSync(join(path, 'config.json')))
      throw new InputError(`${model} has no config.json: it is not a Hugging Face model folder`);
    return { roots: [{ prefix: '/model/', dir: path }], config: { model: '/model/', name: basename(path) } };
  }
  if (!path.toLowerCase().endsWith('.gguf'))
    throw new InputError(`${model} is neither a model folder nor a .gguf file (or an http(s) URL)`);
  const name = basename(path);
  return {
    roots: [{ path: `/model/${name}`, file: path }],
    config: { model: `/model/${encodeURIComponent(name)}`, name },
  };
}

/** A page of src/web with the import map, the app's configuration and PAGE_DEFAULTS put before </head>. */
export function renderPage(html: string, importMap: Record<string, string>, config: WebAppConfig): string {
  const head =
    `<script type="importmap">${scriptJson({ imports: importMap })}</script>\n` +
    `  <script type="application/json" id="mpt-web">${scriptJson(config)}</script>\n`;
  return withPageDefaults(intoHead(html, head));
}

/** Every file under `dir` whose name passes `keep`, as URL paths under `prefix`. */
function listFiles(dir: string, prefix: string, keep: (name: string) => boolean): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    if (entry.isDirectory()) out.push(...listFiles(join(dir, entry.name), `${prefix}${entry.name}/`, keep));
    else if (entry.isFile() && keep(entry.name)) out.push(prefix + encodeURIComponent(entry.name));
  }
  return out;
}

export interface WebAppSite {
  roots: StaticRoot[];
  generated: Map<string, GeneratedBody>;
  config: WebAppConfig;
}

/** The site `mpt web` serves for `model` (see the file comment). */
export function webAppSite(model: string | undefined): WebAppSite {
  const root = packageRoot();
  const web = webDir();
  const browserEntry = join(root, 'dist', 'src', 'browser.js');
  if (!web || !existsSync(browserEntry))
    throw new InputError(`the browser build is missing (${browserEntry}): run npm run build in ${root}`);
  const modules = BARE_IMPORTS.map(resolveBareImport);
  const { roots: modelRoots, config } = modelRoute(model);
  const roots: StaticRoot[] = [
    { prefix: '/', dir: web },
    { prefix: '/dist/src/', dir: join(root, 'dist', 'src') },
    { prefix: '/dist/wasm/', dir: join(root, 'dist', 'wasm') },
    { prefix: '/models/default/', dir: join(root, 'models', 'default') },
    { prefix: '/assets/gpt-neox-20b/', dir: join(root, 'assets', 'gpt-neox-20b') },
    ...modules.map((m) => ({ prefix: m.prefix, dir: m.dir })),
    ...modelRoots,
  ];
  const importMap = Object.fromEntries(modules.map((m) => [m.specifier, m.url]));
  const generated = new Map<string, GeneratedBody>();
  const html = { type: 'text/html; charset=utf-8' };
  for (const name of readdirSync(web).filter((n) => n.endsWith('.html'))) {
    const page = renderPage(readFileSync(join(web, name), 'utf8'), importMap, config);
    generated.set(`/${name}`, { ...html, body: new TextEncoder().encode(page) });
  }
  // What the service worker keeps for offline use: the app, the engine's modules and wasm, the
  // tokenizer modules and the shipped tokenizer. Model weights are the engine's to cache.
  const code = (n: string) => n.endsWith('.js') || n.endsWith('.mjs');
  const files = [
    '/',
    ...listFiles(web, '/', (n) => /\.(js|css|html)$/.test(n) && n !== 'sw.js'),
    ...listFiles(join(root, 'dist', 'src'), '/dist/src/', code),
    ...listFiles(join(root, 'dist', 'wasm'), '/dist/wasm/', (n) => n.endsWith('.wasm')),
    ...modules.map((m) => m.url),
    '/assets/gpt-neox-20b/tokenizer.json',
  ];
  generated.set('/app-files.json', { type: 'application/json', body: new TextEncoder().encode(JSON.stringify(files)) });
  return { roots, generated, config };
}
