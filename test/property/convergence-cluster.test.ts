import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { deliveryArb, historyArb, renamed } from '../helpers/histories.ts';
import { applyInOrder, comparable } from '../helpers/expected.ts';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.ts';
import { groupByPartition, keySlot } from '../../src/queue/partitions.ts';

const PARTITIONS = 6;
const RUNS = 4;
const HISTORIES_PER_RUN = 110;

describe('convergence through six queue partitions on a three-master Redis Cluster', () => {
  let cluster: RedisCluster;
  let h: Harness;

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 });
    // The API process's worker plus one worker-only service: two workers, each consuming all six partitions.
    h = await startHarness({
      workers: 1,
      env: {
        REDIS_CLUSTER_NODES: cluster.nodesEnv,
        QUEUE_PARTITIONS: String(PARTITIONS),
        WORKER_CONCURRENCY: '8',
        BATCH_FLUSH_MS: '3',
      },
    });
  }, 120_000);
  afterAll(async () => {
    await h?.close();
    await cluster?.close();
  });

  it('the partitions sit on every master of the cluster', async () => {
    const slots = h.queues.map((q) => keySlot(`bull:${q.name}:wait`));
    // `redis-cli --cluster create` splits the 16384 slots into equal consecutive ranges.
    const masters = new Set(slots.map((s) => Math.floor((s * cluster.nodes.length) / 16384)));
    expect(masters.size).toBe(3);
  });

  for (const machineName of ['promotion', 'campaign']) {
    it(`every ${machineName} row equals the in-order application of its delivered events, jobs routed by partition`, async () => {
      const info = h.service.registry.get(machineName)!;
      let run = 0;
      let checked = 0;
      const used = new Set<number>();
      const arb = fc
        .array(historyArb(info), { minLength: HISTORIES_PER_RUN, maxLength: HISTORIES_PER_RUN })
        .chain((hs) => {
          run += 1;
          const histories = hs.map((x, i) => renamed(x, `${machineName}-c${run}-${i}`));
          return deliveryArb(histories).map((d) => ({ histories, ...d }));
        });
      await fc.assert(
        fc.asyncProperty(
          arb,
          fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }),
          async (c, sizes) => {
            // Producers add jobs straight to BullMQ, routing each chunk with the package's helper.
            let at = 0;
            const adds: Promise<unknown>[] = [];
            for (let i = 0; at < c.sent.length; i++) {
              const chunk = c.sent.slice(at, at + sizes[i % sizes.length]!);
              at += chunk.length;
              for (const g of groupByPartition(chunk, PARTITIONS)) {
                used.add(g.partition);
                const data =
                  g.items.length === 1
                    ? { source: 'test-src', ...g.items[0]! }
                    : { source: 'test-src', events: g.items };
                adds.push(
                  h.queues[g.partition]!.add('events', data, {
                    attempts: 5,
                    backoff: { type: 'exponential', delay: 50 },
                  }),
                );
              }
            }
            await Promise.all(adds);
            await h.drain(120_000);
            for (const q of h.queues) expect(await q.getFailedCount()).toBe(0);

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
      expect(checked).toBeGreaterThanOrEqual(400);
      expect(used.size).toBe(PARTITIONS);
    }, 300_000);
  }

  it('a request through the API with events of several partitions becomes one job each, results in request order', async () => {
    const events = Array.from({ length: 24 }, (_, i) => ({
      machine: 'promotion',
      entityId: `api-c-${i}`,
      type: 'create',
      eventId: `api-c-${i}-create`,
    }));
    const res = await h.request('/v1/events?wait=true', { method: 'POST', json: { events } });
    const body = (await res.json()) as {
      accepted: number;
      jobs: { queue: string; jobId: string; accepted: number }[];
      results: { entityId: string; outcome: string }[];
    };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.accepted).toBe(24);
    expect(body.jobs.length).toBe(new Set(groupByPartition(events, PARTITIONS).map((g) => g.partition)).size);
    expect(body.jobs.length).toBeGreaterThan(1);
    expect(body.jobs.reduce((n, j) => n + j.accepted, 0)).toBe(24);
    expect(body.results.map((r) => r.entityId)).toEqual(events.map((e) => e.entityId));
    expect(body.results.every((r) => r.outcome === 'applied')).toBe(true);
  });
});
