import type { Command } from 'commander';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { loadConfig } from '../config.ts';
import {
  createRedis,
  listFailedJobs,
  pingRedis,
  queueNamesOf,
  retryFailedJobs,
  type FailedJob,
  type RedisConnection,
  type RetryResult,
} from '../queue/index.ts';
import { resolveTargets } from './targets.ts';

/** The queues of a command: the one `--queue` names, or every partition of QUEUE_NAME. */
interface Queues {
  list: Queue[];
  /** Several partitions: job ids are shown and taken as `<partition>/<id>`. */
  partitioned: boolean;
}

/** Opens the queues, failing fast (not waiting forever as workers do) when Redis is not there. */
async function withQueues<T>(name: string | undefined, fn: (queues: Queues) => Promise<T>): Promise<T> {
  const config = loadConfig();
  let connection: RedisConnection;
  let where: string;
  if (config.redisClusterNodes) {
    where = `the Redis Cluster at ${config.redisClusterNodes.join(',')}`;
    connection = createRedis({ cluster: [...config.redisClusterNodes] }, { failFast: true });
  } else {
    const { redisUrl } = await resolveTargets(config);
    where = redisUrl;
    connection = new Redis(redisUrl, {
      lazyConnect: true,
      connectTimeout: 5000,
      maxRetriesPerRequest: 3,
      retryStrategy: (times) => (times > 3 ? null : 200 * times),
    });
  }
  connection.on('error', () => {});
  try {
    if (connection instanceof Redis) await connection.connect();
    else await pingRedis(connection);
  } catch (err) {
    connection.disconnect();
    throw new Error(`cannot reach Redis at ${where} (${(err as Error).message}); set REDIS_URL`, {
      cause: err,
    });
  }
  const names = name ? [name] : queueNamesOf(config.queueName, config.queuePartitions);
  const list = names.map((n) => new Queue(n, { connection }));
  try {
    return await fn({ list, partitioned: list.length > 1 });
  } finally {
    await Promise.all(list.map((q) => q.close()));
    connection.disconnect();
  }
}

/** Failed jobs of every queue, most recent first; ids as `<partition>/<id>` when partitioned. */
async function listAll(queues: Queues, limit: number): Promise<{ total: number; jobs: FailedJob[] }> {
  const each = await Promise.all(queues.list.map((q) => listFailedJobs(q, limit)));
  const jobs = each
    .flatMap((r, p) => r.jobs.map((j) => (queues.partitioned ? { ...j, id: `${p}/${j.id}` } : j)))
    .sort((a, b) => (b.failedAt ?? b.timestamp) - (a.failedAt ?? a.timestamp))
    .slice(0, limit);
  return { total: each.reduce((n, r) => n + r.total, 0), jobs };
}

/** Retries jobs named as `failed list` shows them, or all. */
async function retryAll(queues: Queues, ids: string[] | 'all'): Promise<RetryResult[]> {
  if (!queues.partitioned) return retryFailedJobs(queues.list[0]!, ids);
  if (ids === 'all') {
    const each = await Promise.all(queues.list.map((q) => retryFailedJobs(q, 'all')));
    return each.flatMap((rs, p) => rs.map((r) => ({ ...r, id: `${p}/${r.id}` })));
  }
  const out: RetryResult[] = [];
  for (const id of ids) {
    const m = /^(\d+)\/(.+)$/.exec(id);
    const queue = m ? queues.list[Number(m[1])] : undefined;
    if (!m || !queue) {
      out.push({ id, result: 'missing' });
      continue;
    }
    const [r] = await retryFailedJobs(queue, [m[2]!]);
    out.push({ ...r!, id });
  }
  return out;
}

const clip = (s: string, n: number): string => {
  const one = s.replace(/\s+/g, ' ');
  return one.length <= n ? one : `${one.slice(0, n - 1)}…`;
};

function table(jobs: FailedJob[]): string {
  const rows = jobs.map((j) => [
    j.id,
    new Date(j.failedAt ?? j.timestamp).toISOString(),
    `${j.attemptsMade}/${j.attempts}`,
    clip(j.failedReason, 70),
    clip(j.preview, 70),
  ]);
  const head = ['ID', 'FAILED AT', 'ATTEMPTS', 'REASON', 'DATA'];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows]
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(width[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `failed list|retry`. */
export function registerFailed(program: Command): void {
  const cmd = program
    .command('failed')
    .description(
      'inspect and retry queue jobs that failed (bad data, or an error that outlasted its retries)',
    );
  cmd
    .command('list')
    .description('list failed jobs, most recent first')
    .option('--limit <n>', 'show at most this many', (v) => Number.parseInt(v, 10), 50)
    .option('--queue <name>', 'one queue by its full name (default: every partition of QUEUE_NAME)')
    .option('--json', 'print the jobs as JSON, one object per line')
    .addHelpText(
      'after',
      `
Each job shows its id, when it failed, attempts made/allowed, the reason and what it
carried (source and events). Bad input fails at once and stays here; so does a job whose
error outlasted all its attempts. Fix the cause, then \`promosync failed retry\`.

Examples:
  promosync failed list
  promosync failed list --limit 500 --json | jq .failedReason
  REDIS_URL=redis://redis:6379 QUEUE_NAME=status-events promosync failed list`,
    )
    .action(async (o: { limit: number; queue?: string; json?: boolean }) => {
      if (!Number.isInteger(o.limit) || o.limit < 1) throw new Error('--limit must be a positive integer');
      const { total, jobs } = await withQueues(o.queue, (q) => listAll(q, o.limit));
      if (o.json) {
        for (const j of jobs) process.stdout.write(`${JSON.stringify(j)}\n`);
        return;
      }
      if (total === 0) {
        process.stdout.write('no failed jobs\n');
        return;
      }
      process.stdout.write(
        `${total} failed job${total === 1 ? '' : 's'}${total > jobs.length ? ` (showing the ${jobs.length} most recent)` : ''}\n`,
      );
      process.stdout.write(`${table(jobs)}\n`);
    });
  cmd
    .command('retry')
    .description('run failed jobs again, with fresh attempts')
    .argument('[jobIds...]', 'ids shown by failed list (<partition>/<id> when the queue is partitioned)')
    .option('--all', 'retry every job failed right now')
    .option('--queue <name>', 'one queue by its full name (default: every partition of QUEUE_NAME)')
    .addHelpText(
      'after',
      `
Retried jobs go back to the wait list and a worker applies them as usual; applying an
event twice is harmless (it is recorded as a duplicate). A job that fails again shows up
in \`promosync failed list\` again. Exit status 1 if a named job is missing or not failed.

Examples:
  promosync failed retry 1234 1240
  promosync failed retry --all`,
    )
    .action(async (ids: string[], o: { all?: boolean; queue?: string }) => {
      if (Boolean(o.all) === ids.length > 0)
        throw new Error('name the jobs to retry, or pass --all (not both)');
      const results = await withQueues(o.queue, (q) => retryAll(q, o.all ? 'all' : ids));
      let bad = 0;
      for (const r of results) {
        if (r.result === 'retried') process.stdout.write(`retried ${r.id}\n`);
        else {
          bad++;
          process.stdout.write(
            r.result === 'missing' ? `no job ${r.id}\n` : `job ${r.id} is ${r.state}, not failed\n`,
          );
        }
      }
      const n = results.length - bad;
      process.stdout.write(
        n === 0 && o.all
          ? 'no failed jobs\n'
          : `retried ${n} job${n === 1 ? '' : 's'}; see \`promosync failed list\` for any that fail again\n`,
      );
      if (bad > 0) process.exitCode = 1;
    });
}
