import pg from 'pg';
import { afterAll, beforeAll, onTestFailed } from 'vitest';
import { machines } from '../../machines/index.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import { openDatabase } from '../../src/store/db.ts';
import { createKey } from '../../src/store/keys.ts';
import { freshDatabase, uniqueQueueName } from './db.ts';
import { TcpProxy } from './tcp-proxy.ts';
import { obliterate, settleFaultLoad, startFaultLoad, type SettledLoad } from './load.ts';
import { startApi, startWorker, type Child, type ServiceEnv } from './processes.ts';

/** The processes of {@link FaultStage.startServices}. */
export interface StageServices {
  api: { child: Child; url: string };
  /** The running worker of each slot. */
  workers: Child[];
  /** Starts worker `i` (again), into its slot. */
  spawnWorker(i: number): Promise<void>;
}

/** What every fault test starts from: its own database, queue and producer key. */
export interface FaultStage {
  databaseUrl: string;
  /**
   * With `postgresProxy`: a proxy in front of the database (up, closed with the stage), and the
   * database URL through it.
   */
  viaProxy?: { proxy: TcpProxy; databaseUrl: string };
  /** A pool straight to the database (never through a proxy), for the checks. */
  pool: pg.Pool;
  registry: MachineRegistry;
  queueName: string;
  /** The producer key's source: what its events are recorded under. */
  source: string;
  key: string;
  /** Environment for promosync children, given the Redis and database URLs they should use. */
  env(overrides: {
    REDIS_URL: string;
    DATABASE_URL?: string;
    [name: string]: string | undefined;
  }): ServiceEnv;
  /** Children to stop (SIGTERM, then SIGKILL) when the stage closes. */
  children: Set<Child>;
  /**
   * Registers a child: stopped at close, its output printed if the running test fails. Pass it
   * as `onSpawn` to the start functions so a child that never gets ready is stopped too.
   */
  track<T extends Child>(child: T): T;
  /** Starts one API process and `workers` (2 when absent) worker processes with `env`, all tracked. */
  startServices(env: ServiceEnv, workers?: number): Promise<StageServices>;
  /**
   * The scenario's load ({@link startFaultLoad}) against the API at `apiUrl`, with the stage's
   * key: at least `minEvents` events, {@link FAULT_LOAD_EVENTS} when absent.
   */
  startLoad(
    apiUrl: string,
    o: { seed: number; prefix: string; producerSeed: number; minEvents?: number },
  ): ReturnType<typeof startFaultLoad>;
  /** {@link settleFaultLoad} of a load of {@link startLoad}, its queue on `redisUrl`. */
  settle(run: ReturnType<typeof startFaultLoad>, redisUrl: string): Promise<SettledLoad>;
  close(): Promise<void>;
}

/**
 * Settings that make a killed worker's jobs come back within seconds (BullMQ's defaults
 * are 30 s each); generous rate limit so the producer is not throttled by the test itself.
 */
export const FAST_RECOVERY = {
  WORKER_LOCK_DURATION_MS: '4000',
  WORKER_STALLED_INTERVAL_MS: '2000',
  RATE_LIMIT_PER_SECOND: '2000',
};

/** How many events a fault scenario's load holds at least, unless it says otherwise. */
export const FAULT_LOAD_EVENTS = 22_000;

export async function prepareStage(
  prefix: string,
  opts: { postgresProxy?: boolean } = {},
): Promise<FaultStage> {
  const db = await freshDatabase();
  let viaProxy: FaultStage['viaProxy'];
  if (opts.postgresProxy) {
    const proxy = new TcpProxy({ host: '127.0.0.1', port: 5432 });
    const url = new URL(db.url);
    url.host = `127.0.0.1:${await proxy.up()}`;
    viaProxy = { proxy, databaseUrl: url.toString() };
  }
  const pool = new pg.Pool({ connectionString: db.url, max: 4 });
  const source = `${prefix}-src`;
  const store = openDatabase(db.url, 1);
  const { key } = await createKey(store.prisma, { role: 'producer', source });
  await store.close();
  const queueName = uniqueQueueName(prefix);
  const children = new Set<Child>();
  const started: Child[] = [];
  let watching = false;
  const registry = MachineRegistry.from(machines);
  const stage: FaultStage = {
    databaseUrl: db.url,
    viaProxy,
    pool,
    registry,
    queueName,
    source,
    key,
    children,
    track(child) {
      children.add(child);
      if (started.includes(child)) return child;
      started.push(child);
      if (!watching) {
        watching = true;
        onTestFailed(() => {
          for (const c of started) console.log(`--- ${c.name} (running: ${c.running}) ---\n${c.tail(30)}`);
        });
      }
      return child;
    },
    env(overrides) {
      const env: ServiceEnv = {
        DATABASE_URL: db.url,
        QUEUE_NAME: queueName,
        ...FAST_RECOVERY,
        REDIS_URL: overrides.REDIS_URL,
      };
      for (const [k, v] of Object.entries(overrides)) if (v !== undefined) env[k] = v;
      return env;
    },
    async startServices(env, workers = 2) {
      const api = await startApi('api', env, stage.track);
      const running: Child[] = [];
      const spawnWorker = async (i: number): Promise<void> => {
        running[i] = await startWorker(`worker-${i}`, env, stage.track);
      };
      await Promise.all(Array.from({ length: workers }, (_, i) => spawnWorker(i)));
      return { api, workers: running, spawnWorker };
    },
    startLoad(apiUrl, o) {
      return startFaultLoad(registry, { url: apiUrl, key }, { minEvents: FAULT_LOAD_EVENTS, ...o });
    },
    settle(run, redisUrl) {
      return settleFaultLoad(run, { redisUrl, queueName, pool, registry, source });
    },
    async close() {
      await Promise.all([...children].map((c) => c.stop(10_000)));
      await viaProxy?.proxy.close();
      await pool.end();
      await db.drop();
    },
  };
  return stage;
}

/**
 * The stage of the enclosing describe block: prepared before its tests and closed after them
 * (after the block's own afterAll hooks), its queue then removed from the Redis at `obliterateOn`
 * when given. The returned object is filled in by that beforeAll hook: use it in tests and hooks.
 */
export function useFaultStage(
  prefix: string,
  opts: { postgresProxy?: boolean; obliterateOn?: string } = {},
): FaultStage {
  const stage = {} as FaultStage;
  beforeAll(async () => {
    Object.assign(stage, await prepareStage(prefix, opts));
  });
  afterAll(async () => {
    if (!stage.close) return;
    await stage.close();
    if (opts.obliterateOn) await obliterate(opts.obliterateOn, stage.queueName);
  });
  return stage;
}
