import { openDatabase } from '../../src/store/index.ts';
import { createRedis } from '../../src/queue/index.ts';
import type { BenchContext, ScenarioResult } from '../context.ts';
import { CpuMeter } from '../cpu.ts';
import { createDatabase, uniqueQueueName, type BenchDatabase } from '../db.ts';
import { spawnNoopWorker, spawnPromosync, type Child } from '../proc.ts';
import { verifyConvergence } from '../verify.ts';
import { benchQueue, promosyncEnv, stopAll, waitDrained } from './common.ts';

/** Options of the jobs producers add; the same for promosync's worker and the no-op one. */
const JOB_OPTIONS = { removeOnComplete: true, removeOnFail: 10_000 };

/**
 * Single-event jobs added straight to BullMQ (`addBulk` of `{ source, ...event }`), consumed
 * by promosync's worker or by a worker whose processor does nothing (BullMQ's ceiling on the
 * same Redis, with the same concurrency). The jobs are all queued while the queue is paused;
 * the clock runs from resume until the queue is empty.
 */
export async function singleEventJobs(
  ctx: BenchContext,
  kind: 'promosync' | 'noop' | 'noop-peak',
): Promise<ScenarioResult> {
  const s = ctx.settings;
  const concurrency = kind === 'noop-peak' ? s.noopPeakConcurrency : s.queueConcurrency;
  const result: ScenarioResult =
    kind === 'promosync'
      ? {
          id: 'queue-promosync',
          name: 'Single-event jobs via BullMQ (promosync worker)',
          count: 0,
          seconds: 0,
          rate: 0,
          unit: 'events/s',
          notes: [],
        }
      : {
          id: kind === 'noop' ? 'queue-noop' : 'queue-noop-peak',
          name:
            kind === 'noop'
              ? 'Single-event jobs via BullMQ (no-op worker: the ceiling)'
              : `Single-event jobs via BullMQ (no-op worker at concurrency ${concurrency})`,
          count: 0,
          seconds: 0,
          rate: 0,
          unit: 'jobs/s',
          notes: [],
        };
  const queueName = uniqueQueueName(kind);
  const redis = createRedis(s.redisUrl);
  const { queue, dispose } = benchQueue(queueName, redis);
  const children: Child[] = [];
  let db: BenchDatabase | undefined;
  try {
    db = await createDatabase(s.serverUrl, kind === 'promosync');
    await queue.pause();
    const jobs = ctx.workload.sent.map((e) => ({
      name: 'event',
      data: { source: 'bench', ...e },
      opts: JOB_OPTIONS,
    }));
    for (let i = 0; i < jobs.length; i += 1000) await queue.addBulk(jobs.slice(i, i + 1000));

    const env = promosyncEnv(s, db.url, queueName, concurrency);
    children.push(
      kind === 'promosync' ? await spawnPromosync('worker', env, s.nodeArgs) : await spawnNoopWorker(env),
    );
    const cpu = new CpuMeter(s.serverUrl, db.name, redis, () => ({ [children[0]!.name]: children[0]!.pid }));
    await cpu.start();
    const t0 = Date.now();
    await queue.resume();
    const end = await waitDrained(queue, children, { pollMs: 10 });
    result.cpu = await cpu.stop();
    const failed = await queue.getFailedCount();
    if (failed > 0) throw new Error(`${failed} job(s) failed`);
    result.count = jobs.length;
    result.seconds = (end - t0) / 1000;
    result.rate = result.count / result.seconds;
    result.notes.push(
      `${jobs.length} jobs of one event, concurrency ${concurrency}, job options ${JSON.stringify(JOB_OPTIONS)}`,
    );
    await stopAll(children);
    if (kind === 'promosync') {
      const store = openDatabase(db.url, 2);
      try {
        result.convergence = await verifyConvergence(
          store.pool,
          ctx.workload.machine,
          ctx.expected.size,
          (eid) => ctx.expected.get(eid),
          ctx.workload.sent.length,
        );
      } finally {
        await store.close();
      }
      if (!result.convergence.ok) result.error = 'did not converge';
    }
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    await stopAll(children);
    await dispose();
    redis.disconnect();
    await db?.drop();
  }
  return result;
}
