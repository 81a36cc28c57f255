import { afterAll, beforeAll } from 'vitest';
import pino from 'pino';
import { loadConfig, redisTargetOf, type Config } from '../../src/config.ts';
import { startService, type Service } from '../../src/service.ts';
import { createKey } from '../../src/store/keys.ts';
import { freshDatabase, REDIS_URL, uniqueQueueName } from './db.ts';
import { createRedis } from '../../src/queue/redis.ts';
import { queueNamesOf } from '../../src/queue/partitions.ts';
import { Queue, type JobType } from 'bullmq';

/** See {@link Harness.state}. */
export interface HarnessState {
  jobs: Record<string, number>;
  entities: number;
  eventLog: number;
  eventKeys: number;
}

export interface Harness {
  /** Base URL of the API, e.g. http://127.0.0.1:41234 */
  url: string;
  config: Readonly<Config>;
  databaseUrl: string;
  queueName: string;
  service: Service;
  /** Extra worker-only services started with `workers`. */
  workers: Service[];
  /** URLs of the extra API-only services started with `apis`: more API processes on the same Redis and database. */
  otherApis: string[];
  keys: { producer: string; producer2: string; merchant: string; otherMerchant: string; admin: string };
  /** fetch against the API with a bearer key. */
  request(path: string, init?: RequestInit & { key?: string | null; json?: unknown }): Promise<Response>;
  /** Every partition's queue (just the one queue unless QUEUE_PARTITIONS is set). */
  queues: Queue[];
  /** The first partition's queue: the queue, unless QUEUE_PARTITIONS is set. */
  queue: Queue;
  /** Waits until the queues have no waiting, active or delayed jobs. */
  drain(timeoutMs?: number): Promise<void>;
  /**
   * Drains, then counts what a request could have changed: the queue's jobs by state and the
   * rows of entity, event_log and event_key. Equal before and after = the request changed nothing.
   */
  state(): Promise<HarnessState>;
  close(): Promise<void>;
}

/**
 * A whole promosync on a fresh database and a queue of its own: the API with one worker,
 * plus `workers` more worker-only and `apis` more API-only processes' worth of services, and
 * one key per role.
 */
export async function startHarness(
  options: { workers?: number; apis?: number; env?: Record<string, string> } = {},
): Promise<Harness> {
  const db = await freshDatabase();
  const queueName = uniqueQueueName();
  const config = loadConfig({
    DATABASE_URL: db.url,
    REDIS_URL,
    QUEUE_NAME: queueName,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ...options.env,
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const service = await startService({ config, logger, api: true, worker: true });
  const workers: Service[] = [];
  for (let i = 0; i < (options.workers ?? 0); i++) {
    workers.push(await startService({ config, logger, api: false, worker: true }));
  }
  const apis: Service[] = [];
  for (let i = 0; i < (options.apis ?? 0); i++) {
    apis.push(await startService({ config, logger, api: true, worker: false }));
  }
  const prisma = service.db.prisma;
  const keys = {
    producer: (await createKey(prisma, { role: 'producer', source: 'test-src' })).key,
    producer2: (await createKey(prisma, { role: 'producer', source: 'other-src', machines: ['nope'] })).key,
    merchant: (await createKey(prisma, { role: 'merchant', merchantId: 'm-1' })).key,
    otherMerchant: (await createKey(prisma, { role: 'merchant', merchantId: 'm-2' })).key,
    admin: (await createKey(prisma, { role: 'admin' })).key,
  };
  const url = `http://127.0.0.1:${service.port}`;
  const redis = createRedis(redisTargetOf(config));
  const queues = queueNamesOf(queueName, config.queuePartitions).map(
    (n) => new Queue(n, { connection: redis }),
  );
  const countJobs = async (...states: JobType[]): Promise<Record<string, number>> => {
    const total: Record<string, number> = {};
    for (const q of queues) {
      for (const [k, n] of Object.entries(await q.getJobCounts(...states))) total[k] = (total[k] ?? 0) + n;
    }
    return total;
  };

  const harness: Harness = {
    url,
    config,
    databaseUrl: db.url,
    queueName,
    service,
    workers,
    otherApis: apis.map((a) => `http://127.0.0.1:${a.port}`),
    queues,
    queue: queues[0]!,
    keys,
    async request(path, init = {}) {
      const { key = keys.producer, json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (key !== null) headers.set('authorization', `Bearer ${key}`);
      if (json !== undefined) headers.set('content-type', 'application/json');
      return fetch(`${url}${path}`, {
        ...rest,
        headers,
        ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
      });
    },
    async state() {
      await harness.drain();
      const jobs = await countJobs(
        'waiting',
        'active',
        'delayed',
        'prioritized',
        'waiting-children',
        'completed',
        'failed',
      );
      const { rows } = await service.db.pool.query<Omit<HarnessState, 'jobs'>>(
        `SELECT (SELECT count(*) FROM entity)::int AS "entities",
                (SELECT count(*) FROM event_log)::int AS "eventLog",
                (SELECT count(*) FROM event_key)::int AS "eventKeys"`,
      );
      return { jobs, ...rows[0]! };
    },
    async drain(timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const c = await countJobs('waiting', 'active', 'delayed', 'prioritized');
        if (Object.values(c).every((n) => n === 0)) return;
        if (Date.now() > deadline) throw new Error(`queue not drained: ${JSON.stringify(c)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async close() {
      for (const a of apis) await a.close();
      for (const w of workers) await w.close();
      await service.close();
      for (const q of queues) {
        await q.obliterate({ force: true }).catch(() => {});
        await q.close();
      }
      redis.disconnect();
      await db.drop();
    },
  };
  return harness;
}

/**
 * The harness of the enclosing file or describe block: {@link startHarness} before its tests,
 * closed after them (after the block's own afterAll hooks). The returned object is filled in
 * by that beforeAll hook, so use it in tests and hooks, not while the tests are collected.
 */
export function useHarness(options: Parameters<typeof startHarness>[0] = {}): Harness {
  const h = {} as Harness;
  beforeAll(async () => {
    Object.assign(h, await startHarness(options));
  });
  afterAll(async () => {
    await h.close?.();
  });
  return h;
}
