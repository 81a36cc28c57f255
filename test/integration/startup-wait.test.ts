import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_URL, freshDatabase, REDIS_URL, uniqueQueueName } from '../helpers/db.ts';
import { BIN, Child, freePort } from '../helpers/processes.ts';
import { runCli } from '../helpers/cli.ts';
import { TcpProxy } from '../helpers/tcp-proxy.ts';

interface LogLine {
  msg: string;
  awaiting?: string;
  nextDelayMs?: number;
  attempt?: number;
}

const parse = (lines: string[]): LogLine[] =>
  lines.flatMap((l) => {
    try {
      return [JSON.parse(l) as LogLine];
    } catch {
      return [];
    }
  });

/** Postgres or Redis coming up after the processes that need them: they wait, with backoff. */
describe('start-up while a backend is not there yet', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  const children: Child[] = [];
  let proxy: TcpProxy | undefined;

  beforeAll(async () => {
    db = await freshDatabase();
  });
  afterAll(async () => {
    for (const c of children) await c.stop(5000);
    await proxy?.down();
    await db?.drop();
  });

  const spawn = (name: string, args: string[], env: Record<string, string>): Child => {
    const child = new Child(name, process.execPath, [BIN, ...args], {
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'info',
      QUEUE_NAME: uniqueQueueName('wait'),
      ...env,
    });
    children.push(child);
    return child;
  };

  it('api waits for Postgres with a growing delay, logging each wait, and serves once it answers', async () => {
    const target = new URL(ADMIN_URL);
    proxy = new TcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
    const port = await freePort();
    const url = new URL(db.url);
    url.port = String(port);
    url.hostname = '127.0.0.1';
    const api = spawn('api', ['api'], { DATABASE_URL: url.toString(), REDIS_URL });

    await api.waitForLine((l) =>
      parse([l]).some((x) => x.msg.startsWith('waiting for Postgres') && x.attempt === 3),
    );
    const waits = parse(api.grep(/waiting for Postgres/));
    expect(waits[0]).toMatchObject({
      awaiting: `Postgres at 127.0.0.1:${port}`,
      nextDelayMs: expect.any(Number),
    });
    expect(waits[1]!.nextDelayMs).toBeGreaterThan(waits[0]!.nextDelayMs!);
    expect(api.running).toBe(true);

    await proxy.up(port);
    await api.waitForLine(/API on http:\/\//);
  });

  it('a worker waits for Redis and takes jobs once it answers', async () => {
    const port = await freePort();
    const worker = spawn('worker', ['worker'], {
      DATABASE_URL: db.url,
      REDIS_URL: `redis://127.0.0.1:${port}`,
    });
    await worker.waitForLine(/"msg":"waiting for Redis at 127\.0\.0\.1:\d+"/);
    const redis = new Child(
      'redis',
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--logfile', ''],
      {},
    );
    children.push(redis);
    await worker.waitForLine(/"msg":"worker started"/);
  });

  it('gives up after STARTUP_WAIT_MS with an error that names what it waited for (migrate too)', async () => {
    const port = await freePort();
    const dead = `postgresql://postgres@127.0.0.1:${port}/postgres`;
    const run = await runCli(['migrate'], { DATABASE_URL: dead, STARTUP_WAIT_MS: '1500', LOG_LEVEL: 'info' });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      new RegExp(`Postgres at 127\\.0\\.0\\.1:${port} did not answer within 1500 ms`),
    );
    expect(run.stderr).toMatch(/"msg":"waiting for Postgres/);
    expect(run.stdout).toBe('');

    const api = spawn('api-gives-up', ['api'], { DATABASE_URL: dead, REDIS_URL, STARTUP_WAIT_MS: '1500' });
    expect((await api.exited).code).toBe(1);
    expect(api.tail()).toMatch(/did not answer within 1500 ms/);
  });
});
