import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue, QueueEvents } from 'bullmq';
import { REDIS_URL } from '../helpers/db.ts';
import { prepareStage, type FaultStage } from '../helpers/fault-stage.ts';
import { obliterate, report, sleep, settleFaultLoad, startFaultLoad } from '../helpers/load.ts';
import { startApi, startWorker, type Child } from '../helpers/processes.ts';
import { createRedis } from '../../src/queue/redis.ts';

const MIN_EVENTS = 22_000;

describe('graceful shutdown of a worker under load (SIGTERM)', () => {
  let stage: FaultStage;
  const redis = createRedis(REDIS_URL);

  beforeAll(async () => {
    stage = await prepareStage('sigterm');
  });
  afterAll(async () => {
    await stage?.close();
    if (stage) await obliterate(REDIS_URL, stage.queueName);
    redis.disconnect();
  });

  it('stops taking jobs, finishes its batches, exits 0, and nothing in flight is lost or applied twice', async () => {
    const env = stage.env({ REDIS_URL, BATCH_FLUSH_MS: '20' });
    const api = await startApi('api', env, stage.track);
    const workers: Child[] = [];
    const spawnWorker = async (i: number): Promise<void> => {
      const w = await startWorker(`worker-${i}`, env, stage.track);
      workers[i] = w;
    };
    await Promise.all([spawnWorker(0), spawnWorker(1)]);

    const queue = new Queue(stage.queueName, { connection: redis });
    const events = new QueueEvents(stage.queueName, { connection: createRedis(REDIS_URL) });
    let stalled = 0;
    events.on('stalled', () => (stalled += 1));
    await events.waitUntilReady();

    const run = startFaultLoad(
      stage.registry,
      { url: api.url, key: stage.key },
      {
        minEvents: MIN_EVENTS,
        seed: 5505,
        prefix: 's',
        producerSeed: 17,
      },
    );
    const { producer } = run;

    // Each worker in turn is stopped while jobs are active, and replaced.
    const shutdowns: Array<{
      code: number | null;
      signal: string | null;
      seconds: number;
      activeAtSignal: number;
    }> = [];
    for (const [at, i] of [
      [0.3, 0],
      [0.65, 1],
    ] as const) {
      await producer.reached(at);
      let active = 0;
      for (let k = 0; k < 40 && (active = await queue.getActiveCount()) === 0; k++) await sleep(50);
      const w = workers[i]!;
      const signalledAt = Date.now();
      w.kill('SIGTERM');
      const exit = await Promise.race([w.exited, sleep(40_000).then(() => undefined)]);
      if (!exit) {
        const tail = w.tail(60);
        w.kill('SIGKILL');
        throw new Error(`worker-${i} did not exit within 40 s of SIGTERM; last output:\n${tail}`);
      }
      shutdowns.push({ ...exit, seconds: (Date.now() - signalledAt) / 1000, activeAtSignal: active });
      expect(w.grep(/"msg":"shutting down"/).length).toBe(1);
      expect(w.grep(/error while closing|shutdown failed|took too long/)).toEqual([]);
      stage.children.delete(w);
      await spawnWorker(i);
    }

    const { stats, loadSeconds, failed, c } = await settleFaultLoad(run, { ...stage, redisUrl: REDIS_URL });
    report('worker SIGTERM', producer, c, {
      shutdowns,
      stalledJobs: stalled,
      failedJobs: failed.length,
      loadSeconds,
    });
    await events.close();
    await queue.close();

    for (const s of shutdowns) {
      expect(s).toMatchObject({ code: 0, signal: null });
      expect(s.seconds).toBeLessThan(30);
    }
    // No job was abandoned mid-way (a stalled job is one whose worker went away holding it)…
    expect(stalled).toBe(0);
    expect(failed).toEqual([]);
    expect(producer.unexpected).toEqual([]);
    expect(stats.sent).toBeGreaterThanOrEqual(MIN_EVENTS);
    expect(stats.unacknowledged).toBe(0);
    expect(c.lost).toBe(0);
    // …none ran twice: one non-duplicate log row per eventId, and one log row per copy sent.
    expect(c.appliedTwice).toBe(0);
    expect(c.applied).toBe(producer.acked.size);
    if (stats.retries === 0) expect(c.logRows).toBe(stats.acknowledged);
    expect(c.mismatches.slice(0, 5)).toEqual([]);
  });
});
