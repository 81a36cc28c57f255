import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import pino from 'pino';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import { useHarness } from '../helpers/harness.ts';
import { promo } from '../helpers/events.ts';
import { REDIS_URL, uniqueQueueName } from '../helpers/db.ts';
import { loadConfig } from '../../src/config.ts';
import { startService } from '../../src/service.ts';
import { createRedis } from '../../src/queue/index.ts';
import { deliveredHistoriesArb } from '../helpers/histories.ts';
import { applyInOrder, comparable } from '../helpers/expected.ts';
import { createKey } from '../../src/store/keys.ts';
import type { EntityView, EventView } from '../../src/store/queries.ts';

/** The apply rule and the event contract (docs/design.md#apply-rule, #event-contract) over real HTTP → Redis → worker → Postgres. */

interface Result {
  eventId: string | null;
  entityId: string;
  outcome: 'applied' | 'stale' | 'duplicate' | 'conflict' | 'rejected';
  anomaly: boolean;
  state: string | null;
  reason?: string;
}

interface WaitAnswer {
  accepted: number;
  jobId: string;
  results: Result[];
}

describe('events over REST', () => {
  const h = useHarness();

  /** POSTs and waits until applied; returns the per-event results. */
  async function send(body: unknown, key = h.keys.producer): Promise<Result[]> {
    const res = await h.request('/v1/events?wait=true', { key, method: 'POST', json: body });
    expect(res.status).toBe(200);
    const answer = (await res.json()) as WaitAnswer;
    return answer.results;
  }

  async function entity(id: string): Promise<EntityView> {
    const res = await h.request(`/v1/promotions/${id}`, { key: h.keys.admin });
    expect(res.status, `GET /v1/promotions/${id}`).toBe(200);
    return (await res.json()) as EntityView;
  }

  async function log(id: string): Promise<EventView[]> {
    const res = await h.request(`/v1/promotions/${id}/events?limit=1000`, { key: h.keys.admin });
    expect(res.status).toBe(200);
    return ((await res.json()) as { items: EventView[] }).items;
  }

  /** Polls `probe` until it returns a value, or fails after `timeoutMs`. */
  async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  describe('accepting', () => {
    it('one event is accepted with 202 and then applied', async () => {
      const res = await h.request('/v1/events', {
        method: 'POST',
        json: promo('single-1', 'create', { eventId: 'single-1', merchantId: 'm-1' }),
      });
      expect(res.status).toBe(202);
      const body = (await res.json()) as { accepted: number; jobId: string };
      expect(body).toEqual({
        accepted: 1,
        jobId: expect.any(String),
        jobs: [{ queue: h.queueName, jobId: body.jobId, accepted: 1 }],
      });
      const row = await eventually(async () => {
        const r = await h.request('/v1/promotions/single-1', { key: h.keys.admin });
        return r.status === 200 ? ((await r.json()) as EntityView) : undefined;
      });
      expect(row).toMatchObject({
        id: 'single-1',
        status: 'CREATED',
        lastEvent: 'create',
        merchantId: 'm-1',
      });
    });

    it('a batch is accepted with 202 and every event applied', async () => {
      const ids = Array.from({ length: 10 }, (_, i) => `batch-${i}`);
      const events = ids.flatMap((id) => [
        promo(id, 'create', { eventId: `${id}-c` }),
        promo(id, 'activate', { eventId: `${id}-a` }),
      ]);
      const res = await h.request('/v1/events', { method: 'POST', json: { events } });
      expect(res.status).toBe(202);
      // One queue (no partitions): the request is one job.
      expect(await res.json()).toEqual({
        accepted: 20,
        jobId: expect.any(String),
        jobs: [{ queue: h.queueName, jobId: expect.any(String), accepted: 20 }],
      });
      await h.drain();
      for (const id of ids)
        expect(await entity(id)).toMatchObject({ status: 'ACTIVATED', lastEvent: 'activate' });
    });

    it('?wait=false answers 202 like no wait at all', async () => {
      const res = await h.request('/v1/events?wait=false', {
        method: 'POST',
        json: promo('nowait-1', 'create'),
      });
      expect(res.status).toBe(202);
      await h.drain();
      expect((await entity('nowait-1')).status).toBe('CREATED');
    });

    it('?wait=true answers 200 with one result per event, in request order', async () => {
      await send(promo('wait-1', 'create', { eventId: 'wait-1-a' }));
      const res = await h.request('/v1/events?wait=true', {
        method: 'POST',
        json: {
          events: [
            promo('wait-1', 'activate', { eventId: 'wait-1-b' }),
            promo('wait-1', 'create', { eventId: 'wait-1-c' }),
            promo('wait-1', 'activate', { eventId: 'wait-1-b' }),
            promo('wait-2', 'delete', { eventId: 'wait-2-a' }),
            promo('wait-3', 'create'),
          ],
        },
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        accepted: 5,
        jobId: expect.any(String),
        jobs: [{ queue: h.queueName, jobId: expect.any(String), accepted: 5 }],
        results: [
          { eventId: 'wait-1-b', entityId: 'wait-1', outcome: 'applied', anomaly: false, state: 'ACTIVATED' },
          { eventId: 'wait-1-c', entityId: 'wait-1', outcome: 'stale', anomaly: false, state: 'ACTIVATED' },
          {
            eventId: 'wait-1-b',
            entityId: 'wait-1',
            outcome: 'duplicate',
            anomaly: false,
            state: 'ACTIVATED',
          },
          { eventId: 'wait-2-a', entityId: 'wait-2', outcome: 'applied', anomaly: false, state: 'DELETED' },
          { eventId: null, entityId: 'wait-3', outcome: 'applied', anomaly: false, state: 'CREATED' },
        ],
      });
    });
  });

  describe('out-of-order delivery', () => {
    it('a late activate after delete leaves the promotion DELETED', async () => {
      await send(promo('late-1', 'create', { eventId: 'late-1-c' }));
      await send(promo('late-1', 'delete', { eventId: 'late-1-d' }));
      const [r] = await send(promo('late-1', 'activate', { eventId: 'late-1-a' }));
      expect(r).toMatchObject({ outcome: 'stale', state: 'DELETED' });
      expect(await entity('late-1')).toMatchObject({ status: 'DELETED', lastEvent: 'delete' });
    });

    it('delete before create leaves a tombstone that later events cannot revive', async () => {
      const [d] = await send(promo('tomb-1', 'delete', { eventId: 'tomb-1-d' }));
      expect(d).toMatchObject({ outcome: 'applied', state: 'DELETED' });
      for (const [type, eventId] of [
        ['create', 'tomb-1-c'],
        ['activate', 'tomb-1-a'],
        ['complete', 'tomb-1-x'],
      ] as const) {
        const [r] = await send(promo('tomb-1', type, { eventId }));
        expect(r).toMatchObject({ outcome: 'stale', state: 'DELETED' });
      }
      expect(await entity('tomb-1')).toMatchObject({ status: 'DELETED', lastEvent: 'delete' });
      expect((await log('tomb-1')).map((e) => [e.type, e.outcome])).toEqual([
        ['delete', 'applied'],
        ['create', 'stale'],
        ['activate', 'stale'],
        ['complete', 'stale'],
      ]);
    });

    it('a history sent newest first, one request per event, ends as if sent in order', async () => {
      for (const type of ['complete', 'activate', 'create']) await send(promo('rev-1', type));
      expect(await entity('rev-1')).toMatchObject({ status: 'COMPLETED', lastEvent: 'complete' });
    });

    it('a history sent newest first in one batch ends as if sent in order', async () => {
      const results = await send({
        events: ['complete', 'activate', 'create'].map((t) => promo('rev-2', t)),
      });
      expect(results.map((r) => r.outcome)).toEqual(['applied', 'stale', 'stale']);
      expect(await entity('rev-2')).toMatchObject({ status: 'COMPLETED', lastEvent: 'complete' });
    });

    it('within one event type, the higher version wins whatever the arrival order', async () => {
      await send(promo('ver-1', 'create', { version: 1 }));
      await send(promo('ver-1', 'activate', { version: 5 }));
      const [r] = await send(promo('ver-1', 'activate', { version: 3 }));
      expect(r).toMatchObject({ outcome: 'stale', state: 'ACTIVATED' });
      expect(await entity('ver-1')).toMatchObject({ status: 'ACTIVATED', version: 5 });
    });

    it('a version-ordered campaign takes the highest version, even across its pause/resume cycle', async () => {
      const camp = (type: string, version: number) => ({
        machine: 'campaign',
        entityId: 'camp-1',
        type,
        version,
      });
      await send({ events: [camp('resume', 5), camp('pause', 4), camp('launch', 2), camp('create', 1)] });
      await send(camp('pause', 3));
      const res = await h.request('/v1/campaigns/camp-1', { key: h.keys.admin });
      expect(await res.json()).toMatchObject({ status: 'LIVE', lastEvent: 'resume', version: 5 });
    });

    it('any arrival order, with duplicates and lost intermediates, converges to the in-order row', async () => {
      const info = h.service.registry.get('promotion')!;
      await fc.assert(
        fc.asyncProperty(
          deliveredHistoriesArb(info, { minLength: 4, maxLength: 4 }, 'prop-'),
          fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 1, maxLength: 5 }),
          async ({ histories, delivered, sent }, sizes) => {
            // Single events and small batches, each its own request, in the shuffled order.
            for (let at = 0, i = 0; at < sent.length; i++) {
              const chunk = sent.slice(at, at + sizes[i % sizes.length]!);
              at += chunk.length;
              const res = await h.request('/v1/events', {
                method: 'POST',
                json: chunk.length === 1 ? chunk[0] : { events: chunk },
              });
              expect(res.status).toBe(202);
            }
            await h.drain();
            for (const [i, history] of histories.entries()) {
              const expected = comparable(applyInOrder(h.service.registry, delivered[i]!));
              const res = await h.request(`/v1/promotions/${history.entityId}`, { key: h.keys.admin });
              if (!expected) {
                expect(res.status).toBe(404);
                continue;
              }
              const row = (await res.json()) as EntityView;
              expect({
                status: row.status,
                lastEvent: row.lastEvent,
                version: row.version,
                merchantId: row.merchantId,
                attributes: row.attributes,
              }).toEqual(expected);
            }
          },
        ),
        { numRuns: 8 },
      );
    });
  });

  describe('duplicates', () => {
    it('an event sent twice is reported duplicate the second time and changes nothing', async () => {
      const e = promo('dup-1', 'create', { eventId: 'dup-1-c', data: { title: 'first' } });
      expect((await send(e))[0]).toMatchObject({ outcome: 'applied' });
      const before = await entity('dup-1');
      expect((await send(e))[0]).toMatchObject({
        eventId: 'dup-1-c',
        outcome: 'duplicate',
        state: 'CREATED',
      });
      expect(await entity('dup-1')).toEqual(before);
      expect((await log('dup-1')).map((x) => x.outcome)).toEqual(['applied', 'duplicate']);
    });

    it('two copies of one event in the same batch: the second is a duplicate', async () => {
      const e = promo('dup-2', 'create', { eventId: 'dup-2-c' });
      const results = await send({ events: [e, e] });
      expect(results.map((r) => r.outcome)).toEqual(['applied', 'duplicate']);
    });

    it('an eventId seen before with other content is a conflict, reported with its reason, and changes nothing', async () => {
      await send(promo('dup-3', 'activate', { eventId: 'dup-3-x' }));
      const [r] = await send(promo('dup-3', 'complete', { eventId: 'dup-3-x', data: { title: 'no' } }));
      expect(r).toEqual({
        eventId: 'dup-3-x',
        entityId: 'dup-3',
        outcome: 'conflict',
        anomaly: false,
        state: 'ACTIVATED',
        reason: 'eventId seen before with other content',
      });
      expect(await entity('dup-3')).toMatchObject({ status: 'ACTIVATED', attributes: {} });
      expect((await log('dup-3')).map((x) => x.outcome)).toEqual(['applied', 'conflict']);
      const metrics = await (await fetch(`${h.url}/metrics`)).text();
      expect(metrics).toMatch(/promosync_events_total\{[^}]*outcome="conflict"[^}]*\} [1-9]/);
    });

    it('the same eventId from another producer source is not a duplicate', async () => {
      // other-team's key may write for test-src, the owner of dup-4.
      const { key } = await createKey(h.service.db.prisma, {
        role: 'producer',
        source: 'other-team',
        mayWriteFor: ['test-src'],
      });
      await send(promo('dup-4', 'activate', { eventId: 'shared-id' }));
      const [r] = await send(promo('dup-4', 'complete', { eventId: 'shared-id' }), key);
      expect(r).toMatchObject({ outcome: 'applied', state: 'COMPLETED' });
      expect((await log('dup-4')).map((e) => [e.source, e.outcome])).toEqual([
        ['test-src', 'applied'],
        ['other-team', 'applied'],
      ]);
    });

    it('the same event without eventId sent twice is a duplicate by its ordering key', async () => {
      await send(promo('dup-5', 'activate', { version: 2 }));
      const [r] = await send(promo('dup-5', 'activate', { version: 2 }));
      expect(r).toMatchObject({ outcome: 'duplicate', state: 'ACTIVATED' });
    });
  });

  describe('ownership by source', () => {
    it("another source's event on an existing entity is rejected with the owner named, and changes nothing", async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'producer', source: 'intruder' });
      await send(promo('srcown-1', 'create', { eventId: 'srcown-1-c' }));
      const [r] = await send(promo('srcown-1', 'activate', { eventId: 'srcown-1-a' }), key);
      expect(r).toMatchObject({ outcome: 'rejected', state: 'CREATED', reason: 'owned by source test-src' });
      expect(await entity('srcown-1')).toMatchObject({ status: 'CREATED' });
      expect((await log('srcown-1')).map((x) => [x.source, x.outcome])).toEqual([
        ['test-src', 'applied'],
        ['intruder', 'rejected'],
      ]);
    });

    it('a key created with --may-write-for the owner writes on its entities', async () => {
      const { key } = await createKey(h.service.db.prisma, {
        role: 'producer',
        source: 'backoffice',
        mayWriteFor: ['someone-else', 'test-src'],
      });
      await send(promo('srcown-2', 'create', { eventId: 'srcown-2-c' }));
      const [r] = await send(promo('srcown-2', 'activate', { eventId: 'srcown-2-a' }), key);
      expect(r).toMatchObject({ outcome: 'applied', state: 'ACTIVATED' });
    });

    it("an admin key's events act for any owner", async () => {
      await send(promo('srcown-3', 'create', { eventId: 'srcown-3-c' }));
      const [r] = await send(promo('srcown-3', 'delete', { eventId: 'srcown-3-d' }), h.keys.admin);
      expect(r).toMatchObject({ outcome: 'applied', state: 'DELETED' });
    });

    it('a foreign event that arrived before the creator is undone when the creator arrives', async () => {
      const { key } = await createKey(h.service.db.prisma, { role: 'producer', source: 'early-bird' });
      const [early] = await send(promo('srcown-4', 'activate', { eventId: 'srcown-4-a' }), key);
      expect(early).toMatchObject({ outcome: 'applied', state: 'ACTIVATED' });
      const [creator] = await send(
        promo('srcown-4', 'create', { eventId: 'srcown-4-c', data: { title: 'mine' } }),
      );
      expect(creator).toMatchObject({ state: 'CREATED' });
      expect(await entity('srcown-4')).toMatchObject({ status: 'CREATED', attributes: { title: 'mine' } });
      const [late] = await send(promo('srcown-4', 'complete', { eventId: 'srcown-4-x' }), key);
      expect(late).toMatchObject({ outcome: 'rejected', reason: 'owned by source test-src' });
    });
  });

  describe('stale events', () => {
    it('an older event arriving late is stale and listed in the event log as stale', async () => {
      await send(promo('stale-1', 'create', { eventId: 'stale-1-c', version: 1 }));
      await send(promo('stale-1', 'complete', { eventId: 'stale-1-x', version: 3 }));
      const [r] = await send(promo('stale-1', 'activate', { eventId: 'stale-1-a', version: 2 }));
      expect(r).toMatchObject({ outcome: 'stale', state: 'COMPLETED', anomaly: false });
      expect(await entity('stale-1')).toMatchObject({
        status: 'COMPLETED',
        lastEvent: 'complete',
        version: 3,
      });
      const entries = await log('stale-1');
      expect(entries.map((e) => [e.eventId, e.type, e.version, e.outcome])).toEqual([
        ['stale-1-c', 'create', 1, 'applied'],
        ['stale-1-x', 'complete', 3, 'applied'],
        ['stale-1-a', 'activate', 2, 'stale'],
      ]);
    });
  });

  describe('merchant ownership', () => {
    it('an event with another merchantId is rejected and changes nothing', async () => {
      await send(
        promo('own-1', 'create', { eventId: 'own-1-c', merchantId: 'm-1', data: { title: 'mine' } }),
      );
      const before = await entity('own-1');
      const [r] = await send(
        promo('own-1', 'activate', { eventId: 'own-1-a', merchantId: 'm-2', data: { title: 'theirs' } }),
      );
      expect(r).toMatchObject({ eventId: 'own-1-a', outcome: 'rejected', state: 'CREATED' });
      expect(await entity('own-1')).toEqual(before);
      expect((await log('own-1')).map((e) => e.outcome)).toEqual(['applied', 'rejected']);
    });

    it('the first event that carries a merchantId sets the owner; a later different one is rejected', async () => {
      await send(promo('own-2', 'create'));
      expect((await entity('own-2')).merchantId).toBeNull();
      await send(promo('own-2', 'activate', { merchantId: 'm-2' }));
      expect(await entity('own-2')).toMatchObject({ merchantId: 'm-2', status: 'ACTIVATED' });
      const [r] = await send(promo('own-2', 'complete', { merchantId: 'm-1' }));
      expect(r).toMatchObject({ outcome: 'rejected', state: 'ACTIVATED' });
      const [ok] = await send(promo('own-2', 'complete'));
      expect(ok).toMatchObject({ outcome: 'applied', state: 'COMPLETED' });
      expect((await entity('own-2')).merchantId).toBe('m-2');
    });

    it('a mismatched merchantId inside one batch is rejected too', async () => {
      const results = await send({
        events: [
          promo('own-3', 'create', { merchantId: 'm-1' }),
          promo('own-3', 'activate', { merchantId: 'm-2' }),
        ],
      });
      expect(results.map((r) => r.outcome)).toEqual(['applied', 'rejected']);
      expect(await entity('own-3')).toMatchObject({ status: 'CREATED', merchantId: 'm-1' });
    });
  });

  describe('attributes', () => {
    it('each field is last-writer-wins by ordering key, not by arrival', async () => {
      await send(promo('attr-1', 'activate', { version: 2, data: { title: 'B' } }));
      const [r] = await send(promo('attr-1', 'create', { version: 1, data: { title: 'A', note: 'first' } }));
      expect(r).toMatchObject({ outcome: 'stale' });
      // title keeps the newer value; note, which nothing newer set, is filled by the stale event.
      expect((await entity('attr-1')).attributes).toEqual({ title: 'B', note: 'first' });
    });

    it('a null or absent field means no change', async () => {
      await send(promo('attr-1', 'complete', { version: 3, data: { title: null, badge: 'gold' } }));
      expect(await entity('attr-1')).toMatchObject({
        status: 'COMPLETED',
        attributes: { title: 'B', note: 'first', badge: 'gold' },
      });
    });

    it('within one batch the highest-keyed writer of each field wins, whatever its position', async () => {
      await send({
        events: [
          promo('attr-2', 'complete', { version: 3, data: { budget: 300 } }),
          promo('attr-2', 'create', { version: 1, data: { budget: 100, title: 'A', live: false } }),
          promo('attr-2', 'activate', { version: 2, data: { title: 'B', live: true } }),
        ],
      });
      expect(await entity('attr-2')).toMatchObject({
        status: 'COMPLETED',
        attributes: { budget: 300, title: 'B', live: true },
      });
    });
  });

  describe('anomalies', () => {
    it('a delete after complete is applied but flagged as an anomaly', async () => {
      await send({ events: ['create', 'activate', 'complete'].map((t) => promo('anom-1', t)) });
      const [r] = await send(promo('anom-1', 'delete', { eventId: 'anom-1-d' }));
      expect(r).toEqual({
        eventId: 'anom-1-d',
        entityId: 'anom-1',
        outcome: 'applied',
        anomaly: true,
        state: 'DELETED',
      });
      expect(await entity('anom-1')).toMatchObject({ status: 'DELETED', anomalies: 1 });
      const entries = await log('anom-1');
      expect(entries.at(-1)).toMatchObject({ type: 'delete', outcome: 'applied', anomaly: true });
      expect(entries.slice(0, -1).every((e) => !e.anomaly)).toBe(true);
    });

    it('a lost intermediate event is tolerated, not an anomaly', async () => {
      const results = await send({ events: ['create', 'complete'].map((t) => promo('anom-2', t)) });
      expect(results.map((r) => [r.outcome, r.anomaly])).toEqual([
        ['applied', false],
        ['applied', false],
      ]);
      expect(await entity('anom-2')).toMatchObject({ status: 'COMPLETED', anomalies: 0 });
    });
  });

  describe('?wait=true when the answer does not come', () => {
    /** An API on the harness's database whose queue no promosync worker consumes. */
    async function apiAlone() {
      const queueName = uniqueQueueName('wait');
      const config = loadConfig({
        DATABASE_URL: h.databaseUrl,
        REDIS_URL,
        QUEUE_NAME: queueName,
        PORT: '0',
        HOST: '127.0.0.1',
        LOG_LEVEL: 'silent',
      });
      const api = await startService({ config, api: true, worker: false, logger: pino({ level: 'silent' }) });
      const redis = createRedis(REDIS_URL);
      const queue = new Queue(queueName, { connection: redis });
      const post = (timeoutMs: number) =>
        fetch(`http://127.0.0.1:${api.port}/v1/events?wait=true&timeoutMs=${timeoutMs}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${h.keys.producer}`, 'content-type': 'application/json' },
          body: JSON.stringify(promo('wait-1', 'create')),
        });
      const close = async () => {
        await api.close();
        await queue.obliterate({ force: true });
        await queue.close();
        redis.disconnect();
      };
      return { queueName, redis, queue, post, close };
    }

    it('answers 202 pending when the job is still queued after timeoutMs', async () => {
      const a = await apiAlone();
      try {
        const res = await a.post(200);
        expect(res.status).toBe(202);
        const body = (await res.json()) as { accepted: number; jobId: string; pending: boolean };
        expect(body).toMatchObject({ accepted: 1, pending: true });
        expect(await (await a.queue.getJob(body.jobId))!.getState()).toBe('waiting');
      } finally {
        await a.close();
      }
    });

    it('does not call a job that failed pending, whatever its failure says', async () => {
      const a = await apiAlone();
      // A stand-in consumer that fails every job for good, with a reason that reads like a timeout.
      const worker = new Worker(
        a.queueName,
        async () => {
          throw new UnrecoverableError('statement timeout: the job timed out');
        },
        { connection: a.redis.duplicate({ maxRetriesPerRequest: null }) },
      );
      try {
        const res = await a.post(60_000);
        expect(res.status).not.toBe(202);
        expect(res.status).toBeGreaterThanOrEqual(500);
      } finally {
        await worker.close();
        await a.close();
      }
    });
  });
});
