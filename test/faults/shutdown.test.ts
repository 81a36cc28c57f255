import { describe, expect, it } from 'vitest';
import { REDIS_URL } from '../helpers/db.ts';
import { useFaultStage } from '../helpers/fault-stage.ts';
import { expectEveryEventApplied, report, sleep, watchQueue } from '../helpers/load.ts';

describe('graceful shutdown of a worker under load (SIGTERM)', () => {
  const stage = useFaultStage('sigterm', { obliterateOn: REDIS_URL });

  it('stops taking jobs, finishes its batches, exits 0, and nothing in flight is lost or applied twice', async () => {
    const { api, workers, spawnWorker } = await stage.startServices(
      stage.env({ REDIS_URL, BATCH_FLUSH_MS: '20' }),
    );
    const watch = await watchQueue(REDIS_URL, stage.queueName);
    const run = stage.startLoad(api.url, { seed: 5505, prefix: 's', producerSeed: 17 });
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
      for (let k = 0; k < 40 && (active = await watch.queue.getActiveCount()) === 0; k++) await sleep(50);
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

    const settled = await stage.settle(run, REDIS_URL);
    report('worker SIGTERM', producer, settled.c, {
      shutdowns,
      stalledJobs: watch.stalled,
      failedJobs: settled.failed.length,
      loadSeconds: settled.loadSeconds,
    });
    await watch.close();

    for (const s of shutdowns) {
      expect(s).toMatchObject({ code: 0, signal: null });
      expect(s.seconds).toBeLessThan(30);
    }
    // No job was abandoned mid-way (a stalled job is one whose worker went away holding it)…
    expect(watch.stalled).toBe(0);
    expectEveryEventApplied(run, settled);
    // …none ran twice: one non-duplicate log row per eventId, and one log row per copy sent.
    if (settled.stats.retries === 0) expect(settled.c.logRows).toBe(settled.stats.acknowledged);
  });
});
