import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pino from 'pino';
import { Queue } from 'bullmq';
import { loadConfig } from '../../src/config.ts';
import { startService, type Service } from '../../src/service.ts';
import { createRedis } from '../../src/queue/index.ts';
import { freshDatabase, REDIS_URL, uniqueQueueName } from '../helpers/db.ts';

describe('a worker-only process with METRICS_PORT', () => {
  let fdb: Awaited<ReturnType<typeof freshDatabase>>;
  let worker: Service;
  let queue: Queue;
  const redis = createRedis(REDIS_URL);
  const queueName = uniqueQueueName('wm');

  beforeAll(async () => {
    fdb = await freshDatabase();
    const config = loadConfig({
      DATABASE_URL: fdb.url,
      REDIS_URL,
      QUEUE_NAME: queueName,
      METRICS_PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'silent',
    });
    worker = await startService({ config, api: false, worker: true, logger: pino({ level: 'silent' }) });
    queue = new Queue(queueName, { connection: redis });
  });
  afterAll(async () => {
    await worker?.close();
    await queue?.obliterate({ force: true }).catch(() => {});
    await queue?.close();
    redis.disconnect();
    await fdb?.drop();
  });

  it('serves its own outcome counters, health and readiness', async () => {
    expect(worker.port).toBeUndefined();
    const base = `http://127.0.0.1:${worker.metricsPort}`;
    const job = await queue.add('events', {
      source: 'direct',
      events: [
        { machine: 'promotion', entityId: 'wm-1', type: 'activate' },
        { machine: 'promotion', entityId: 'wm-1', type: 'create' },
      ],
    });
    for (let i = 0; i < 200 && !(await job.isCompleted()); i++) await new Promise((r) => setTimeout(r, 50));
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).toMatch(/promosync_events_total\{machine="promotion",source="direct",outcome="applied"\} 1/);
    expect(text).toMatch(/promosync_events_total\{machine="promotion",source="direct",outcome="stale"\} 1/);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { postgres: { ok: true }, redis: { ok: true } } });
    expect((await fetch(`${base}/v1/events`, { method: 'POST' })).status).toBe(404);
  });
});
