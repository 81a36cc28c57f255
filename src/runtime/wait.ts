import pg from 'pg';
import type { Logger } from 'pino';
import { isTransient } from '../store/index.ts';
import { pingRedis } from './ports.ts';

/** How {@link waitFor} retries. */
export interface WaitOptions {
  /** Give up once this much time has passed since the first attempt; 0 tries once. */
  totalMs: number;
  logger?: Logger | undefined;
  /** First delay between attempts, doubled after each. @defaultValue 250 */
  firstDelayMs?: number;
  /** Longest delay between attempts. @defaultValue 5000 */
  maxDelayMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const messageOf = (err: unknown): string =>
  err instanceof Error ? err.message || (err as { code?: string }).code || err.name : String(err);

/**
 * Calls `attempt` until it resolves, with a doubling delay, for at most `totalMs`. Each
 * failure is logged with what is awaited and the next delay. Errors for which `retry` is
 * false (wrong password, no such database) end the wait at once.
 * @throws Error naming `what`, the time waited and the last error.
 */
export async function waitFor(
  what: string,
  attempt: () => Promise<void>,
  retry: (err: unknown) => boolean,
  opts: WaitOptions,
): Promise<void> {
  const started = Date.now();
  let delay = opts.firstDelayMs ?? 250;
  for (let n = 1; ; n++) {
    try {
      await attempt();
      if (n > 1)
        opts.logger?.info({ awaiting: what, attempts: n, waitedMs: Date.now() - started }, `${what} answers`);
      return;
    } catch (err) {
      const waited = Date.now() - started;
      const left = opts.totalMs - waited;
      if (!retry(err) || left <= 0) {
        throw new Error(
          retry(err)
            ? `${what} did not answer within ${opts.totalMs} ms (STARTUP_WAIT_MS): ${messageOf(err)}`
            : `${what}: ${messageOf(err)}`,
          { cause: err },
        );
      }
      const next = Math.min(delay, left);
      opts.logger?.warn(
        {
          awaiting: what,
          attempt: n,
          error: messageOf(err),
          nextDelayMs: next,
          waitedMs: waited,
          limitMs: opts.totalMs,
        },
        `waiting for ${what}`,
      );
      await sleep(next);
      delay = Math.min(delay * 2, opts.maxDelayMs ?? 5000);
    }
  }
}

/** host:port of a URL, for logs (never its credentials). */
const where = (url: string): string => {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port}`;
  } catch {
    return '(unparsable URL)';
  }
};

/** Waits until Postgres at `url` runs a query. */
export function waitForPostgres(url: string, opts: WaitOptions): Promise<void> {
  return waitFor(
    `Postgres at ${where(url)}`,
    async () => {
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.query('SELECT 1');
      } finally {
        await client.end().catch(() => {});
      }
    },
    // "the database system is starting up" (57P03) is transient; a wrong password is not.
    (err) => isTransient(err),
    opts,
  );
}

/**
 * Waits until Redis answers PING (also while it loads its data set): at `url`, or for a
 * cluster at any one of its seed nodes (`host:port` or redis:// URLs), which is all a
 * cluster client needs to find the others.
 */
export function waitForRedis(url: string | readonly string[], opts: WaitOptions): Promise<void> {
  const urls = (typeof url === 'string' ? [url] : url).map((u) =>
    /^rediss?:\/\//.test(u) ? u : `redis://${u}`,
  );
  return waitFor(
    urls.length === 1
      ? `Redis at ${where(urls[0]!)}`
      : `a Redis Cluster node of ${urls.map(where).join(', ')}`,
    async () => {
      let last: unknown;
      for (const u of urls) {
        try {
          await pingRedis(u, 5000);
          return;
        } catch (err) {
          last = err;
        }
      }
      throw last;
    },
    (err) => !/NOAUTH|WRONGPASS|invalid password|invalid username/i.test(messageOf(err)),
    opts,
  );
}
