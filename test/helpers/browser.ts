import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

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

/**
 * A page that may only talk to the API at `apiUrl`: a request anywhere else is refused and
 * recorded in `foreign`.
 */
export async function localPage(
  browser: Browser,
  apiUrl: string,
  options: Parameters<Browser['newPage']>[0] = {},
): Promise<{ page: Page; foreign: string[] }> {
  const page = await browser.newPage(options);
  const foreign: string[] = [];
  const origin = new URL(apiUrl).origin;
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(`${origin}/`)) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  return { page, foreign };
}
