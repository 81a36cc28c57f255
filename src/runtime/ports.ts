import { createServer } from 'node:net';
import { once } from 'node:events';
import { Redis } from 'ioredis';

/** A TCP port nobody listens on right now on `host` (the OS picks it). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Connects once to the Redis at `url` (no retries, no offline queue, `timeoutMs` to connect),
 * sends PING and disconnects. Resolves with the answer; rejects with the connection's error.
 */
export async function pingRedis(url: string, timeoutMs: number): Promise<string> {
  const client = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    return await client.ping();
  } finally {
    client.disconnect();
  }
}

/** Whether a Redis server answers PING at `url` within `timeoutMs`. Never throws. */
export async function redisAnswers(url: string, timeoutMs = 1500): Promise<boolean> {
  try {
    return (await pingRedis(url, timeoutMs)) === 'PONG';
  } catch {
    return false;
  }
}
