import { beforeAll, describe, expect, it, vi } from 'vitest';
import * as crypto from 'node:crypto';
import { useHarness } from '../helpers/harness.ts';
import { promo } from '../helpers/events.ts';
import { createKey, revokeKey, verifyKey } from '../../src/store/keys.ts';

// Every key check must go through a constant-time comparison: count the calls.
vi.mock('node:crypto', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:crypto')>();
  return { ...original, timingSafeEqual: vi.fn(original.timingSafeEqual) };
});

/**
 * Hardening of authentication and authorization beyond the basic role checks: the source
 * cannot be spoofed, revocation is immediate everywhere, keys are compared in constant time,
 * merchants are isolated on every read endpoint and the admin endpoints refuse everyone else.
 */

const keyId = (key: string): string => key.split('_')[1]!;
const basic = (key: string): string => `Basic ${Buffer.from(`anyone:${key}`).toString('base64')}`;

describe('auth hardening', () => {
  const h = useHarness({ env: { RATE_LIMIT_PER_SECOND: '0' }, apis: 1 });

  beforeAll(async () => {
    const res = await h.request('/v1/events?wait=true', {
      method: 'POST',
      json: {
        events: [
          promo('iso-mine', 'create', { merchantId: 'm-1', eventId: 'iso-1', data: { title: 'mine' } }),
          promo('iso-theirs', 'create', { merchantId: 'm-2', eventId: 'iso-2', data: { title: 'theirs' } }),
          promo('iso-unowned', 'create', { eventId: 'iso-3' }),
          {
            machine: 'campaign',
            entityId: 'iso-camp',
            type: 'create',
            version: 1,
            merchantId: 'm-2',
            eventId: 'iso-4',
          },
        ],
      },
    });
    expect(res.status).toBe(200);
  });

  const sourceOf = async (eventId: string): Promise<string[]> =>
    (
      await h.service.db.pool.query<{ source: string }>('SELECT source FROM event_log WHERE event_id = $1', [
        eventId,
      ])
    ).rows.map((r) => r.source);

  describe('the source comes from the key, never from the request', () => {
    for (const [name, body] of [
      ['a source field on the event', promo('spoof-1', 'create', { source: 'cashback' })],
      [
        'a source field beside the events array',
        { source: 'cashback', events: [promo('spoof-2', 'create')] },
      ],
      [
        'a source field on one event of a batch',
        { events: [promo('spoof-3', 'create'), promo('spoof-4', 'create', { source: 'x' })] },
      ],
      ['a wait field on the event (job envelope)', promo('spoof-5', 'create', { wait: true })],
    ] as const) {
      it(`${name} is rejected with 400 naming it, and nothing is queued`, async () => {
        const before = await h.state();
        const res = await h.request('/v1/events', { method: 'POST', json: body });
        expect(res.status).toBe(400);
        const problem = (await res.json()) as {
          code: string;
          errors?: Array<{ path: string; message: string }>;
        };
        expect(problem.code).toBe('invalid_event');
        expect(JSON.stringify(problem.errors)).toMatch(/source|wait/);
        expect(await h.state()).toEqual(before);
      });
    }

    it('a source query parameter is rejected', async () => {
      const res = await h.request('/v1/events?source=cashback', {
        method: 'POST',
        json: promo('spoof-6', 'create'),
      });
      expect(res.status).toBe(400);
    });

    it('an accepted event is recorded under the key source, whatever headers say', async () => {
      const res = await h.request('/v1/events?wait=true', {
        method: 'POST',
        headers: { 'x-source': 'cashback', 'x-forwarded-user': 'admin' },
        json: promo('src-1', 'create', { eventId: 'src-ev-1' }),
      });
      expect(res.status).toBe(200);
      expect(await sourceOf('src-ev-1')).toEqual(['test-src']);
    });

    it("a producer cannot suppress another producer's events by reusing its eventIds", async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'producer', source: 'intruder' });
      // The intruder sends first, under the victim's eventId.
      const first = await h.request('/v1/events?wait=true', {
        key,
        method: 'POST',
        json: promo('victim-decoy', 'create', { eventId: 'victim-ev-1' }),
      });
      expect(first.status).toBe(200);
      const res = await h.request('/v1/events?wait=true', {
        method: 'POST',
        json: promo('victim-1', 'create', { eventId: 'victim-ev-1' }),
      });
      const body = (await res.json()) as { results: Array<{ outcome: string }> };
      expect(body.results[0]!.outcome).toBe('applied');
      expect((await sourceOf('victim-ev-1')).sort()).toEqual(['intruder', 'test-src']);
    });

    it("a producer cannot move another merchant's promotion to itself: the event is rejected", async () => {
      const res = await h.request('/v1/events?wait=true', {
        method: 'POST',
        json: promo('iso-mine', 'activate', {
          merchantId: 'm-2',
          eventId: 'steal-1',
          data: { title: 'stolen' },
        }),
      });
      const body = (await res.json()) as { results: Array<{ outcome: string }> };
      expect(body.results[0]!.outcome).toBe('rejected');
      const mine = await h.request('/v1/promotions/iso-mine', { key: h.keys.merchant });
      expect(await mine.json()).toMatchObject({
        merchantId: 'm-1',
        status: 'CREATED',
        attributes: { title: 'mine' },
      });
      expect((await h.request('/v1/promotions/iso-mine', { key: h.keys.otherMerchant })).status).toBe(404);
    });
  });

  describe('producers are limited to their machines', () => {
    let campaignOnly: string;
    beforeAll(async () => {
      campaignOnly = (
        await createKey(h.service.db.prisma, { role: 'producer', source: 'camp-src', machines: ['campaign'] })
      ).key;
    });

    it('pushing another machine is 403 and queues nothing, even inside an otherwise allowed batch', async () => {
      const before = await h.state();
      const alone = await h.request('/v1/events', {
        key: campaignOnly,
        method: 'POST',
        json: promo('scope-1', 'create'),
      });
      expect(alone.status).toBe(403);
      const mixed = await h.request('/v1/events', {
        key: campaignOnly,
        method: 'POST',
        json: {
          events: [
            { machine: 'campaign', entityId: 'scope-c', type: 'create', version: 1 },
            promo('scope-2', 'create'),
          ],
        },
      });
      expect(mixed.status).toBe(403);
      expect(await h.state()).toEqual(before);
    });

    it('reading another machine looks like it does not exist', async () => {
      for (const path of ['/v1/promotions', '/v1/promotions/iso-mine', '/v1/promotions/iso-mine/events']) {
        expect((await h.request(path, { key: campaignOnly })).status).toBe(404);
      }
      expect((await h.request('/v1/campaigns/iso-camp', { key: campaignOnly })).status).toBe(200);
    });
  });

  describe('revocation takes effect at once', () => {
    it('on the same keep-alive connection, on every API process, for reads and writes', async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'producer', source: 'rev-src' });
      for (const base of [h.url, ...h.otherApis]) {
        const r = await fetch(`${base}/v1/promotions/iso-mine`, {
          headers: { authorization: `Bearer ${key}` },
        });
        expect(r.status).toBe(200);
        await r.text();
      }
      expect(await revokeKey(h.service.db.prisma, keyId(key))).toBe(true);
      const before = await h.state();
      for (const base of [h.url, ...h.otherApis]) {
        const read = await fetch(`${base}/v1/promotions/iso-mine`, {
          headers: { authorization: `Bearer ${key}` },
        });
        expect(read.status).toBe(401);
        const write = await fetch(`${base}/v1/events?wait=true`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify(promo('rev-1', 'create')),
        });
        expect(write.status).toBe(401);
      }
      expect(await h.state()).toEqual(before);
    });

    it('a revoked admin key no longer opens the dashboard', async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'admin' });
      expect(
        (await fetch(`${h.url}/admin/queues/api/queues`, { headers: { authorization: basic(key) } })).status,
      ).toBe(200);
      await revokeKey(h.service.db.prisma, keyId(key));
      expect(
        (await fetch(`${h.url}/admin/queues/api/queues`, { headers: { authorization: basic(key) } })).status,
      ).toBe(401);
    });
  });

  describe('keys are compared in constant time', () => {
    const compare = vi.mocked(crypto.timingSafeEqual);

    /** The producer's key, then keys that differ from it in the secret or the id. */
    const producerAndWrongKeys = (): string[] => {
      const [, id, secret] = /^psk_([a-z0-9]{12})_(.+)$/.exec(h.keys.producer)!;
      const flipped = secret!.slice(0, -1) + (secret!.endsWith('A') ? 'B' : 'A');
      return [
        h.keys.producer,
        `psk_${id}_${flipped}`,
        `psk_000000000000_${secret}`,
        `psk_${keyId(h.keys.admin)}_${secret}`,
      ];
    };

    /** Checks each key, expecting one timingSafeEqual of two 32-byte digests per check; returns which passed. */
    const checkEach = async (
      keys: string[],
      check: (key: string) => Promise<unknown>,
    ): Promise<boolean[]> => {
      const results = [];
      for (const k of keys) {
        compare.mockClear();
        results.push((await check(k)) !== null);
        expect(compare).toHaveBeenCalledTimes(1);
        const [a, b] = compare.mock.calls[0]!;
        expect([(a as Buffer).length, (b as Buffer).length]).toEqual([32, 32]);
      }
      return results;
    };

    it('every check, of a known or an unknown key id, compares two 32-byte digests with timingSafeEqual', async () => {
      const results = await checkEach(producerAndWrongKeys(), (k) => verifyKey(h.service.db.prisma, k));
      expect(results).toEqual([true, false, false, false]);
    });

    it('so does every check answered by the API process’s key cache, hit or miss', async () => {
      const cache = h.service.keys!;
      const [producer, ...wrong] = producerAndWrongKeys();
      const results = await checkEach([producer!, producer!, ...wrong], (k) => cache.verify(k));
      expect(results).toEqual([true, true, false, false, false]);
    });

    it('near-miss keys (padded, truncated, case-changed) are refused', async () => {
      for (const k of [
        '',
        'psk_',
        `${h.keys.producer} `,
        `${h.keys.producer}x`,
        h.keys.producer.toUpperCase(),
        h.keys.producer.slice(0, -1),
      ]) {
        expect(await verifyKey(h.service.db.prisma, k)).toBeNull();
      }
    });

    it('the key is accepted only as a Bearer header, not in the query string or a cookie', async () => {
      for (const path of [
        `/v1/promotions/iso-mine?key=${h.keys.admin}`,
        `/v1/promotions/iso-mine?access_token=${h.keys.admin}`,
      ]) {
        expect((await fetch(`${h.url}${path}`)).status).toBe(401);
      }
      const cookie = await fetch(`${h.url}/v1/promotions/iso-mine`, {
        headers: { cookie: `key=${h.keys.admin}` },
      });
      expect(cookie.status).toBe(401);
      const basicAuth = await fetch(`${h.url}/v1/promotions/iso-mine`, {
        headers: { authorization: basic(h.keys.admin) },
      });
      expect(basicAuth.status).toBe(401);
    });
  });

  describe('merchant isolation on every read endpoint', () => {
    const collections = ['promotions', 'campaigns'];
    const theirs: Record<string, string> = { promotions: 'iso-theirs', campaigns: 'iso-camp' };

    it("another merchant's entity answers exactly like one that does not exist, on every endpoint", async () => {
      const strip = async (r: Response) => {
        const body = (await r.json()) as Record<string, unknown>;
        delete body.instance;
        delete body.detail;
        return { status: r.status, body };
      };
      for (const c of collections) {
        for (const suffix of ['', '/events', '/events?limit=1', '/events?cursor=0']) {
          const other = await strip(
            await h.request(`/v1/${c}/${theirs[c]}${suffix}`, { key: h.keys.merchant }),
          );
          const none = await strip(
            await h.request(`/v1/${c}/does-not-exist${suffix}`, { key: h.keys.merchant }),
          );
          expect(other, `${c}${suffix}`).toEqual(none);
          expect(other.status).toBe(404);
        }
      }
    });

    it('an entity nobody owns is invisible to every merchant', async () => {
      for (const key of [h.keys.merchant, h.keys.otherMerchant]) {
        expect((await h.request('/v1/promotions/iso-unowned', { key })).status).toBe(404);
        expect((await h.request('/v1/promotions/iso-unowned/events', { key })).status).toBe(404);
      }
    });

    it("lists never hold another merchant's entities, whatever the filters and pages", async () => {
      for (const c of collections) {
        const initial = c === 'promotions' ? 'CREATED' : 'DRAFT';
        for (const q of ['', '?limit=1', `?status=${initial}`, '?updatedSince=2000-01-01T00:00:00Z']) {
          let url = `/v1/${c}${q}`;
          for (let page = 0; page < 10; page++) {
            const res = await h.request(url, { key: h.keys.merchant });
            expect(res.status).toBe(200);
            const body = (await res.json()) as {
              items: Array<{ merchantId: string | null }>;
              nextCursor: string | null;
            };
            for (const item of body.items) expect(item.merchantId).toBe('m-1');
            if (!body.nextCursor) break;
            url = `/v1/${c}?${new URLSearchParams({ ...Object.fromEntries(new URLSearchParams(q.slice(1))), cursor: body.nextCursor })}`;
          }
        }
      }
    });

    it('a merchant cannot widen its scope with a query parameter', async () => {
      for (const q of ['merchantId=m-2', 'merchant=m-2', 'scope=all', 'merchantId=']) {
        expect((await h.request(`/v1/promotions?${q}`, { key: h.keys.merchant })).status).toBe(400);
      }
    });

    it("a merchant's own entity is readable on every endpoint", async () => {
      for (const suffix of ['', '/events']) {
        expect((await h.request(`/v1/promotions/iso-mine${suffix}`, { key: h.keys.merchant })).status).toBe(
          200,
        );
      }
    });
  });

  describe('admin-only endpoints refuse every other role', () => {
    // The dashboard's own API: each of these would change the queue.
    const mutations: Array<[string, string, unknown?]> = [
      ['PUT', '/api/queues/pause'],
      ['PUT', `/api/queues/{q}/pause`],
      ['PUT', `/api/queues/{q}/empty`],
      ['PUT', `/api/queues/{q}/obliterate`],
      ['PUT', `/api/queues/{q}/retry/failed`],
      ['PUT', `/api/queues/{q}/clean/completed`],
      [
        'POST',
        `/api/queues/{q}/add`,
        { name: 'events', data: { source: 'admin', machine: 'promotion', entityId: 'x', type: 'create' } },
      ],
    ];

    it('merchant and producer keys get 403, a missing key 401, and the queue is untouched', async () => {
      const before = await h.state();
      for (const [method, route, body] of mutations) {
        const url = `${h.url}/admin/queues${route.replace('{q}', encodeURIComponent(h.queueName))}`;
        for (const [auth, status] of [
          [undefined, 401],
          [`Bearer ${h.keys.producer}`, 403],
          [`Bearer ${h.keys.merchant}`, 403],
          [basic(h.keys.producer), 403],
          [basic(h.keys.otherMerchant), 403],
          [basic('psk_000000000000_' + 'A'.repeat(43)), 401],
        ] as const) {
          const res = await fetch(url, {
            method,
            headers: { ...(auth ? { authorization: auth } : {}), 'content-type': 'application/json' },
            ...(body ? { body: JSON.stringify(body) } : {}),
          });
          expect(res.status, `${method} ${route} with ${auth?.slice(0, 12) ?? 'no key'}`).toBe(status);
        }
      }
      expect(await h.queue.isPaused()).toBe(false);
      expect(await h.state()).toEqual(before);
    });

    it('an admin key is let in', async () => {
      const res = await fetch(`${h.url}/admin/queues/api/queues`, {
        headers: { authorization: `Bearer ${h.keys.admin}` },
      });
      expect(res.status).toBe(200);
    });
  });
});
