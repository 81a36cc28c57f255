import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareStage, type FaultStage } from '../helpers/fault-stage.ts';
import { expectEveryEventApplied, report, sleep } from '../helpers/load.ts';
import { freePort, startRedisServer, type Child, type OnSpawn } from '../helpers/processes.ts';

const OUTAGE_MS = 4000;

/** A private redis-server that fsyncs its append-only file before it answers a write. */
const startRedis = (port: number, dir: string, onSpawn: OnSpawn): Promise<Child> =>
  startRedisServer(port, ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'], { onSpawn });

describe('Redis killed and restarted mid-load (AOF, appendfsync always)', () => {
  let stage: FaultStage;
  let dir: string;
  let redis: Child | undefined;

  beforeAll(async () => {
    stage = await prepareStage('redis');
    dir = mkdtempSync(join(tmpdir(), 'promosync-redis-'));
  });
  afterAll(async () => {
    await stage?.close();
    await redis?.stop(5000);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('producers get 503 while it is down, never a silent drop: every event acknowledged with 202 is applied', async () => {
    const port = await freePort();
    const redisUrl = `redis://127.0.0.1:${port}`;
    redis = await startRedis(port, dir, stage.track);
    const env = stage.env({ REDIS_URL: redisUrl, BATCH_FLUSH_MS: '20' });
    const { api } = await stage.startServices(env);
    const run = stage.startLoad(api.url, { seed: 2202, prefix: 'r', producerSeed: 11 });
    const { producer } = run;

    await producer.reached(0.35);
    redis.kill('SIGKILL');
    expect((await redis.exited).signal).toBe('SIGKILL');
    // Answers to writes Redis took just before it died may still be on their way.
    await sleep(300);
    const acknowledgedAtKill = producer.stats.acknowledged;
    const readyz: number[] = [];
    const probe = (async () => {
      const until = Date.now() + OUTAGE_MS - 800;
      while (Date.now() < until) {
        readyz.push((await fetch(`${api.url}/readyz`)).status);
        await sleep(250);
      }
    })();
    await sleep(OUTAGE_MS - 300);
    await probe;
    const acknowledgedDuringOutage = producer.stats.acknowledged - acknowledgedAtKill;
    redis = await startRedis(port, dir, stage.track);
    const restartedAt = producer.progress;

    const settled = await stage.settle(run, redisUrl);
    const { stats } = settled;
    report('Redis restart', producer, settled.c, {
      outageMs: OUTAGE_MS,
      acknowledgedDuringOutage,
      readyzDuringOutage: readyz,
      progressAtRestart: Number(restartedAt.toFixed(2)),
      failedJobs: settled.failed.length,
      loadSeconds: settled.loadSeconds,
    });

    expect(stats.statuses['503'] ?? 0).toBeGreaterThan(0);
    expect(acknowledgedDuringOutage).toBe(0);
    expect(readyz.length).toBeGreaterThan(0);
    expect(readyz.every((s) => s === 503)).toBe(true);
    expectEveryEventApplied(run, settled);
  });
});
