import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** The browser the e2e tests drive; CHROMIUM_PATH overrides the Debian location. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Where screenshots go (gitignored). */
export const OUT = 'test-output';

/** Skip browser tests without a browser, except in CI, where a missing browser is a failure. */
export const noBrowser = !existsSync(CHROMIUM) && !process.env.CI;

/** Headless Chromium that makes no connections of its own (the machine is offline). */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}
