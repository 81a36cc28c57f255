import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';

/** The Redis URL used when none is configured. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** A connection to one Redis server or to a Redis Cluster; BullMQ takes either. */
export type RedisConnection = Redis | Cluster;

/**
 * Where Redis is: a URL (`redis://…`, `rediss://…`) of one server, or the seed nodes of a
 * Redis Cluster (`REDIS_CLUSTER_NODES`), from which the client learns the others.
 */
export type RedisTarget = string | { cluster: string[] };

/**
 * Parses `REDIS_CLUSTER_NODES`: `host:port` entries or `redis://` / `rediss://` URLs, comma
 * separated. The user, password and TLS of the first URL that has them apply to every node.
 * @throws Error naming the entry that is not a node.
 */
export function parseClusterNodes(list: string): {
  nodes: ClusterNode[];
  username?: string;
  password?: string;
  tls: boolean;
} {
  const nodes: ClusterNode[] = [];
  let username: string | undefined;
  let password: string | undefined;
  let tls = false;
  for (const entry of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const url = /^rediss?:\/\//.test(entry) ? new URL(entry) : new URL(`redis://${entry}`);
    const port = Number(url.port || '6379');
    if (!url.hostname || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`"${entry}" is not a cluster node (host:port or redis://host:port)`);
    }
    nodes.push({ host: url.hostname.replace(/^\[|\]$/g, ''), port });
    if (password === undefined && url.password) {
      password = decodeURIComponent(url.password);
      if (url.username) username = decodeURIComponent(url.username);
    }
    if (url.protocol === 'rediss:') tls = true;
  }
  if (nodes.length === 0) throw new Error('no cluster node given');
  return { nodes, ...(username ? { username } : {}), ...(password ? { password } : {}), tls };
}

/**
 * A Redis connection as BullMQ needs it: commands wait for a reconnect instead of failing
 * after a few retries (`maxRetriesPerRequest: null`), with a capped reconnect backoff.
 * `failFast` connections (the API's producer side) reject commands while Redis is down, so
 * clients get an error instead of a request that hangs. The one place connections are made:
 * a `{ cluster }` target gives an ioredis Cluster with the same behaviour.
 */
export function createRedis(url?: string, options?: { failFast?: boolean }): Redis;
export function createRedis(
  target: RedisTarget | undefined,
  options?: { failFast?: boolean },
): RedisConnection;
export function createRedis(
  target: RedisTarget = DEFAULT_REDIS_URL,
  options: { failFast?: boolean } = {},
): RedisConnection {
  const opts: RedisOptions = {
    maxRetriesPerRequest: options.failFast ? 1 : null,
    enableOfflineQueue: !options.failFast,
    retryStrategy: (times) => Math.min(50 * times, 2000),
    lazyConnect: false,
  };
  if (typeof target === 'string') return new Redis(target, opts);
  const { nodes, username, password, tls } = parseClusterNodes(target.cluster.join(','));
  return new Cluster(nodes, {
    enableOfflineQueue: !options.failFast,
    clusterRetryStrategy: (times) => Math.min(50 * times, 2000),
    // A master that died answers nothing until it is back or replaced: keep asking (workers)
    // or give up soon (the API, which answers 503 and lets the producer retry).
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 200,
    ...(options.failFast ? { maxRedirections: 4 } : {}),
    slotsRefreshTimeout: 2000,
    redisOptions: {
      maxRetriesPerRequest: options.failFast ? 1 : null,
      ...(username ? { username } : {}),
      ...(password ? { password } : {}),
      ...(tls ? { tls: {} } : {}),
    },
  });
}

/** Whether a connection is to a Redis Cluster. */
export function isCluster(connection: RedisConnection): connection is Cluster {
  return connection instanceof Cluster;
}

/**
 * A readiness check: PING on one server. On a cluster, PING every master the client knows, and
 * ask the cluster whether a master holding slots is down or unreachable (`CLUSTER NODES` flags
 * `fail` / `fail?`, or a disconnected link): with `cluster-require-full-coverage no` the cluster
 * state stays ok while one master is away, but the partitions on it cannot take jobs.
 * @throws Error saying what did not answer.
 */
export async function pingRedis(connection: RedisConnection): Promise<void> {
  if (!isCluster(connection)) {
    await connection.ping();
    return;
  }
  const masters = connection.nodes('master');
  if (masters.length === 0) throw new Error('no cluster master is connected');
  await Promise.all(masters.map((m) => m.ping()));
  const [info, nodes] = await Promise.all([connection.cluster('INFO'), connection.cluster('NODES')]);
  if (!/cluster_state:ok/.test(String(info))) throw new Error('the cluster state is not ok');
  for (const line of String(nodes).split('\n')) {
    // <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <epoch> <link-state> <slot>...
    const f = line.trim().split(' ');
    if (f.length < 9 || !f[2]!.split(',').includes('master')) continue;
    const flags = f[2]!.split(',');
    if (flags.includes('fail') || flags.includes('fail?') || f[7] === 'disconnected') {
      throw new Error(`cluster master ${f[1]!.split('@')[0]} is down`);
    }
  }
}
