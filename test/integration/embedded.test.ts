import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS, loadConfig } from '../../src/config.ts';
import { launch, type Launched } from '../../src/cli/serve.ts';
import { freePort, isAlive } from '../../src/runtime/index.ts';
import { createRedis } from '../../src/queue/index.ts';
import { freshDatabase, uniqueQueueName } from '../helpers/db.ts';
import { runCli } from '../helpers/cli.ts';
import { promo } from '../helpers/events.ts';

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** `start` with DATABASE_URL and REDIS_URL unset, and no Redis where it looks first. */
async function startEmbedded(dataDir: string, closedRedisUrl: string): Promise<Launched> {
  const config = loadConfig({ DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent' });
  expect(config.databaseUrl).toBeUndefined();
  expect(config.redisUrl).toBeUndefined();
  return launch({ mode: 'start', config, logger, defaultRedisUrl: closedRedisUrl });
}

async function api(l: Launched, key: string, p: string, body?: unknown): Promise<Response> {
  return fetch(`${l.apiUrl}${p}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}

describe('start with nothing configured', () => {
  let dataDir: string;
  let closedRedisUrl: string;
  let running: Launched | undefined;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'promosync-embedded-'));
    closedRedisUrl = `redis://127.0.0.1:${await freePort()}`;
  });
  afterEach(async () => {
    await running?.close();
    running = undefined;
  });
  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('runs on an embedded Postgres and a private Redis, and keeps the data across a restart', async () => {
    running = await startEmbedded(dataDir, closedRedisUrl);
    const first = running;
    expect(first.backends?.embeddedPostgres?.dir).toBe(path.join(dataDir, 'pglite'));
    expect(first.backends?.privateRedis?.dir).toBe(path.join(dataDir, 'redis'));
    expect(first.backends?.redisUrl).not.toBe(closedRedisUrl);
    const key = first.firstKey!;
    expect(key).toMatch(/^psk_/);
    // The banner carries the key, the URLs and a copy-paste example.
    expect(first.banner).toContain(key);
    expect(first.banner).toContain(first.apiUrl!);
    expect(first.banner).toContain(first.backends!.databaseUrl);
    expect(first.banner).toContain(`${first.apiUrl}/v1/events?wait=true`);
    expect(first.banner).toContain('npx promosync keys create');

    const e1 = promo('promo-1', 'create', { eventId: 'e-1', merchantId: 'm-42', data: { title: '10% off' } });
    const pushed = await api(first, key, '/v1/events?wait=true', {
      events: [
        e1,
        promo('promo-1', 'activate', { eventId: 'e-2' }),
        promo('promo-2', 'delete', { eventId: 'e-3' }),
        // A true repeat of e-1 (a repeat with other content would be a conflict).
        e1,
      ],
    });
    expect(pushed.status).toBe(200);
    const results = ((await pushed.json()) as { results: Array<{ outcome: string; state: string }> }).results;
    expect(results.map((r) => r.outcome)).toEqual(['applied', 'applied', 'applied', 'duplicate']);

    const row = (await (await api(first, key, '/v1/promotions/promo-1')).json()) as Record<string, unknown>;
    expect(row).toMatchObject({
      status: 'ACTIVATED',
      merchantId: 'm-42',
      attributes: { title: '10% off' },
    });

    // Another process reaches the embedded database while start runs, as the banner says.
    const created = await runCli(['keys', 'create', '--role', 'producer', '--source', 'cashback'], {
      DATABASE_URL: first.backends!.databaseUrl,
    });
    expect(created.code, created.stderr).toBe(0);
    const producerKey = created.stdout.trim().split('\n').at(-1)!;
    const byProducer = await api(
      first,
      producerKey,
      '/v1/events?wait=true',
      promo('promo-3', 'create', { eventId: 'cb-1' }),
    );
    expect(byProducer.status).toBe(200);

    // Capacity works on the embedded database too (its SQL functions are plpgsql), set by the CLI.
    const limits = await runCli(['capacity', 'set', 'promo-1', '--total', '1'], {
      DATABASE_URL: first.backends!.databaseUrl,
    });
    expect(limits.code, limits.stderr).toBe(0);
    expect((await api(first, key, '/v1/promotions/promo-1/reservations', { orderId: 'o-1' })).status).toBe(
      201,
    );
    expect((await api(first, key, '/v1/promotions/promo-1/reservations', { orderId: 'o-2' })).status).toBe(
      409,
    );

    const redisPid = Number.parseInt(await readFile(path.join(dataDir, 'redis', 'redis.pid'), 'utf8'), 10);
    expect(isAlive(redisPid)).toBe(true);
    expect(existsSync(path.join(dataDir, 'running.json'))).toBe(true);

    await first.close();
    running = undefined;
    // Closing stops the private redis-server and releases the data directory.
    expect(isAlive(redisPid)).toBe(false);
    expect(existsSync(path.join(dataDir, 'running.json'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'pglite.lock'))).toBe(false);
    expect(existsSync(path.join(dataDir, 'redis.lock'))).toBe(false);

    running = await startEmbedded(dataDir, closedRedisUrl);
    const second = running;
    expect(second.firstKey).toBeUndefined(); // keys exist: none is made, the banner says how to make one
    expect(second.banner).toContain('keys create --role admin');
    expect(second.backends?.embeddedPostgres?.created).toBe(false);
    const again = (await (await api(second, key, '/v1/promotions/promo-1')).json()) as Record<
      string,
      unknown
    >;
    expect(again).toMatchObject({
      status: 'ACTIVATED',
      merchantId: 'm-42',
      attributes: { title: '10% off' },
    });
    // The hold of the first run is still there and still counts.
    expect(await (await api(second, key, '/v1/promotions/promo-1/capacity')).json()).toMatchObject({
      total: { max: 1, held: 1, remaining: 0 },
    });
    const deleted = (await (await api(second, producerKey, '/v1/promotions/promo-2')).json()) as Record<
      string,
      unknown
    >;
    expect(deleted).toMatchObject({ status: 'DELETED' });
    // The queue survived too (append-only file): the jobs of the first run are still recorded.
    const redis = createRedis(second.backends!.redisUrl);
    const queue = new Queue(DEFAULTS.queueName, { connection: redis });
    try {
      expect(await queue.getCompletedCount()).toBeGreaterThanOrEqual(2);
    } finally {
      await queue.close();
      redis.disconnect();
    }
    // An event sent after the restart still meets the old state: a late create is stale.
    const late = await api(
      second,
      key,
      '/v1/events?wait=true',
      promo('promo-1', 'create', { eventId: 'e-9' }),
    );
    expect(((await late.json()) as { results: Array<{ outcome: string }> }).results[0]!.outcome).toBe(
      'stale',
    );
  }, 240_000);

  it('refuses a second start on the same data directory', async () => {
    running = await startEmbedded(dataDir, closedRedisUrl);
    await expect(startEmbedded(dataDir, closedRedisUrl)).rejects.toThrow(/in use by process/);
  }, 120_000);

  it('says exactly how to get Redis when there is none', async () => {
    const db = await freshDatabase();
    try {
      const config = loadConfig({
        DATABASE_URL: db.url,
        DATA_DIR: dataDir,
        QUEUE_NAME: uniqueQueueName(),
        PORT: '0',
        LOG_LEVEL: 'silent',
      });
      const err = await launch({
        mode: 'start',
        config,
        logger,
        defaultRedisUrl: closedRedisUrl,
        redisCommand: 'redis-server-that-is-not-installed',
      }).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      const message = (err as Error).message;
      expect(message).toContain('sudo apt-get install redis-server');
      expect(message).toContain('brew install redis');
      expect(message).toContain('docker run');
      expect(message).toContain('REDIS_URL=');
      expect(message.split('\n')).toHaveLength(1); // one paragraph
      expect(existsSync(path.join(dataDir, 'redis.lock'))).toBe(false);
    } finally {
      await db.drop();
    }
  }, 60_000);
});
