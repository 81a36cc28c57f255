import { z } from 'zod';
import { parsePartitionList } from './queue/partitions.ts';
import { parseClusterNodes, type RedisTarget } from './queue/redis.ts';

const int = (def: number, min: number, max: number) => z.coerce.number().int().min(min).max(max).default(def);

/**
 * The defaults of the queue, worker and batch settings, stated once: the environment schema
 * below and the options of EventQueue, EventWorker and Batcher both take them from here, and
 * the README's configuration table lists the same values.
 */
export const DEFAULTS = Object.freeze({
  /** `QUEUE_NAME`: the BullMQ queue producers and workers share. */
  queueName: 'status-events',
  /** `WORKER_CONCURRENCY`: jobs one worker process handles at once. */
  workerConcurrency: 64,
  /** `BATCH_MAX_EVENTS`: flush a batch at this many events. */
  batchMaxEvents: 2000,
  /** `BATCH_FLUSH_MS`: …or this many ms after its first event. */
  batchFlushMs: 5,
  /** `BATCH_LANES`: apply lanes per worker process. */
  batchLanes: 2,
  /**
   * Apply statements in flight per lane (not configurable): two statements creating the same
   * new entity make one abort and run again, which on shuffled input cost more than the overlap
   * gained; one at a time measured twice the throughput of two (docs/performance.md).
   */
  batchMaxInFlight: 1,
  /** `JOB_ATTEMPTS`: attempts of each job. */
  jobAttempts: 25,
  /** `JOB_BACKOFF_MS`: first backoff delay, doubling each attempt. */
  jobBackoffMs: 500,
  /** `WORKER_LOCK_DURATION_MS`: a worker's lock on a job, renewed at half that. */
  workerLockDurationMs: 30_000,
  /** `WORKER_STALLED_INTERVAL_MS`: how often to look for jobs whose worker died. */
  workerStalledIntervalMs: 30_000,
  /** `WORKER_MAX_STALLED_COUNT`: times a job may stall before it is failed. */
  workerMaxStalledCount: 10,
  /** Longest delay between two tries of a job while the database is unreachable (not configurable). */
  maxRetryDelayMs: 30_000,
  /** `EVENT_MAX_FIELDS`: fields one event's `data` may have. */
  eventMaxFields: 100,
  /** `EVENT_MAX_FIELD_NAME_LENGTH`: the longest `data` field name, in characters (at most 128). */
  eventMaxFieldNameLength: 64,
  /** `ENTITY_MAX_FIELDS`: fields one entity may have (at least `EVENT_MAX_FIELDS`). */
  entityMaxFields: 1000,
  /** `ENTITY_MAX_FIELD_BYTES`: the size of one entity's fields together (at least 16 KiB, one event's `data`). */
  entityMaxFieldBytes: 262_144,
  /** `QUEUE_PARTITIONS`: queues the events are spread over by entity (1: the one queue `QUEUE_NAME`). */
  queuePartitions: 1,
  /** `KEY_CACHE_TTL_MS`: longest an API process trusts a verified key without reading it again (0: no cache). */
  keyCacheTtlMs: 10_000,
  /**
   * `CAPACITY_MAX_STATEMENTS`: admission statements one API process runs at once at most. A
   * second starts only beside a statement that takes longer than usual (a lock wait, a slow
   * commit), so that it does not hold up the other promotions; otherwise one statement at a time
   * makes the largest statements (docs/capacity.md#group-commit-on-the-hot-row).
   */
  capacityMaxStatements: 2,
});

const schema = z.object({
  DATABASE_URL: z.string().url().optional(),
  REDIS_URL: z.string().url().optional(),
  PORT: int(3000, 0, 65535),
  METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
  HOST: z.string().default('0.0.0.0'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  QUEUE_NAME: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,64}$/)
    .default(DEFAULTS.queueName),
  WORKER_CONCURRENCY: int(DEFAULTS.workerConcurrency, 1, 10_000),
  BATCH_MAX_EVENTS: int(DEFAULTS.batchMaxEvents, 1, 100_000),
  BATCH_FLUSH_MS: int(DEFAULTS.batchFlushMs, 0, 10_000),
  BATCH_LANES: int(DEFAULTS.batchLanes, 1, 64),
  DB_POOL_SIZE: int(10, 1, 1000),
  JOB_ATTEMPTS: int(DEFAULTS.jobAttempts, 1, 1000),
  JOB_BACKOFF_MS: int(DEFAULTS.jobBackoffMs, 1, 3_600_000),
  DATA_DIR: z.string().default('.data'),
  WORKER_LOCK_DURATION_MS: int(DEFAULTS.workerLockDurationMs, 1000, 3_600_000),
  WORKER_STALLED_INTERVAL_MS: int(DEFAULTS.workerStalledIntervalMs, 500, 3_600_000),
  WORKER_MAX_STALLED_COUNT: int(DEFAULTS.workerMaxStalledCount, 0, 1000),
  EVENT_MAX_FIELDS: int(DEFAULTS.eventMaxFields, 1, 10_000),
  EVENT_MAX_FIELD_NAME_LENGTH: int(DEFAULTS.eventMaxFieldNameLength, 1, 128),
  ENTITY_MAX_FIELDS: int(DEFAULTS.entityMaxFields, 1, 1_000_000),
  ENTITY_MAX_FIELD_BYTES: int(DEFAULTS.entityMaxFieldBytes, 16_384, 1_073_741_824),
  RATE_LIMIT_PER_SECOND: int(200, 0, 1_000_000),
  RATE_LIMIT_BURST: int(1000, 0, 10_000_000),
  PROMOSYNC_URL: z.string().url().optional(),
  PROMOSYNC_KEY: z.string().optional(),
  STARTUP_WAIT_MS: int(60_000, 0, 3_600_000),
  WATCH_POLL_MS: int(1000, 50, 60_000),
  WATCH_HEARTBEAT_MS: int(15_000, 100, 600_000),
  WATCH_MAX_BUFFERED_BYTES: int(1024 * 1024, 65_536, 1024 * 1024 * 1024),
  WATCH_STALL_TIMEOUT_MS: int(30_000, 100, 3_600_000),
  CAPACITY_MAX_BATCH: int(500, 1, 10_000),
  CAPACITY_MAX_STATEMENTS: int(DEFAULTS.capacityMaxStatements, 1, 1000),
  CAPACITY_SWEEP_MS: int(250, 10, 60_000),
  KEY_CACHE_TTL_MS: int(DEFAULTS.keyCacheTtlMs, 0, 3_600_000),
  QUEUE_PARTITIONS: int(DEFAULTS.queuePartitions, 1, 1024),
  WORKER_PARTITIONS: z
    .string()
    .regex(/^\s*\d+(-\d+)?(\s*,\s*\d+(-\d+)?)*\s*$/, 'a list of partitions and ranges, like 0,2-3')
    .optional(),
  REDIS_CLUSTER_NODES: z.string().optional(),
});

/** promosync's configuration, read from the environment once (see the README's table). */
export interface Config {
  /** PostgreSQL URL; unset means the embedded database under `dataDir`. */
  databaseUrl: string | undefined;
  /** Redis URL; unset means redis://127.0.0.1:6379, or a private redis-server for `start`. */
  redisUrl: string | undefined;
  port: number;
  /** worker processes: serve /healthz, /readyz and /metrics on this port; unset means none. */
  metricsPort: number | undefined;
  host: string;
  logLevel: string;
  queueName: string;
  /** Jobs one worker process handles at once: the pool the batcher folds into one apply. */
  workerConcurrency: number;
  /** Flush a batch once it holds this many events. */
  batchMaxEvents: number;
  /** …or this many milliseconds after its first event arrived. */
  batchFlushMs: number;
  /** Apply lanes per worker process: entities are split between them by hash. */
  batchLanes: number;
  dbPoolSize: number;
  /** Attempts and first backoff delay of jobs the API enqueues. */
  jobAttempts: number;
  jobBackoffMs: number;
  dataDir: string;
  /** How long a worker's lock on a job lasts without renewal; a dead worker's jobs wait this long. */
  workerLockDurationMs: number;
  /** How often workers look for jobs whose worker died (stalled jobs) and queue them again. */
  workerStalledIntervalMs: number;
  /** Times a job may stall (its worker died) before it is failed; re-running one is harmless. */
  workerMaxStalledCount: number;
  /** Fields one event's `data` may have; more is bad input (docs/design.md#attribute-limits). */
  eventMaxFields: number;
  /** The longest `data` field name, in characters. */
  eventMaxFieldNameLength: number;
  /** Fields one entity may have; an event that would pass it is rejected (docs/design.md#attribute-limits). */
  entityMaxFields: number;
  /** The size of one entity's fields together, in bytes; an event that would pass it is rejected. */
  entityMaxFieldBytes: number;
  /** Requests per second one API key may make, across all API processes; 0 turns the limit off. */
  rateLimitPerSecond: number;
  /** Requests a key may make above that rate in any 10 s window. */
  rateLimitBurst: number;
  /** Client commands (`send`): the API to talk to; unset means the running `start`'s, or http://127.0.0.1:3000. */
  apiUrl: string | undefined;
  /** Client commands (`send`): the API key to use. */
  apiKey: string | undefined;
  /** `api`, `worker`, `start`, `migrate`: how long to wait for Postgres and Redis to answer at start. */
  startupWaitMs: number;
  /** Watch streams: how often changes are read without a notification (the horizon moves without one). */
  watchPollMs: number;
  /** Watch streams: how often an idle stream gets a heartbeat comment or a bookmark. */
  watchHeartbeatMs: number;
  /** Watch streams: bytes a client may leave unread before the server stops writing to it (at least 64 KiB). */
  watchMaxBufferedBytes: number;
  /** Watch streams: how long a client may leave those unread before it is told to resync and disconnected. */
  watchStallTimeoutMs: number;
  /** Reservation requests one admission statement takes at most (of one promotion or several). */
  capacityMaxBatch: number;
  /** Admission statements one API process runs at once (each on its own pool connection). */
  capacityMaxStatements: number;
  /** Pause between sweeps of expired holds, in milliseconds. */
  capacitySweepMs: number;
  /** API: how long a verified key is trusted without reading it again (revocations are notified at once); 0 turns the cache off. */
  keyCacheTtlMs: number;
  /** Queues the events are spread over by a hash of their entity (docs/operations.md, partitions). */
  queuePartitions: number;
  /** The partitions this process's worker consumes: all unless WORKER_PARTITIONS names some. */
  workerPartitions: readonly number[];
  /** Seed nodes of a Redis Cluster; when set, every Redis connection is a cluster connection. */
  redisClusterNodes: readonly string[] | undefined;
}

/**
 * Parses the environment. The only place that reads `process.env`.
 * @throws Error naming each bad variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    throw new Error(`invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  const problems: string[] = [];
  let workerPartitions = Array.from({ length: e.QUEUE_PARTITIONS }, (_, p) => p);
  if (e.WORKER_PARTITIONS !== undefined) {
    try {
      workerPartitions = parsePartitionList(e.WORKER_PARTITIONS, e.QUEUE_PARTITIONS);
    } catch (err) {
      problems.push(`WORKER_PARTITIONS: ${(err as Error).message}`);
    }
  }
  let redisClusterNodes: string[] | undefined;
  if (e.REDIS_CLUSTER_NODES !== undefined) {
    try {
      parseClusterNodes(e.REDIS_CLUSTER_NODES);
      redisClusterNodes = e.REDIS_CLUSTER_NODES.split(',')
        .map((x) => x.trim())
        .filter(Boolean);
    } catch (err) {
      problems.push(`REDIS_CLUSTER_NODES: ${(err as Error).message}`);
    }
    // One queue is one hash slot: on a cluster the names must carry hash tags, which only
    // partitioned queue names do.
    if (e.QUEUE_PARTITIONS < 2) {
      problems.push(
        'QUEUE_PARTITIONS: a Redis Cluster needs at least 2 partitions (one queue lives on one node)',
      );
    }
  }
  if (e.ENTITY_MAX_FIELDS < e.EVENT_MAX_FIELDS) {
    problems.push('ENTITY_MAX_FIELDS: must be at least EVENT_MAX_FIELDS (one event must fit one entity)');
  }
  if (problems.length > 0) throw new Error(`invalid configuration:\n${problems.join('\n')}`);
  return Object.freeze({
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    port: e.PORT,
    metricsPort: e.METRICS_PORT,
    host: e.HOST,
    logLevel: e.LOG_LEVEL,
    queueName: e.QUEUE_NAME,
    workerConcurrency: e.WORKER_CONCURRENCY,
    batchMaxEvents: e.BATCH_MAX_EVENTS,
    batchFlushMs: e.BATCH_FLUSH_MS,
    batchLanes: e.BATCH_LANES,
    dbPoolSize: e.DB_POOL_SIZE,
    jobAttempts: e.JOB_ATTEMPTS,
    jobBackoffMs: e.JOB_BACKOFF_MS,
    dataDir: e.DATA_DIR,
    workerLockDurationMs: e.WORKER_LOCK_DURATION_MS,
    workerStalledIntervalMs: e.WORKER_STALLED_INTERVAL_MS,
    workerMaxStalledCount: e.WORKER_MAX_STALLED_COUNT,
    eventMaxFields: e.EVENT_MAX_FIELDS,
    eventMaxFieldNameLength: e.EVENT_MAX_FIELD_NAME_LENGTH,
    entityMaxFields: e.ENTITY_MAX_FIELDS,
    entityMaxFieldBytes: e.ENTITY_MAX_FIELD_BYTES,
    rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
    rateLimitBurst: e.RATE_LIMIT_BURST,
    apiUrl: e.PROMOSYNC_URL,
    apiKey: e.PROMOSYNC_KEY,
    startupWaitMs: e.STARTUP_WAIT_MS,
    watchPollMs: e.WATCH_POLL_MS,
    watchHeartbeatMs: e.WATCH_HEARTBEAT_MS,
    watchMaxBufferedBytes: e.WATCH_MAX_BUFFERED_BYTES,
    watchStallTimeoutMs: e.WATCH_STALL_TIMEOUT_MS,
    capacityMaxBatch: e.CAPACITY_MAX_BATCH,
    capacityMaxStatements: e.CAPACITY_MAX_STATEMENTS,
    capacitySweepMs: e.CAPACITY_SWEEP_MS,
    keyCacheTtlMs: e.KEY_CACHE_TTL_MS,
    queuePartitions: e.QUEUE_PARTITIONS,
    workerPartitions: Object.freeze(workerPartitions),
    redisClusterNodes: redisClusterNodes && Object.freeze(redisClusterNodes),
  });
}

/** Where this configuration's Redis is: the cluster's seed nodes when set, else the URL. */
export function redisTargetOf(
  config: Pick<Config, 'redisUrl' | 'redisClusterNodes'>,
): RedisTarget | undefined {
  return config.redisClusterNodes ? { cluster: [...config.redisClusterNodes] } : config.redisUrl;
}
