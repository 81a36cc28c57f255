import { afterAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { REDIS_URL } from '../helpers/db.ts';
import { useFaultStage } from '../helpers/fault-stage.ts';
import { expectEveryEventApplied, report, sleep } from '../helpers/load.ts';
import { createRedis } from '../../src/queue/redis.ts';

const OUTAGE_MS = 10_000;

describe('Postgres unreachable for 10 s (a proxy drops and refuses connections)', () => {
  const stage = useFaultStage('pgdown', { postgresProxy: true, obliterateOn: REDIS_URL });
  const redis = createRedis(REDIS_URL);
  afterAll(() => redis.disconnect());

  it('jobs wait with backoff, /readyz says 503, and everything recovers by itself with no event lost', async () => {
    const { proxy, databaseUrl } = stage.viaProxy!;
    const env = stage.env({ REDIS_URL, DATABASE_URL: databaseUrl });
    const { api, workers } = await stage.startServices(env);
    const queue = new Queue(stage.queueName, { connection: redis });
    const run = stage.startLoad(api.url, { seed: 3303, prefix: 'p', producerSeed: 13 });
    const { producer } = run;

    await producer.reached(0.35);
    const statusesBefore = { ...producer.stats.statuses };
    await proxy.down();
    const downAt = Date.now();
    const readyz: number[] = [];
    let maxDelayed = 0;
    while (Date.now() - downAt < OUTAGE_MS) {
      readyz.push((await fetch(`${api.url}/readyz`)).status);
      maxDelayed = Math.max(maxDelayed, await queue.getDelayedCount());
      await sleep(500);
    }
    const statusesDuringOutage = Object.fromEntries(
      Object.entries(producer.stats.statuses)
        .map(([s, n]) => [s, n - (statusesBefore[s] ?? 0)])
        .filter(([, n]) => Number(n) > 0),
    );
    await proxy.up();
    const upAt = Date.now();
    let readyAgainMs = -1;
    while (readyAgainMs < 0 && Date.now() - upAt < 60_000) {
      if ((await fetch(`${api.url}/readyz`)).status === 200) readyAgainMs = Date.now() - upAt;
      else await sleep(200);
    }

    const settled = await stage.settle(run, REDIS_URL);
    const drainedAfterOutageS = (settled.drainedAt - upAt) / 1000;
    const delayedLogLines = workers.reduce(
      (n, w) => n + w.grep(/database unavailable, job delayed/).length,
      0,
    );
    report('Postgres outage', producer, settled.c, {
      outageMs: OUTAGE_MS,
      statusesDuringOutage,
      readyzDuringOutage: readyz,
      readyAgainMs,
      maxDelayedJobs: maxDelayed,
      jobDelaysLogged: delayedLogLines,
      drainedAfterOutageS,
      failedJobs: settled.failed.length,
      loadSeconds: settled.loadSeconds,
    });
    await queue.close();

    // Pushes during the outage are told to come back (503), never answered as a server bug.
    expect(statusesDuringOutage['503'] ?? 0).toBeGreaterThan(0);
    expect(statusesDuringOutage['500'] ?? 0).toBe(0);
    // The probe fails within a second of the outage and stays failed.
    expect(readyz.slice(2).every((s) => s === 503)).toBe(true);
    expect(readyAgainMs).toBeGreaterThanOrEqual(0);
    expect(maxDelayed).toBeGreaterThan(0);
    expectEveryEventApplied(run, settled);
  });
});
