// The capacity benchmark's server: promosync's API app (the product's createListener, with its
// capacity service) plus a reference endpoint that lives only here, served on the same HTTP
// server the way the checkout path serves reservations (node's server, the same key check,
// the body read plainly) and on the same Postgres pool: requests under /reference/ go to it,
// the rest to promosync's listener, as `promosync api` serves it. The reference admits each request
// with one conditional UPDATE of one counter row: the usual design, and the one that
// collapses on a hot row. Requests under /lua/ go to the in-memory design (below).
import type { IncomingMessage, ServerResponse } from 'node:http';
import pino from 'pino';
import { machines } from '../machines/index.ts';
import { createListener, ApiServer } from '../src/api/index.ts';
import { principalFor } from '../src/api/auth.ts';
import { pathWithId, readBody } from '../src/api/checkout-path.ts';
import { CHECKOUT_ROLES } from '../src/api/routes/capacity.ts';
import { CapacityService } from '../src/capacity/index.ts';
import { loadConfig } from '../src/config.ts';
import { MachineRegistry, PromosyncError } from '../src/domain/index.ts';
import { CapacityMetrics, Metrics } from '../src/observability/index.ts';
import { createRedis, EventQueue } from '../src/queue/index.ts';
import { KeyCache, openDatabase } from '../src/store/index.ts';

const config = loadConfig();
const logger = pino({ level: 'warn' });
const db = openDatabase(config.databaseUrl!, config.dbPoolSize);
const metrics = new Metrics();
const redis = createRedis(config.redisUrl, { failFast: true });
const queue = new EventQueue({ connection: redis, name: config.queueName });
const capacity = new CapacityService({
  pool: db.pool,
  logger,
  metrics: new CapacityMetrics(metrics.registry),
  maxBatch: config.capacityMaxBatch,
  maxStatements: config.capacityMaxStatements,
});
capacity.start();
// The product's key check: verified keys cached, revocations notified (src/store/key-cache.ts).
const keys = await KeyCache.open(db, config, logger);
const verify = (key: string) => keys.verify(key);
const app = createListener({
  registry: MachineRegistry.from(machines),
  queue,
  prisma: db.prisma,
  verify,
  logger,
  metrics,
  probes: {},
  capacity,
});

interface BenchRequest {
  orderId: string;
  units?: number;
}

/**
 * A bench-only reservation endpoint served the way the checkout path serves promosync's: node's
 * HTTP server, the product's key check (principalFor, the cached keys), the body read plainly,
 * the answer written as one JSON body. `admit` decides the request: [status, body].
 */
function endpoint(
  prefix: string,
  admit: (id: string, body: BenchRequest) => Promise<[number, unknown]>,
): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const path = pathWithId(prefix, '/reservations');
  const send = (res: ServerResponse, status: number, body: unknown): void => {
    const json = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(json),
    });
    res.end(json);
  };
  return async (req, res) => {
    try {
      const m = path.exec(req.url!);
      if (req.method !== 'POST' || !m) return send(res, 404, { code: 'not_found' });
      await principalFor(verify, req.headers.authorization, CHECKOUT_ROLES);
      const body = JSON.parse(await readBody(req, Number(req.headers['content-length']))) as BenchRequest;
      send(res, ...(await admit(m[1]!, body)));
    } catch (err) {
      send(res, err instanceof PromosyncError ? 401 : 500, { code: (err as Error).message });
    }
  };
}

// The reference: one conditional UPDATE of one counter row per request.
const reference = endpoint('/reference/', async (id, body) => {
  const { rows } = await db.pool.query<{ used: string }>(
    'UPDATE bench_capacity SET used = used + $2 WHERE id = $1 AND used + $2 <= max RETURNING used',
    [id, Number(body.units ?? 1)],
  );
  return rows[0] ? [201, { used: Number(rows[0].used) }] : [409, { code: 'capacity_exhausted' }];
});

// The in-memory design: one Lua script per request checks the order and the cap and takes the
// units on one Redis hash (`bench:cap:{id}`: max, used, and o:<orderId> per order), all or
// nothing. Durable only as far as the Redis it runs on; here the shared one, without persistence.
redis.defineCommand('benchReserve', {
  numberOfKeys: 1,
  lua: `
    local units = tonumber(ARGV[2])
    local prior = redis.call('HGET', KEYS[1], 'o:' .. ARGV[1])
    if prior then return {1, tonumber(prior)} end
    local cap = redis.call('HMGET', KEYS[1], 'max', 'used')
    local max, used = tonumber(cap[1]), tonumber(cap[2] or '0')
    if max == nil or used + units > max then return {0, 0} end
    redis.call('HINCRBY', KEYS[1], 'used', units)
    redis.call('HSET', KEYS[1], 'o:' .. ARGV[1], units)
    return {2, max - used - units}`,
});
const benchReserve = (
  redis as unknown as { benchReserve(key: string, order: string, units: number): Promise<[number, number]> }
).benchReserve.bind(redis);
const lua = endpoint('/lua/', async (id, body) => {
  const [kind, remaining] = await benchReserve(`bench:cap:{${id}}`, body.orderId, Number(body.units ?? 1));
  if (kind === 2) return [201, { orderId: body.orderId, status: 'held', remaining: { total: remaining } }];
  if (kind === 1) return [200, { orderId: body.orderId, status: 'held' }];
  return [409, { code: 'capacity_exhausted' }];
});

const server = new ApiServer((req, res) => {
  if (req.url?.startsWith('/reference/')) void reference(req, res);
  else if (req.url?.startsWith('/lua/')) void lua(req, res);
  else app(req, res);
});
const port = await server.start(0, '127.0.0.1');
process.stdout.write(`API on http://127.0.0.1:${port}\n`);
process.on('SIGTERM', () => {
  void (async () => {
    await server.close();
    await capacity.close();
    await keys.close();
    await queue.close();
    redis.disconnect();
    await db.close();
    process.exit(0);
  })();
});
