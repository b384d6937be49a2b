/**
 * A Chromium tab for the engine's browser tests: a page that imports one test module from
 * dist/test/helpers/ (which puts its functions on `window.mpt`), what the tab says on its console,
 * and calling those functions with JSON arguments.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { BROWSER_IMPORT_MAP } from './web-import-map.js';

/** The headers that make a page cross-origin isolated (SharedArrayBuffer, so Web Workers share memory). */
export const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
} as const;

/** A page that imports `/dist/test/helpers/<module>` with README's import map, then sets window.pageReady. */
export function testPage(module: string): string {
  const map = JSON.stringify({
    imports: Object.fromEntries(Object.entries(BROWSER_IMPORT_MAP).map(([k, v]) => [k, `/${v}`])),
  });
  return (
    '<!doctype html><meta charset="utf-8">' +
    `<script type="importmap">${map}</script>` +
    `<script type="module">import "/dist/test/helpers/${module}"; window.pageReady = true;</script>`
  );
}

export interface Tab {
  page: Page;
  context: BrowserContext;
  /** Console messages and page errors, in order. */
  said: string[];
  /** Calls `window.mpt[name](...args)` in the page (arguments and result travel as JSON). */
  call<T>(name: string, ...args: unknown[]): Promise<T>;
  close(): Promise<void>;
}

/** Opens `url` in a fresh context (its own storage) and waits for window.pageReady. */
export async function openTab(browser: Browser, url: string, init?: () => void): Promise<Tab> {
  const context = await browser.newContext();
  const page = await context.newPage();
  if (init) await page.addInitScript(init);
  const said: string[] = [];
  page.on('console', (m) => said.push(m.text()));
  page.on('pageerror', (e) => said.push(`page error: ${String(e)}`));
  await page.goto(url);
  try {
    await page.waitForFunction(() => (window as { pageReady?: boolean }).pageReady === true, undefined, {
      timeout: 30_000,
    });
  } catch (e) {
    await context.close();
    throw new Error(`the page did not get ready: ${said.join(' | ') || (e as Error).message}`);
  }
  return {
    page,
    context,
    said,
    call: <T>(name: string, ...args: unknown[]) =>
      page.evaluate(`window.mpt[${JSON.stringify(name)}](...${JSON.stringify(args)})`) as Promise<T>,
    close: () => context.close(),
  };
}
