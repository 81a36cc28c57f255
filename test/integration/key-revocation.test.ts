import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { runCli } from '../helpers/cli.ts';
import { createKey } from '../../src/store/keys.ts';

/**
 * The cache of verified API keys in each API process (docs/api.md#revoking-a-key):
 * a key revoked from another process, by the CLI or by plain SQL, is refused by a running API
 * once the change's notification reaches it, however long the cache would otherwise trust it.
 * The TTL here is an hour, so nothing but the notification can make these tests pass.
 */

const keyId = (key: string): string => key.split('_')[1]!;

/** Polls `check` until it holds; fails after `timeoutMs` (a bound on the wait, not a measurement). */
async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('revoking a key cached by a running API', () => {
  let h: Harness;
  let sql: pg.Client;

  beforeAll(async () => {
    h = await startHarness({ env: { KEY_CACHE_TTL_MS: '3600000', RATE_LIMIT_PER_SECOND: '0' } });
    sql = new pg.Client({ connectionString: h.databaseUrl });
    await sql.connect();
    await until('the key listener', () => h.service.keys?.active === true);
  });
  afterAll(async () => {
    await sql?.end();
    await h?.close();
  });

  const status = async (key: string): Promise<number> => {
    const res = await h.request('/v1/promotions/anything', { key });
    await res.body?.cancel();
    return res.status;
  };

  /** A new merchant key the API has just accepted, so it is in the cache. */
  const cachedKey = async (): Promise<string> => {
    const { key } = await createKey(h.service.db.prisma, { role: 'merchant', merchantId: 'm-1' });
    expect(await status(key)).toBe(404);
    expect(await status(key)).toBe(404);
    return key;
  };

  /** Revokes in one transaction with the notifying trigger off: nobody is told. */
  const revokeSilently = async (key: string): Promise<void> => {
    await sql.query('BEGIN');
    await sql.query('ALTER TABLE api_key DISABLE TRIGGER api_key_changed');
    await sql.query('UPDATE api_key SET revoked_at = now() WHERE id = $1', [keyId(key)]);
    await sql.query('ALTER TABLE api_key ENABLE TRIGGER api_key_changed');
    await sql.query('COMMIT');
  };

  it('the cache answers for a key it verified: a revocation nobody is told of is not seen', async () => {
    // What makes the notification necessary, and the TTL the backstop for a lost one.
    const key = await cachedKey();
    await revokeSilently(key);
    expect(await status(key)).toBe(404);
  });

  it('`promosync keys revoke` run as another process stops the key', async () => {
    const key = await cachedKey();
    const run = await runCli(['keys', 'revoke', keyId(key)], { DATABASE_URL: h.databaseUrl });
    expect(run.code, run.stderr).toBe(0);
    await until('the revoked key to be refused', async () => (await status(key)) === 401);
    expect(await status(key)).toBe(401);
  });

  it('a revocation by plain SQL stops the key too', async () => {
    const key = await cachedKey();
    await sql.query('UPDATE api_key SET revoked_at = now() WHERE id = $1', [keyId(key)]);
    await until('the revoked key to be refused', async () => (await status(key)) === 401);
  });

  it('a deleted key is refused', async () => {
    const key = await cachedKey();
    await sql.query('DELETE FROM api_key WHERE id = $1', [keyId(key)]);
    await until('the deleted key to be refused', async () => (await status(key)) === 401);
  });

  it('without its listener the API reads every key, and starts empty when the listener is back', async () => {
    const before = await cachedKey();
    const other = await cachedKey();
    await sql.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE application_name = 'promosync-keys' AND datname = current_database()`,
    );
    await until('the API to notice its listener is gone', () => h.service.keys?.active === false);
    // Nobody is told, and the cache is not used: refused at once.
    await revokeSilently(before);
    expect(await status(before)).toBe(401);
    // A revocation missed while the listener was away is not trusted away after it is back.
    await revokeSilently(other);
    await until('the key listener to be back', () => h.service.keys?.active === true);
    expect(await status(other)).toBe(401);
  });
});
