import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedisServer, type Child, type OnSpawn } from './processes.ts';

/** A Redis Cluster of private redis-servers, for tests. */
export interface RedisCluster {
  /** `127.0.0.1:port` of each master, in the order they were created. */
  nodes: string[];
  /** The value for REDIS_CLUSTER_NODES. */
  nodesEnv: string;
  /** The running server of each master (replaced by {@link restart}). */
  servers: Child[];
  /** Starts master `i` again on its port, from its own directory (nodes file and AOF). */
  restart(i: number): Promise<Child>;
  /** Resolves once every node reports `cluster_state:ok`. */
  waitOk(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const run = (cmd: string, args: string[]): Promise<string> =>
  new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (out += d.toString()));
    p.once('error', reject);
    p.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}:\n${out}`)),
    );
  });

/**
 * Starts `masters` redis-servers in cluster mode on free ports, each fsyncing its append-only
 * file before it answers a write (`appendfsync always`), joins them with
 * `redis-cli --cluster create` (no replicas) and waits for `cluster_state:ok`. `close()` stops
 * them and removes their directory.
 */
export async function startRedisCluster(
  opts: { masters?: number; onSpawn?: OnSpawn; nodeTimeoutMs?: number } = {},
): Promise<RedisCluster> {
  const masters = opts.masters ?? 3;
  const dir = mkdtempSync(join(tmpdir(), 'promosync-cluster-'));
  const ports: number[] = [];
  const servers: Child[] = [];
  const start = async (i: number): Promise<Child> => {
    const port = ports[i]!;
    return startRedisServer(
      port,
      [
        '--cluster-enabled',
        'yes',
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--cluster-node-timeout',
        String(opts.nodeTimeoutMs ?? 2000),
        // Each partition lives on one master: the others keep serving while one is away.
        '--cluster-require-full-coverage',
        'no',
        '--dir',
        dir,
        '--appendonly',
        'yes',
        '--appendfilename',
        `appendonly-${port}.aof`,
        '--appenddirname',
        `aof-${port}`,
        '--appendfsync',
        'always',
      ],
      {
        name: `redis-${port}`,
        onSpawn: (c) => {
          opts.onSpawn?.(c);
          servers[i] = c;
        },
      },
    );
  };
  const cluster: RedisCluster = {
    nodes: [],
    nodesEnv: '',
    servers,
    restart: (i) => start(i),
    async waitOk(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const states = await Promise.all(
          ports.map(async (port) => {
            const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
            r.on('error', () => {});
            try {
              await r.connect();
              return /cluster_state:ok/.test(String(await r.cluster('INFO')));
            } catch {
              return false;
            } finally {
              r.disconnect();
            }
          }),
        );
        if (states.every(Boolean)) return;
        if (Date.now() > deadline)
          throw new Error(`cluster not ok within ${timeoutMs} ms: ${states.join(',')}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    async close() {
      await Promise.all(servers.map((s) => s.stop(5000)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    for (let i = 0; i < masters; i++) ports.push(await freePort());
    for (let i = 0; i < masters; i++) await start(i);
    cluster.nodes = ports.map((p) => `127.0.0.1:${p}`);
    cluster.nodesEnv = cluster.nodes.join(',');
    await run('redis-cli', [
      '--cluster',
      'create',
      ...cluster.nodes,
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    await cluster.waitOk();
    return cluster;
  } catch (err) {
    await cluster.close();
    throw err;
  }
}
