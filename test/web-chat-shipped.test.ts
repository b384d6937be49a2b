/**
 * The chat page with the shipped model and the page's default settings, in Chromium: its first
 * message used to fail (max tokens 256 = the whole context), and so did any conversation longer
 * than the context. Three turns must all be answered, and the conversation must survive a reload.
 * Skipped when chromium is not installed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';
import { CHROMIUM_LAUNCH, chromiumMissing } from './helpers/chromium.js';
import { skipUnlessPresent } from './helpers/requirement.js';

const skip = skipUnlessPresent(chromiumMissing());
const SHIPPED = fileURLToPath(new URL('../../models/default/', import.meta.url));

let server: MptServer | undefined;
let url = '';
before(async () => {
  if (skip) return;
  const model = await loadServedModel(SHIPPED, { threads: 1, onNote: () => {} });
  server = new MptServer(model, { port: 0, host: '127.0.0.1' });
  url = (await server.listen()).url;
});
after(async () => {
  if (!server) return;
  await server.shutdown(0);
  await server.model.runner.dispose();
});

test('chat page, shipped model, default settings: three turns answered, history kept across a reload', {
  skip,
  timeout: 180_000,
}, async () => {
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'mpt-web-test-'));
  const context = await chromium.launchPersistentContext(profile, {
    ...CHROMIUM_LAUNCH,
  });
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url + '/');
    await page.waitForFunction(
      () =>
        !document.getElementById('model')!.textContent!.includes('not connected') &&
        document.getElementById('model')!.textContent!.includes('context'),
      undefined,
      { timeout: 10_000 },
    );
    const turns = [
      'Hello there, tell me a long story about a dragon and a princess.',
      'And then what happened?',
      'Tell me more, please.',
    ];
    for (let i = 0; i < turns.length; i++) {
      await page.fill('#prompt', turns[i]!);
      await page.click('#send');
      await page.waitForFunction(
        (k) => {
          const replies = document.querySelectorAll('.message.assistant');
          return (
            replies.length === k &&
            !replies[k - 1]!.classList.contains('streaming') &&
            !!replies[k - 1]!.querySelector('.meta')
          );
        },
        i + 1,
        { timeout: 60_000 },
      );
      const failed = await page.$$eval('.message.error', (els) => els.map((e) => e.textContent));
      assert.deepEqual(failed, [], `turn ${i + 1} failed`);
    }
    const before = await page.$$eval('.message', (els) =>
      els.map((e) => [e.className, e.querySelector('.body')!.textContent]),
    );
    assert.equal(before.length, 6);
    await page.reload();
    await page.waitForSelector('.message');
    const afterReload = await page.$$eval('.message', (els) =>
      els.map((e) => [e.className, e.querySelector('.body')!.textContent]),
    );
    assert.deepEqual(
      afterReload.map(([c, t]) => [c!.split(' ').slice(0, 2).join(' '), t]),
      before.map(([c, t]) => [c!.split(' ').slice(0, 2).join(' '), t]),
    );
    assert.deepEqual(errors, []);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
});
