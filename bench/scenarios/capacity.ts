import { Redis } from 'ioredis';
import pg from 'pg';
import { createKey, openDatabase, setLimits } from '../../src/store/index.ts';
import type { BenchContext, ScenarioResult } from '../context.ts';
import { CpuMeter, percentile } from '../cpu.ts';
import { createDatabase, uniqueQueueName } from '../db.ts';
import { spawnBenchServer, type Child } from '../proc.ts';
import { promosyncEnv, stopAll } from './common.ts';
import { Connection, ConnectionPool } from '../http-client.ts';

/** Concurrent HTTP clients of the closed-loop runs, and seconds each run measures. */
const CLIENTS = 200;
const SECONDS = 10;
const PROMOTIONS = 100;

interface Target {
  port: number;
  key: string;
}

const headers = (t: Target) => ({
  authorization: `Bearer ${t.key}`,
  'content-type': 'application/json',
});

let orderSeq = 0;
const body = (): string => JSON.stringify({ orderId: `o-${orderSeq++}`, units: 1 });

/** Closed loop: `clients` keep one request each in flight for `seconds`; every request a new order. */
async function closedLoop(
  t: Target,
  paths: (client: number) => string,
  seconds: number,
): Promise<{ granted: number; seconds: number; latencies: number[]; other: number }> {
  const connections = Array.from({ length: CLIENTS }, () => new Connection('127.0.0.1', t.port, headers(t)));
  const latencies: number[] = [];
  let granted = 0;
  let other = 0;
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  try {
    await Promise.all(
      connections.map(async (connection, c) => {
        while (performance.now() < until) {
          const r = await connection.post(paths(c), body());
          if (r.status === 201) {
            granted += 1;
            latencies.push(r.ms);
          } else other += 1;
        }
      }),
    );
  } finally {
    for (const c of connections) c.close();
  }
  return { granted, seconds: (performance.now() - t0) / 1000, latencies, other };
}

/**
 * Open loop at a fixed rate over `CLIENTS` connections opened (and used once) before the clock
 * starts, as a fixed-connection load generator does: requests are due on schedule whatever the
 * answers do, wait for a free connection when all are busy, and each latency runs from the time
 * the request was due (so time spent waiting behind a slow answer counts, not only the answer).
 */
async function openLoop(t: Target, path: string, rate: number, seconds: number): Promise<number[]> {
  const pool = new ConnectionPool('127.0.0.1', t.port, headers(t), CLIENTS);
  const latencies: number[] = [];
  const pending: Array<Promise<void>> = [];
  const total = Math.round(rate * seconds);
  try {
    // A connection's first request costs the server more than the next ones: not measured.
    await pool.open(CLIENTS);
    await Promise.all(Array.from({ length: CLIENTS }, () => pool.post(path, body())));
    const t0 = performance.now();
    for (let i = 0; i < total; i++) {
      const due = t0 + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      pending.push(
        pool.post(path, body()).then((r) => {
          if (r.status === 201) latencies.push(performance.now() - due);
        }),
      );
    }
    await Promise.all(pending);
  } finally {
    pool.close();
  }
  return latencies;
}

const latency = (l: number[]) => ({
  p50: percentile(l, 50),
  p99: percentile(l, 99),
  max: percentile(l, 100),
  samples: l.length,
});

/**
 * Capacity on the checkout path: reservations per second on one hot promotion through
 * promosync's endpoint and through a reference endpoint (one conditional UPDATE per request) in
 * the same process; latency at half of promosync's peak; 100 promotions at once; and how long
 * after expiresAt expired holds are recorded.
 */
export async function capacityScenarios(ctx: BenchContext): Promise<ScenarioResult[]> {
  const s = ctx.settings;
  const db = await createDatabase(s.serverUrl);
  const store = openDatabase(db.url, 4);
  const children: Child[] = [];
  let redis: Redis | undefined;
  const results: ScenarioResult[] = [];
  const result = (id: string, name: string): ScenarioResult => ({
    id,
    name,
    count: 0,
    seconds: 0,
    rate: 0,
    unit: 'reservations/s',
    notes: [],
  });
  try {
    const { key } = await createKey(store.prisma, { role: 'checkout' });
    const ids = ['hot', 'exp', ...Array.from({ length: PROMOTIONS }, (_, i) => `p-${i}`)];
    await store.pool.query(
      `INSERT INTO entity (machine, entity_id, status, last_event, key)
       SELECT 'promotion', id, 'ACTIVATED', 'activate', 1 FROM unnest($1::text[]) AS id`,
      [ids],
    );
    for (const id of ids) await setLimits(store.pool, id, { total: 1_000_000_000 });
    await store.pool.query(
      'CREATE TABLE bench_capacity (id TEXT PRIMARY KEY, used BIGINT NOT NULL, max BIGINT NOT NULL)',
    );
    await store.pool.query("INSERT INTO bench_capacity VALUES ('hot', 0, 1000000000)");

    const env = promosyncEnv(s, db.url, uniqueQueueName('capacity'), s.restConcurrency);
    const server = await spawnBenchServer('capacity server', './capacity-server.ts', env, s.nodeArgs);
    children.push(server);
    const t: Target = { port: server.port!, key };
    const hot = () => '/v1/promotions/hot/reservations';
    const ref = () => '/reference/hot/reservations';

    ctx.log('capacity: warm-up');
    await closedLoop(t, hot, 2);
    await closedLoop(t, ref, 2);

    // Redis serves only the in-memory design's phase; its CPU is counted in every phase.
    redis = new Redis(s.redisUrl, { lazyConnect: true });
    await redis.connect();
    const cpu = (): CpuMeter =>
      new CpuMeter(s.serverUrl, db.name, redis, () => ({ [server.name]: server.pid }));
    // Each phase starts from a vacuumed table: the previous phase's 100k+ new reservations
    // otherwise bring autovacuum into the middle of the next one, on the same two cores.
    const settle = () => store.pool.query('VACUUM ANALYZE reservation, capacity, bench_capacity');
    const measure = async (
      id: string,
      name: string,
      paths: (c: number) => string,
    ): Promise<ScenarioResult> => {
      const r = result(id, name);
      await settle();
      const meter = cpu();
      await meter.start();
      const run = await closedLoop(t, paths, SECONDS);
      r.cpu = await meter.stop();
      r.count = run.granted;
      r.seconds = run.seconds;
      r.rate = run.granted / run.seconds;
      r.latency = latency(run.latencies);
      r.notes.push(
        `${CLIENTS} keep-alive clients, closed loop, ${SECONDS} s${run.other ? `; ${run.other} answers other than 201` : ''}`,
      );
      ctx.log(`${name}: ${Math.round(r.rate)} reservations/s`);
      return r;
    };
    const promosync = await measure('capacity-promosync', 'Reservations, one hot promotion (promosync)', hot);
    const reference = await measure(
      'capacity-reference',
      'Reservations, one hot promotion (reference: UPDATE per request)',
      ref,
    );
    results.push(promosync, reference);

    // The in-memory design through the same HTTP stack: a Lua script per request on one Redis
    // hash (bench/capacity-server.ts), with nothing durable behind it.
    const luaId = `hot-${db.name.slice(-10)}`;
    const luaKey = `bench:cap:{${luaId}}`;
    const luaPath = () => `/lua/${luaId}/reservations`;
    try {
      await redis.hset(luaKey, { max: 1_000_000_000, used: 0 });
      await closedLoop(t, luaPath, 2);
      const lua = await measure(
        'capacity-lua',
        'Reservations, one hot promotion (in memory: Redis Lua script per request)',
        luaPath,
      );
      lua.notes.push('no durability: the shared Redis, without persistence; for its speed only');
      results.push(lua);
    } finally {
      await redis.unlink(luaKey);
    }

    const half = result('capacity-half-peak', 'Reservations at half of promosync’s peak, open loop');
    half.medianBy = 'p99';
    const rate = Math.max(1, Math.round(promosync.rate / 2));
    await settle();
    const lat = await openLoop(t, hot(), rate, 8);
    half.count = lat.length;
    half.seconds = 8;
    half.rate = lat.length / 8;
    half.latency = latency(lat);
    half.notes.push(
      `${rate} requests/s scheduled for 8 s over ${CLIENTS} connections; latency from the time each was due`,
    );
    ctx.log(`${half.name}: p50 ${half.latency.p50.toFixed(1)} ms, p99 ${half.latency.p99.toFixed(1)} ms`);
    results.push(half);

    results.push(
      await measure(
        'capacity-100',
        `Reservations over ${PROMOTIONS} promotions at once (promosync)`,
        (c) => `/v1/promotions/p-${c % PROMOTIONS}/reservations`,
      ),
    );

    // Expiry: holds of one second, then how long after expiresAt each was recorded expired.
    const exp = result('capacity-expiry', 'Hold expiry: recorded after expiresAt');
    exp.medianBy = 'p99';
    const expiring = new ConnectionPool('127.0.0.1', t.port, headers(t));
    for (let i = 0; i < 2000; i += 50) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          expiring.post(
            '/v1/promotions/exp/reservations',
            JSON.stringify({ orderId: `e-${i + j}`, holdSeconds: 1 }),
          ),
        ),
      );
    }
    expiring.close();
    await new Promise((r) => setTimeout(r, 3000));
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    const { rows } = await c.query<{ ms: number; status: string }>(
      `SELECT status, extract(epoch FROM (resolved_at - expires_at)) * 1000 AS ms
         FROM reservation WHERE promotion_id = 'exp'`,
    );
    await c.end();
    const delays = rows.filter((r) => r.status === 'expired').map((r) => Number(r.ms));
    exp.count = delays.length;
    exp.seconds = 0;
    exp.rate = NaN;
    exp.latency = latency(delays);
    exp.notes.push(
      `${delays.length} of ${rows.length} one-second holds recorded expired within 3 s; sweeper every 250 ms`,
    );
    if (delays.length !== rows.length)
      exp.error = `${rows.length - delays.length} holds not expired after 3 s`;
    ctx.log(`${exp.name}: p50 ${exp.latency.p50.toFixed(0)} ms, p99 ${exp.latency.p99.toFixed(0)} ms`);
    results.push(exp);
  } catch (err) {
    const r = result('capacity-promosync', 'Reservations, one hot promotion (promosync)');
    r.error = err instanceof Error ? err.message : String(err);
    results.push(r);
  } finally {
    redis?.disconnect();
    await stopAll(children);
    await store.close();
    await db.drop();
  }
  return results;
}
