import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { DEFAULT_REDIS_URL } from '../queue/index.ts';
import { EmbeddedPostgres } from './embedded-postgres.ts';
import { PrivateRedis } from './private-redis.ts';
import { redisAnswers } from './ports.ts';

export interface BackendsOptions {
  config: Readonly<Config>;
  logger?: Logger;
  /** The Redis tried when REDIS_URL is unset, before starting a private one. @defaultValue redis://127.0.0.1:6379 */
  defaultRedisUrl?: string;
  /** The Redis server binary. @defaultValue 'redis-server' */
  redisCommand?: string;
}

/** The Postgres and Redis a `start` uses, and which of them it runs itself. */
export interface Backends {
  databaseUrl: string;
  redisUrl: string;
  /** Set when the database is the embedded PGlite. */
  embeddedPostgres?: { dir: string; url: string; created: boolean };
  /** Set when Redis is a private redis-server. */
  privateRedis?: { dir: string; url: string };
  /** Stops what was started here (Redis last, after its clients are gone). */
  close(): Promise<void>;
}

/**
 * Finds or starts the backing services for `promosync start`:
 * - DATABASE_URL set → that database; unset → embedded PGlite under `<DATA_DIR>/pglite`.
 * - REDIS_URL set → that Redis, as is (if it is down, workers wait for it as in production);
 *   unset → redis://127.0.0.1:6379 if a Redis answers there, else a private `redis-server`
 *   under `<DATA_DIR>/redis`, or an error that says how to get one.
 */
export async function startBackends(opts: BackendsOptions): Promise<Backends> {
  const { config, logger } = opts;
  let postgres: EmbeddedPostgres | undefined;
  let redis: PrivateRedis | undefined;
  const close = async (): Promise<void> => {
    await postgres?.close();
    await redis?.close();
  };
  try {
    let databaseUrl = config.databaseUrl;
    let embeddedPostgres: Backends['embeddedPostgres'];
    if (databaseUrl === undefined) {
      const dir = path.join(config.dataDir, 'pglite');
      postgres = new EmbeddedPostgres({ dir, ...(logger ? { logger } : {}) });
      databaseUrl = await postgres.start();
      embeddedPostgres = { dir, url: databaseUrl, created: postgres.created };
    }

    let redisUrl = config.redisUrl;
    let privateRedis: Backends['privateRedis'];
    if (redisUrl === undefined) {
      const fallback = opts.defaultRedisUrl ?? DEFAULT_REDIS_URL;
      if (await redisAnswers(fallback)) {
        redisUrl = fallback;
      } else {
        const dir = path.join(config.dataDir, 'redis');
        logger?.info({ tried: fallback, dir }, 'no Redis answers; starting a private redis-server');
        redis = new PrivateRedis({
          dir,
          ...(logger ? { logger } : {}),
          ...(opts.redisCommand ? { command: opts.redisCommand } : {}),
        });
        redisUrl = await redis.start();
        privateRedis = { dir, url: redisUrl };
      }
    }
    return {
      databaseUrl,
      redisUrl,
      ...(embeddedPostgres ? { embeddedPostgres } : {}),
      ...(privateRedis ? { privateRedis } : {}),
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
