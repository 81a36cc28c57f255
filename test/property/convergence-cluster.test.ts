import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { assertQueueConvergence, JOB_RETRIES, jobData } from '../helpers/convergence.ts';
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
      const used = new Set<number>();
      const checked = await assertQueueConvergence(h, machineName, {
        prefix: `${machineName}-c`,
        histories: HISTORIES_PER_RUN,
        runs: RUNS,
        async deliver(chunks) {
          // Producers add jobs straight to BullMQ, routing each chunk with the package's helper.
          const adds: Promise<unknown>[] = [];
          for (const chunk of chunks) {
            for (const g of groupByPartition(chunk, PARTITIONS)) {
              used.add(g.partition);
              adds.push(h.queues[g.partition]!.add('events', jobData(g.items), JOB_RETRIES));
            }
          }
          await Promise.all(adds);
          await h.drain(120_000);
          for (const q of h.queues) expect(await q.getFailedCount()).toBe(0);
        },
      });
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
