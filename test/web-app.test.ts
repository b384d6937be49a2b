/**
 * `mpt web`'s chat app in a real browser (Debian's chromium driven by playwright-core), with
 * `mpt web` started as a user starts it: the page is cross-origin isolated and runs the shipped
 * model in the tab on 2 Web Workers; a greedy reply is Node's greedy reply to the same message;
 * the stop button stops a reply mid-way (a part of Node's reply); a conversation longer than the context keeps being
 * answered (old turns left out); the history survives a reload, and the app opens offline and answers
 * with the shipped model (kept by the engine's model cache: no request, the online greedy reply); chosen
 * files and a typed URL load other models, and a wrong file or URL leaves the model before loaded with a
 * message naming it; the bench page measures pp and tg; `?backend=webgpu` runs on Chromium's software
 * adapter, says so in the header, and replies as Node does. Skipped when
 * chromium is not installed (never in CI).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { loadModel } from '../src/runtime/model.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { REPO_ROOT } from './helpers/goldens.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { startWebApp, type WebApp } from './helpers/web-app-server.js';

const skip = skipUnlessPresent(chromiumMissing());
const GGUF = join(REPO_ROOT, 'test/fixtures/gguf-tiny-q/tiny-q-q8_0.gguf');
const SHIPPED_WEIGHTS = join(REPO_ROOT, 'models/default/model.safetensors');

/** The model line in the header once a model is loaded ("default · context 256 · wasm · 2 threads"). */
async function waitLoaded(page: Page, name: string, timeout = 60_000): Promise<string> {
  await page.waitForFunction(
    (n) => (document.getElementById('model')?.textContent ?? '').startsWith(`${n} · context`),
    name,
    { timeout },
  );
  return (await page.textContent('#model'))!;
}

async function setRange(page: Page, id: string, value: string): Promise<void> {
  await page.$eval(
    id,
    (el, v) => {
      (el as HTMLInputElement).value = v;
      el.dispatchEvent(new Event('input'));
      el.dispatchEvent(new Event('change'));
    },
    value,
  );
}

/** Sends `text` and waits for the n-th reply to finish (its meta line written). */
async function ask(page: Page, text: string, n: number, timeout = 60_000): Promise<string> {
  await page.fill('#prompt', text);
  await page.click('#send');
  await page.waitForFunction(
    (k) => {
      const replies = document.querySelectorAll('.message.assistant');
      const r = replies[k - 1];
      return replies.length === k && r && !r.classList.contains('streaming') && !!r.querySelector('.meta');
    },
    n,
    { timeout },
  );
  return (await page
    .locator('.message.assistant .meta')
    .nth(n - 1)
    .textContent())!;
}

/** The conversation the page keeps (localStorage), raw markdown and all. */
function storedHistory(page: Page): Promise<Array<{ role: string; content: string }>> {
  return page.evaluate(() => JSON.parse(localStorage.getItem('mpt-chat.history') ?? '[]'));
}

describe('mpt web in Chromium', { skip, timeout: 300_000 }, () => {
  let app: WebApp;
  let context: BrowserContext;
  let profile = '';
  let page: Page;
  const errors: string[] = [];
  /** Chromium's warnings (e.g. "No available adapters." where WebGPU has no adapter), in order. */
  const warnings: string[] = [];

  before(async () => {
    app = await startWebApp();
    const { chromium } = await import('playwright-core');
    profile = mkdtempSync(join(tmpdir(), 'mpt-web-app-test-'));
    context = await chromium.launchPersistentContext(profile, { ...CHROMIUM_LAUNCH });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
      if (m.type() === 'warning') warnings.push(m.text());
    });
  });
  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await app?.stop();
  });

  it("isolated page, the shipped model on 2 workers, progress shown; a greedy reply is Node's", async () => {
    await page.goto(`${app.url}?threads=2`); // Node's tokens below come from 2 threads too
    const line = await waitLoaded(page, 'default');
    assert.match(line, /^default · context 256 · wasm · 2 threads$/);
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true);
    // The progress bar followed loadModel's onProgress, up to the weights' size.
    const bytes = Number(await page.getAttribute('#load-progress', 'data-bytes'));
    assert.ok(bytes > 16e6 && bytes <= statSync(SHIPPED_WEIGHTS).size, `progress total ${bytes}`);
    assert.equal(await page.isHidden('#load-progress'), true, 'and went away once loaded');

    const message = 'Tell me a story about a cat.';
    const node = await loadModel(undefined, { threads: 2, onNote: () => {} });
    const want = await node.generate([{ role: 'user', content: message }], { temperature: 0, maxTokens: 30 });
    await node.dispose();
    assert.ok(want.tokens.length > 5, 'Node says something');

    await setRange(page, '#temperature', '0');
    await page.fill('#max-tokens', '30');
    const meta = await ask(page, message, 1);
    assert.match(meta, new RegExp(`^${want.tokens.length} tokens · first token [\\d.]+ s · [\\d.]+ tok/s`));
    const history = await storedHistory(page);
    assert.deepEqual(history, [
      { role: 'user', content: message },
      { role: 'assistant', content: want.text },
    ]);
    assert.match((await page.textContent('#tps'))!, /^\d+(\.\d+)? tok\/s$/);

    // Another prompt template: Node's greedy reply with that template.
    const chatml = await loadModel(undefined, { threads: 2, template: 'chatml', onNote: () => {} });
    const wantChatml = await chatml.generate([{ role: 'user', content: message }], { temperature: 0, maxTokens: 30 });
    await chatml.dispose();
    assert.notDeepEqual(wantChatml.tokens, want.tokens, 'the template changes the reply');
    await page.click('#clear');
    await page.selectOption('#template', 'chatml');
    await ask(page, message, 1);
    assert.equal((await storedHistory(page))[1]?.content, wantChatml.text);
    await page.selectOption('#template', 'auto');
  });

  it("the stop button stops a reply mid-way: a part of Node's reply, nothing after", async () => {
    const message = 'Once upon a time';
    const node = await loadModel(undefined, { threads: 2, onNote: () => {} });
    const whole = await node.generate([{ role: 'user', content: message }], { temperature: 0, maxTokens: 200 });
    await node.dispose();
    assert.ok(whole.tokens.length >= 20, `a long enough reply to stop: ${whole.tokens.length} tokens`);
    await page.click('#clear');
    await setRange(page, '#temperature', '0');
    await page.fill('#max-tokens', '200');
    // Stop as soon as the reply shows its first piece, from inside the page (not a round trip later).
    await page.evaluate(() => {
      const messages = document.getElementById('messages')!;
      const watch = new MutationObserver(() => {
        const body = document.querySelector('.message.assistant:last-child .body');
        if ((body?.textContent ?? '').length === 0) return;
        watch.disconnect();
        document.getElementById('stop')!.click();
      });
      watch.observe(messages, { subtree: true, childList: true, characterData: true });
    });
    await page.fill('#prompt', message);
    await page.click('#send');
    await page.waitForFunction(() => !!document.querySelector('.message.assistant .meta'), undefined, {
      timeout: 30_000,
    });
    assert.equal(await page.locator('.message.assistant .meta').last().textContent(), 'stopped');
    assert.equal(await page.isEnabled('#send'), true);
    const reply = page.locator('.message.assistant .body').last();
    const stopped = await reply.textContent();
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await reply.textContent(), stopped, 'nothing arrives after stop');
    const kept = (await storedHistory(page))[1]!.content;
    assert.ok(
      kept.length > 0 && kept.length < whole.text.length,
      `stopped early: ${kept.length} of ${whole.text.length}`,
    );
    assert.ok(whole.text.startsWith(kept), 'what came is the start of the whole reply');
  });

  it('a conversation longer than the context keeps being answered, old turns left out', async () => {
    await page.click('#clear');
    await page.fill('#max-tokens', '1000'); // more than the context: the reply ends where the context does
    const turns = [
      'Tell me a long story about a dragon who lived in a big castle with a princess and a little dog.',
      'What did the dragon do next, and where did the princess go with her little dog?',
      'And then what happened to all of them when the sun went down over the hills?',
      'Tell me the end of the story, please, with the dragon, the princess and the dog.',
    ];
    const metas: string[] = [];
    for (let i = 0; i < turns.length; i++) metas.push(await ask(page, turns[i]!, i + 1));
    assert.deepEqual(await page.$$eval('.message.error', (els) => els.map((e) => e.textContent)), []);
    for (const m of metas) {
      const tokens = Number(/^(\d+) tokens/.exec(m)?.[1]);
      assert.ok(tokens >= 1 && tokens < 256, `a reply within the context: ${m}`);
    }
    assert.ok(
      metas.some((m) => /\d+ old messages left out/.test(m)),
      `some turn had to leave old messages out: ${metas.join(' | ')}`,
    );
  });

  it('the history survives a reload, and the app opens offline once loaded and answers with the shipped model', async () => {
    const before = await page.$$eval('.message .body', (els) => els.map((e) => e.textContent));
    assert.equal(before.length, 8);
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    await page.reload();
    await waitLoaded(page, 'default');
    assert.deepEqual(await page.$$eval('.message .body', (els) => els.map((e) => e.textContent)), before);
    assert.equal(await page.evaluate(() => navigator.serviceWorker.controller !== null), true);

    // The greedy reply online, to compare with the one given offline.
    const message = 'Tell me a story about a dog.';
    const greedyReply = async () => {
      await page.click('#clear');
      await setRange(page, '#temperature', '0');
      await page.fill('#max-tokens', '20');
      await ask(page, message, 1);
      return (await storedHistory(page))[1]?.content;
    };
    const online = await greedyReply();
    assert.ok(online !== undefined && online.length > 0, 'an answer online');
    const shown = await page.$$eval('.message .body', (els) => els.map((e) => e.textContent));

    errors.length = 0;
    const asked: string[] = [];
    const onRequest = (r: { url(): string }) => asked.push(r.url());
    await context.setOffline(true);
    page.on('request', onRequest);
    try {
      await page.reload();
      await page.waitForSelector('.message');
      assert.deepEqual(await page.$$eval('.message .body', (els) => els.map((e) => e.textContent)), shown);
      assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'the kept page is isolated too');
      // The shipped model, kept by the engine's model cache, loads without the network.
      await waitLoaded(page, 'default');
      assert.deepEqual(
        asked.filter((u) => u.includes('/models/')),
        [],
        'no request for the model offline',
      );
      assert.equal(await greedyReply(), online, 'offline, the online greedy reply');
      assert.deepEqual(errors, [], 'nothing failed offline');
    } finally {
      page.off('request', onRequest);
      await context.setOffline(false);
    }
  });

  it('chosen files, dropped files and a typed URL load other models', async () => {
    const warned = warnings.length;
    await page.locator('#settings details#model-source').evaluate((d) => {
      (d as HTMLDetailsElement).open = true;
    });
    await page.setInputFiles('#model-files', GGUF);
    const gguf = await waitLoaded(page, 'tiny-q-q8_0.gguf');
    assert.match(gguf, /· context \d+ · wasm · 2 threads$/);
    // A model folder's files dropped on the page.
    await page.evaluate(async () => {
      const drop = new DataTransfer();
      for (const name of ['config.json', 'tokenizer.json', 'model.safetensors']) {
        const blob = await (await fetch(`/models/default/${name}`)).blob();
        drop.items.add(new File([blob], name));
      }
      document.dispatchEvent(new DragEvent('drop', { dataTransfer: drop, bubbles: true, cancelable: true }));
    });
    assert.match(await waitLoaded(page, 'chosen files'), /^chosen files · context 256 · wasm · 2 threads$/);
    await page.fill('#model-url', `${app.url}models/default/`);
    await page.click('#model-load');
    await waitLoaded(page, 'default');
    await setRange(page, '#temperature', '0');
    await page.fill('#max-tokens', '4');
    await page.click('#clear');
    assert.match(await ask(page, 'Hello', 1), /^\d tokens/);
    assert.deepEqual(errors, []);
    // 'auto' asked WebGPU for an adapter at the page's first load; without one it is not asked again.
    assert.deepEqual(
      warnings.slice(warned).filter((w) => /adapter/i.test(w)),
      [],
      'no adapter warning at each model switch',
    );
  });

  it('a wrong file dropped or a URL that is no model: a message naming it, and the model before stays', async () => {
    await waitLoaded(page, 'default');
    await page.evaluate(() => {
      const drop = new DataTransfer();
      drop.items.add(new File(['not a model\n'], 'notes.txt', { type: 'text/plain' }));
      document.dispatchEvent(new DragEvent('drop', { dataTransfer: drop, bubbles: true, cancelable: true }));
    });
    await page.waitForFunction(() => /still using/.test(document.getElementById('status')?.textContent ?? ''), null, {
      timeout: 60_000,
    });
    assert.match(
      (await page.textContent('#status'))!,
      /^Could not load the model: notes\.txt is a file but not a \.gguf: .* \(still using default\)$/,
    );
    assert.match(await waitLoaded(page, 'default'), /^default · context 256 · wasm · 2 threads$/);
    await page.click('#clear');
    assert.match(await ask(page, 'Hello', 1), /^\d tokens/, 'the model before answers');

    // A model folder without its tokenizer (a 512-token vocabulary): refused at load, saying what to add.
    const files = ['config.json', 'model.safetensors'].map((name) => ({
      name,
      bytes: readFileSync(join(REPO_ROOT, 'test/fixtures/tiny-alibi', name)).toString('base64'),
    }));
    await page.evaluate((list) => {
      const drop = new DataTransfer();
      for (const { name, bytes } of list)
        drop.items.add(new File([Uint8Array.from(atob(bytes), (c) => c.charCodeAt(0))], name));
      document.dispatchEvent(new DragEvent('drop', { dataTransfer: drop, bubbles: true, cancelable: true }));
    }, files);
    await page.waitForFunction(
      () => /no tokenizer.*still using/.test(document.getElementById('status')?.textContent ?? ''),
      null,
      {
        timeout: 60_000,
      },
    );
    assert.match(
      (await page.textContent('#status'))!,
      /^Could not load the model: the model in the chosen files has no tokenizer \(no tokenizer\.json, .*\): choose or drop its tokenizer\.json together with the model's files \(still using default\)$/,
    );
    assert.match(await waitLoaded(page, 'default'), /^default · context 256 · wasm · 2 threads$/);

    await page.fill('#model-url', `${app.url}no-such-model.gguf`);
    await page.click('#model-load');
    // The message of the step before also says "still using": wait for this URL's.
    await page.waitForFunction(
      () => /no-such-model.*still using/.test(document.getElementById('status')?.textContent ?? ''),
      null,
      { timeout: 60_000 },
    );
    assert.match((await page.textContent('#status'))!, /no-such-model\.gguf.*404.*\(still using default\)$/);
    assert.match(await waitLoaded(page, 'default'), /^default · context 256 · wasm · 2 threads$/);
    // The 404 itself is on the console; nothing else may be.
    const others = errors.filter((e) => !/status of 404/.test(e));
    errors.length = 0;
    assert.deepEqual(others, []);
  });

  it('fits a phone: nothing wider than the screen, settings behind a button', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const widths = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, screen: innerWidth }));
      assert.ok(widths.page <= widths.screen, `page ${widths.page} px on a ${widths.screen} px screen`);
      assert.equal(await page.isVisible('#settings'), false);
      await page.click('#settings-toggle');
      assert.equal(await page.isVisible('#template'), true);
      const after = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(after <= widths.screen, `with the settings open: ${after} px`);
      await page.click('#settings-toggle');
    } finally {
      await page.setViewportSize({ width: 1280, height: 720 });
    }
  });

  it('the bench page reports pp and tg tokens/s', async () => {
    const bench = await context.newPage();
    await bench.goto(`${app.url}bench.html?pp=32&tg=8&reps=2&threads=2`);
    await bench.waitForFunction(() => (window as { benchResult?: unknown }).benchResult !== undefined, undefined, {
      timeout: 60_000,
    });
    const result = (await bench.evaluate(() => (window as { benchResult?: unknown }).benchResult)) as {
      error?: string;
      threads: number;
      crossOriginIsolated: boolean;
      results: Array<{ test: string; tokens_per_second: number; min: number; max: number; reps: number }>;
    };
    assert.equal(result.error, undefined);
    assert.equal(result.crossOriginIsolated, true);
    assert.equal(result.threads, 2);
    assert.deepEqual(
      result.results.map((r) => [r.test, r.reps]),
      [
        ['pp32', 2],
        ['tg8', 2],
      ],
    );
    for (const r of result.results) {
      assert.ok(r.tokens_per_second > 0 && r.min > 0 && r.min <= r.tokens_per_second && r.tokens_per_second <= r.max);
    }
    assert.equal(await bench.locator('#results tbody tr').count(), 2);
    await bench.close();
  });
});

describe('mpt web on WebGPU in Chromium (?backend=webgpu)', { skip, timeout: 300_000 }, () => {
  let app: WebApp;
  let context: BrowserContext;
  let profile = '';
  let page: Page;
  let missing: string | null = null;

  before(async () => {
    app = await startWebApp();
    const { chromium } = await import('playwright-core');
    profile = mkdtempSync(join(tmpdir(), 'mpt-web-app-gpu-test-'));
    // Chromium's software adapter where there is no GPU: 'auto' would keep it off, ?backend= asks for it.
    context = await chromium.launchPersistentContext(profile, {
      ...CHROMIUM_LAUNCH,
      args: [...CHROMIUM_LAUNCH.args, '--enable-unsafe-webgpu'],
    });
    page = context.pages()[0] ?? (await context.newPage());
    await page.goto(app.url);
    const adapter = await page.evaluate(async () => {
      const gpu = (navigator as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
      return (await gpu?.requestAdapter()) != null;
    });
    if (!adapter) missing = 'Chromium offers no WebGPU adapter here, not even its software one';
  });
  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await app?.stop();
  });

  it("the header says WebGPU and a greedy reply is Node's", async (t) => {
    const why = skipUnlessPresent(missing);
    if (why) return t.skip(why);
    await page.goto(`${app.url}?backend=webgpu`);
    assert.match(await waitLoaded(page, 'default', 150_000), /^default · context 256 · WebGPU · \S/);
    const message = 'Tell me a story about a dog.';
    const node = await loadModel(undefined, { threads: 2, onNote: () => {} });
    const want = await node.generate([{ role: 'user', content: message }], { temperature: 0, maxTokens: 4 });
    await node.dispose();
    await setRange(page, '#temperature', '0');
    await page.fill('#max-tokens', '4');
    await page.click('#clear');
    // Chromium's software adapter is slow, the more so on a busy machine: a few tokens, time to spare.
    await ask(page, message, 1, 150_000);
    assert.equal((await storedHistory(page))[1]?.content, want.text);
  });
});
