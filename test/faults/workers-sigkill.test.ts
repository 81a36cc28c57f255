import { describe, expect, it } from 'vitest';
import { REDIS_URL } from '../helpers/db.ts';
import { useFaultStage } from '../helpers/fault-stage.ts';
import { expectEveryEventApplied, report, sleep, watchQueue } from '../helpers/load.ts';

describe('workers killed with SIGKILL mid-load', () => {
  const stage = useFaultStage('sigkill', { obliterateOn: REDIS_URL });

  it('loses no accepted event: jobs of a killed worker are taken up again and every row converges', async () => {
    // Jobs stay active a little longer per batch, so the kills find work in flight.
    // FAULT_EXTRA_ENV='{"WORKER_MAX_STALLED_COUNT":"1"}' shows what BullMQ's default would lose.
    const env = stage.env({
      REDIS_URL,
      BATCH_FLUSH_MS: '20',
      ...(process.env.FAULT_EXTRA_ENV ? JSON.parse(process.env.FAULT_EXTRA_ENV) : {}),
    });
    const { api, workers, spawnWorker } = await stage.startServices(env);
    const watch = await watchQueue(REDIS_URL, stage.queueName);
    const run = stage.startLoad(api.url, { seed: 1101, prefix: 'k', producerSeed: 7 });
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
      for (let i = 0; i < 40 && (await watch.queue.getActiveCount()) === 0; i++) await sleep(50);
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
      const stalledBefore = watch.stalled;
      await Promise.all(step.victims.map(kill));
      await Promise.all(step.victims.map((i) => spawnWorker(i)));
      if (step.again) {
        for (let i = 0; i < 300 && watch.stalled === stalledBefore; i++) await sleep(20);
        await Promise.all(step.victims.map(kill));
        await Promise.all(step.victims.map((i) => spawnWorker(i)));
      }
    }

    const settled = await stage.settle(run, REDIS_URL);
    const drainSeconds = (settled.drainedAt - run.t0) / 1000 - settled.loadSeconds;
    report('workers SIGKILL', producer, settled.c, {
      kills,
      stalledJobsRecovered: watch.stalled,
      failedJobs: settled.failed.length,
      loadSeconds: settled.loadSeconds,
      drainSeconds,
    });
    await watch.close();

    expect(kills).toBe(8);
    expect(watch.stalled).toBeGreaterThan(0);
    expectEveryEventApplied(run, settled);
  });
});
