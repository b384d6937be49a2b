/**
 * The browser entry through a bundler, as a project that installed mpt-ts bundles it: esbuild
 * (`platform: 'browser'`, ESM) bundles `import … from 'mpt-ts'` (the "browser" condition) and
 * `'mpt-ts/browser'` with no error, no warning and nothing of Node in the output. In Chromium the
 * bundle, served with no import map, finds the package's own files (wasm kernels, the wasm
 * worker, the shipped model and tokenizer) where `setPackageUrl` says, and generates Node's greedy
 * tokens; without setPackageUrl, the error says to call it. Skipped when chromium is not installed
 * (never in CI).
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { loadModel } from '../src/runtime/model.js';
import { REPO_ROOT } from './helpers/goldens.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { serveFolder, type RangeServer } from './helpers/range-server.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { ISOLATION, openTab } from './helpers/web-tab.js';

const skip = skipUnlessPresent(chromiumMissing());

/** A project folder with mpt-ts installed (a link to this repository), under dist/ so the test server reaches it. */
const PROJECT = `dist/test-tmp/web-bundle-${process.pid}`;
/** The bundles, three folders down: the package's files are not where an unbundled module would look. */
const OUT = `${PROJECT}/site/js/app`;
const PROMPT = 'Once upon a time, there was a little girl named';

const ENTRIES: Record<string, string> = {
  // The package is served at the site's root here: '/' is where it lies, as '/node_modules/mpt-ts/' would be.
  'with-url.js': `import { loadModel, setPackageUrl } from 'mpt-ts';
setPackageUrl('/');
window.mpt = {
  async greedy(prompt, maxTokens) {
    const model = await loadModel(undefined, { threads: 2 });
    try {
      const r = await model.generate(prompt, { maxTokens, temperature: 0 });
      return { tokens: r.tokens, text: r.text, isolated: self.crossOriginIsolated };
    } finally {
      await model.dispose();
    }
  },
};
window.pageReady = true;
`,
  'without-url.js': `import { loadModel } from 'mpt-ts/browser';
window.mpt = {
  async load(url) {
    try {
      await (await loadModel(url, { threads: 2, cache: false })).dispose();
      return 'loaded';
    } catch (e) {
      return String(e.message);
    }
  },
};
window.pageReady = true;
`,
};

function page(bundle: string): string {
  return `<!doctype html><meta charset="utf-8"><script type="module" src="/${OUT}/${bundle}"></script>`;
}

describe('the browser entry bundled by esbuild', { skip, timeout: 300_000 }, () => {
  let browser: Browser;
  let server: RangeServer;
  // biome-ignore lint/suspicious/noExplicitAny: esbuild's result, typed by the dynamic import below
  let built: any;

  before(async () => {
    const project = join(REPO_ROOT, PROJECT);
    rmSync(project, { recursive: true, force: true });
    mkdirSync(join(project, 'node_modules'), { recursive: true });
    symlinkSync(REPO_ROOT, join(project, 'node_modules', 'mpt-ts'), 'dir');
    for (const [name, text] of Object.entries(ENTRIES)) writeFileSync(join(project, name), text);
    const esbuild = await import('esbuild');
    built = await esbuild.build({
      entryPoints: Object.keys(ENTRIES).map((n) => join(project, n)),
      absWorkingDir: project,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      outdir: join(REPO_ROOT, OUT),
      metafile: true,
      logLevel: 'silent',
    });
    server = await serveFolder(REPO_ROOT, {
      headers: ISOLATION,
      pages: { '/with/': page('with-url.js'), '/without/': page('without-url.js') },
    });
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ ...CHROMIUM_LAUNCH });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    rmSync(join(REPO_ROOT, PROJECT), { recursive: true, force: true });
  });

  it('no errors, no warnings, nothing of Node in the bundles', () => {
    assert.deepEqual(built.errors, []);
    assert.deepEqual(built.warnings, []);
    // esbuild names inputs relative to the project folder; the package's files are found through its link.
    const inputs = Object.keys(built.metafile.inputs).map((i) => relative(REPO_ROOT, resolve(REPO_ROOT, PROJECT, i)));
    assert.ok(inputs.includes('dist/src/browser.js'), inputs.join(', '));
    assert.ok(inputs.includes('dist/src/backends/wasm/index.js'), 'the wasm backend is bundled');
    assert.ok(!inputs.includes('dist/src/platform/node.js'), 'the Node platform is left out');
    for (const name of Object.keys(ENTRIES)) {
      const text = readFileSync(join(REPO_ROOT, OUT, name), 'utf8');
      assert.deepEqual(text.match(/["'`]node:[a-z_/]+["'`]/g) ?? [], [], `${name}: no node:* module`);
    }
  });

  it("with setPackageUrl: the bundle finds the kernels, the worker and the shipped model, and gives Node's greedy tokens", async () => {
    const node = await loadModel(undefined, { threads: 2, onNote: () => {} });
    const want = await node.generate(PROMPT, { maxTokens: 20, temperature: 0 });
    await node.dispose();
    const tab = await openTab(browser, `${server.url}with/`);
    try {
      const mark = server.requests.length;
      const got = await tab.call<{ tokens: number[]; text: string; isolated: boolean }>('greedy', PROMPT, 20);
      assert.deepEqual(got.tokens, want.tokens);
      assert.equal(got.text, want.text);
      assert.equal(got.isolated, true);
      const fetched = server.requests.slice(mark).map((r) => `${r.path} ${r.status}`);
      for (const f of ['/dist/wasm/kernels.wasm', '/dist/src/backends/wasm/worker.js', '/models/default/config.json']) {
        assert.ok(
          fetched.includes(`${f} 200`) || fetched.includes(`${f} 206`),
          `${f} fetched from the package: ${fetched.join(', ')}`,
        );
      }
      assert.deepEqual(
        tab.said.filter((s) => /error/i.test(s)),
        [],
      );
    } finally {
      await tab.close();
    }
  });

  it('without setPackageUrl: the error says to call it', async () => {
    const tab = await openTab(browser, `${server.url}without/`);
    try {
      const said = await tab.call<string>('load', `${server.url}test/fixtures/gguf-tiny-q/tiny-q-q8_0.gguf`);
      assert.match(said, /wasm kernels not found at .*setPackageUrl/);
    } finally {
      await tab.close();
    }
  });
});
