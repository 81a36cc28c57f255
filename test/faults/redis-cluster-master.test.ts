import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { prepareStage, type FaultStage } from '../helpers/fault-stage.ts';
import { checkConvergence, report, sleep, startFaultLoad } from '../helpers/load.ts';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.ts';
import { createRedis } from '../../src/queue/redis.ts';
import { queueNamesOf } from '../../src/queue/partitions.ts';

const PARTITIONS = 6;
const MIN_EVENTS = 20_000;
const OUTAGE_MS = 5000;

/** Jobs of all partitions by state, summed. */
async function counts(
  queues: Queue[],
  ...states: ('waiting' | 'active' | 'delayed' | 'prioritized' | 'failed')[]
) {
  let n = 0;
  for (const q of queues) for (const v of Object.values(await q.getJobCounts(...states))) n += v;
  return n;
}

describe('one Redis Cluster master killed and restarted mid-load (K=6, AOF appendfsync always, no replicas)', () => {
  let stage: FaultStage;
  let cluster: RedisCluster;

  beforeAll(async () => {
    stage = await prepareStage('cluster');
  });
  afterAll(async () => {
    await stage?.close();
    await cluster?.close();
  });

  it('every event acknowledged with 202 is applied once, and the service recovers by itself', async () => {
    cluster = await startRedisCluster({ masters: 3, onSpawn: stage.track });
    const env = stage.env({
      REDIS_URL: 'redis://127.0.0.1:1',
      REDIS_CLUSTER_NODES: cluster.nodesEnv,
      QUEUE_PARTITIONS: String(PARTITIONS),
      BATCH_FLUSH_MS: '20',
    });
    const { api } = await stage.startServices(env);

    const run = startFaultLoad(
      stage.registry,
      { url: api.url, key: stage.key },
      { minEvents: MIN_EVENTS, seed: 3303, prefix: 'k', producerSeed: 13 },
    );
    const { producer } = run;

    await producer.reached(0.35);
    const victim = 1;
    cluster.servers[victim]!.kill('SIGKILL');
    expect((await cluster.servers[victim]!.exited).signal).toBe('SIGKILL');
    await sleep(300);
    const acknowledgedAtKill = producer.stats.acknowledged;
    const readyz: number[] = [];
    const until = Date.now() + OUTAGE_MS - 800;
    while (Date.now() < until) {
      readyz.push((await fetch(`${api.url}/readyz`)).status);
      await sleep(250);
    }
    await sleep(500);
    const acknowledgedDuringOutage = producer.stats.acknowledged - acknowledgedAtKill;
    await cluster.restart(victim);
    await cluster.waitOk(60_000);
    const restartedAt = producer.progress;

    const stats = await run.running;
    const loadSeconds = (Date.now() - run.t0) / 1000;
    // Drained: every partition empty twice in a row, a moment apart.
    const redis = createRedis({ cluster: cluster.nodes });
    const queues = queueNamesOf(stage.queueName, PARTITIONS).map((n) => new Queue(n, { connection: redis }));
    try {
      const deadline = Date.now() + 180_000;
      let quiet = 0;
      while (quiet < 2) {
        const left = await counts(queues, 'waiting', 'active', 'delayed', 'prioritized');
        quiet = left === 0 ? quiet + 1 : 0;
        if (Date.now() > deadline) throw new Error(`partitions not drained: ${left} jobs left`);
        await sleep(300);
      }
      const failed = await counts(queues, 'failed');
      const c = await checkConvergence(
        stage.pool,
        stage.registry,
        run.load.histories,
        producer.acked,
        stage.source,
      );
      const readyAfter = (await fetch(`${api.url}/readyz`)).status;
      report('Redis Cluster master restart', producer, c, {
        outageMs: OUTAGE_MS,
        acknowledgedDuringOutage,
        readyzDuringOutage: readyz,
        readyAfter,
        progressAtRestart: Number(restartedAt.toFixed(2)),
        failedJobs: failed,
        loadSeconds,
      });

      expect(producer.unexpected).toEqual([]);
      expect(stats.sent).toBeGreaterThanOrEqual(MIN_EVENTS);
      // Requests touching the dead master's partitions were refused, not dropped.
      expect(stats.statuses['503'] ?? 0).toBeGreaterThan(0);
      expect(readyz.length).toBeGreaterThan(0);
      expect(readyz.every((s) => s === 503)).toBe(true);
      expect(readyAfter).toBe(200);
      expect(stats.unacknowledged).toBe(0);
      expect(failed).toBe(0);
      expect(c.lost).toBe(0);
      expect(c.appliedTwice).toBe(0);
      expect(c.applied).toBe(producer.acked.size);
      expect(c.mismatches.slice(0, 5)).toEqual([]);
    } finally {
      await Promise.all(queues.map((q) => q.close()));
      redis.disconnect();
    }
  });
});
