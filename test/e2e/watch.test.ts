import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser } from 'playwright-core';
import { useHarness } from '../helpers/harness.ts';
import { launchBrowser, noBrowser } from '../helpers/browser.ts';

/** A browser follows a collection with the standard EventSource (docs/api.md, "Following changes"). */
describe.skipIf(noBrowser)('watching changes from a browser', () => {
  const h = useHarness();
  let browser: Browser;

  beforeAll(async () => {
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("an EventSource on the watch endpoint receives a merchant's change, with its changeSeq as lastEventId", async () => {
    const page = await browser.newPage();
    // A page of the API's own origin (as a merchant's page behind the same host would be);
    // every other request goes to the API under test, and nothing leaves the machine.
    const origin = new URL(h.url).origin;
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url === `${origin}/follow.html`) {
        return route.fulfill({
          status: 200,
          contentType: 'text/html',
          body: '<!doctype html><title>follow</title>',
        });
      }
      return url.startsWith(`${origin}/`) ? route.continue() : route.abort();
    });
    await page.goto(`${origin}/follow.html`);
    const received = page.evaluate(
      (key) =>
        new Promise<{ data: string; lastEventId: string; type: string }>((resolve, reject) => {
          const source = new EventSource(`/v1/promotions/watch?access_token=${encodeURIComponent(key)}`);
          source.addEventListener('change', (e) => {
            const m = e as MessageEvent;
            source.close();
            resolve({ data: String(m.data), lastEventId: m.lastEventId, type: m.type });
          });
          source.addEventListener('resync', () => reject(new Error('resync')));
          setTimeout(() => reject(new Error('no change within 30 s')), 30_000);
        }),
      h.keys.merchant,
    );
    // The stream is open once the server counts it; then the change happens.
    for (let i = 0; i < 200 && h.service.changes!.watcherCount === 0; i++)
      await new Promise((r) => setTimeout(r, 50));
    const res = await h.request('/v1/events?wait=true', {
      method: 'POST',
      json: { events: [{ machine: 'promotion', entityId: 'in-browser', type: 'create', merchantId: 'm-1' }] },
    });
    expect(res.status).toBe(200);
    const got = await received;
    const view = JSON.parse(got.data) as { id: string; status: string; changeSeq: string };
    expect(view).toMatchObject({ id: 'in-browser', status: 'CREATED' });
    expect(got.lastEventId).toBe(view.changeSeq);
    await page.close();
  });
});
