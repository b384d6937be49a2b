/**
 * The chat page's settings and reply tools in Chromium: a fresh page starts from the CLI's
 * sampling defaults, markdown rendered (and a reply's HTML kept as text),
 * copy puts the reply's raw markdown on the clipboard, regenerate asks the last turn again, and
 * the page fits a phone's screen. Skipped when chromium is not installed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { BrowserContext, Page } from 'playwright-core';
import { DEFAULT_SAMPLING } from '../src/backends/sampling/sampler.js';
import { DEFAULT_MAX_TOKENS } from '../src/runtime/generation-sequence.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { startTestServer, type TestServer } from './helpers/serve-fixture.js';

const skip = skipUnlessPresent(chromiumMissing());

let srv: TestServer;
let context: BrowserContext;
let profile = '';
before(async () => {
  if (skip) return;
  srv = await startTestServer();
  const { chromium } = await import('playwright-core');
  profile = mkdtempSync(join(tmpdir(), 'mpt-web-test-'));
  context = await chromium.launchPersistentContext(profile, {
    ...CHROMIUM_LAUNCH,
  });
});
after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  await srv?.close();
});

/** A reply with every construct, some HTML that must stay text, and lines too long for a phone. */
const REPLY = [
  '## Plan',
  'Use **bold**, *italic* and `inline <b>code</b>`.',
  '',
  '- first',
  '- second',
  '',
  '1. one',
  '2. two',
  '',
  '```js',
  'const veryLongVariableNameThatDoesNotFitOnAPhone = someFunction(argumentNumberOne, argumentNumberTwo, three);',
  '```',
  'See [the docs](https://example.org/a/very/long/path/that/goes/on/and/on/and/on/for/a/while) or [this](javascript:window.__xss=2).',
  '<img src=x onerror="window.__xss=1"> <script>window.__xss=3</script>',
  'Averyveryveryveryveryveryveryveryveryveryveryveryveryveryveryverylongwordwithoutanyspaces.',
].join('\n');

/** A fresh page whose stored conversation is one user turn and REPLY. */
async function pageWithReply(): Promise<{ page: Page; errors: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(srv.url + '/');
  await page.evaluate((reply) => {
    localStorage.clear();
    localStorage.setItem(
      'mpt-chat.history',
      JSON.stringify([
        { role: 'user', content: 'Show me markdown' },
        { role: 'assistant', content: reply },
      ]),
    );
  }, REPLY);
  await page.reload();
  await page.waitForFunction((id) => document.getElementById('model')!.textContent!.includes(id), srv.model.id, {
    timeout: 10_000,
  });
  return { page, errors };
}

test('chat page: a reply is rendered as markdown, its HTML stays text', { skip, timeout: 60_000 }, async () => {
  const { page, errors } = await pageWithReply();
  try {
    const body = page.locator('.message.assistant .body');
    assert.equal(await body.locator('h2').textContent(), 'Plan');
    assert.equal(await body.locator('strong').first().textContent(), 'bold');
    assert.equal(await body.locator('em').first().textContent(), 'italic');
    assert.equal(await body.locator('p code').first().textContent(), 'inline <b>code</b>');
    assert.deepEqual(await body.locator('ul > li').allTextContents(), ['first', 'second']);
    assert.deepEqual(await body.locator('ol > li').allTextContents(), ['one', 'two']);
    assert.match((await body.locator('pre > code.language-js').textContent())!, /^const veryLong.*three\);$/);
    const links = await body
      .locator('a')
      .evaluateAll((as) =>
        as.map((a) => [a.getAttribute('href'), a.getAttribute('target'), a.getAttribute('rel'), a.textContent]),
      );
    assert.deepEqual(links, [
      [
        'https://example.org/a/very/long/path/that/goes/on/and/on/and/on/for/a/while',
        '_blank',
        'noopener noreferrer',
        'the docs',
      ],
    ]);
    // The reply's HTML is shown as the characters it is, and nothing of it ran.
    assert.equal(await page.locator('#messages img, #messages script').count(), 0);
    assert.match((await body.textContent())!, /<img src=x onerror="window.__xss=1"> <script>window.__xss=3<\/script>/);
    assert.match((await body.textContent())!, /\[this\]\(javascript:window.__xss=2\)/);
    assert.equal(await page.evaluate(() => (window as any).__xss), undefined);
    // The user's own message is not markdown.
    assert.equal(await page.locator('.message.user .body').innerHTML(), 'Show me markdown');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('chat page: copy puts the raw markdown of a reply on the clipboard', { skip, timeout: 60_000 }, async () => {
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.url });
  const { page, errors } = await pageWithReply();
  try {
    await page.evaluate(() => navigator.clipboard.writeText('before'));
    await page.click('.message.assistant .copy');
    await page.waitForFunction(() => document.querySelector('.message.assistant .copy')!.textContent === 'Copied');
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), REPLY);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

/** What the page sends to /v1/chat/completions (the fields these tests read). */
interface ChatBody {
  temperature: number;
  top_p: number;
  messages: Array<{ role: string; content: string }>;
}

/** A fresh page (nothing stored) once it shows the server's model, and the chat requests it sends. */
async function freshPage(): Promise<{ page: Page; bodies: ChatBody[]; errors: string[] }> {
  const page = await context.newPage();
  const bodies: ChatBody[] = [];
  const errors: string[] = [];
  page.on('request', (r) => {
    if (r.url().endsWith('/v1/chat/completions')) bodies.push(JSON.parse(r.postData() ?? 'null'));
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(srv.url + '/');
  await page.evaluate(() => localStorage.clear());
  await page.reload();
  await page.waitForFunction((id) => document.getElementById('model')!.textContent!.includes(id), srv.model.id, {
    timeout: 10_000,
  });
  return { page, bodies, errors };
}

test("chat page: a fresh page shows and sends the CLI's sampling defaults", { skip, timeout: 60_000 }, async () => {
  const { page, bodies } = await freshPage();
  try {
    assert.equal(await page.textContent('#temperature-value'), DEFAULT_SAMPLING.temperature.toFixed(2));
    assert.equal(await page.textContent('#top-p-value'), DEFAULT_SAMPLING.topP.toFixed(2));
    assert.equal(await page.inputValue('#max-tokens'), String(DEFAULT_MAX_TOKENS));
    await page.fill('#prompt', 'Hello');
    await page.click('#send');
    await page.waitForFunction(() => !!document.querySelector('.message.assistant .meta'), undefined, {
      timeout: 30_000,
    });
    assert.equal(bodies.length, 1);
    assert.equal(bodies[0]!.temperature, DEFAULT_SAMPLING.temperature);
    assert.equal(bodies[0]!.top_p, DEFAULT_SAMPLING.topP);
  } finally {
    await page.close();
  }
});

test('chat page: regenerate asks the last turn again and replaces its reply', { skip, timeout: 60_000 }, async () => {
  const { page, bodies, errors } = await freshPage();
  try {
    await page.fill('#max-tokens', '6');
    const done = (n: number) =>
      page.waitForFunction(
        (k) => {
          const replies = document.querySelectorAll('.message.assistant');
          return (
            replies.length === k &&
            !replies[k - 1]!.classList.contains('streaming') &&
            !!replies[k - 1]!.querySelector('.meta')
          );
        },
        n,
        { timeout: 20_000 },
      );
    for (const [i, text] of ['First question', 'Second question'].entries()) {
      await page.fill('#prompt', text);
      await page.click('#send');
      await done(i + 1);
    }
    // Only the last reply offers to regenerate.
    assert.deepEqual(
      await page
        .locator('.message.assistant .regenerate')
        .evaluateAll((bs) => bs.map((b) => (b as HTMLElement).offsetParent !== null)),
      [false, true],
    );
    const firstReply = await page.locator('.message.assistant').first().textContent();
    const historyBefore = await page.evaluate(() => JSON.parse(localStorage.getItem('mpt-chat.history')!));
    assert.equal(historyBefore.length, 4);

    await page.click('.message.assistant:last-child .regenerate');
    await page.waitForFunction(
      () => {
        const last = document.querySelector('.message.assistant:last-child');
        return !!last && !last.classList.contains('streaming') && !!last.querySelector('.meta');
      },
      undefined,
      { timeout: 20_000 },
    );
    assert.equal(bodies.length, 3);
    // The same conversation was asked again: the replaced reply is not part of it.
    assert.deepEqual(bodies[2]!.messages, bodies[1]!.messages);
    assert.deepEqual(
      bodies[2]!.messages.map((m) => m.role),
      ['user', 'assistant', 'user'],
    );
    assert.deepEqual(await page.locator('.message').evaluateAll((ms) => ms.map((m) => m.className)), [
      'message user',
      'message assistant',
      'message user',
      'message assistant',
    ]);
    assert.equal(await page.locator('.message.assistant').first().textContent(), firstReply);
    assert.match((await page.locator('.message.assistant .meta').last().textContent())!, /^6 tokens/);
    const historyAfter = await page.evaluate(() => JSON.parse(localStorage.getItem('mpt-chat.history')!));
    assert.deepEqual(historyAfter.slice(0, 3), historyBefore.slice(0, 3));
    assert.equal(historyAfter.length, 4);
    assert.equal(historyAfter[3].role, 'assistant');
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('chat page at phone width (375×667): no sideways scroll, composer usable, settings fold away', {
  skip,
  timeout: 60_000,
}, async () => {
  const { page, errors } = await pageWithReply();
  try {
    await page.setViewportSize({ width: 375, height: 667 });
    const fits = async () => {
      assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 375, 'page scrolls sideways');
      for (const sel of ['#prompt', '#send', '#settings-toggle']) {
        assert.ok(await page.isVisible(sel), `${sel} hidden`);
        const box = (await page.locator(sel).boundingBox())!;
        assert.ok(
          box.x >= 0 && box.y >= 0 && box.x + box.width <= 375 && box.y + box.height <= 667,
          `${sel} outside the screen: ${JSON.stringify(box)}`,
        );
        assert.ok(box.width >= 40 && box.height >= 30, `${sel} too small to tap: ${JSON.stringify(box)}`);
      }
    };
    await page.screenshot({ path: '/tmp/mpt-web-375.png' });
    await fits();
    // The long code line scrolls inside its block.
    assert.ok(
      await page
        .locator('pre')
        .evaluate((p) => p.scrollWidth > p.clientWidth && p.getBoundingClientRect().right <= 375),
    );
    assert.equal(await page.isVisible('#settings'), false);
    await page.click('#settings-toggle');
    assert.equal(await page.isVisible('#settings'), true);
    assert.equal(await page.getAttribute('#settings-toggle', 'aria-expanded'), 'true');
    await fits();
    await page.screenshot({ path: '/tmp/mpt-web-375-settings.png' });
    await page.click('#settings-toggle');
    assert.equal(await page.isVisible('#settings'), false);
    // A wide screen shows the settings beside the chat, with no toggle.
    await page.setViewportSize({ width: 1200, height: 800 });
    assert.equal(await page.isVisible('#settings'), true);
    assert.equal(await page.isVisible('#settings-toggle'), false);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});

test('chat page: a streamed reply is rendered from all its pieces, markup split across them', {
  skip,
  timeout: 60_000,
}, async () => {
  const page = await context.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The server's stream, with a fence and a bold span cut across its events.
  const pieces = ['Here:\n``', '`js\nconst', ' x = 1;\n', '```\nDone **o', 'k**'];
  const sse =
    pieces
      .map(
        (p) => `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: p }, finish_reason: null }] })}\n\n`,
      )
      .join('') +
    `data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`;
  try {
    await page.route('**/v1/chat/completions', (route) =>
      route.fulfill({ status: 200, headers: { 'Content-Type': 'text/event-stream' }, body: sse }),
    );
    await page.goto(srv.url + '/');
    await page.evaluate(() => localStorage.clear());
    await page.reload();
    await page.waitForFunction((id) => document.getElementById('model')!.textContent!.includes(id), srv.model.id, {
      timeout: 10_000,
    });
    await page.fill('#prompt', 'Code please');
    await page.click('#send');
    await page.waitForSelector('.message.assistant .meta');
    const body = page.locator('.message.assistant .body');
    assert.equal(
      await body.innerHTML(),
      '<p>Here:</p>\n<pre><code class="language-js">const x = 1;</code></pre>\n<p>Done <strong>ok</strong></p>',
    );
    assert.match((await page.textContent('.message.assistant .meta'))!, /^5 tokens/);
    const stored = await page.evaluate(() => JSON.parse(localStorage.getItem('mpt-chat.history')!));
    assert.deepEqual(stored, [
      { role: 'user', content: 'Code please' },
      { role: 'assistant', content: pieces.join('') },
    ]);
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
