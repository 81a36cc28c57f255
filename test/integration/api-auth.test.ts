import { beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import { expectRefused } from '../helpers/problem.ts';
import { promo } from '../helpers/events.ts';
import { createKey, revokeKey } from '../../src/store/keys.ts';
import type { EntityView } from '../../src/store/queries.ts';

/** Auth (docs/api.md): Bearer keys, roles, producer scopes and merchant isolation. */

interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

/** The id part of a `psk_<id>_<secret>` key. */
const keyId = (key: string): string => key.split('_')[1]!;

describe('authentication and authorization over REST', () => {
  const h = useHarness();

  beforeAll(async () => {
    // One promotion per merchant and one nobody owns, for the isolation tests.
    const res = await h.request('/v1/events?wait=true', {
      method: 'POST',
      json: {
        events: [
          promo('mine', 'create', { merchantId: 'm-1', eventId: 'mine-1' }),
          promo('mine', 'activate', { eventId: 'mine-2' }),
          promo('theirs', 'create', { merchantId: 'm-2', eventId: 'theirs-1' }),
          promo('theirs', 'activate', { eventId: 'theirs-2' }),
          promo('unowned', 'create', { eventId: 'unowned-1' }),
        ],
      },
    });
    expect(res.status).toBe(200);
  });

  const pushWith = (headers: Record<string, string>, body: unknown = promo('pushed', 'create')) =>
    h.request('/v1/events', { key: null, method: 'POST', headers, json: body });

  describe('keys', () => {
    it('a push without a key is refused with 401 and a WWW-Authenticate challenge', async () => {
      const { res } = await expectRefused(h, () => pushWith({}), 401, 'unauthorized');
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    });

    for (const path of [
      '/v1/promotions',
      '/v1/promotions/mine',
      '/v1/promotions/mine/events',
      '/v1/machines',
      '/v1/machines/promotion',
    ]) {
      it(`GET ${path} without a key is refused with 401`, async () => {
        const { res } = await expectRefused(h, () => h.request(path, { key: null }), 401, 'unauthorized');
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
      });
    }

    for (const [name, header] of [
      ['another scheme', `Basic ${Buffer.from('user:pass').toString('base64')}`],
      ['Bearer with no key', 'Bearer'],
      ['Bearer with two tokens', 'Bearer abc def'],
      ['a bare key without the scheme', 'psk_000000000000_x'],
    ] as const) {
      it(`a malformed Authorization header (${name}) is refused with 401`, async () => {
        const { res } = await expectRefused(
          h,
          () => pushWith({ authorization: header }),
          401,
          'unauthorized',
        );
        expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
      });
    }

    it('a key that is not in the promosync format is refused with 401', async () => {
      await expectRefused(
        h,
        () => pushWith({ authorization: 'Bearer not-a-promosync-key' }),
        401,
        'unauthorized',
      );
    });

    it('a well-formed key nobody issued is refused with 401', async () => {
      const unknown = `psk_abcdef012345_${'A'.repeat(43)}`;
      await expectRefused(h, () => pushWith({ authorization: `Bearer ${unknown}` }), 401, 'unauthorized');
    });

    it("a real key id with someone else's secret is refused with 401", async () => {
      const [, id] = h.keys.producer.split('_');
      const secret = h.keys.admin.split('_').slice(2).join('_');
      await expectRefused(
        h,
        () => pushWith({ authorization: `Bearer psk_${id}_${secret}` }),
        401,
        'unauthorized',
      );
    });

    it('a revoked key is refused with 401 on the very next request', async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'producer', source: 'short-lived' });
      const ok = await h.request('/v1/events', { key, method: 'POST', json: promo('revoked-1', 'create') });
      expect(ok.status).toBe(202);
      expect(await revokeKey(h.service.db.prisma, keyId(key))).toBe(true);
      await expectRefused(
        h,
        () => h.request('/v1/events', { key, method: 'POST', json: promo('revoked-2', 'create') }),
        401,
        'unauthorized',
      );
      await expectRefused(h, () => h.request('/v1/promotions/revoked-1', { key }), 401, 'unauthorized');
    });

    it('a revoked merchant key can no longer read', async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'merchant', merchantId: 'm-1' });
      expect((await h.request('/v1/promotions/mine', { key })).status).toBe(200);
      await revokeKey(h.service.db.prisma, keyId(key));
      await expectRefused(h, () => h.request('/v1/promotions/mine', { key }), 401, 'unauthorized');
    });

    it('a request without a key is refused with 401 before its body is looked at', async () => {
      // Authentication comes first: an anonymous client learns nothing about body parsing.
      const { res } = await expectRefused(
        h,
        () =>
          h.request('/v1/events', {
            key: null,
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: '{"machine":',
          }),
        401,
        'unauthorized',
      );
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
    });
  });

  describe('roles and scopes', () => {
    it('a merchant key may not push events (403)', async () => {
      const { problem } = await expectRefused(
        h,
        () =>
          h.request('/v1/events', {
            key: h.keys.merchant,
            method: 'POST',
            json: promo('mine', 'complete', { merchantId: 'm-1' }),
          }),
        403,
        'forbidden',
      );
      expect(problem.detail).toContain('merchant');
    });

    it('a merchant key may not push even with ?wait=true', async () => {
      await expectRefused(
        h,
        () =>
          h.request('/v1/events?wait=true', {
            key: h.keys.merchant,
            method: 'POST',
            json: promo('mine', 'delete'),
          }),
        403,
        'forbidden',
      );
    });

    it('a producer may not push events of a machine outside its scope (403)', async () => {
      const { problem } = await expectRefused(
        h,
        () =>
          h.request('/v1/events', { key: h.keys.producer2, method: 'POST', json: promo('scoped', 'create') }),
        403,
        'forbidden',
      );
      expect(problem.detail).toContain('promotion');
    });

    it('a batch is refused whole when one of its events is outside the producer scope', async () => {
      await expectRefused(
        h,
        () =>
          h.request('/v1/events', {
            key: h.keys.producer2,
            method: 'POST',
            json: { events: [promo('scoped-a', 'create'), promo('scoped-b', 'create')] },
          }),
        403,
        'forbidden',
      );
    });

    it('a producer scoped to other machines does not see the promotions collection', async () => {
      await expectRefused(h, () => h.request('/v1/promotions', { key: h.keys.producer2 }), 404, 'not_found');
      await expectRefused(
        h,
        () => h.request('/v1/promotions/mine', { key: h.keys.producer2 }),
        404,
        'not_found',
      );
    });

    it('a producer scoped to the machine may push it', async () => {
      const { key } = await createKey(h.service.db.prisma, {
        role: 'producer',
        source: 'promo-team',
        machines: ['promotion'],
      });
      const res = await h.request('/v1/events?wait=true', {
        key,
        method: 'POST',
        json: promo('scoped-ok', 'create', { eventId: 'scoped-ok' }),
      });
      expect(res.status).toBe(200);
      const log = (await (
        await h.request('/v1/promotions/scoped-ok/events', { key: h.keys.admin })
      ).json()) as Page<{
        source: string;
      }>;
      // The source is the key's, never the client's.
      expect(log.items.map((e) => e.source)).toEqual(['promo-team']);
    });

    it('an admin key may push events', async () => {
      const res = await h.request('/v1/events?wait=true', {
        key: h.keys.admin,
        method: 'POST',
        json: promo('by-admin', 'create'),
      });
      expect(res.status).toBe(200);
    });
  });

  describe('merchant isolation', () => {
    const notFound = async (path: string, key: string) => {
      const { problem } = await expectRefused(h, () => h.request(path, { key }), 404, 'not_found');
      return problem;
    };

    it("another merchant's promotion answers 404, exactly like one that does not exist", async () => {
      const theirs = await notFound('/v1/promotions/theirs', h.keys.merchant);
      const missing = await notFound('/v1/promotions/theirz', h.keys.merchant);
      expect(theirs.detail.replace('theirs', 'ID')).toBe(missing.detail.replace('theirz', 'ID'));
    });

    it("another merchant's event log answers 404, exactly like one that does not exist", async () => {
      const theirs = await notFound('/v1/promotions/theirs/events', h.keys.merchant);
      const missing = await notFound('/v1/promotions/theirz/events', h.keys.merchant);
      expect(theirs.detail.replace('theirs', 'ID')).toBe(missing.detail.replace('theirz', 'ID'));
    });

    it("another merchant's event log answers 404 with a cursor and a limit too", async () => {
      await notFound('/v1/promotions/theirs/events?cursor=0&limit=1', h.keys.merchant);
    });

    it('a promotion no merchant owns answers 404 to a merchant', async () => {
      await notFound('/v1/promotions/unowned', h.keys.merchant);
      await notFound('/v1/promotions/unowned/events', h.keys.merchant);
    });

    it('the isolation holds the other way round', async () => {
      await notFound('/v1/promotions/mine', h.keys.otherMerchant);
      await notFound('/v1/promotions/mine/events', h.keys.otherMerchant);
      const own = await h.request('/v1/promotions/theirs', { key: h.keys.otherMerchant });
      expect(own.status).toBe(200);
    });

    it('a merchant reads its own promotion and its event log', async () => {
      const item = await h.request('/v1/promotions/mine', { key: h.keys.merchant });
      expect(item.status).toBe(200);
      expect(await item.json()).toMatchObject({ id: 'mine', merchantId: 'm-1', status: 'ACTIVATED' });
      const log = await h.request('/v1/promotions/mine/events', { key: h.keys.merchant });
      expect(log.status).toBe(200);
      expect(((await log.json()) as Page<unknown>).items).toHaveLength(2);
    });

    it("the list holds only the merchant's own promotions, with or without filters", async () => {
      for (const query of ['', '?status=ACTIVATED', '?limit=1000', '?updatedSince=2000-01-01T00:00:00Z']) {
        const res = await h.request(`/v1/promotions${query}`, { key: h.keys.merchant });
        expect(res.status).toBe(200);
        const page = (await res.json()) as Page<EntityView>;
        expect(page.items.map((e) => e.id)).toEqual(['mine']);
      }
      const other = (await (
        await h.request('/v1/promotions', { key: h.keys.otherMerchant })
      ).json()) as Page<EntityView>;
      expect(other.items.map((e) => e.id)).toEqual(['theirs']);
    });

    it('a merchant with no promotions gets an empty list', async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'merchant', merchantId: 'm-none' });
      const page = (await (await h.request('/v1/promotions', { key })).json()) as Page<EntityView>;
      expect(page).toEqual({ items: [], nextCursor: null, changesSince: expect.any(String) });
    });

    it("a merchant's page size does not leak whether others have promotions", async () => {
      const page = (await (
        await h.request('/v1/promotions?limit=1', { key: h.keys.merchant })
      ).json()) as Page<EntityView>;
      expect(page).toEqual({
        items: [expect.objectContaining({ id: 'mine' })],
        nextCursor: null,
        changesSince: expect.any(String),
      });
    });

    it('an admin sees every promotion, whoever owns it', async () => {
      for (const id of ['mine', 'theirs', 'unowned']) {
        expect((await h.request(`/v1/promotions/${id}`, { key: h.keys.admin })).status).toBe(200);
        expect((await h.request(`/v1/promotions/${id}/events`, { key: h.keys.admin })).status).toBe(200);
      }
      const page = (await (
        await h.request('/v1/promotions?limit=1000', { key: h.keys.admin })
      ).json()) as Page<EntityView>;
      expect(page.items.map((e) => e.id)).toEqual(expect.arrayContaining(['mine', 'theirs', 'unowned']));
    });
  });
});
