import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser } from 'playwright-core';
import { useHarness } from '../helpers/harness.ts';
import { launchBrowser, localPage as openLocalPage, noBrowser, OUT } from '../helpers/browser.ts';
import type { OpenApiDocument } from '../../src/api/openapi.ts';

describe.skipIf(noBrowser)('the docs page and the dashboard in a browser', () => {
  const h = useHarness();
  let browser: Browser;
  let doc: OpenApiDocument;

  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    doc = (await (await h.request('/openapi.json', { key: null })).json()) as OpenApiDocument;
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });

  /** A page that may only talk to the API under test; anything else is recorded and refused. */
  const localPage = (options: Parameters<Browser['newPage']>[0] = {}) =>
    openLocalPage(browser, h.url, { viewport: { width: 1280, height: 900 }, ...options });

  it('lists every endpoint of the OpenAPI document with method, path, summary and a curl example', async () => {
    const { page, foreign } = await localPage();
    const res = await page.goto(`${h.url}/docs`);
    expect(res?.status()).toBe(200);
    await expect(page.title()).resolves.toMatch(/^promosync API/);

    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item).map(([method, op]) => ({ method, path, op })),
    );
    expect(operations.length).toBeGreaterThanOrEqual(14);
    for (const { method, path, op } of operations) {
      const card = page.locator(`article.op[data-method="${method}"][data-path="${path}"]`);
      await expect(card.count(), `${method} ${path}`).resolves.toBe(1);
      expect(await card.isVisible()).toBe(true);
      const title = await card.locator('h3').innerText();
      expect(title.replace(/\s+/g, ' ')).toBe(`${method.toUpperCase()} ${path}`);
      expect(await card.locator('.summary').innerText()).toBe(op.summary);
      for (const p of op.parameters ?? []) {
        await expect(
          card.locator('td code', { hasText: p.name }).count(),
          `${path} ${p.name}`,
        ).resolves.toBeGreaterThan(0);
      }
      const curl = await card.locator('pre.curl').innerText();
      expect(curl).toMatch(
        new RegExp(`^curl -sS${method === 'get' ? '' : ` -X ${method.toUpperCase()}`} "${h.url}`),
      );
      // The nav links to the card.
      const id = await card.getAttribute('id');
      await expect(page.locator(`nav a[href="#${id}"]`).count()).resolves.toBe(1);
    }

    // The example request of POST /v1/events is a real one: copy it, run it, it is accepted.
    const curl = await page
      .locator('article.op[data-method="post"][data-path="/v1/events"] pre.curl')
      .innerText();
    const body = /-d '([\s\S]*)'$/.exec(curl)?.[1];
    expect(body).toBeDefined();
    const sent = await h.request('/v1/events', { method: 'POST', json: JSON.parse(body!) });
    expect(sent.status).toBe(202);

    await expect(page.locator('#errors td code', { hasText: 'invalid_event' }).count()).resolves.toBe(1);
    await page.screenshot({ path: `${OUT}/docs.png`, fullPage: true });
    expect(foreign).toEqual([]);
    await page.close();
    await h.drain();
  });

  it('shows the queue dashboard to an admin logging in with HTTP Basic auth', async () => {
    const post = await h.request('/v1/events', {
      method: 'POST',
      json: { machine: 'promotion', entityId: 'dash-e2e', type: 'create' },
    });
    expect(post.status).toBe(202);
    await h.drain();
    const { page } = await localPage({ httpCredentials: { username: 'ops', password: h.keys.admin } });
    const res = await page.goto(`${h.url}/admin/queues`);
    expect(res?.status()).toBe(200);
    await page.getByText(h.queueName).first().waitFor({ timeout: 20_000 });
    await page.screenshot({ path: `${OUT}/dashboard.png` });
    await page.close();
  });

  it('keeps the dashboard closed to a browser without an admin key', async () => {
    const { page } = await localPage({ httpCredentials: { username: 'ops', password: h.keys.merchant } });
    const res = await page.goto(`${h.url}/admin/queues`);
    expect(res?.status()).toBe(403);
    await page.close();
  });
});
