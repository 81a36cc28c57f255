import { mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Browser, type Locator } from 'playwright-core';
import { useHarness } from '../helpers/harness.ts';
import { launchBrowser, localPage, noBrowser, OUT } from '../helpers/browser.ts';

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
  what: string;
}

describe.skipIf(noBrowser)('machine diagrams in a browser', () => {
  const h = useHarness();
  let browser: Browser;

  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });

  for (const name of ['promotion', 'campaign']) {
    it(`draws every ${name} state and transition, with each event's rank, and marks initial and final states`, async () => {
      const info = h.service.registry.get(name)!;
      const a = info.analysis;
      const { page, foreign } = await localPage(browser, h.url, {
        viewport: { width: 1400, height: 900 },
        extraHTTPHeaders: { authorization: `Bearer ${h.keys.merchant}` },
      });
      const res = await page.goto(`${h.url}/v1/machines/${name}/diagram`);
      expect(res?.status()).toBe(200);
      expect(res?.headers()['content-type']).toMatch(/^text\/html/);
      await expect(page.title()).resolves.toBe(`${name} · promosync machine`);
      const svg = page.locator(`svg.machine-diagram[data-machine="${name}"]`);
      expect(await svg.isVisible()).toBe(true);

      for (const state of a.states) {
        const g = svg.locator(`g.state[data-state="${state}"]`);
        await expect(g.count(), state).resolves.toBe(1);
        expect(await g.isVisible()).toBe(true);
        expect((await g.locator('text').textContent())?.trim()).toBe(state);
        const final = a.finalStates.includes(state);
        expect(await g.getAttribute('data-final')).toBe(String(final));
        // The double border of final states: a second rectangle inside the first.
        await expect(g.locator('rect').count(), state).resolves.toBe(final ? 2 : 1);
        expect(await g.getAttribute('data-initial')).toBe(String(state === a.initial));
      }
      // The initial state: a start dot with an arrow into it, labelled with the creation event.
      const start = svg.locator(`g.start[data-to="${a.initial}"]`);
      await expect(start.locator('circle').count()).resolves.toBe(1);

      for (const e of a.events) {
        const labels = svg.locator(`text[data-event="${e.type}"][data-rank="${e.rank}"]`);
        // One label per transition: one for each state the event leaves, or the start arrow.
        await expect(labels.count(), e.type).resolves.toBe(e.from.length || 1);
        for (const text of await labels.allTextContents()) expect(text).toBe(`${e.type} · rank ${e.rank}`);
        if (e.from.length === 0)
          await expect(start.locator(`text[data-event="${e.type}"]`).count()).resolves.toBe(1);
        for (const from of e.from) {
          const edge = svg.locator(`g.edge[data-from="${from}"][data-to="${e.target}"]`);
          await expect(edge.count(), `${e.type} from ${from}`).resolves.toBe(1);
          expect((await edge.getAttribute('data-events'))!.split(' ')).toContain(e.type);
        }
      }
      // The same ranks as a table below the drawing.
      const rows = page.locator('table tbody tr');
      await expect(rows.count()).resolves.toBe(a.events.length);

      // Readable: no label covers a state or another label, and everything is inside the drawing.
      const frame = (await svg.boundingBox())!;
      const boxOf = async (l: Locator, what: string): Promise<Box> => {
        const b = (await l.boundingBox())!;
        return { x: b.x - frame.x, y: b.y - frame.y, w: b.width, h: b.height, what };
      };
      const boxes = {
        frame: { w: frame.width, h: frame.height },
        states: await Promise.all(
          a.states.map((s) => boxOf(svg.locator(`g.state[data-state="${s}"] > rect`).first(), `state ${s}`)),
        ),
        labels: await Promise.all(
          (await svg.locator('text[data-event]').all()).map(async (l) =>
            boxOf(
              l,
              `label ${await l.textContent()} from ${(await l.locator('xpath=..').getAttribute('data-from')) ?? 'start'}`,
            ),
          ),
        ),
      };
      const overlap = (p: Box, q: Box): boolean =>
        p.x < q.x + q.w - 1 && q.x < p.x + p.w - 1 && p.y < q.y + q.h - 1 && q.y < p.y + p.h - 1;
      const clashes: string[] = [];
      boxes.labels.forEach((l, i) => {
        for (const s of boxes.states) if (overlap(l, s)) clashes.push(`${l.what} covers ${s.what}`);
        for (const m of boxes.labels.slice(i + 1))
          if (overlap(l, m)) clashes.push(`${l.what} covers ${m.what}`);
      });
      expect(clashes).toEqual([]);
      for (const b of [...boxes.states, ...boxes.labels]) {
        expect(b.x, b.what).toBeGreaterThanOrEqual(0);
        expect(b.y, b.what).toBeGreaterThanOrEqual(0);
        expect(b.x + b.w, b.what).toBeLessThanOrEqual(boxes.frame.w);
        expect(b.y + b.h, b.what).toBeLessThanOrEqual(boxes.frame.h);
      }

      await page.screenshot({ path: `${OUT}/diagram-${name}.png`, fullPage: true });
      expect(foreign).toEqual([]);
      await page.close();
    });
  }

  it('serves the bare SVG to clients that do not ask for HTML', async () => {
    const res = await h.request('/v1/machines/campaign/diagram', { key: h.keys.producer });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^image\/svg\+xml/);
    const svg = await res.text();
    expect(svg).toMatch(
      /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg" class="machine-diagram" data-machine="campaign"/,
    );
    const html = await h.request('/v1/machines/campaign/diagram?format=html', { key: h.keys.producer });
    expect(html.headers.get('content-type')).toMatch(/^text\/html/);
  });

  it('answers unknown machines, unknown formats and missing keys with problems', async () => {
    expect((await h.request('/v1/machines/nope/diagram')).status).toBe(404);
    const bad = await h.request('/v1/machines/promotion/diagram?format=png');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'invalid_request', errors: [{ path: 'format' }] });
    expect((await h.request('/v1/machines/promotion/diagram', { key: null })).status).toBe(401);
  });
});
