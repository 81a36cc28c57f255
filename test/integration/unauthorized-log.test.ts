import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { startService, type Service } from '../../src/service.ts';
import { freshDatabase, REDIS_URL, uniqueQueueName } from '../helpers/db.ts';

/** Bogus API keys cost anyone nothing to send: they must not cost a log line each. */
describe('logging of unauthorized requests', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let service: Service;
  const lines: Array<{ code?: string; suppressed?: number; level: number }> = [];

  beforeAll(async () => {
    db = await freshDatabase();
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const l of chunk.toString('utf8').split('\n')) if (l.trim()) lines.push(JSON.parse(l));
        done();
      },
    });
    const config = loadConfig({
      DATABASE_URL: db.url,
      REDIS_URL,
      QUEUE_NAME: uniqueQueueName('unauth'),
      PORT: '0',
      HOST: '127.0.0.1',
      RATE_LIMIT_PER_SECOND: '0',
    });
    service = await startService({
      config,
      logger: pino({ level: 'warn' }, stream),
      api: true,
      worker: false,
    });
  });
  afterAll(async () => {
    await service?.close();
    await db?.drop();
  });

  it('writes at most one line a second, and the lines account for every refused request', async () => {
    const url = `http://127.0.0.1:${service.port}`;
    const bogus = (i: number) =>
      fetch(`${url}/v1/promotions`, {
        headers: i % 2 === 0 ? { authorization: `Bearer psk_${'0'.repeat(12)}_${'A'.repeat(43)}` } : {},
      });
    const started = Date.now();
    const n = 400;
    for (let i = 0; i < n; i += 20) {
      const answers = await Promise.all(Array.from({ length: 20 }, (_, j) => bogus(i + j)));
      for (const a of answers) expect(a.status).toBe(401);
    }
    const elapsed = Date.now() - started;
    const during = lines.filter((l) => l.code === 'unauthorized');
    // One per started second at most: far fewer lines than requests.
    expect(during.length).toBeGreaterThanOrEqual(1);
    expect(during.length).toBeLessThanOrEqual(1 + Math.ceil(elapsed / 1000));
    expect(during.length).toBeLessThan(n / 4);

    // After a quiet second, the next one is logged with the count of those held back.
    await new Promise((r) => setTimeout(r, 1100));
    expect((await bogus(1)).status).toBe(401);
    const all = lines.filter((l) => l.code === 'unauthorized');
    expect(all.length).toBe(during.length + 1);
    expect(all.reduce((sum, l) => sum + 1 + (l.suppressed ?? 0), 0)).toBe(n + 1);
  });
});
