import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { createKey } from '../../src/store/keys.ts';
import { checkCapacityInvariants, setLimits } from '../../src/store/capacity.ts';
import { Admitter } from '../../src/capacity/admitter.ts';
import { expectCapacityInvariants, postStatus, pushPromotion } from '../helpers/capacity.ts';

/** A reservation request without a customer, held for a minute. */
const req = (orderId: string, units = 1) => ({ orderId, customerId: null, units, holdSeconds: 60 });

describe('capacity under concurrent checkout', () => {
  let h: Harness;
  let key: string;

  beforeAll(async () => {
    // The per-key rate limit is not what this test is about.
    h = await startHarness({ env: { RATE_LIMIT_PER_SECOND: '0' } });
    key = (await createKey(h.service.db.prisma, { role: 'checkout' })).key;
  });
  afterAll(async () => {
    if (h) await expectCapacityInvariants(h.service.db.pool);
    await h?.close();
  });

  it(
    '5,000 concurrent reservations against a cap of 1,000 grant exactly 1,000',
    { timeout: 300_000 },
    async () => {
      await pushPromotion(h.request, 'hot', ['activate']);
      expect(
        (
          await h.request('/v1/promotions/hot/limits', {
            method: 'PUT',
            json: { total: 1000, perCustomer: 3 },
          })
        ).status,
      ).toBe(200);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
      // A sampler reads the counters while the load runs: no moment may show more than the cap.
      let sampling = true;
      let samples = 0;
      const seen: string[] = [];
      const sampler = (async () => {
        while (sampling) {
          const { rows } = await h.service.db.pool.query<{ used: string }>(
            "SELECT used FROM capacity WHERE promotion_id = 'hot'",
          );
          if (Number(rows[0]?.used ?? 0) > 1000) seen.push(`used ${rows[0]!.used}`);
          seen.push(
            ...(await checkCapacityInvariants(h.service.db.pool)).map((v) => `${v.rule}: ${v.detail}`),
          );
          samples += 1;
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const statuses = await Promise.all(
        Array.from({ length: 5000 }, (_, i) =>
          postStatus(agent, h.url, key, '/v1/promotions/hot/reservations', {
            orderId: `o-${i}`,
            customerId: `c-${i % 2000}`,
          }),
        ),
      );
      sampling = false;
      await sampler;
      agent.destroy();
      const count = (s: number) => statuses.filter((x) => x === s).length;
      expect(count(201)).toBe(1000);
      expect(count(409)).toBe(4000);
      expect(seen).toEqual([]);
      expect(samples).toBeGreaterThan(0);
      const { rows } = await h.service.db.pool.query<{ n: number; units: number }>(
        "SELECT count(*)::int AS n, sum(units)::int AS units FROM reservation WHERE promotion_id = 'hot'",
      );
      expect(rows[0]).toEqual({ n: 1000, units: 1000 });
    },
  );
  it(
    '4,000 concurrent reservations over 20 promotions (and one not active) grant exactly each cap',
    { timeout: 300_000 },
    async () => {
      // Requests for many promotions share admission statements: each promotion's cap must
      // still hold on its own, and a refusal in one promotion must not touch the others.
      const ids = Array.from({ length: 20 }, (_, i) => `many-${String(i).padStart(2, '0')}`);
      for (const id of ids) await pushPromotion(h.request, id, ['activate']);
      await pushPromotion(h.request, 'many-idle', ['create']);
      for (const id of [...ids, 'many-idle']) await setLimits(h.service.db.pool, id, { total: 50 });
      const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
      const targets = [...ids, 'many-idle'];
      const sent = Array.from({ length: 4000 }, (_, i) => targets[i % targets.length]!);
      const statuses = await Promise.all(
        sent.map((id, i) =>
          postStatus(agent, h.url, key, `/v1/promotions/${id}/reservations`, { orderId: `m-${i}` }),
        ),
      );
      agent.destroy();
      for (const id of targets) {
        const mine = statuses.filter((_, i) => sent[i] === id);
        expect(mine.filter((x) => x === 201).length, id).toBe(id === 'many-idle' ? 0 : 50);
        expect(mine.filter((x) => x === 409).length, id).toBe(mine.length - (id === 'many-idle' ? 0 : 50));
      }
      const { rows } = await h.service.db.pool.query<{ promotion_id: string; n: number; used: number }>(
        `SELECT c.promotion_id, c.used::int AS used,
                (SELECT count(*)::int FROM reservation r WHERE r.promotion_id = c.promotion_id) AS n
           FROM capacity c WHERE c.promotion_id LIKE 'many-%' ORDER BY 1`,
      );
      expect(rows).toEqual(
        targets
          .slice()
          .sort()
          .map((id) => ({
            promotion_id: id,
            used: id === 'many-idle' ? 0 : 50,
            n: id === 'many-idle' ? 0 : 50,
          })),
      );
    },
  );

  it('one statement admits the requests of several promotions, each answered as if alone', async () => {
    for (const id of ['st-a', 'st-b', 'st-c']) {
      await pushPromotion(h.request, id, ['activate']);
      await setLimits(h.service.db.pool, id, { total: 2 });
    }
    const sizes: number[] = [];
    const admitter = new Admitter(h.service.db.pool, {
      maxStatements: 1,
      onBatch: (n) => sizes.push(n),
    });
    try {
      // The first request goes alone; the rest wait for the one statement slot and go together.
      const answers = await Promise.all([
        admitter.reserve('st-a', req('a-1')),
        admitter.reserve('st-c', req('c-1', 2)),
        admitter.reserve('st-b', req('b-1')),
        admitter.reserve('st-c', req('c-2')),
        admitter.reserve('st-b', req('b-1')),
        admitter.reserve('st-b', req('b-1', 2)),
      ]);
      expect(sizes).toEqual([1, 5]);
      expect(answers.map((a) => a.kind)).toEqual([
        'granted',
        'granted',
        'granted',
        'exhausted',
        'replay',
        'conflict',
      ]);
      expect(answers.map((a) => ('reservation' in a ? a.reservation.remaining.total : null))).toEqual([
        1,
        0,
        1,
        null,
        1,
        1,
      ]);
      expect(answers[3]).toEqual({ kind: 'exhausted', limit: 'total' });
    } finally {
      await admitter.close();
    }
  });
  it('after a large statement the next requests wait for company, a bounded while, and close answers them', async () => {
    await pushPromotion(h.request, 'gather', ['activate']);
    const sizes: number[] = [];
    // A wait long enough to observe; the default is 1 ms.
    const admitter = new Admitter(h.service.db.pool, { gatherMs: 300, onBatch: (n) => sizes.push(n) });
    try {
      // One alone, then 20 while it runs: they go together.
      await Promise.all(Array.from({ length: 21 }, (_, i) => admitter.reserve('gather', req(`g-${i}`))));
      expect(sizes).toEqual([1, 20]);
      // The previous statement had 20: 10 arrivals are enough to go before the wait ends...
      await Promise.all(Array.from({ length: 10 }, (_, i) => admitter.reserve('gather', req(`h-${i}`))));
      expect(sizes).toEqual([1, 20, 10]);
      // ...and fewer go when the wait is over, together.
      const three = Array.from({ length: 3 }, (_, i) => admitter.reserve('gather', req(`i-${i}`)));
      expect(sizes).toEqual([1, 20, 10]);
      expect((await Promise.all(three)).map((a) => a.kind)).toEqual(['granted', 'granted', 'granted']);
      expect(sizes).toEqual([1, 20, 10, 3]);
      // Waiting requests are answered before close returns.
      await Promise.all(Array.from({ length: 20 }, (_, i) => admitter.reserve('gather', req(`j-${i}`))));
      let answered = 0;
      const waiting = Array.from({ length: 2 }, (_, i) =>
        admitter.reserve('gather', req(`k-${i}`)).then(() => (answered += 1)),
      );
      await admitter.close();
      expect(answered).toBe(2);
      await Promise.all(waiting);
    } finally {
      await admitter.close();
    }
  });
  it('after a large statement over many promotions, the next requests over other promotions go together', async () => {
    const ids = Array.from({ length: 10 }, (_, i) => `spread-${i}`);
    for (const id of ids) await pushPromotion(h.request, id, ['activate']);
    const sizes: number[] = [];
    // One statement at a time, so that what goes together is decided by the wait alone.
    const admitter = new Admitter(h.service.db.pool, {
      gatherMs: 300,
      maxStatements: 1,
      onBatch: (n) => sizes.push(n),
    });
    try {
      // One alone, then 20 over the 10 promotions while it runs: they go together.
      await Promise.all([
        admitter.reserve(ids[0]!, req('s-first')),
        ...Array.from({ length: 20 }, (_, i) => admitter.reserve(ids[i % 10]!, req(`s-${i}`))),
      ]);
      expect(sizes).toEqual([1, 20]);
      // One request per promotion: none of them had a large statement of its own, yet the
      // first does not go alone; the ten share one statement.
      const answers = await Promise.all(ids.map((id) => admitter.reserve(id, req('t-1'))));
      expect(answers.map((a) => a.kind)).toEqual(Array(10).fill('granted'));
      expect(sizes).toEqual([1, 20, 10]);
    } finally {
      await admitter.close();
    }
  });

  it('a statement beside a running one waits until that one takes longer than usual, then goes', async () => {
    const ids = ['ov-a', 'ov-b', 'ov-c'];
    for (const id of ids) {
      await pushPromotion(h.request, id, ['activate']);
      await setLimits(h.service.db.pool, id, { total: 100 });
    }
    const sizes: number[] = [];
    const admitter = new Admitter(h.service.db.pool, { onBatch: (n) => sizes.push(n) });
    const blocker = await h.service.db.pool.connect();
    try {
      // Statements of the usual length.
      for (let i = 0; i < 5; i++) await admitter.reserve('ov-a', req(`w-${i}`));
      // ov-a's row is held by another transaction: its next statement waits for it.
      await blocker.query('BEGIN');
      await blocker.query(`SELECT 1 FROM capacity WHERE promotion_id = 'ov-a' FOR UPDATE`);
      const started = sizes.length;
      let aAnswered = false;
      const a = admitter.reserve('ov-a', req('a-1')).then((r) => ((aAnswered = true), r));
      // Not sent beside it at once: they wait, and go together once ov-a's statement is late.
      const others = await Promise.all([
        admitter.reserve('ov-b', req('b-1')),
        admitter.reserve('ov-c', req('c-1')),
      ]);
      expect(others.map((r) => r.kind)).toEqual(['granted', 'granted']);
      expect(aAnswered).toBe(false);
      expect(sizes.slice(started)).toEqual([2]);
      await blocker.query('COMMIT');
      expect((await a).kind).toBe('granted');
      expect(sizes.slice(started)).toEqual([2, 1]);
    } finally {
      await blocker.query('ROLLBACK').catch(() => {});
      blocker.release();
      await admitter.close();
    }
  });

  it('the next statement is sent before the answers of the one before are handled', async () => {
    await pushPromotion(h.request, 'pipe', ['activate']);
    const log: string[] = [];
    const pool = h.service.db.pool;
    // The pool as the admitter sees it, noting each statement sent.
    const noting = {
      query: (...args: Parameters<typeof pool.query>) => {
        log.push('statement');
        return (pool.query as (...a: unknown[]) => unknown)(...args);
      },
    } as unknown as typeof pool;
    const admitter = new Admitter(noting, { maxStatements: 1 });
    try {
      const first = admitter.reserve('pipe', req('p-1')).then(() => log.push('first answered'));
      const second = admitter.reserve('pipe', req('p-2')).then(() => log.push('second answered'));
      await Promise.all([first, second]);
      expect(log).toEqual(['statement', 'statement', 'first answered', 'second answered']);
    } finally {
      await admitter.close();
    }
  });
});
