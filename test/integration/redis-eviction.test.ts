import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startService, type Service } from '../../src/service.ts';
import { createKey } from '../../src/store/keys.ts';
import { freshDatabase, uniqueQueueName } from '../helpers/db.ts';
import { freePort, startRedisServer, type Child } from '../helpers/processes.ts';

/** A private redis-server with the given extra arguments, on a free port. */
async function startRedis(args: string[]): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const child = await startRedisServer(port, ['--appendonly', 'no', ...args]);
  return { child, url: `redis://127.0.0.1:${port}` };
}

/** A logger whose JSON lines the test can read. */
function capturedLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), lines };
}

const event = (entityId: string) => ({ machine: 'promotion', entityId, type: 'create' });

describe('a Redis that may evict keys', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  const redises: Child[] = [];
  const services: Service[] = [];

  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    for (const s of services) await s.close();
    for (const r of redises) await r.stop(5000);
    await db?.drop();
  });

  async function start(redisUrl: string, api: boolean, extra: Record<string, string> = {}) {
    const { logger, lines } = capturedLogger();
    const config = loadConfig({
      DATABASE_URL: db.url,
      REDIS_URL: redisUrl,
      QUEUE_NAME: uniqueQueueName('evict'),
      PORT: '0',
      HOST: '127.0.0.1',
      ...extra,
    });
    const service = await startService({ config, logger, api, worker: true });
    services.push(service);
    return { service, lines };
  }

  it('is refused: unready, events answered 503 redis_eviction_policy, until it is set to noeviction', async () => {
    const redis = await startRedis(['--maxmemory', '20mb', '--maxmemory-policy', 'allkeys-lru']);
    redises.push(redis.child);
    const { service, lines } = await start(redis.url, true);
    const url = `http://127.0.0.1:${service.port}`;
    const key = (await createKey(service.db.prisma, { role: 'producer', source: 'evict-src' })).key;

    // Said at start: what is wrong and what to set, and that there is no append-only file.
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 50,
        msg: expect.stringMatching(/maxmemory-policy allkeys-lru.*set maxmemory-policy noeviction/),
      }),
    );
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 40, msg: expect.stringMatching(/append-only file/) }),
    );

    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { checks: Record<string, { ok: boolean; error?: string }> };
    expect(body.checks.redis!.ok).toBe(true);
    expect(body.checks.redisEvictionPolicy).toEqual({
      ok: false,
      error: expect.stringMatching(/noeviction/),
    });

    const post = (entityId: string) =>
      fetch(`${url}/v1/events?wait=true`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify(event(entityId)),
      });
    const refused = await post('ev-1');
    expect(refused.status).toBe(503);
    const problem = (await refused.json()) as { code: string; detail: string };
    expect(problem.code).toBe('redis_eviction_policy');
    expect(problem.detail).toMatch(/set maxmemory-policy noeviction/);
    const probe = new Redis(redis.url);
    try {
      expect(await probe.keys('bull:*:id')).toEqual([]);

      // Fixed while running: readiness and acceptance recover without a restart.
      await probe.config('SET', 'maxmemory-policy', 'noeviction');
      let status = 0;
      for (let i = 0; i < 100 && status !== 200; i++) {
        status = (await fetch(`${url}/readyz`)).status;
        if (status !== 200) await new Promise((r) => setTimeout(r, 100));
      }
      expect(status).toBe(200);
      let accepted = await post('ev-2');
      for (let i = 0; i < 50 && accepted.status === 503; i++) {
        await new Promise((r) => setTimeout(r, 100));
        accepted = await post('ev-2');
      }
      expect(accepted.status).toBe(200);
      const rows = await service.db.prisma.entity.findMany({ select: { entityId: true } });
      expect(rows.map((r) => r.entityId)).toEqual(['ev-2']);
    } finally {
      probe.disconnect();
    }
  });

  it('is found through INFO where CONFIG is disabled, by an API and by a worker-only process', async () => {
    const redis = await startRedis(['--maxmemory-policy', 'volatile-lru', '--rename-command', 'CONFIG', '']);
    redises.push(redis.child);
    const api = await start(redis.url, true);
    const ready = await fetch(`http://127.0.0.1:${api.service.port}/readyz`);
    expect(ready.status).toBe(503);
    expect(JSON.stringify(await ready.json())).toMatch(/maxmemory-policy volatile-lru/);

    const worker = await start(redis.url, false, { METRICS_PORT: '0' });
    const wready = await fetch(`http://127.0.0.1:${worker.service.metricsPort}/readyz`);
    expect(wready.status).toBe(503);
    expect(JSON.stringify(await wready.json())).toMatch(/maxmemory-policy volatile-lru/);
  });
});
