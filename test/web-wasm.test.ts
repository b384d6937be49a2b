/**
 * The wasm backend in a real browser (Debian's chromium driven by playwright-core), from the built
 * repository served over HTTP with no bundler and no import map: a cross-origin isolated page
 * (COOP/COEP headers) runs it on 2 module Web Workers; a page without those headers (no
 * SharedArrayBuffer) runs the kernels on its own thread and says so once on the console. Both
 * reproduce MosaicML's goldens. Skipped when chromium is not installed (never in CI).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, sep } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { TOL } from './helpers/backend-conformance.js';
import { Goldens, REPO_ROOT, argmaxRows, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { CONTENT_TYPES } from './helpers/range-server.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import type { FixtureRun } from './helpers/web-wasm-page.js';

const skip = skipUnlessPresent(chromiumMissing());

const FIXTURES = ['tiny-alibi', 'tiny-alibi-bf16', 'tiny-gqa', 'tiny-learned-pos'];
const NOT_ISOLATED = /not cross-origin isolated/;
const PAGE =
  '<!doctype html><meta charset="utf-8"><title>mpt-ts wasm backend</title>' +
  '<script type="module">import "/dist/test/helpers/web-wasm-page.js"; window.pageReady = true;</script>';

/** Serves the repository folder (and the test page at /) on 127.0.0.1, with or without COOP/COEP. */
function serve(isolated: boolean): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const headers: Record<string, string> = isolated
      ? { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' }
      : {};
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    if (path === '/') {
      res.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end(PAGE);
      return;
    }
    const file = normalize(join(REPO_ROOT, path));
    if (!file.startsWith(REPO_ROOT.replace(/[\\/]$/, '') + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, headers).end();
      return;
    }
    const type = CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
    res.writeHead(200, { ...headers, 'Content-Type': type }).end(readFileSync(file));
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/` });
    }),
  );
}

interface Tab {
  page: Page;
  console: string[];
  errors: string[];
}

async function open(browser: Browser, url: string): Promise<Tab> {
  const page = await browser.newPage();
  const tab: Tab = { page, console: [], errors: [] };
  page.on('console', (m) => tab.console.push(m.text()));
  page.on('pageerror', (e) => tab.errors.push(String(e)));
  await page.goto(url);
  try {
    await page.waitForFunction(() => (window as { pageReady?: boolean }).pageReady === true, undefined, {
      timeout: 10_000,
    });
  } catch (e) {
    const said = [...tab.errors, ...tab.console].join(' | ');
    throw new Error(`the page's modules did not load: ${said || (e as Error).message}`);
  }
  return tab;
}

/** The functions of test/helpers/web-wasm-page.ts, in the page. */
type PageApi = typeof import('./helpers/web-wasm-page.js');

function run(tab: Tab, fixture: string, threads: number): Promise<FixtureRun> {
  return tab.page.evaluate(
    ([f, t]) => (window as unknown as { mpt: PageApi }).mpt.runFixture(f as string, t as number),
    [fixture, threads] as const,
  );
}

/** The run's logits, step logits and greedy tokens against the fixture's goldens. */
function checkGoldens(fixture: string, r: FixtureRun): void {
  const g = new Goldens(fixturePath(fixture));
  const V = g.json.tensors['logits/seq1'].shape.at(-1) as number;
  const keys = g.tensorNames().filter((n) => n.startsWith('logits/'));
  assert.deepEqual(Object.keys(r.logits).sort(), keys.sort());
  for (const key of keys) {
    const want = g.tensor(key).data,
      got = Float32Array.from(r.logits[key]!);
    assert.ok(maxAbsDiff(got, want) <= TOL, `${fixture} ${key}: max |diff| ${maxAbsDiff(got, want)}`);
    const rows = want.length / V;
    assert.deepEqual(argmaxRows(got, rows, V), argmaxRows(want, rows, V), `${fixture} ${key}: argmax`);
  }
  const steps = Float32Array.from(r.steps),
    want = g.tensor('kv_incremental/seq7/step_logits').data;
  assert.ok(maxAbsDiff(steps, want) <= TOL, `${fixture} one token per call: max |diff| ${maxAbsDiff(steps, want)}`);
  assert.deepEqual(r.generated, g.json.generate.new_tokens, `${fixture} greedy generation`);
  assert.equal(typeof r.sampled.worker, 'number', 'the workers chose a token');
  assert.equal(r.sampled.worker, r.sampled.page, "the workers' draw equals the page's");
}

describe('wasm backend in Chromium', { skip, timeout: 180_000 }, () => {
  let browser: Browser;
  let isolated: { server: Server; url: string };
  let plain: { server: Server; url: string };
  before(async () => {
    isolated = await serve(true);
    plain = await serve(false);
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      ...CHROMIUM_LAUNCH,
    });
  });
  after(async () => {
    await browser?.close();
    isolated?.server.close();
    plain?.server.close();
  });

  it('a cross-origin isolated page: 2 Web Workers, relaxed SIMD, the goldens of 4 fixtures', async () => {
    const tab = await open(browser, isolated.url);
    for (const fixture of FIXTURES) {
      const r = await run(tab, fixture, 2);
      assert.equal(r.crossOriginIsolated, true);
      assert.equal(r.threads, 2);
      assert.equal(r.relaxedSimd, true);
      checkGoldens(fixture, r);
    }
    assert.deepEqual(tab.errors, []);
    assert.deepEqual(
      tab.console.filter((m) => NOT_ISOLATED.test(m)),
      [],
    );
  });

  it('messages posted to a worker before it listens reach it (its module graph awaits first)', async () => {
    const tab = await open(browser, isolated.url);
    const got = await tab.page.evaluate(() => (window as unknown as { mpt: PageApi }).mpt.echoFromSlowWorker());
    assert.deepEqual(got, ['first', 'second']);
  });

  it('a page without COOP/COEP: one thread in the page, said once on the console, the same goldens', async () => {
    const tab = await open(browser, plain.url);
    for (const fixture of ['tiny-alibi', 'tiny-gqa']) {
      const r = await run(tab, fixture, 2);
      assert.equal(r.crossOriginIsolated, false);
      assert.equal(r.threads, 1);
      checkGoldens(fixture, r);
    }
    assert.deepEqual(tab.errors, []);
    const told = tab.console.filter((m) => NOT_ISOLATED.test(m));
    assert.equal(told.length, 1, told.join('\n'));
    assert.match(told[0]!, /Cross-Origin-Opener-Policy: same-origin and Cross-Origin-Embedder-Policy: require-corp/);
  });
});
