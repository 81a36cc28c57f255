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

  it('keeps /metrics small, its labels known, whatever sources and machines jobs carry', async () => {
    const base = `http://127.0.0.1:${worker.metricsPort}`;
    const event = (i: number) => ({ machine: 'promotion', entityId: `lbl-${i}`, type: 'create' });
    const jobs = [
      // Sources too long or not identifiers: bad jobs.
      ...Array.from({ length: 300 }, (_, i) => ({ source: `${'s'.repeat(2000)}-${i}`, ...event(i) })),
      ...Array.from({ length: 50 }, (_, i) => ({ source: `bad source "${i}"\n`, ...event(i) })),
      ...Array.from({ length: 20 }, (_, i) => ({ source: 123 + i, ...event(i) })),
      // Machines nobody serves: bad jobs too.
      ...Array.from({ length: 30 }, (_, i) => ({
        source: 'direct',
        ...event(i),
        machine: `m-${'x'.repeat(500)}-${i}`,
      })),
      // Valid, but more distinct sources than a process keeps as labels.
      ...Array.from({ length: 150 }, (_, i) => ({ source: `src-${i}`, ...event(1000 + i) })),
    ];
    await queue.addBulk(jobs.map((data) => ({ name: 'events', data })));
    await expect
      .poll(
        async () => {
          const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
          return Object.values(c).reduce((a, b) => a + b, 0);
        },
        { timeout: 60_000, interval: 200 },
      )
      .toBe(0);
    // The bad jobs failed at once, without retries.
    expect(await queue.getFailedCount()).toBe(400);

    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text.length).toBeLessThan(64 * 1024);
    const samples = text.split('\n').filter((l) => l.startsWith('promosync_events_total{'));
    const label = (line: string, name: string) => new RegExp(`${name}="([^"]*)"`).exec(line)?.[1];
    const sources = new Set(samples.map((l) => label(l, 'source')));
    const machines = new Set(samples.map((l) => label(l, 'machine')));
    expect(sources.size).toBeLessThanOrEqual(101);
    expect(sources).toContain('other');
    for (const s of sources) expect(s).toMatch(/^[A-Za-z0-9._:-]{1,64}$/);
    for (const m of machines) expect(['', 'promotion', 'campaign', 'other']).toContain(m);
    for (const l of text.split('\n')) expect(l.length, l.slice(0, 120)).toBeLessThan(512);
    // Nothing is lost by bounding: every event and every bad job is still counted.
    const total = (outcome: string) =>
      samples
        .filter((l) => label(l, 'outcome') === outcome)
        .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    expect(total('invalid')).toBe(400);
    expect(total('applied') + total('stale')).toBe(150 + 2);
  });
});
