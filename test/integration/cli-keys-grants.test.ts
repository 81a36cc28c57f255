import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/store/db.ts';
import { verifyKey } from '../../src/store/keys.ts';
import { runCli } from '../helpers/cli.ts';
import { freshDatabase } from '../helpers/db.ts';

// `promosync keys create --may-write-for`: the grants an operator gives a producer key reach
// the stored key, and bad ones are refused before anything is stored.
describe('keys create --may-write-for', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let store: ReturnType<typeof openDatabase>;
  beforeAll(async () => {
    db = await freshDatabase();
    store = openDatabase(db.url, 1);
  });
  afterAll(async () => {
    await store?.close();
    await db?.drop();
  });

  it('stores the owners a producer key may write for, and lists them', async () => {
    const run = await runCli(
      ['keys', 'create', '--role', 'producer', '--source', 'backoffice', '--may-write-for', 'cashback, sku'],
      { DATABASE_URL: db.url },
    );
    expect(run.code, run.stderr).toBe(0);
    const key = run.stdout.trim().split('\n').at(-1)!;
    expect(await verifyKey(store.prisma, key)).toMatchObject({
      role: 'producer',
      source: 'backoffice',
      mayWriteFor: ['cashback', 'sku'],
    });
    const list = await runCli(['keys', 'list'], { DATABASE_URL: db.url });
    expect(list.stdout).toContain('source=backoffice machines=* may-write-for=cashback,sku');
  });

  // One command per test: each CLI start is slow on a busy machine.
  it.each([
    [
      'grants that are not sources',
      ['--role', 'producer', '--source', 'b', '--may-write-for', 'not a source'],
    ],
    ['grants on another role', ['--role', 'admin', '--may-write-for', 'cashback']],
    ['the reserved source admin', ['--role', 'producer', '--source', 'admin']],
  ])('refuses %s and stores nothing', async (_name, args) => {
    const before = await store.prisma.apiKey.count();
    const run = await runCli(['keys', 'create', ...args], { DATABASE_URL: db.url });
    expect(run.code, run.stdout).not.toBe(0);
    expect(await store.prisma.apiKey.count()).toBe(before);
  });
});
