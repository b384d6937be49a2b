/**
 * The engine through the browser entry's loadModel in Chromium (driven by playwright-core), against
 * MosaicML's goldens (test/fixtures): model folders by URL give the goldens' logits through
 * `model.logits` on the wasm backend with 2 Web Workers in a cross-origin isolated page, and on one
 * thread (said once on the console) in a page without COOP/COEP; with WebGPU enabled
 * (`--enable-unsafe-webgpu`: Chromium's software adapter where there is no GPU), `backend:
 * 'webgpu'` gives them too, and `'auto'` keeps a software adapter off, says so once and runs wasm.
 * Skipped when chromium is not installed (never in CI); the WebGPU test needs an adapter, which
 * Chromium's software one gives on any machine (in CI a missing adapter fails it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { TOL } from './helpers/backend-conformance.js';
import { Goldens, REPO_ROOT, argmaxRows, fixturePath, maxAbsDiff } from './helpers/goldens.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { serveFolder, type RangeServer } from './helpers/range-server.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import type { LogitsRun } from './helpers/web-engine-page.js';
import { ISOLATION, openTab, testPage, type Tab } from './helpers/web-tab.js';

const skip = skipUnlessPresent(chromiumMissing());

/** An ALiBi model (HF-made goldens), grouped-query attention and learned positions (MosaicML-made). */
const FIXTURES = ['tiny-alibi', 'tiny-gqa', 'tiny-learned-pos'];
const NOT_ISOLATED = /not cross-origin isolated/;
const AUTO = /backend 'auto' runs the model on/;

/** Runs a fixture's golden sequences through `model.logits` in the tab and checks them. */
async function checkFixture(tab: Tab, base: string, fixture: string, backend: 'wasm' | 'webgpu' | 'auto') {
  const g = new Goldens(fixturePath(fixture));
  const keys = g.tensorNames().filter((n) => n.startsWith('logits/'));
  const seqs = keys.map((k) => g.json.inputs[k.slice('logits/'.length)] as number[]);
  const run = await tab.call<LogitsRun>('logitsOf', `${base}test/fixtures/${fixture}/`, seqs, backend);
  const V = g.json.tensors[keys[0]!].shape.at(-1) as number;
  keys.forEach((key, i) => {
    const want = g.tensor(key).data;
    const got = Float32Array.from(run.logits[i]!);
    assert.ok(maxAbsDiff(got, want) <= TOL, `${fixture} ${key} (${backend}): max |diff| ${maxAbsDiff(got, want)}`);
    const rows = want.length / V;
    assert.deepEqual(argmaxRows(got, rows, V), argmaxRows(want, rows, V), `${fixture} ${key}: argmax`);
  });
  return run;
}

describe('loadModel in Chromium against the goldens', { skip, timeout: 300_000 }, () => {
  let browser: Browser;
  let isolated: RangeServer;
  let plain: RangeServer;
  before(async () => {
    const pages = { '/': testPage('web-engine-page.js') };
    isolated = await serveFolder(REPO_ROOT, { headers: ISOLATION, pages });
    plain = await serveFolder(REPO_ROOT, { pages });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ ...CHROMIUM_LAUNCH });
  });
  after(async () => {
    await browser?.close();
    await isolated?.close();
    await plain?.close();
  });

  it(`model.logits of ${FIXTURES.join(', ')} by URL: the goldens, on 2 Web Workers`, async () => {
    const tab = await openTab(browser, isolated.url);
    try {
      for (const fixture of FIXTURES) {
        const run = await checkFixture(tab, isolated.url, fixture, 'wasm');
        assert.deepEqual([run.backend, run.threads, run.isolated], ['wasm', 2, true]);
      }
      assert.deepEqual(
        tab.said.filter((s) => NOT_ISOLATED.test(s) || /error/i.test(s)),
        [],
      );
    } finally {
      await tab.close();
    }
  });

  it('a page without COOP/COEP: one thread, said once on the console, the same goldens', async () => {
    const tab = await openTab(browser, plain.url);
    try {
      for (const fixture of FIXTURES.slice(0, 2)) {
        const run = await checkFixture(tab, plain.url, fixture, 'auto');
        assert.deepEqual([run.backend, run.threads, run.isolated], ['wasm', 1, false]);
      }
      const told = tab.said.filter((s) => NOT_ISOLATED.test(s));
      assert.equal(told.length, 1, told.join('\n'));
      const auto = tab.said.filter((s) => AUTO.test(s));
      assert.equal(auto.length, 1, `'auto' says its choice once: ${auto.join('\n')}`);
      assert.match(auto[0]!, /on wasm/);
    } finally {
      await tab.close();
    }
  });
});

describe('WebGPU in Chromium', { skip, timeout: 300_000 }, () => {
  let browser: Browser;
  let site: RangeServer;
  let tab: Tab;
  let missing: string | null = null;
  before(async () => {
    site = await serveFolder(REPO_ROOT, { headers: ISOLATION, pages: { '/': testPage('web-engine-page.js') } });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      ...CHROMIUM_LAUNCH,
      args: [...CHROMIUM_LAUNCH.args, '--enable-unsafe-webgpu'],
    });
    tab = await openTab(browser, site.url);
    const adapter = await tab.call<{ fallback: boolean } | null>('gpuAdapter');
    if (adapter === null) missing = 'Chromium offers no WebGPU adapter here, not even its software one';
  });
  after(async () => {
    await tab?.close();
    await browser?.close();
    await site?.close();
  });

  it("backend 'webgpu' gives the goldens; 'auto' keeps a software adapter off and says so once", async (t) => {
    const why = skipUnlessPresent(missing);
    if (why) return t.skip(why);
    for (const fixture of FIXTURES) {
      const run = await checkFixture(tab, site.url, fixture, 'webgpu');
      assert.equal(run.backend, 'webgpu');
    }
    const adapter = await tab.call<{ fallback: boolean }>('gpuAdapter');
    for (const fixture of FIXTURES.slice(0, 2)) {
      const run = await checkFixture(tab, site.url, fixture, 'auto');
      assert.equal(run.backend, adapter.fallback ? 'wasm' : 'webgpu');
    }
    const auto = tab.said.filter((s) => AUTO.test(s));
    assert.equal(auto.length, 1, auto.join('\n'));
    if (adapter.fallback) assert.match(auto[0]!, /software one.*so wasm/);
  });
});
