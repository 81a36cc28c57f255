// The capacity benchmark's server: promosync's API app (the product's createApp, with its
// capacity service) plus a reference endpoint that lives only here, in an Express app of its
// own with the same settings, the same key check and the same Postgres pool, on the same HTTP
// server (requests under /reference/ go to it, the rest to promosync's app, as `promosync api`
// serves it). The reference admits each request
// with one conditional UPDATE of one counter row: the usual design, and the one that
// collapses on a hot row.
import express from 'express';
import pino from 'pino';
import { machines } from '../machines/index.ts';
import { createApp, ApiServer } from '../src/api/index.ts';
import { authenticate } from '../src/api/auth.ts';
import { CapacityService } from '../src/capacity/index.ts';
import { loadConfig } from '../src/config.ts';
import { MachineRegistry } from '../src/domain/index.ts';
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
});
capacity.start();
// The product's key check: verified keys cached, revocations notified (src/store/key-cache.ts).
const keys = await KeyCache.open(db, config, logger);
const verify = (key: string) => keys.verify(key);
const app = createApp({
  registry: MachineRegistry.from(machines),
  queue,
  prisma: db.prisma,
  verify,
  logger,
  metrics,
  probes: {},
  capacity,
});

const reference = express();
reference.disable('x-powered-by');
reference.set('etag', false);
reference.set('query parser', 'simple');
reference.post(
  '/reference/:id/reservations',
  authenticate(verify, ['checkout', 'admin']),
  express.json({ limit: '16kb', type: () => true }),
  async (req, res) => {
    const units = Number((req.body as { units?: number }).units ?? 1);
    const { rows } = await db.pool.query<{ used: string }>(
      'UPDATE bench_capacity SET used = used + $2 WHERE id = $1 AND used + $2 <= max RETURNING used',
      [String(req.params.id), units],
    );
    if (rows[0]) res.status(201).json({ used: Number(rows[0].used) });
    else res.status(409).json({ code: 'capacity_exhausted' });
  },
);
const server = new ApiServer((req, res) => (req.url?.startsWith('/reference/') ? reference : app)(req, res));
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
