import { once } from 'node:events';
import pino, { type Logger } from 'pino';
import { machines } from '../machines/index.ts';
import { redisTargetOf, type Config } from './config.ts';
import { MachineRegistry } from './domain/index.ts';
import {
  Applier,
  assertWritable,
  openDatabase,
  KeyCache,
  syncMachineDefs,
  type Database,
} from './store/index.ts';
import {
  createRedis,
  EventQueue,
  EventWorker,
  pingRedis,
  queueNameOf,
  type RedisConnection,
} from './queue/index.ts';
import { CapacityMetrics, Metrics } from './observability/index.ts';
import { CapacityService } from './capacity/index.ts';
import {
  EvictionGuard,
  evictionPolicyError,
  readRedisSettings,
  SAFE_EVICTION_POLICY,
} from './runtime/redis-settings.ts';

/**
 * Says at start what the Redis holding accepted events is set to: an eviction policy that
 * can delete queued jobs (the process stays unready until it is fixed), and no append-only
 * file (a Redis restart loses what was not yet snapshotted). See docs/operations.md.
 */
async function reportRedisSettings(redis: RedisConnection, logger: Logger): Promise<void> {
  try {
    const s = await Promise.race([
      // A fail-fast connection refuses commands until it is connected.
      (redis.status === 'ready' ? Promise.resolve() : once(redis, 'ready')).then(() =>
        readRedisSettings(redis),
      ),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('no answer within 5000 ms')), 5000).unref(),
      ),
    ]);
    if (s.evictionPolicy === undefined) {
      logger.warn('cannot read the Redis maxmemory-policy (CONFIG and INFO refused); it must be noeviction');
    } else if (s.evictionPolicy !== SAFE_EVICTION_POLICY) {
      logger.error({ maxmemoryPolicy: s.evictionPolicy }, evictionPolicyError(s.evictionPolicy).message);
    }
    if (s.appendOnly === false) {
      logger.warn(
        { appendonly: 'no' },
        'Redis holds accepted events without an append-only file: a Redis restart loses the events queued since its last snapshot; set appendonly yes',
      );
    }
  } catch (err) {
    logger.warn({ err: err instanceof Error ? err.message : String(err) }, 'cannot read the Redis settings');
  }
}
import type { ChangeHub } from './api/index.ts';

export interface ServiceOptions {
  config: Readonly<Config>;
  /** Serve the REST API. */
  api: boolean;
  /** Consume the queue. */
  worker: boolean;
  logger?: Logger;
  /** Start even if stored rows use states or events the machines no longer have. */
  acceptRemoved?: boolean;
}

/** A running promosync process: API, workers or both. */
export interface Service {
  /** The API's port, when it serves one. */
  port: number | undefined;
  /** The operations port of a worker-only process, when METRICS_PORT is set. */
  metricsPort: number | undefined;
  db: Database;
  registry: MachineRegistry;
  metrics: Metrics;
  logger: Logger;
  /** The watch streams of an API process. */
  changes: ChangeHub | undefined;
  /** The verified API keys an API process caches. */
  keys: KeyCache | undefined;
  close(): Promise<void>;
}

/** Creates the process logger: JSON lines on stdout at the configured level. */
export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'promosync' } });
}

/**
 * Wires and starts a process. Machine ranks are checked and stored (re-ranking rows if they
 * changed) before any event is applied.
 */
export async function startService(opts: ServiceOptions): Promise<Service> {
  const { config } = opts;
  const logger = opts.logger ?? createLogger(config.logLevel);
  if (!config.databaseUrl) throw new Error('DATABASE_URL is not set');
  const registry = MachineRegistry.from(machines, false, {
    maxFields: config.eventMaxFields,
    maxFieldNameLength: config.eventMaxFieldNameLength,
    entity: { maxFields: config.entityMaxFields, maxFieldBytes: config.entityMaxFieldBytes },
  });
  const metrics = new Metrics({ machines: registry.list().map((m) => m.analysis.name) });
  const db = openDatabase(config.databaseUrl, config.dbPoolSize, (err) =>
    logger.warn({ err: err.message }, 'database connection lost'),
  );
  const closers: Array<() => Promise<void>> = [() => db.close()];
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      for (const c of [...closers].reverse())
        await c().catch((err) => logger.error({ err }, 'error while closing'));
    })());
  try {
    const sync = await syncMachineDefs(db.pool, registry, { acceptRemoved: opts.acceptRemoved ?? false });
    for (const s of sync.filter((x) => x.status !== 'unchanged')) logger.info(s, 'machine definition stored');

    const connections: RedisConnection[] = [];
    closers.push(async () => {
      for (const c of connections) c.disconnect();
    });
    let port: number | undefined;
    let metricsPort: number | undefined;
    let hub: ChangeHub | undefined;
    let keyCache: KeyCache | undefined;

    // A worker reports unready when its role cannot write what it applies.
    const writable: Record<string, () => Promise<void>> = opts.worker
      ? { postgresWrite: () => assertWritable(db.pool) }
      : {};

    if (opts.worker) {
      const connection = createRedis(redisTargetOf(config));
      connections.push(connection);
      if (!opts.api) await reportRedisSettings(connection, logger);
      const queueNames = config.workerPartitions.map((p) =>
        queueNameOf(config.queueName, p, config.queuePartitions),
      );
      const worker = new EventWorker({
        connection,
        queueNames,
        registry,
        applier: new Applier(db.pool, registry, logger, (reason) => metrics.applyRetries.inc({ reason })),
        logger,
        metrics,
        concurrency: config.workerConcurrency,
        batchMaxEvents: config.batchMaxEvents,
        batchFlushMs: config.batchFlushMs,
        lanes: config.batchLanes,
        partitions: config.queuePartitions,
        lockDurationMs: config.workerLockDurationMs,
        stalledIntervalMs: config.workerStalledIntervalMs,
        maxStalledCount: config.workerMaxStalledCount,
      });
      await worker.start();
      closers.push(() => worker.close());
      logger.info(
        { queue: config.queueName, queues: queueNames, concurrency: config.workerConcurrency },
        'worker started',
      );
      if (!opts.api && config.metricsPort !== undefined) {
        // Loaded only by processes that serve HTTP: a plain worker does without Express.
        const { ApiServer, createOpsApp } = await import('./api/index.ts');
        const eviction = new EvictionGuard(connection);
        const ops = new ApiServer(
          createOpsApp({
            metrics,
            logger,
            probes: {
              postgres: async () => {
                await db.pool.query('SELECT 1');
              },
              redis: () => pingRedis(connection),
              redisEvictionPolicy: () => eviction.check(true),
              ...writable,
            },
          }),
        );
        metricsPort = await ops.start(config.metricsPort, config.host);
        closers.push(() => ops.close());
        logger.info({ port: metricsPort }, 'worker metrics listening');
      }
    }

    if (opts.api) {
      const producer = createRedis(redisTargetOf(config), { failFast: true });
      connections.push(producer);
      await reportRedisSettings(producer, logger);
      const eviction = new EvictionGuard(producer);
      const queue = new EventQueue({
        connection: producer,
        name: config.queueName,
        partitions: config.queuePartitions,
        attempts: config.jobAttempts,
        backoffMs: config.jobBackoffMs,
      });
      closers.push(() => queue.close());
      const capacity = new CapacityService({
        pool: db.pool,
        logger,
        metrics: new CapacityMetrics(metrics.registry),
        maxBatch: config.capacityMaxBatch,
        maxStatements: config.capacityMaxStatements,
        sweepIntervalMs: config.capacitySweepMs,
      });
      capacity.start();
      closers.push(() => capacity.close());
      const keys = await KeyCache.open(db, config, logger);
      closers.push(() => keys.close());
      keyCache = keys;
      const { ApiServer, ChangeHub, createListener } = await import('./api/index.ts');
      const changes = new ChangeHub({
        prisma: db.prisma,
        databaseUrl: config.databaseUrl,
        logger,
        metrics,
        pollMs: config.watchPollMs,
        heartbeatMs: config.watchHeartbeatMs,
        maxBufferedBytes: config.watchMaxBufferedBytes,
        stallTimeoutMs: config.watchStallTimeoutMs,
      });
      await changes.start();
      closers.push(() => changes.close());
      hub = changes;
      const listener = createListener({
        changes,
        capacity,
        registry,
        queue,
        prisma: db.prisma,
        verify: (key) => keys.verify(key),
        logger,
        metrics,
        rateLimit: {
          redis: producer,
          perSecond: config.rateLimitPerSecond,
          burst: config.rateLimitBurst,
          prefix: `promosync:rl:${config.queueName}`,
          logger,
        },
        probes: {
          postgres: async () => {
            await db.pool.query('SELECT 1');
          },
          redis: () => pingRedis(producer),
          redisEvictionPolicy: () => eviction.check(true),
          ...writable,
        },
        acceptance: () => eviction.check(),
      });
      const server = new ApiServer(listener);
      port = await server.start(config.port, config.host);
      // Open streams end first, so the server has no long request to wait for.
      closers.push(async () => {
        await changes.close();
        await server.close();
      });
      logger.info({ port, host: config.host }, 'API listening');
    }
    return { port, metricsPort, db, registry, metrics, logger, changes: hub, keys: keyCache, close };
  } catch (err) {
    await close();
    throw err;
  }
}
