/**
 * The chat page in a real browser (Debian's chromium driven by playwright-core): it loads with
 * no external resources, streams a reply, sends the sampling controls, and its stop button
 * cancels generation on the server (the slot is freed). Skipped when chromium is not installed (never in CI).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { skipUnlessPresent } from './helpers/requirement.js';
import { metricValue, startTestServer, waitFor, type TestServer } from './helpers/serve-fixture.js';

const skip = skipUnlessPresent(chromiumMissing());

let srv: TestServer;
before(async () => {
  if (!skip) srv = await startTestServer({ parallel: 4 });
});
after(async () => {
  if (srv) await srv.close();
});

test('chat page: streamed reply, controls sent, stop cancels on the server', { skip, timeout: 120_000 }, async () => {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'mpt-web-test-'));
  const context = await chromium.launchPersistentContext(profile, {
    ...CHROMIUM_LAUNCH,
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const requests: string[] = [];
    const bodies: any[] = [];
    const errors: string[] = [];
    page.on('request', (r) => {
      requests.push(r.url());
      if (r.url().endsWith('/v1/chat/completions')) bodies.push(JSON.parse(r.postData() ?? 'null'));
    });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });

    await page.goto(srv.url + '/');
    await page.waitForFunction((id) => document.getElementById('model')!.textContent!.includes(id), srv.model.id, {
      timeout: 10_000,
    });

    // Settings: a system prompt, temperature and top-p from the sliders, a large max tokens.
    await page.fill('#system', 'Be brief.');
    await page.$eval('#temperature', (el) => {
      (el as HTMLInputElement).value = '0.35';
      el.dispatchEvent(new Event('input'));
      el.dispatchEvent(new Event('change'));
    });
    await page.$eval('#top-p', (el) => {
      (el as HTMLInputElement).value = '0.9';
      el.dispatchEvent(new Event('input'));
      el.dispatchEvent(new Event('change'));
    });
    assert.equal(await page.textContent('#temperature-value'), '0.35');
    await page.fill('#max-tokens', '1500');
    await page.fill('#prompt', 'Hello there');
    await page.click('#send');

    // The reply streams in: its text grows over several updates.
    const reply = page.locator('.message.assistant .body').last();
    await page.waitForFunction(
      () => (document.querySelector('.message.assistant:last-child .body')?.textContent ?? '').length > 0,
      undefined,
      { timeout: 10_000 },
    );
    const first = (await reply.textContent())!.length;
    await page.waitForFunction(
      (n) => (document.querySelector('.message.assistant:last-child .body')?.textContent ?? '').length > n,
      first,
      { timeout: 10_000 },
    );
    assert.equal(await page.isEnabled('#stop'), true);
    assert.equal(await page.isEnabled('#send'), false);
    assert.equal(metricValue(await (await fetch(`${srv.url}/metrics`)).text(), 'mpt_active_sequences'), 1);
    assert.match((await page.textContent('#tps'))!, /^\d+(\.\d+)? tok\/s$/);

    await page.click('#stop');
    await page.waitForFunction(() => !(document.getElementById('send') as HTMLButtonElement).disabled, undefined, {
      timeout: 10_000,
    });
    await waitFor(
      async () => metricValue(await (await fetch(`${srv.url}/metrics`)).text(), 'mpt_active_sequences') === 0,
      10_000,
      'server freed the stopped reply',
    );
    const stoppedText = await reply.textContent();
    assert.match((await page.locator('.message.assistant .meta').last().textContent())!, /stopped/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await reply.textContent(), stoppedText, 'nothing arrives after stop');

    // The request carried the controls and the system prompt.
    const b = bodies[0];
    assert.equal(b.stream, true);
    assert.equal(b.temperature, 0.35);
    assert.equal(b.top_p, 0.9);
    assert.equal(b.max_tokens, 1500);
    assert.deepEqual(b.messages, [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hello there' },
    ]);

    // A second turn runs to its max tokens; the history includes the stopped reply.
    await page.fill('#max-tokens', '8');
    await page.fill('#prompt', 'And again');
    await page.press('#prompt', 'Enter');
    await page.waitForFunction(
      () =>
        document.querySelectorAll('.message.assistant').length === 2 &&
        !(document.getElementById('send') as HTMLButtonElement).disabled,
      undefined,
      { timeout: 20_000 },
    );
    const meta = await page.locator('.message.assistant .meta').last().textContent();
    assert.match(meta!, /^8 tokens · first token [\d.]+ s · \d+(\.\d+)? tok\/s · stopped at max tokens$/);
    assert.equal(bodies[1].messages.length, 4);
    assert.equal(bodies[1].messages[2].role, 'assistant');

    // Everything the page loaded came from this server.
    for (const u of requests) assert.ok(u.startsWith(srv.url) || u.startsWith('data:'), `external request ${u}`);
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
