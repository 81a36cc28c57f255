import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, openDatabase, type Database } from '../../src/store/index.ts';
import { freshDatabase } from '../helpers/db.ts';
import { runCli } from '../helpers/cli.ts';

describe('promosync keys create', () => {
  let fresh: Awaited<ReturnType<typeof freshDatabase>>;
  let db: Database;
  let env: Record<string, string>;

  beforeAll(async () => {
    fresh = await freshDatabase();
    db = openDatabase(fresh.url, 1);
    env = { DATABASE_URL: fresh.url };
  });
  afterAll(async () => {
    await db?.close();
    await fresh?.drop();
  });

  it('refuses a producer key for a source promosync uses itself, says so, and stores no key', async () => {
    for (const source of ['admin', 'Admin']) {
      const run = await runCli(['keys', 'create', '--role', 'producer', '--source', source], env);
      expect(run.code, run.stderr).not.toBe(0);
      expect(run.stderr).toMatch(new RegExp(`source "${source}" is reserved`));
      expect(run.stdout).not.toMatch(/psk_/);
    }
    expect(await db.prisma.apiKey.count()).toBe(0);
  });

  it('refuses a reserved source however the key is created', async () => {
    await expect(createKey(db.prisma, { role: 'producer', source: 'admin' })).rejects.toThrow(/reserved/);
    expect(await db.prisma.apiKey.count()).toBe(0);
  });

  it('creates a producer key for an ordinary source', async () => {
    const run = await runCli(['keys', 'create', '--role', 'producer', '--source', 'cashback'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^psk_\S+$/m);
    expect(await db.prisma.apiKey.count()).toBe(1);
  });
});
