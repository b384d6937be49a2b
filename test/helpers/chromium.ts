/** Debian's Chromium for the browser tests (driven by playwright-core), and how they launch it. */
import { existsSync } from 'node:fs';

export const CHROMIUM = '/usr/bin/chromium';

/** Why the browser tests cannot run here, or null (for skipUnlessPresent). */
export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `chromium is not installed at ${CHROMIUM} (apt-get install chromium)`;
}

/** Launch options shared by every browser test: headless, no network of its own, no first-run work. */
export const CHROMIUM_LAUNCH = {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    '--headless=new',
    '--no-sandbox',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
};
