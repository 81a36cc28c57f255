import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import { promo } from '../helpers/events.ts';
import { sleep } from '../helpers/load.ts';
import { createKey } from '../../src/store/keys.ts';
import type { EntityView, EventView } from '../../src/store/queries.ts';

/** The read side (docs/api.md): one promotion, the paginated list, the event log, machines and probes. */

interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

interface MachineView {
  name: string;
  collection: string;
  ordering: string;
  states: string[];
  finalStates: string[];
  events: Array<{ type: string; rank: number; target: string; from: string[] }>;
  diagnostics: Array<{ level: string; message: string }>;
  ok: boolean;
}

describe('reading over REST', () => {
  const h = useHarness();

  async function push(body: unknown): Promise<void> {
    const res = await h.request('/v1/events?wait=true', { method: 'POST', json: body });
    expect(res.status).toBe(200);
  }

  async function getJson<T>(path: string, key = h.keys.admin): Promise<T> {
    const res = await h.request(path, { key });
    expect(res.status, `${path}: ${res.status}`).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    return (await res.json()) as T;
  }

  /** Follows nextCursor from the first page to the last, returning every page. */
  async function allPages<T>(
    path: string,
    key = h.keys.admin,
    from: string | null = null,
  ): Promise<Array<Page<T>>> {
    const pages: Array<Page<T>> = [];
    let cursor: string | null = from;
    const sep = path.includes('?') ? '&' : '?';
    do {
      const page: Page<T> = await getJson<Page<T>>(
        cursor === null ? path : `${path}${sep}cursor=${encodeURIComponent(cursor)}`,
        key,
      );
      pages.push(page);
      cursor = page.nextCursor;
      expect(pages.length).toBeLessThan(100);
    } while (cursor !== null);
    return pages;
  }

  describe('GET /v1/promotions/:id', () => {
    it('shows id, status, lastEvent, version, merchantId, attributes and updatedAt', async () => {
      await push({
        events: [
          promo('item-1', 'create', {
            eventId: 'item-1-a',
            version: 1,
            merchantId: 'm-1',
            occurredAt: '2026-11-21T10:00:00Z',
            data: { title: '10% off', budget: 500, stackable: false },
          }),
          promo('item-1', 'activate', { eventId: 'item-1-b', version: 2, data: { budget: 450 } }),
        ],
      });
      const e = await getJson<EntityView>('/v1/promotions/item-1');
      expect(e).toMatchObject({
        id: 'item-1',
        status: 'ACTIVATED',
        lastEvent: 'activate',
        version: 2,
        merchantId: 'm-1',
        attributes: { title: '10% off', budget: 450, stackable: false },
      });
      expect(new Date(e.updatedAt).toISOString()).toBe(e.updatedAt);
      expect(Date.now() - Date.parse(e.updatedAt)).toBeLessThan(10 * 60_000);
    });

    it('moves updatedAt forward when an event changes the promotion, and not for a stale one', async () => {
      const before = await getJson<EntityView>('/v1/promotions/item-1');
      await sleep(5);
      await push(promo('item-1', 'create', { eventId: 'item-1-late', version: 1 }));
      const afterStale = await getJson<EntityView>('/v1/promotions/item-1');
      expect(afterStale).toEqual(before);
      await sleep(5);
      await push(promo('item-1', 'complete', { eventId: 'item-1-c', version: 3 }));
      const after = await getJson<EntityView>('/v1/promotions/item-1');
      expect(after).toMatchObject({ status: 'COMPLETED', lastEvent: 'complete', version: 3 });
      expect(Date.parse(after.updatedAt)).toBeGreaterThan(Date.parse(before.updatedAt));
    });

    it('a promotion without version or merchant shows them as null', async () => {
      await push(promo('item-bare', 'create'));
      expect(await getJson<EntityView>('/v1/promotions/item-bare')).toMatchObject({
        id: 'item-bare',
        status: 'CREATED',
        lastEvent: 'create',
        version: null,
        merchantId: null,
        attributes: {},
      });
    });

    for (const id of ['no-such-promo', 'bad%20id', 'x'.repeat(129)]) {
      it(`an unknown or impossible id (${id.slice(0, 16)}) answers 404 not_found`, async () => {
        const res = await h.request(`/v1/promotions/${id}`, { key: h.keys.admin });
        expect(res.status).toBe(404);
        expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(await res.json()).toMatchObject({ code: 'not_found', status: 404 });
      });
    }

    it('an unknown collection answers 404 not_found', async () => {
      const res = await h.request('/v1/coupons/item-1', { key: h.keys.admin });
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ code: 'not_found' });
    });
  });

  describe('GET /v1/promotions', () => {
    const merchant = 'm-pages';
    let key: string;
    const ids = Array.from({ length: 25 }, (_, i) => `page-${String(i).padStart(2, '0')}`);

    beforeAll(async () => {
      key = (await createKey(h.service.db.prisma, { role: 'merchant', merchantId: merchant })).key;
      // Several requests, so some promotions share an updatedAt and some do not.
      for (let i = 0; i < ids.length; i += 7) {
        await push({
          events: ids
            .slice(i, i + 7)
            .map((id, j) => promo(id, (i + j) % 3 === 0 ? 'activate' : 'create', { merchantId: merchant })),
        });
        await sleep(3);
      }
    });

    it('pages through 25 promotions with limit 10, each exactly once, in (updatedAt, id) order', async () => {
      const pages = await allPages<EntityView>('/v1/promotions?limit=10', key);
      expect(pages.map((p) => p.items.length)).toEqual([10, 10, 5]);
      const seen = pages.flatMap((p) => p.items);
      expect(seen.map((e) => e.id).sort()).toEqual(ids);
      const order = seen.map((e) => [e.updatedAt, e.id] as const);
      const sorted = [...order].sort((a, b) =>
        a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1,
      );
      expect(order).toEqual(sorted);
    });

    for (const limit of [1, 7, 24, 25, 26]) {
      it(`covers every promotion exactly once with limit ${limit}`, async () => {
        const pages = await allPages<EntityView>(`/v1/promotions?limit=${limit}`, key);
        const seen = pages.flatMap((p) => p.items.map((e) => e.id));
        expect(seen).toHaveLength(ids.length);
        expect([...seen].sort()).toEqual(ids);
        expect(pages.at(-1)!.nextCursor).toBeNull();
        expect(pages.slice(0, -1).every((p) => p.items.length === limit)).toBe(true);
      });
    }

    it('the last page has no nextCursor', async () => {
      const page = await getJson<Page<EntityView>>('/v1/promotions?limit=1000', key);
      expect(page.items).toHaveLength(25);
      expect(page.nextCursor).toBeNull();
    });

    it('a promotion that changes while a client pages is not lost', async () => {
      const first = await getJson<Page<EntityView>>('/v1/promotions?limit=10', key);
      // The first item of the first page moves to the end of the order.
      const moved = first.items[0]!;
      await push(promo(moved.id, 'delete'));
      const rest = await allPages<EntityView>('/v1/promotions?limit=10', key, first.nextCursor);
      const seen = [...first.items, ...rest.flatMap((p) => p.items)].map((e) => e.id);
      expect(new Set(seen)).toEqual(new Set(ids));
      expect(rest.flatMap((p) => p.items).at(-1)).toMatchObject({ id: moved.id, status: 'DELETED' });
    });

    it('filters by status', async () => {
      const all = (await allPages<EntityView>('/v1/promotions?limit=1000', key)).flatMap((p) => p.items);
      for (const status of ['CREATED', 'ACTIVATED', 'DELETED', 'COMPLETED']) {
        const pages = await allPages<EntityView>(`/v1/promotions?status=${status}&limit=4`, key);
        const got = pages.flatMap((p) => p.items);
        expect(got.every((e) => e.status === status)).toBe(true);
        expect(got.map((e) => e.id).sort()).toEqual(
          all
            .filter((e) => e.status === status)
            .map((e) => e.id)
            .sort(),
        );
      }
    });

    it('filters by updatedSince, inclusive, with any UTC offset', async () => {
      await sleep(5);
      await push({
        events: ['since-a', 'since-b'].map((id) => promo(id, 'create', { merchantId: merchant })),
      });
      // since-a and since-b come in one request but may be applied by different statements
      // (apply lanes), so each has its own updatedAt: filter from the earlier of the two.
      const a = await getJson<EntityView>('/v1/promotions/since-a');
      const b = await getJson<EntityView>('/v1/promotions/since-b');
      const since = a.updatedAt <= b.updatedAt ? a : b;
      const lastOfTwo = Math.max(new Date(a.updatedAt).getTime(), new Date(b.updatedAt).getTime());
      await sleep(5);
      await push(promo('since-c', 'activate', { merchantId: merchant }));

      const expected = ['since-a', 'since-b', 'since-c'];
      const got = (
        await allPages<EntityView>(`/v1/promotions?limit=2&updatedSince=${since.updatedAt}`, key)
      ).flatMap((p) => p.items.map((e) => e.id));
      expect(got.sort()).toEqual(expected);

      // The same instant written with an offset.
      const t = new Date(since.updatedAt);
      const plusTwo = new Date(t.getTime() + 2 * 3600_000).toISOString().replace('Z', '+02:00');
      const withOffset = (
        await allPages<EntityView>(`/v1/promotions?updatedSince=${encodeURIComponent(plusTwo)}`, key)
      ).flatMap((p) => p.items.map((e) => e.id));
      expect(withOffset.sort()).toEqual(expected);

      const later = new Date(lastOfTwo + 1).toISOString();
      const afterFirst = (await allPages<EntityView>(`/v1/promotions?updatedSince=${later}`, key)).flatMap(
        (p) => p.items.map((e) => e.id),
      );
      expect(afterFirst).toEqual(['since-c']);
    });

    it('combines status and updatedSince filters', async () => {
      const since = await getJson<EntityView>('/v1/promotions/since-a');
      const got = await getJson<Page<EntityView>>(
        `/v1/promotions?status=ACTIVATED&updatedSince=${since.updatedAt}`,
        key,
      );
      expect(got.items.map((e) => e.id)).toEqual(['since-c']);
    });
  });

  describe('GET /v1/promotions/:id/events', () => {
    beforeAll(async () => {
      // Seven events with every outcome, one request each so the log order is the arrival order.
      const sent = [
        promo('log-1', 'activate', { eventId: 'log-a', version: 2, merchantId: 'm-1', data: { title: 'B' } }),
        promo('log-1', 'create', {
          eventId: 'log-b',
          version: 1,
          occurredAt: '2026-11-21T10:00:00Z',
          data: { title: 'A', note: 'first' },
        }),
        promo('log-1', 'activate', { eventId: 'log-a', version: 2 }),
        promo('log-1', 'complete', { eventId: 'log-c', merchantId: 'm-2' }),
        promo('log-1', 'complete', { eventId: 'log-d', version: 3 }),
        promo('log-1', 'delete', { eventId: 'log-e', version: 4 }),
        promo('log-1', 'delete', { eventId: 'log-f', version: 4 }),
      ];
      for (const e of sent) await push(e);
    });

    it('lists every event received, oldest first, with its outcome', async () => {
      const page = await getJson<Page<EventView>>('/v1/promotions/log-1/events');
      expect(page.nextCursor).toBeNull();
      expect(page.items.map((e) => [e.eventId, e.type, e.outcome, e.anomaly])).toEqual([
        ['log-a', 'activate', 'applied', false],
        ['log-b', 'create', 'stale', false],
        // The same eventId without the first one's merchant and data: a conflict.
        ['log-a', 'activate', 'conflict', false],
        ['log-c', 'complete', 'rejected', false],
        ['log-d', 'complete', 'applied', false],
        ['log-e', 'delete', 'applied', true],
        ['log-f', 'delete', 'duplicate', false],
      ]);
      expect(page.items[1]).toMatchObject({
        type: 'create',
        eventId: 'log-b',
        version: 1,
        source: 'test-src',
        merchantId: null,
        data: { title: 'A', note: 'first' },
        occurredAt: '2026-11-21T10:00:00.000Z',
      });
      expect(page.items[3]).toMatchObject({ merchantId: 'm-2', version: null, occurredAt: null });
      for (const e of page.items) expect(new Date(e.receivedAt).toISOString()).toBe(e.receivedAt);
      const ids = page.items.map((e) => BigInt(e.id));
      expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
    });

    it('pages through the log with limit and cursor, each event exactly once', async () => {
      const all = (await getJson<Page<EventView>>('/v1/promotions/log-1/events')).items.map((e) => e.id);
      for (const limit of [1, 3, 6, 7]) {
        const pages = await allPages<EventView>(`/v1/promotions/log-1/events?limit=${limit}`);
        expect(pages.flatMap((p) => p.items.map((e) => e.id))).toEqual(all);
        expect(pages.slice(0, -1).every((p) => p.items.length === limit)).toBe(true);
      }
      const threes = await allPages<EventView>('/v1/promotions/log-1/events?limit=3');
      expect(threes.map((p) => p.items.length)).toEqual([3, 3, 1]);
    });

    it('a cursor past the end gives an empty last page', async () => {
      const all = (await getJson<Page<EventView>>('/v1/promotions/log-1/events')).items;
      const page = await getJson<Page<EventView>>(`/v1/promotions/log-1/events?cursor=${all.at(-1)!.id}`);
      expect(page).toEqual({ items: [], nextCursor: null });
    });

    it("the log of one promotion does not include another's events", async () => {
      await push(promo('log-2', 'create', { eventId: 'log-2-a' }));
      const one = await getJson<Page<EventView>>('/v1/promotions/log-1/events?limit=1000');
      const two = await getJson<Page<EventView>>('/v1/promotions/log-2/events');
      expect(one.items.map((e) => e.eventId)).not.toContain('log-2-a');
      expect(two.items.map((e) => e.eventId)).toEqual(['log-2-a']);
    });

    it('the log of a promotion that does not exist answers 404, with or without a cursor', async () => {
      for (const query of ['', '?limit=5', '?cursor=1']) {
        const res = await h.request(`/v1/promotions/never-seen/events${query}`, { key: h.keys.admin });
        expect({ query, status: res.status }).toEqual({ query, status: 404 });
        expect(await res.json()).toMatchObject({ code: 'not_found' });
      }
    });
  });

  describe('machines', () => {
    it('GET /v1/machines lists every machine with its ranks and diagnostics', async () => {
      const { items } = await getJson<{ items: MachineView[] }>('/v1/machines');
      expect(items.map((m) => m.name)).toEqual(expect.arrayContaining(['promotion', 'campaign']));
      for (const m of items) {
        expect(m).toMatchObject({ ok: true, diagnostics: expect.any(Array) });
        expect(m.events.length).toBeGreaterThan(0);
      }
    });

    it('GET /v1/machines/promotion shows ranks that respect every valid history', async () => {
      const m = await getJson<MachineView>('/v1/machines/promotion');
      expect(m).toMatchObject({
        name: 'promotion',
        collection: 'promotions',
        ordering: 'rank',
        states: ['CREATED', 'ACTIVATED', 'COMPLETED', 'DELETED'],
        finalStates: ['COMPLETED', 'DELETED'],
        ok: true,
      });
      expect(m.diagnostics.filter((d) => d.level === 'error')).toEqual([]);
      const rank = Object.fromEntries(m.events.map((e) => [e.type, e.rank]));
      const target = Object.fromEntries(m.events.map((e) => [e.type, e.target]));
      expect(target).toEqual({
        create: 'CREATED',
        activate: 'ACTIVATED',
        complete: 'COMPLETED',
        delete: 'DELETED',
      });
      // activate can precede complete and delete; create precedes everything.
      expect(rank.create!).toBeLessThan(rank.activate!);
      expect(rank.activate!).toBeLessThan(rank.complete!);
      expect(rank.activate!).toBeLessThan(rank.delete!);
      // The machine's meta puts delete above complete so a tombstone stays.
      expect(rank.complete!).toBeLessThan(rank.delete!);
      expect(new Set(Object.values(rank)).size).toBe(4);
    });

    it('GET /v1/machines/campaign is version-ordered', async () => {
      const m = await getJson<MachineView>('/v1/machines/campaign');
      expect(m).toMatchObject({ name: 'campaign', collection: 'campaigns', ordering: 'version', ok: true });
    });

    it('the ranks are the same on every call', async () => {
      const a = await getJson<MachineView>('/v1/machines/promotion');
      const b = await getJson<MachineView>('/v1/machines/promotion', h.keys.merchant);
      expect(b.events).toEqual(a.events);
    });

    it('an unknown machine answers 404 not_found', async () => {
      const res = await h.request('/v1/machines/coupon', { key: h.keys.admin });
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(await res.json()).toMatchObject({ code: 'not_found' });
    });
  });

  describe('probes', () => {
    it('/healthz answers 200 without a key', async () => {
      const res = await h.request('/healthz', { key: null });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    });

    it('/readyz answers 200 once postgres and redis both answer, redis keeps keys and the worker may write', async () => {
      const res = await h.request('/readyz', { key: null });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        status: 'ready',
        checks: {
          postgres: { ok: true },
          redis: { ok: true },
          redisEvictionPolicy: { ok: true },
          postgresWrite: { ok: true },
        },
      });
    });

    it('an unknown path answers 404 as a problem document', async () => {
      const res = await h.request('/v2/promotions', { key: h.keys.admin });
      expect(res.status).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    });
  });
});
