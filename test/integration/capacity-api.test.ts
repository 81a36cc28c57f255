import type { IncomingMessage, ServerResponse } from 'node:http';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiServer } from '../../src/api/index.ts';
import { checkoutPath } from '../../src/api/checkout-path.ts';
import { problemReporter } from '../../src/api/problem.ts';
import { CapacityService } from '../../src/capacity/index.ts';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { createKey } from '../../src/store/keys.ts';
import { expectCapacityInvariants, pushPromotion } from '../helpers/capacity.ts';

/** The capacity contract over REST: limits, reservations, confirm, release, expiry, summaries. */

interface ReserveAnswer {
  orderId: string;
  status: string;
  units: number;
  customerId: string | null;
  expiresAt: string;
  remaining: { total: number | null; perCustomer: number | null; perWindow: number | null };
}

describe('promotion capacity over REST', () => {
  let h: Harness;
  let checkout: string;
  let checkoutOther: string;

  beforeAll(async () => {
    h = await startHarness({ env: { CAPACITY_SWEEP_MS: '50' } });
    checkout = (await createKey(h.service.db.prisma, { role: 'checkout' })).key;
    checkoutOther = (await createKey(h.service.db.prisma, { role: 'checkout', machines: ['nope'] })).key;
  });
  afterAll(async () => {
    if (h) await expectCapacityInvariants(h.service.db.pool);
    await h?.close();
  });

  const setLimits = (id: string, body: unknown, key = h.keys.producer) =>
    h.request(`/v1/promotions/${id}/limits`, { method: 'PUT', json: body, key });
  const reserve = (id: string, body: unknown, key = checkout) =>
    h.request(`/v1/promotions/${id}/reservations`, { method: 'POST', json: body, key });
  const act = (id: string, order: string, what: 'confirm' | 'release', key = checkout) =>
    h.request(`/v1/promotions/${id}/reservations/${order}/${what}`, { method: 'POST', key });
  const problem = async (res: Response, status: number, code: string) => {
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const body = (await res.json()) as { code: string; errors?: Array<{ path: string }> };
    expect(body.code).toBe(code);
    return body;
  };

  it('grants up to the total limit, then refuses naming the limit', async () => {
    await pushPromotion(h.request, 'p-total', ['create', 'activate']);
    const set = await setLimits('p-total', { total: 2 });
    expect(set.status).toBe(200);
    expect(await set.json()).toMatchObject({ total: { max: 2, confirmed: 0, held: 0, remaining: 2 } });

    const first = await reserve('p-total', { orderId: 'o-1', customerId: 'c-1' });
    expect(first.status).toBe(201);
    const a = (await first.json()) as ReserveAnswer;
    expect(a).toMatchObject({ orderId: 'o-1', status: 'held', units: 1, customerId: 'c-1' });
    expect(a.remaining).toEqual({ total: 1, perCustomer: null, perWindow: null });
    expect(Date.parse(a.expiresAt)).toBeGreaterThan(Date.now() + 200_000);

    expect((await reserve('p-total', { orderId: 'o-2' })).status).toBe(201);
    const refused = await problem(await reserve('p-total', { orderId: 'o-3' }), 409, 'capacity_exhausted');
    expect(refused.errors?.[0]?.path).toBe('total');

    const summary = await h.request('/v1/promotions/p-total/capacity', { key: h.keys.merchant });
    expect(await summary.json()).toMatchObject({ total: { max: 2, confirmed: 0, held: 2, remaining: 0 } });
    const entity = (await (await h.request('/v1/promotions/p-total', { key: h.keys.admin })).json()) as {
      capacity?: unknown;
    };
    expect(entity.capacity).toMatchObject({ total: { max: 2, held: 2 } });
  });

  it('a retried reservation gets the first answer and takes nothing twice; other units are a conflict', async () => {
    await pushPromotion(h.request, 'p-idem', ['activate']);
    await setLimits('p-idem', { total: 5 });
    const body = { orderId: 'o-1', customerId: 'c-1', units: 2 };
    const first = await reserve('p-idem', body);
    expect(first.status).toBe(201);
    const again = await reserve('p-idem', body);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(await first.json());
    await problem(await reserve('p-idem', { ...body, units: 3 }), 409, 'order_conflict');
    await problem(await reserve('p-idem', { ...body, customerId: 'c-2' }), 409, 'order_conflict');
    const s = await (await h.request('/v1/promotions/p-idem/capacity', { key: checkout })).json();
    expect(s).toMatchObject({ total: { held: 2, remaining: 3 } });
  });

  it('a per-customer refusal takes no total capacity, and needs a customerId', async () => {
    await pushPromotion(h.request, 'p-cust', ['activate']);
    await setLimits('p-cust', { total: 3, perCustomer: 1 });
    expect((await reserve('p-cust', { orderId: 'a', customerId: 'c-1' })).status).toBe(201);
    const r = await problem(
      await reserve('p-cust', { orderId: 'b', customerId: 'c-1' }),
      409,
      'capacity_exhausted',
    );
    expect(r.errors?.[0]?.path).toBe('perCustomer');
    const missing = await problem(await reserve('p-cust', { orderId: 'c' }), 400, 'invalid_request');
    expect(missing.errors?.[0]?.path).toBe('customerId');
    expect((await reserve('p-cust', { orderId: 'd', customerId: 'c-2' })).status).toBe(201);
    expect((await reserve('p-cust', { orderId: 'e', customerId: 'c-3' })).status).toBe(201);
    const s = await (
      await h.request('/v1/promotions/p-cust/capacity?customerId=c-1', { key: h.keys.admin })
    ).json();
    expect(s).toMatchObject({
      total: { held: 3, remaining: 0 },
      perCustomer: { max: 1, held: 1, remaining: 0 },
    });
  });

  it('a window limit counts units reserved in the last seconds', async () => {
    await pushPromotion(h.request, 'p-win', ['activate']);
    await setLimits('p-win', { perWindow: { seconds: 3600, max: 3 } });
    expect((await reserve('p-win', { orderId: 'a', units: 2 })).status).toBe(201);
    const r = await problem(await reserve('p-win', { orderId: 'b', units: 2 }), 409, 'capacity_exhausted');
    expect(r.errors?.[0]?.path).toBe('perWindow');
    // A release gives the units back to the window too.
    expect((await act('p-win', 'a', 'release')).status).toBe(200);
    expect((await reserve('p-win', { orderId: 'b', units: 2 })).status).toBe(201);
  });

  it('confirm keeps units for good, release returns them; both are idempotent', async () => {
    await pushPromotion(h.request, 'p-life', ['activate']);
    await setLimits('p-life', { total: 2 });
    await reserve('p-life', { orderId: 'keep' });
    await reserve('p-life', { orderId: 'drop' });
    for (let i = 0; i < 2; i++) {
      const c = await act('p-life', 'keep', 'confirm');
      expect(c.status).toBe(200);
      expect(await c.json()).toMatchObject({ status: 'confirmed', orderId: 'keep' });
      const r = await act('p-life', 'drop', 'release');
      expect(r.status).toBe(200);
      expect(await r.json()).toMatchObject({ status: 'released' });
    }
    await problem(await act('p-life', 'drop', 'confirm'), 409, 'hold_expired');
    await problem(await act('p-life', 'keep', 'release'), 409, 'order_conflict');
    await problem(await act('p-life', 'nothing', 'confirm'), 404, 'not_found');
    const s = await (await h.request('/v1/promotions/p-life/capacity', { key: h.keys.admin })).json();
    expect(s).toMatchObject({ total: { max: 2, confirmed: 1, held: 0, remaining: 1 } });
    const one = await h.request('/v1/promotions/p-life/reservations/keep', { key: checkout });
    expect(await one.json()).toMatchObject({ status: 'confirmed', units: 1, promotionId: 'p-life' });
  });

  it('an unconfirmed hold expires once and its units return; it can no longer be confirmed', async () => {
    await pushPromotion(h.request, 'p-exp', ['activate']);
    await setLimits('p-exp', { total: 1 });
    expect((await reserve('p-exp', { orderId: 'short', holdSeconds: 1 })).status).toBe(201);
    await problem(await reserve('p-exp', { orderId: 'next' }), 409, 'capacity_exhausted');
    let status = 'held';
    for (let i = 0; i < 100 && status === 'held'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      status = (
        (await (await h.request('/v1/promotions/p-exp/reservations/short', { key: checkout })).json()) as {
          status: string;
        }
      ).status;
    }
    expect(status).toBe('expired');
    await problem(await act('p-exp', 'short', 'confirm'), 409, 'hold_expired');
    expect((await reserve('p-exp', { orderId: 'next' })).status).toBe(201);
    const { rows } = await h.service.db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM reservation WHERE promotion_id = 'p-exp' AND status = 'expired'",
    );
    expect(rows[0]!.n).toBe(1);
  });

  it('only an ACTIVATED promotion grants units; live holds can still be confirmed after it completes', async () => {
    await problem(await reserve('p-unknown', { orderId: 'x' }), 409, 'promotion_not_active');
    // Limits may arrive before the promotion's first status event.
    expect((await setLimits('p-late', { total: 10 })).status).toBe(200);
    await problem(await reserve('p-late', { orderId: 'x' }), 409, 'promotion_not_active');
    await pushPromotion(h.request, 'p-late', ['activate']);
    expect((await reserve('p-late', { orderId: 'x' })).status).toBe(201);
    await pushPromotion(h.request, 'p-late', ['complete']);
    await problem(await reserve('p-late', { orderId: 'y' }), 409, 'promotion_not_active');
    expect((await act('p-late', 'x', 'confirm')).status).toBe(200);
  });

  it('lowering a limit below its use takes nothing back and grants nothing new', async () => {
    await pushPromotion(h.request, 'p-lower', ['activate']);
    await setLimits('p-lower', { total: 3 });
    for (const o of ['a', 'b', 'c']) await reserve('p-lower', { orderId: o });
    const lowered = await setLimits('p-lower', { total: 1 });
    expect(await lowered.json()).toMatchObject({ total: { max: 1, held: 3, remaining: 0 } });
    await problem(await reserve('p-lower', { orderId: 'd' }), 409, 'capacity_exhausted');
    // null removes the limit; absent fields are kept.
    expect(await (await setLimits('p-lower', { total: null, perCustomer: 4 })).json()).toMatchObject({
      total: null,
      perCustomer: { max: 4 },
    });
    expect(await (await setLimits('p-lower', {})).json()).toMatchObject({ perCustomer: { max: 4 } });
  });

  it('keys: checkout reserves, producers set limits, merchants read their own, scoped keys see nothing', async () => {
    await pushPromotion(h.request, 'p-keys', ['activate']);
    await problem(await setLimits('p-keys', { total: 1 }, checkout), 403, 'forbidden');
    await problem(await setLimits('p-keys', { total: 1 }, h.keys.producer2), 403, 'forbidden');
    expect((await setLimits('p-keys', { total: 1 }, h.keys.admin)).status).toBe(200);
    await problem(await reserve('p-keys', { orderId: 'x' }, h.keys.producer), 403, 'forbidden');
    await problem(await reserve('p-keys', { orderId: 'x' }, checkoutOther), 404, 'not_found');
    await problem(
      await h.request('/v1/promotions/p-keys/capacity', { key: h.keys.otherMerchant }),
      404,
      'not_found',
    );
    expect((await reserve('p-keys', { orderId: 'x' }, h.keys.admin)).status).toBe(201);
  });

  it("a producer sets the limits of its own source's promotions only, unless granted the owner", async () => {
    const prisma = h.service.db.prisma;
    const stranger = (await createKey(prisma, { role: 'producer', source: 'stranger-src' })).key;
    const granted = (
      await createKey(prisma, { role: 'producer', source: 'granted-src', mayWriteFor: ['test-src'] })
    ).key;
    // Before any status event nobody owns the promotion: limits may come first.
    expect((await setLimits('p-owned', { total: 5 }, stranger)).status).toBe(200);
    await pushPromotion(h.request, 'p-owned', ['activate']); // owned by test-src from now on
    await problem(await setLimits('p-owned', { total: 1 }, stranger), 403, 'forbidden');
    expect((await setLimits('p-owned', { total: 3 }, granted)).status).toBe(200);
    expect((await setLimits('p-owned', { total: 4 })).status).toBe(200);
    const summary = (await (await setLimits('p-owned', {})).json()) as { total: { max: number } };
    expect(summary.total.max).toBe(4);
  });

  it('bad input is a 400 that names the field and changes nothing', async () => {
    await pushPromotion(h.request, 'p-bad', ['activate']);
    await setLimits('p-bad', { total: 5 });
    const bad: Array<[unknown, string]> = [
      [{ orderId: 'o', units: -1 }, 'units'],
      [{ orderId: 'o', units: 0 }, 'units'],
      [{ orderId: 'o', units: 1_000_001 }, 'units'],
      [{ orderId: 'o', units: 1.5 }, 'units'],
      [{ orderId: 'o', units: '1' }, 'units'],
      [{ units: 1 }, 'orderId'],
      [{ orderId: '' }, 'orderId'],
      [{ orderId: 'a b' }, 'orderId'],
      [{ orderId: 'x'.repeat(129) }, 'orderId'],
      [{ orderId: 'o', extra: 1 }, 'extra'],
      [{ orderId: 'o', holdSeconds: 0 }, 'holdSeconds'],
      [{ orderId: 'o', holdSeconds: 86_401 }, 'holdSeconds'],
      [{ orderId: 'o', customerId: 'c/1' }, 'customerId'],
      [[], '(body)'],
    ];
    for (const [body, path] of bad) {
      const p = await problem(await reserve('p-bad', body), 400, 'invalid_request');
      expect(
        p.errors?.map((e) => e.path),
        JSON.stringify(body),
      ).toContain(path);
    }
    for (const body of [{ total: -1 }, { total: 'x' }, { perWindow: { seconds: 0, max: 1 } }, { nope: 1 }]) {
      await problem(await setLimits('p-bad', body), 400, 'invalid_request');
    }
    const s = await (await h.request('/v1/promotions/p-bad/capacity', { key: h.keys.admin })).json();
    expect(s).toMatchObject({ total: { max: 5, held: 0, confirmed: 0 } });
    const { rows } = await h.service.db.pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM reservation WHERE promotion_id = 'p-bad'",
    );
    expect(rows[0]!.n).toBe(0);
  });
  // Reservations written plainly are answered before the Express app (checkout-path.ts); a query,
  // another JSON media type or a compressed body go through the router. Both must answer alike.
  it('the checkout path answers every kind of request as the router does', async () => {
    // Twin promotions, one per path, so that each path meets the same room under the caps.
    for (const how of ['plain', 'routed']) {
      await pushPromotion(h.request, `p-paths-${how}`, ['activate']);
      await setLimits(`p-paths-${how}`, { total: 3, perCustomer: 2 });
      await pushPromotion(h.request, `p-paths-off-${how}`, ['create']);
    }
    const producer = h.keys.producer;
    // [promotion, body as sent, key, content type]; each case is sent once per path, to the
    // path's twin of the promotion, with its own order ids.
    const cases: Array<[string, (order: string) => string, string | null, string]> = [
      ['p-paths', (o) => JSON.stringify({ orderId: o, customerId: 'c-1' }), checkout, 'application/json'],
      [
        'p-paths',
        (o) => JSON.stringify({ orderId: o, customerId: 'c-2', units: 2 }),
        checkout,
        'application/json; charset=utf-8',
      ],
      ['p-paths', (o) => JSON.stringify({ orderId: o }), checkout, 'application/json'],
      [
        'p-paths',
        (o) => JSON.stringify({ orderId: o, customerId: 'c-1', extra: 1 }),
        checkout,
        'application/json',
      ],
      [
        'p-paths',
        (o) => JSON.stringify({ orderId: o, customerId: 'c-1', units: -1 }),
        checkout,
        'application/json',
      ],
      ['p-paths', (o) => `{"orderId": "${o}",`, checkout, 'application/json'],
      ['p-paths', () => '[1, 2]', checkout, 'application/json'],
      ['p-paths', (o) => JSON.stringify({ orderId: o }), null, 'application/json'],
      ['p-paths', (o) => JSON.stringify({ orderId: o }), 'ps_nope.nope', 'application/json'],
      ['p-paths', (o) => JSON.stringify({ orderId: o }), producer, 'application/json'],
      ['p-paths', (o) => JSON.stringify({ orderId: o }), checkoutOther, 'application/json'],
      ['p-paths', () => '{"orderId": ', checkoutOther, 'application/json'],
      ['p-paths-off', (o) => JSON.stringify({ orderId: o }), checkout, 'application/json'],
      ['no-such-promotion', (o) => JSON.stringify({ orderId: o }), checkout, 'application/json'],
    ];
    const answers: Record<'plain' | 'routed', Array<[number, unknown]>> = { plain: [], routed: [] };
    for (const [i, [id, body, key, type]] of cases.entries()) {
      for (const how of ['plain', 'routed'] as const) {
        const promotion = id === 'no-such-promotion' ? id : `${id}-${how}`;
        const res = await h.request(
          `/v1/promotions/${promotion}/reservations${how === 'routed' ? '?via=router' : ''}`,
          {
            method: 'POST',
            body: body(`o-${i}-${how}`),
            key,
            headers: { 'content-type': type },
          },
        );
        const text = await res.text();
        const json = (text ? JSON.parse(text) : null) as Record<string, unknown> | null;
        // What may differ: the promotion and order ids, the expiry and the query in `instance`.
        const shown = JSON.parse(
          JSON.stringify(json)
            .replaceAll(`o-${i}-${how}`, 'o-*')
            .replaceAll(`-${how}`, '')
            .replaceAll('?via=router', ''),
        ) as Record<string, unknown> | null;
        if (shown && 'expiresAt' in shown) shown.expiresAt = '*';
        if (shown && Array.isArray(shown.errors))
          for (const e of shown.errors as Array<{ message: string }>)
            e.message = e.message.replace(/position \d+.*/, '');
        // Every header but the ones that vary with the moment and the length.
        const headers = [...res.headers].filter(
          ([k]) => !['date', 'content-length', 'keep-alive', 'connection'].includes(k),
        );
        answers[how].push([res.status, { headers, body: shown }]);
      }
      expect(answers.plain[i], `case ${i}`).toEqual(answers.routed[i]);
    }
    expect(answers.plain.map(([status]) => status)).toEqual([
      201, 201, 400, 400, 400, 400, 400, 401, 401, 403, 404, 400, 409, 409,
    ]);
  });
  it('plain reservations are answered before the Express app; anything else is left to it', async () => {
    await pushPromotion(h.request, 'p-fast', ['activate']);
    const capacity = new CapacityService({ pool: h.service.db.pool, logger: pino({ level: 'silent' }) });
    const front = checkoutPath({
      capacity,
      verify: (key) => h.service.keys!.verify(key),
      report: problemReporter(pino({ level: 'silent' })),
    });
    const app = (req: IncomingMessage, res: ServerResponse) => {
      if (!front(req, res)) res.writeHead(299).end();
    };
    const server = new ApiServer(app);
    const port = await server.start(0, '127.0.0.1');
    let n = 0;
    const send = async (
      path: string,
      init: { type?: string; body?: string; method?: string; encoding?: string } = {},
    ) => {
      const headers: Record<string, string> = {
        authorization: `Bearer ${checkout}`,
        'content-type': init.type ?? 'application/json',
      };
      if (init.encoding) headers['content-encoding'] = init.encoding;
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        method: init.method ?? 'POST',
        headers,
        ...(init.method === 'GET' ? {} : { body: init.body ?? JSON.stringify({ orderId: `f-${n++}` }) }),
      });
      await res.arrayBuffer();
      return res.status;
    };
    try {
      const plain = '/v1/promotions/p-fast/reservations';
      expect(await send(plain)).toBe(201);
      expect(await send(plain, { type: 'application/json; charset=UTF-8' })).toBe(201);
      expect(await send(`${plain}?x=1`)).toBe(299);
      expect(await send(`${plain}/`)).toBe(299);
      expect(await send('/v1/promotions/p%2Dfast/reservations')).toBe(299);
      expect(await send('/V1/promotions/p-fast/reservations')).toBe(299);
      expect(await send(plain, { type: 'application/merge-patch+json' })).toBe(299);
      expect(await send(plain, { type: 'application/json; charset=latin1' })).toBe(299);
      expect(await send(plain, { encoding: 'identity' })).toBe(299);
      expect(await send(plain, { method: 'GET' })).toBe(299);
      expect(
        await send(plain, { body: JSON.stringify({ orderId: 'f-big', pad: 'x'.repeat(17 * 1024) }) }),
      ).toBe(299);
    } finally {
      await server.close();
      await capacity.close();
    }
  });
});
