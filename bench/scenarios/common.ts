import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { BenchSettings } from '../context.ts';
import type { Child } from '../proc.ts';

/** The environment of promosync's child processes for one scenario. */
export function promosyncEnv(
  s: BenchSettings,
  databaseUrl: string,
  queueName: string,
  concurrency: number,
): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    REDIS_URL: s.redisUrl,
    QUEUE_NAME: queueName,
    // The benchmark measures throughput, not the API's per-key rate limit.
    RATE_LIMIT_PER_SECOND: '0',
    WORKER_CONCURRENCY: String(concurrency),
    BATCH_MAX_EVENTS: String(s.batchMaxEvents),
    BATCH_FLUSH_MS: String(s.batchFlushMs),
    BATCH_LANES: String(s.batchLanes),
    DB_POOL_SIZE: String(s.dbPoolSize),
  };
}

const UNFINISHED = ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children'] as const;

/**
 * Polls until the queue (or every one of `queues`) holds no unfinished job; fails if a child died or nothing moved for
 * `stallMs`. Resolves with the wall-clock time (Date.now()) at which it saw the queue empty.
 */
export async function waitDrained(
  queues: Queue | readonly Queue[],
  children: Child[],
  opts: { pollMs?: number; stallMs?: number; done?: () => boolean } = {},
): Promise<number> {
  const all = Array.isArray(queues) ? queues : [queues as Queue];
  const pollMs = opts.pollMs ?? 20;
  const stallMs = opts.stallMs ?? 60_000;
  let lastLeft = -1;
  let lastMove = Date.now();
  for (;;) {
    const counts = await Promise.all(all.map((q) => q.getJobCounts(...UNFINISHED)));
    const left = counts.flatMap((c) => Object.values(c) as number[]).reduce((a, b) => a + b, 0);
    const now = Date.now();
    if (left === 0 && (opts.done?.() ?? true)) return now;
    const dead = children.find((c) => !c.alive());
    if (dead) throw new Error(`${dead.name} exited during the run:\n${dead.output()}`);
    if (left !== lastLeft) {
      lastLeft = left;
      lastMove = now;
    } else if (now - lastMove > stallMs) {
      throw new Error(`the queue stopped moving with ${left} jobs left: ${JSON.stringify(counts)}`);
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** A queue handle of the benchmark, removed with everything in it by `dispose()`. */
export function benchQueue(name: string, connection: Redis): { queue: Queue; dispose(): Promise<void> } {
  const queue = new Queue(name, { connection });
  queue.on('error', () => {});
  return {
    queue,
    async dispose() {
      await queue.obliterate({ force: true }).catch(() => {});
      await queue.close();
    },
  };
}

/** Stops children in reverse start order, ignoring ones already gone. */
export async function stopAll(children: Child[]): Promise<void> {
  for (const c of [...children].reverse()) await c.stop().catch(() => {});
}
