import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machines } from '../../machines/index.ts';
import { loadConfig } from '../../src/config.ts';
import { MachineRegistry } from '../../src/domain/index.ts';
import { EventQueue, createRedis } from '../../src/queue/index.ts';
import { startService, type Service } from '../../src/service.ts';
import { openDatabase, syncMachineDefs } from '../../src/store/index.ts';
import { ADMIN_URL, freshDatabase, REDIS_URL, uniqueQueueName } from '../helpers/db.ts';

type Ready = { status: string; checks: Record<string, { ok: boolean; error?: string }> };

/** A worker whose database role may only read: it must not say it is ready. */
describe('a worker on a read-only database role', () => {
  const role = `promosync_ro_${randomBytes(4).toString('hex')}`;
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let owner: pg.Client;
  let worker: Service | undefined;
  let queue: EventQueue | undefined;
  const redis = createRedis(REDIS_URL);

  beforeAll(async () => {
    db = await freshDatabase();
    // The owner stores the machine definitions, as the first `start` or `worker` would.
    const store = openDatabase(db.url, 1);
    await syncMachineDefs(store.pool, MachineRegistry.from(machines), { acceptRemoved: false });
    await store.close();
    owner = new pg.Client({ connectionString: db.url });
    await owner.connect();
    await owner.query(`CREATE ROLE ${role} LOGIN`);
    await owner.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
    await owner.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${role}`);
  });
  afterAll(async () => {
    await worker?.close();
    await queue?.queue.obliterate({ force: true }).catch(() => {});
    await queue?.close();
    redis.disconnect();
    await owner?.end();
    await db?.drop();
    const admin = new pg.Client({ connectionString: ADMIN_URL });
    await admin.connect();
    await admin.query(`DROP ROLE IF EXISTS ${role}`);
    await admin.end();
  });

  it('reports unready, naming the missing privileges, until it may write; then it applies events', async () => {
    const url = new URL(db.url);
    url.username = role;
    const queueName = uniqueQueueName('ro');
    const config = loadConfig({
      DATABASE_URL: url.toString(),
      REDIS_URL,
      QUEUE_NAME: queueName,
      METRICS_PORT: '0',
      HOST: '127.0.0.1',
      JOB_ATTEMPTS: '1',
    });
    worker = await startService({ config, logger: pino({ level: 'silent' }), api: false, worker: true });
    const readyz = async (): Promise<[number, Ready]> => {
      const res = await fetch(`http://127.0.0.1:${worker!.metricsPort}/readyz`);
      return [res.status, (await res.json()) as Ready];
    };

    const [status, body] = await readyz();
    expect(status).toBe(503);
    expect(body.checks.postgres).toEqual({ ok: true });
    expect(body.checks.postgresWrite!.ok).toBe(false);
    expect(body.checks.postgresWrite!.error).toContain(`role ${role} lacks INSERT on entity`);
    expect(body.checks.postgresWrite!.error).toContain('lacks INSERT on event_log');

    // Grants short of the sequence behind event_log.id still cannot apply an event.
    await owner.query(`GRANT INSERT, UPDATE ON entity TO ${role}`);
    await owner.query(`GRANT INSERT ON event_log, event_key TO ${role}`);
    const [partial, partialBody] = await readyz();
    expect(partial).toBe(503);
    expect(partialBody.checks.postgresWrite!.error).toMatch(/USAGE on the sequence of event_log\.id/);

    await owner.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO ${role}`);
    expect((await readyz())[0]).toBe(200);

    // Ready now means it really writes.
    queue = new EventQueue({ connection: redis, name: queueName, attempts: 1, backoffMs: 10 });
    const [job] = await queue.enqueue(
      [{ machine: 'promotion', entityId: 'ro-1', type: 'create' }],
      'ro-src',
      true,
    );
    const result = await queue.waitFor(job!.jobId, 30_000);
    expect(result.results?.[0]).toMatchObject({ entityId: 'ro-1', outcome: 'applied' });
  });
});
