import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import { REDIS_URL } from '../helpers/db.ts';
import { runCli } from '../helpers/cli.ts';
import { promo } from '../helpers/events.ts';

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('promosync failed', () => {
  // One attempt per job, so a failure lands in the failed set at once.
  const h = useHarness({ env: { JOB_ATTEMPTS: '1' } });
  let db: pg.Client;
  let env: Record<string, string>;

  beforeAll(async () => {
    db = new pg.Client({ connectionString: h.databaseUrl });
    await db.connect();
    env = { REDIS_URL, QUEUE_NAME: h.queueName };
  });
  afterAll(async () => {
    await db?.end();
  });

  const failedIds = async (n: number): Promise<string[]> =>
    until(`${n} failed jobs`, async () => {
      const ids = (await h.queue.getFailed(0, -1)).map((j) => j.id!);
      return ids.length >= n ? ids : undefined;
    });

  it('lists failed jobs, retries one whose cause was fixed, and a bad one fails again', async () => {
    expect((await runCli(['failed', 'list'], env)).stdout).toBe('no failed jobs\n');

    // A job with bad data (no source, unknown event type): rejected without retries.
    const bad = await h.queue.add('events', {
      events: [{ machine: 'promotion', entityId: 'p-bad', type: 'launch' }],
    });
    // A good event while the database cannot take it (a table renamed away): it fails too.
    await db.query('ALTER TABLE event_log RENAME TO event_log_away');
    let goodId: string;
    try {
      const res = await h.request('/v1/events', {
        method: 'POST',
        json: promo('p-good', 'create', { eventId: 'g-1', data: { title: 'x' } }),
      });
      expect(res.status).toBe(202);
      goodId = ((await res.json()) as { jobId: string }).jobId;
      await failedIds(2);
    } finally {
      await db.query('ALTER TABLE event_log_away RENAME TO event_log');
    }

    const list = await runCli(['failed', 'list'], env);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toMatch(/^2 failed jobs\nID\s+FAILED AT\s+ATTEMPTS\s+REASON\s+DATA\n/);
    const lines = list.stdout.split('\n').slice(2); // below the count and the header
    const goodLine = lines.find((l) => l.startsWith(`${goodId} `))!;
    expect(goodLine).toMatch(/1\/1\s+relation "event_log" does not exist/);
    expect(goodLine).toContain('source=test-src 1 event: promotion/p-good create');
    const badLine = lines.find((l) => l.startsWith(`${bad.id} `))!;
    expect(badLine).toContain('job data needs the producer source');
    expect(badLine).toContain('source=(none) 1 event: promotion/p-bad launch');

    const json = await runCli(['failed', 'list', '--json', '--limit', '1'], env);
    const parsed = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { id: string; attemptsMade: number });
    expect(parsed).toHaveLength(1);

    const retried = await runCli(['failed', 'retry', goodId], env);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toContain(`retried ${goodId}\n`);
    const good = await until('p-good applied', async () => {
      const r = await h.request('/v1/promotions/p-good');
      return r.status === 200 ? ((await r.json()) as Record<string, unknown>) : undefined;
    });
    expect(good).toMatchObject({ status: 'CREATED', attributes: { title: 'x' } });
    expect(await (await h.queue.getJob(goodId))!.getState()).toBe('completed');

    // Retrying everything: the bad job runs again and fails again, for the same reason.
    const all = await runCli(['failed', 'retry', '--all'], env);
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toContain(`retried ${bad.id}\n`);
    expect(all.stdout).toContain('retried 1 job;');
    await failedIds(1);
    const after = await runCli(['failed', 'list'], env);
    expect(after.stdout).toMatch(/^1 failed job\n/);
    expect(after.stdout).toContain('promotion/p-bad launch');
  });

  it('exits 1 for jobs that are missing or not failed, and needs ids or --all', async () => {
    const missing = await runCli(['failed', 'retry', 'no-such-job'], env);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('no job no-such-job');
    const neither = await runCli(['failed', 'retry'], env);
    expect(neither.code).toBe(1);
    expect(neither.stderr).toContain('name the jobs to retry, or pass --all');
  });
});
