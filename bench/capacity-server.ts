// The capacity benchmark's server: promosync's API app (the product's createListener, with its
// capacity service) plus a reference endpoint that lives only here, served on the same HTTP
// server the way the checkout path serves reservations (node's server, the same key check,
// the body read plainly) and on the same Postgres pool: requests under /reference/ go to it,
// the rest to promosync's listener, as `promosync api` serves it. The reference admits each request
// with one conditional UPDATE of one counter row: the usual design, and the one that
// collapses on a hot row.
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

// Served the way the checkout path serves promosync's reservations: node's HTTP server, the
// product's key check (principalFor, the cached keys), the body read plainly.
const REFERENCE_PATH = pathWithId('/reference/', '/reservations');
const reference = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
  const answer = (status: number, body: unknown) => {
    const json = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(json),
    });
    res.end(json);
  };
  try {
    const m = REFERENCE_PATH.exec(req.url!);
    if (req.method !== 'POST' || !m) return answer(404, { code: 'not_found' });
    await principalFor(verify, req.headers.authorization, CHECKOUT_ROLES);
    const body = JSON.parse(await readBody(req, Number(req.headers['content-length']))) as { units?: number };
    const units = Number(body.units ?? 1);
    const { rows } = await db.pool.query<{ used: string }>(
      'UPDATE bench_capacity SET used = used + $2 WHERE id = $1 AND used + $2 <= max RETURNING used',
      [m[1]!, units],
    );
    if (rows[0]) answer(201, { used: Number(rows[0].used) });
    else answer(409, { code: 'capacity_exhausted' });
  } catch (err) {
    answer(err instanceof PromosyncError ? 401 : 500, { code: (err as Error).message });
  }
};
const server = new ApiServer((req, res) => {
  if (req.url?.startsWith('/reference/')) void reference(req, res);
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
