import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Queue } from 'bullmq';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { deliveryArb, historyArb, renamed } from '../helpers/histories.ts';
import { applyInOrder, comparable } from '../helpers/expected.ts';
import { createRedis } from '../../src/queue/redis.ts';
import { REDIS_URL } from '../helpers/db.ts';

const RUNS = 5;
const HISTORIES_PER_RUN = 110;

describe('convergence through the real queue and database', () => {
  let h: Harness;
  let queue: Queue;
  const redis = createRedis(REDIS_URL);

  beforeAll(async () => {
    // The API process's worker plus two worker-only services: three workers compete for jobs.
    h = await startHarness({ workers: 2, env: { WORKER_CONCURRENCY: '16', BATCH_FLUSH_MS: '3' } });
    queue = new Queue(h.queueName, { connection: redis });
  });
  afterAll(async () => {
    await queue?.close();
    redis.disconnect();
    await h?.close();
  });

  for (const machineName of ['promotion', 'campaign']) {
    it(`every ${machineName} row equals the in-order application of its delivered events, whatever the arrival order`, async () => {
      const info = h.service.registry.get(machineName)!;
      let run = 0;
      let checked = 0;
      const arb = fc
        .array(historyArb(info), { minLength: HISTORIES_PER_RUN, maxLength: HISTORIES_PER_RUN })
        .chain((hs) => {
          run += 1;
          const histories = hs.map((x, i) => renamed(x, `${machineName}-r${run}-${i}`));
          return deliveryArb(histories).map((d) => ({ histories, ...d }));
        });
      await fc.assert(
        fc.asyncProperty(
          arb,
          fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }),
          async (c, sizes) => {
            // Producers add jobs straight to BullMQ: single events and batches of various sizes.
            let at = 0;
            const jobs: { name: string; data: Record<string, unknown> }[] = [];
            for (let i = 0; at < c.sent.length; i++) {
              const n = sizes[i % sizes.length]!;
              const chunk = c.sent.slice(at, at + n);
              at += n;
              jobs.push({
                name: 'events',
                data:
                  chunk.length === 1
                    ? { source: 'test-src', ...chunk[0]! }
                    : { source: 'test-src', events: chunk },
              });
            }
            await queue.addBulk(
              jobs.map((j) => ({ ...j, opts: { attempts: 5, backoff: { type: 'exponential', delay: 50 } } })),
            );
            await h.drain();
            const failed = await queue.getFailedCount();
            expect(failed).toBe(0);

            const ids = c.histories.map((x) => x.entityId);
            const rows = await h.service.db.pool.query<{
              entity_id: string;
              status: string;
              last_event: string;
              version: string | null;
              merchant_id: string | null;
              fields: Record<string, { v: unknown }>;
            }>(
              'SELECT entity_id, status, last_event, version, merchant_id, fields FROM entity WHERE machine = $1 AND entity_id = ANY($2)',
              [machineName, ids],
            );
            const byId = new Map(rows.rows.map((r) => [r.entity_id, r]));
            c.histories.forEach((hist, i) => {
              const expected = comparable(applyInOrder(h.service.registry, c.delivered[i]!));
              const row = byId.get(hist.entityId);
              const actual = row && {
                status: row.status,
                lastEvent: row.last_event,
                version: row.version === null ? null : Number(row.version),
                merchantId: row.merchant_id,
                attributes: Object.fromEntries(Object.entries(row.fields).map(([k, f]) => [k, f.v])),
              };
              expect(actual, `entity ${hist.entityId}`).toEqual(expected);
              checked += 1;
            });
          },
        ),
        { numRuns: RUNS, endOnFailure: true },
      );
      expect(checked).toBeGreaterThanOrEqual(500);
    }, 300_000);
  }
});
