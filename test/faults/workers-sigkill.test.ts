import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue, QueueEvents } from 'bullmq';
import { REDIS_URL } from '../helpers/db.ts';
import { prepareStage, type FaultStage } from '../helpers/fault-stage.ts';
import { obliterate, report, sleep, settleFaultLoad, startFaultLoad } from '../helpers/load.ts';
import { startApi, startWorker, type Child } from '../helpers/processes.ts';
import { createRedis } from '../../src/queue/redis.ts';

const MIN_EVENTS = 22_000;

describe('workers killed with SIGKILL mid-load', () => {
  let stage: FaultStage;
  const redis = createRedis(REDIS_URL);

  beforeAll(async () => {
    stage = await prepareStage('sigkill');
  });
  afterAll(async () => {
    await stage?.close();
    if (stage) await obliterate(REDIS_URL, stage.queueName);
    redis.disconnect();
  });

  it('loses no accepted event: jobs of a killed worker are taken up again and every row converges', async () => {
    // Jobs stay active a little longer per batch, so the kills find work in flight.
    // FAULT_EXTRA_ENV='{"WORKER_MAX_STALLED_COUNT":"1"}' shows what BullMQ's default would lose.
    const env = stage.env({
      REDIS_URL,
      BATCH_FLUSH_MS: '20',
      ...(process.env.FAULT_EXTRA_ENV ? JSON.parse(process.env.FAULT_EXTRA_ENV) : {}),
    });
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
        seed: 1101,
        prefix: 'k',
        producerSeed: 7,
      },
    );
    const { producer } = run;

    // Kill while jobs are active: one worker at a time, both at once, and both again just as
    // they take up the jobs the first double kill left behind (those jobs stall twice).
    let kills = 0;
    const kill = async (i: number): Promise<void> => {
      const victim = workers[i]!;
      victim.kill('SIGKILL');
      const exit = await victim.exited;
      expect(exit.signal).toBe('SIGKILL');
      stage.children.delete(victim);
      kills += 1;
    };
    const whenActive = async (): Promise<void> => {
      for (let i = 0; i < 40 && (await queue.getActiveCount()) === 0; i++) await sleep(50);
    };
    const schedule: Array<{ at: number; victims: number[]; again?: boolean }> = [
      { at: 0.12, victims: [0] },
      { at: 0.27, victims: [1] },
      { at: 0.42, victims: [0, 1], again: true },
      { at: 0.65, victims: [1] },
      { at: 0.8, victims: [0] },
    ];
    for (const step of schedule) {
      await producer.reached(step.at);
      await whenActive();
      const stalledBefore = stalled;
      await Promise.all(step.victims.map(kill));
      await Promise.all(step.victims.map((i) => spawnWorker(i)));
      if (step.again) {
        for (let i = 0; i < 300 && stalled === stalledBefore; i++) await sleep(20);
        await Promise.all(step.victims.map(kill));
        await Promise.all(step.victims.map((i) => spawnWorker(i)));
      }
    }

    const { stats, loadSeconds, drainedAt, failed, c } = await settleFaultLoad(run, {
      ...stage,
      redisUrl: REDIS_URL,
    });
    const drainSeconds = (drainedAt - run.t0) / 1000 - loadSeconds;
    report('workers SIGKILL', producer, c, {
      kills,
      stalledJobsRecovered: stalled,
      failedJobs: failed.length,
      loadSeconds,
      drainSeconds,
    });
    await events.close();
    await queue.close();

    expect(producer.unexpected).toEqual([]);
    expect(stats.sent).toBeGreaterThanOrEqual(MIN_EVENTS);
    expect(stats.unacknowledged).toBe(0);
    expect(kills).toBe(8);
    expect(stalled).toBeGreaterThan(0);
    expect(failed).toEqual([]);
    expect(c.lost).toBe(0);
    expect(c.appliedTwice).toBe(0);
    expect(c.applied).toBe(producer.acked.size);
    expect(c.mismatches.slice(0, 5)).toEqual([]);
  });
});
