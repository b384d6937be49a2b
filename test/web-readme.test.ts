/**
 * README's "In the browser" page, walked as a user would: the `index.html` printed there (taken
 * from README.md itself, so that this fails when the README drifts from what works) is put beside
 * the `node_modules/` of a project that has mpt-ts installed (a link to this repository, with only
 * the files package.json's "files" would install reachable), the project's folder is served as
 * static files with the headers README names, and Chromium opens it. The page must stream, into its
 * `<pre>`, the text Node's `loadModel().stream` gives for the same prompt and options, on Web
 * Workers (cross-origin isolated), with nothing said on the console that looks like an error.
 * Served without the headers, as README says, it writes the same on the page's own thread and the
 * console says which headers give it workers. A page that loads twice with backend 'auto' says its
 * choice once and, without a WebGPU adapter, gets Chromium's own warning at the first ask only.
 * Skipped when chromium is not installed (never in CI).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { loadModel } from '../src/runtime/model.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { REPO_ROOT } from './helpers/goldens.js';
import { type RangeServer, serveFolder } from './helpers/range-server.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { ISOLATION } from './helpers/web-tab.js';

const skip = skipUnlessPresent(chromiumMissing());

/** What Chromium itself logs when navigator.gpu.requestAdapter() finds no adapter. */
const NO_ADAPTER = 'warning: No available adapters.';

/** The section of README.md under `## In the browser`, up to the next section of that level. */
function browserSection(): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## In the browser\n');
  assert.ok(start >= 0, 'README.md has a "## In the browser" section');
  const end = readme.indexOf('\n## ', start + 1);
  return readme.slice(start, end < 0 ? undefined : end);
}

/** The first ```html block of that section: the page README tells a user to write. */
export function readmeIndexHtml(): string {
  const m = /```html\n([\s\S]*?)```/.exec(browserSection());
  assert.ok(m, 'README\'s "In the browser" section prints an index.html in a ```html block');
  return m[1]!;
}

/** The prompt and options of the page's `model.stream(…)` call, to ask Node the same. */
function streamCall(html: string): { prompt: string; options: Record<string, unknown> } {
  const m = /model\.stream\(\s*('[^']*'|"[^"]*")\s*,\s*(\{[^}]*\})\s*\)/.exec(html);
  assert.ok(m, `the page calls model.stream('prompt', { … }): ${html}`);
  // A JavaScript object literal of plain values, as printed in README.
  const options = new Function(`return (${m[2]});`)() as Record<string, unknown>;
  return { prompt: new Function(`return ${m[1]};`)() as string, options };
}

/** Loads the shipped model twice, as a page that switches models does, then sets window.done. */
const TWICE = `<script type="module">
  import { loadModel } from './node_modules/mpt-ts/dist/src/browser.js';
  for (let i = 0; i < 2; i++) await (await loadModel()).dispose();
  window.done = true;
</script>`;

/** The page's console (its own requests for /favicon.ico left out) and page errors, as "type: text". */
function listen(page: Page): string[] {
  const said: string[] = [];
  page.on('console', (m) => {
    // The browser asks for /favicon.ico by itself; its 404 is no part of the page.
    if (!m.location().url.endsWith('/favicon.ico')) said.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => said.push(`page error: ${String(e)}`));
  return said;
}

/** Whether `path` (under node_modules/mpt-ts/) is a file `npm install mpt-ts` puts there. */
function installed(path: string, files: readonly string[]): boolean {
  if (path === 'package.json' || /^(README|LICENSE)/i.test(path)) return true;
  return files.some((f) => (f.endsWith('/') ? path.startsWith(f) : path === f));
}

describe("README's index.html in Chromium", { skip, timeout: 300_000 }, () => {
  const project = join(tmpdir(), `mpt-web-readme-${process.pid}`);
  let browser: Browser;
  let server: RangeServer;
  /** The same folder served without the isolation headers. */
  let plain: RangeServer;
  let html: string;

  before(async () => {
    html = readmeIndexHtml();
    rmSync(project, { recursive: true, force: true });
    mkdirSync(join(project, 'node_modules'), { recursive: true });
    // The project's dependencies as npm lays them out: mpt-ts and, hoisted beside it, its own.
    symlinkSync(REPO_ROOT, join(project, 'node_modules', 'mpt-ts'), 'dir');
    symlinkSync(join(REPO_ROOT, 'node_modules', '@huggingface'), join(project, 'node_modules', '@huggingface'), 'dir');
    writeFileSync(join(project, 'index.html'), html);
    // A page of the same project that loads the shipped model twice, with README's import map.
    const map = /<script type="importmap">[\s\S]*?<\/script>/.exec(html);
    assert.ok(map, "README's page has an import map");
    writeFileSync(join(project, 'twice.html'), `<!doctype html><meta charset="utf-8">${map[0]}${TWICE}`);
    const files = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { files: string[] }).files;
    const prefix = '/node_modules/mpt-ts/';
    server = await serveFolder(project, {
      headers: ISOLATION,
      // The link reaches the whole repository; an installed package holds only its "files".
      statusFor: (path) => (path.startsWith(prefix) && !installed(path.slice(prefix.length), files) ? 404 : undefined),
    });
    plain = await serveFolder(project, {});
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ ...CHROMIUM_LAUNCH });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await plain?.close();
    rmSync(project, { recursive: true, force: true });
  });

  /** What Node's loadModel().stream writes for the page's prompt and options. */
  let nodeText: Promise<string> | undefined;
  const want = () => {
    nodeText ??= (async () => {
      const { prompt, options } = streamCall(html);
      const node = await loadModel(undefined, { onNote: () => {} });
      let text = '';
      try {
        for await (const chunk of node.stream(prompt, options)) text += chunk.text;
      } finally {
        await node.dispose();
      }
      assert.ok(text.length > 20, `Node wrote a story: ${JSON.stringify(text)}`);
      return text;
    })();
    return nodeText;
  };

  /** Runs `fn` on a page of a fresh context (its own storage), with what the page says. */
  async function inTab(fn: (page: Page, said: string[]) => Promise<void>): Promise<void> {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await fn(page, listen(page));
    } finally {
      await context.close();
    }
  }

  /** Opens index.html from `at` and waits until its <pre> holds as much as Node wrote; returns it. */
  async function written(page: Page, at: RangeServer, said: string[]): Promise<string> {
    const length = (await want()).length;
    await page.goto(`${at.url}index.html`);
    const out = () => page.evaluate(() => document.getElementById('out')?.textContent ?? '');
    try {
      await page.waitForFunction((n) => (document.getElementById('out')?.textContent ?? '').length >= n, length, {
        timeout: 180_000,
        polling: 250,
      });
    } catch {
      assert.fail(`the page wrote ${JSON.stringify(await out())}; console: ${said.join(' | ')}`);
    }
    return out();
  }

  it("streams Node's text for the same prompt and options, on Web Workers, with no error on the console", async () => {
    await inTab(async (page, said) => {
      assert.equal(await written(page, server, said), await want());
      assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'the headers isolate the page');
      const failed = server.requests
        .filter((r) => r.status >= 400 && r.path !== '/favicon.ico') // the browser's own request
        .map((r) => `${r.path} ${r.status}`);
      assert.deepEqual(failed, [], 'every file the page asks for is one an install holds');
      assert.deepEqual(
        // Chromium's own warning when WebGPU has no adapter (a machine without a GPU), once a page.
        said.filter((s) => /error|warn|fail|block/i.test(s) && s !== NO_ADAPTER),
        [],
        `console: ${said.join(' | ')}`,
      );
    });
  });

  it("without the headers: the same text on the page's own thread, and the console says how to get workers", async () => {
    await inTab(async (page, said) => {
      assert.equal(await written(page, plain, said), await want());
      assert.equal(await page.evaluate(() => self.crossOriginIsolated), false);
      const told = said.filter((s) => /not cross-origin isolated/.test(s));
      assert.equal(told.length, 1, `console: ${said.join(' | ')}`);
      assert.match(told[0]!, /Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp/);
    });
  });

  it("two loads with backend 'auto': the choice and Chromium's no-adapter warning are said once", async () => {
    await inTab(async (page, said) => {
      await page.goto(`${server.url}twice.html`);
      await page.waitForFunction(() => (window as { done?: boolean }).done === true, undefined, { timeout: 120_000 });
      assert.equal(said.filter((s) => /backend 'auto' runs the model on/.test(s)).length, 1, said.join(' | '));
      // A machine with a GPU gives no warning at all; one without, Chromium's warning at the first ask only.
      assert.ok(said.filter((s) => s === NO_ADAPTER).length <= 1, `console: ${said.join(' | ')}`);
    });
  });
});
