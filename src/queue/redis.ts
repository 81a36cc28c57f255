import { Redis, type RedisOptions } from 'ioredis';

/** The Redis URL used when none is configured. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/**
 * A Redis connection as BullMQ needs it: commands wait for a reconnect instead of failing
 * after a few retries (`maxRetriesPerRequest: null`), with a capped reconnect backoff.
 * `failFast` connections (the API's producer side) reject commands while Redis is down, so
 * clients get an error instead of a request that hangs.
 */
export function createRedis(url: string = DEFAULT_REDIS_URL, options: { failFast?: boolean } = {}): Redis {
  const opts: RedisOptions = {
    maxRetriesPerRequest: options.failFast ? 1 : null,
    enableOfflineQueue: !options.failFast,
    retryStrategy: (times) => Math.min(50 * times, 2000),
    lazyConnect: false,
  };
  return new Redis(url, opts);
}
