/**
 * The library's browser entry in a real browser (Debian's chromium driven by playwright-core),
 * served from the repository with COOP/COEP and the import map of README's "In the browser": the
 * shipped model loaded by URL generates Node's greedy tokens; a GGUF file by URL, as a Blob and as
 * chosen files gives Node's logits; an AbortSignal stops a stream; dispose ends the Web Workers;
 * and README's page works as written. Skipped when chromium is not installed (never in CI).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { loadModel } from '../src/runtime/model.js';
import { REPO_ROOT, maxAbsDiff } from './helpers/goldens.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { CONTENT_TYPES } from './helpers/range-server.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { BROWSER_IMPORT_MAP } from './helpers/web-import-map.js';

const skip = skipUnlessPresent(chromiumMissing());

const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
const IMPORT_MAP = JSON.stringify({
  imports: Object.fromEntries(Object.entries(BROWSER_IMPORT_MAP).map(([k, v]) => [k, `/${v}`])),
});
const TEST_PAGE =
  '<!doctype html><meta charset="utf-8">' +
  `<script type="importmap">${IMPORT_MAP}</script>` +
  '<script type="module">import "/dist/test/helpers/web-model-page.js"; window.pageReady = true;</script>';

/** README's page: the ```html block under "## In the browser". */
function readmePage(): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const m = /## In the browser[\s\S]*?```html\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README has a ```html block under "## In the browser"');
  return m[1]!;
}

/**
 * Serves the repository on 127.0.0.1 with COOP/COEP: the test page at /, README's page at
 * /project/index.html in a project where mpt-ts is installed (/project/node_modules/mpt-ts/ is the
 * repository, as the package's files; its dependencies beside it), everything else from the repository.
 */
function serve(): Promise<{ server: Server; url: string }> {
  const root = REPO_ROOT.replace(/[\\/]$/, '');
  const server = createServer((req, res) => {
    let path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') return void res.writeHead(200, { ...ISOLATION, 'Content-Type': 'text/html' }).end(TEST_PAGE);
    if (path === '/project/index.html') {
      return void res.writeHead(200, { ...ISOLATION, 'Content-Type': 'text/html' }).end(readmePage());
    }
    if (path.startsWith('/project/node_modules/mpt-ts/')) path = path.slice('/project/node_modules/mpt-ts'.length);
    else if (path.startsWith('/project/')) path = path.slice('/project'.length);
    const file = normalize(join(root, path));
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      return void res.writeHead(404, ISOLATION).end();
    }
    const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
    res.writeHead(200, { ...ISOLATION, 'Content-Type': type }).end(readFileSync(file));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` });
    }),
  );
}

interface Tab {
  page: Page;
  said: string[];
}

async function open(browser: Browser, url: string, ready: string): Promise<Tab> {
  const page = await browser.newPage();
  const tab: Tab = { page, said: [] };
  page.on('console', (m) => tab.said.push(m.text()));
  page.on('pageerror', (e) => tab.said.push(`page error: ${String(e)}`));
  await page.goto(url);
  try {
    await page.waitForFunction(ready, undefined, { timeout: 30_000 });
  } catch (e) {
    throw new Error(`the page did not get ready: ${tab.said.join(' | ') || (e as Error).message}`);
  }
  return tab;
}

type PageApi = typeof import('./helpers/web-model-page.js');
const PROMPT = 'Once upon a time, there was a little girl named';
const GGUF = 'test/fixtures/gguf-tiny-q/tiny-q-q8_0.gguf';

describe('loadModel in Chromium', { skip, timeout: 300_000 }, () => {
  let browser: Browser;
  let site: { server: Server; url: string };
  let tab: Tab;
  // biome-ignore lint/suspicious/noExplicitAny: the arguments travel as JSON into the page
  const mpt = <T>(fn: (api: PageApi, ...args: any[]) => Promise<T>, ...args: unknown[]): Promise<T> =>
    tab.page.evaluate(`(${fn.toString()})(window.mpt, ...${JSON.stringify(args)})`) as Promise<T>;

  before(async () => {
    site = await serve();
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      ...CHROMIUM_LAUNCH,
    });
    tab = await open(browser, site.url, 'window.pageReady === true');
  });
  after(async () => {
    await browser?.close();
    site?.server.close();
  });

  it("the shipped model by URL and by default: Node's greedy tokens; dispose ends the workers", async () => {
    const node = await loadModel(undefined, { threads: 2, onNote: () => {} });
    const want = await node.generate(PROMPT, { maxTokens: 20, temperature: 0 });
    await node.dispose();
    assert.equal(want.tokens.length, 20);
    for (const kind of ['url', 'default'] as const) {
      const got = await mpt((api, k, u, p) => api.greedy(k, u, p, 20), kind, `${site.url}models/default/`, PROMPT);
      assert.deepEqual(got.tokens, want.tokens, kind);
      assert.equal(got.text, want.text, kind);
      assert.ok(got.hasTokenizer);
      assert.equal(got.workers.started, 2, `${kind}: 2 Web Workers on a cross-origin isolated page`);
      assert.equal(got.workers.ended, got.workers.started, `${kind}: dispose ends every worker`);
    }
  });

  it("a GGUF file by URL, as a Blob and as chosen files gives Node's logits", async () => {
    const node = await loadModel(join(REPO_ROOT, GGUF), { threads: 2, onNote: () => {} });
    const ids = [1, 5, 9, 2, 7, 3];
    const want = await node.logits(ids);
    await node.dispose();
    for (const kind of ['url', 'blob', 'files'] as const) {
      const got = Float32Array.from(await mpt((api, k, u, i) => api.logits(k, u, i), kind, site.url + GGUF, ids));
      assert.equal(got.length, want.length, kind);
      assert.equal(maxAbsDiff(got, want), 0, `${kind}: the same logits as Node`);
    }
  });

  it('an AbortSignal stops a stream between tokens', async () => {
    const got = await mpt((api, u, p) => api.abortAfter(u, p, 3), `${site.url}models/default/`, PROMPT);
    assert.deepEqual(got, { chunks: 3, finish: 'abort', tokens: 3 });
  });

  it("README's page works as written: it streams what Node streams", async () => {
    const node = await loadModel(undefined, { threads: 2, onNote: () => {} });
    const want = (await node.generate('Once upon a time', { maxTokens: 40, seed: 1 })).text;
    await node.dispose();
    assert.ok(want.length > 40, want);
    assert.ok(
      readmePage().includes("model.stream('Once upon a time', { maxTokens: 40, seed: 1 })"),
      'the README page still streams what this test compares',
    );
    const page = await open(
      browser,
      `${site.url}project/index.html`,
      `document.getElementById('out')?.textContent === ${JSON.stringify(want)}`,
    ).catch(async (e: Error) => {
      throw new Error(`${e.message}; want ${JSON.stringify(want)}`);
    });
    assert.deepEqual(
      page.said.filter((s) => /error/i.test(s)),
      [],
    );
  });
});
