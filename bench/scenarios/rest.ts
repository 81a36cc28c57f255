import http from 'node:http';
import { createKey, openDatabase } from '../../src/store/index.ts';
import { createRedis } from '../../src/queue/index.ts';
import type { BenchContext, ScenarioResult } from '../context.ts';
import { CpuMeter, percentile } from '../cpu.ts';
import { createDatabase, uniqueQueueName } from '../db.ts';
import { spawnPromosync, type Child } from '../proc.ts';
import { expectedStates, verifyConvergence } from '../verify.ts';
import { chunks, makeWorkload } from '../workload.ts';
import { benchQueue, promosyncEnv, stopAll, waitDrained } from './common.ts';
import { queueNamesOf } from '../../src/queue/index.ts';
import { freePort } from '../../src/runtime/index.ts';

/**
 * How the promosync processes are laid out: API and worker in one process, or apart; apart,
 * the workers share one queue, or with `partitioned` each consumes its own queue partition
 * (QUEUE_PARTITIONS = workers, WORKER_PARTITIONS = its index).
 */
export type RestLayout = { kind: 'combined' } | { kind: 'split'; workers: number; partitioned?: boolean };

export function layoutName(l: RestLayout): string {
  if (l.kind === 'combined') return 'API + worker in one process';
  const base = `API process + ${l.workers} worker process(es)`;
  return l.partitioned ? `${base}, one queue partition each` : base;
}

/** The sum of a counter's samples in a Prometheus text exposition, by one label's value. */
function counterByLabel(text: string, metric: string, label: string): Map<string, number> {
  const out = new Map<string, number>();
  const re = new RegExp(`^${metric}\\{[^}]*${label}="([^"]*)"[^}]*\\} (\\S+)$`, 'gm');
  for (const m of text.matchAll(re)) out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[2]));
  return out;
}

/** A request the API accepted: its job, its events, and when the 202 arrived. */
export interface Accepted {
  jobId: string;
  events: number;
  acceptedAt: number;
}

/** POSTs a body of events; resolves on 202, rejects with the answer otherwise. */
export function postEvents(agent: http.Agent, port: number, key: string, body: string): Promise<Accepted> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/v1/events',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const acceptedAt = Date.now();
          const text = Buffer.concat(parts).toString();
          if (res.statusCode !== 202) {
            reject(new Error(`POST /v1/events answered ${res.statusCode}: ${text.slice(0, 500)}`));
            return;
          }
          const { jobId, accepted } = JSON.parse(text) as { jobId: string; accepted: number };
          resolve({ jobId, events: accepted, acceptedAt });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends every body with `clients` concurrent keep-alive connections, in order of the list. */
async function sendAll(port: number, key: string, bodies: string[], clients: number): Promise<Accepted[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: clients });
  const out: Accepted[] = [];
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (next < bodies.length) {
          const body = bodies[next++]!;
          out.push(await postEvents(agent, port, key, body));
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  return out;
}

/**
 * Batched REST ingest end to end: HTTP POSTs of `requestEvents` events from several
 * clients to a real API, queued in BullMQ, applied by promosync's worker. Throughput is
 * the events sent over the time from the first request to the last job finished; latency
 * is per request, from its 202 to the moment its job finished (all its events applied).
 */
/** promosync_apply_retries_total of each worker, summed by reason. */
async function applyRetries(ports: number[]): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const port of ports) {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    for (const [reason, n] of counterByLabel(text, 'promosync_apply_retries_total', 'reason'))
      out.set(reason, (out.get(reason) ?? 0) + n);
  }
  return out;
}

export async function restIngest(ctx: BenchContext, layout: RestLayout): Promise<ScenarioResult> {
  const s = ctx.settings;
  const id =
    layout.kind === 'combined'
      ? 'rest-combined'
      : `rest-split-${layout.workers}${layout.partitioned ? 'p' : ''}`;
  const partitions = layout.kind === 'split' && layout.partitioned ? layout.workers : 1;
  const name = `Batched REST ingest (${layoutName(layout)})`;
  const db = await createDatabase(s.serverUrl);
  const queueName = uniqueQueueName('rest');
  const redis = createRedis(s.redisUrl);
  const handles = queueNamesOf(queueName, partitions).map((n) => benchQueue(n, redis));
  const queues = handles.map((h) => h.queue);
  const dispose = async (): Promise<void> => {
    for (const h of handles) await h.dispose();
  };
  const metricsPorts: number[] = [];
  const children: Child[] = [];
  const store = openDatabase(db.url, 4);
  const result: ScenarioResult = { id, name, count: 0, seconds: 0, rate: 0, unit: 'events/s', notes: [] };
  try {
    const { key } = await createKey(store.prisma, { role: 'producer', source: 'bench' });
    const env = {
      ...promosyncEnv(s, db.url, queueName, s.restConcurrency),
      QUEUE_PARTITIONS: String(partitions),
    };
    if (layout.kind === 'combined') children.push(await spawnPromosync('start', env, s.nodeArgs));
    else {
      children.push(await spawnPromosync('api', env, s.nodeArgs));
      for (let i = 0; i < layout.workers; i++) {
        const port = await freePort();
        metricsPorts.push(port);
        const own = {
          METRICS_PORT: String(port),
          ...(partitions > 1 ? { WORKER_PARTITIONS: String(i) } : {}),
        };
        children.push(await spawnPromosync('worker', { ...env, ...own }, s.nodeArgs));
      }
    }
    const port = children[0]!.port!;

    // Warm-up on other entities, so JIT compilation and connection set-up stay out of the figure.
    const info = ctx.registry.get(ctx.workload.machine)!;
    const warm = makeWorkload(info, { minEvents: 4 * s.requestEvents, minEntities: 1, seed: 7, prefix: 'w' });
    const warmBodies = chunks(warm.sent, s.requestEvents).map((c) => JSON.stringify({ events: c }));
    await sendAll(port, key, warmBodies, s.clients);
    await waitDrained(queues, children);
    // Retries counted from here on only (the warm-up's are subtracted).
    const retriesBefore = await applyRetries(metricsPorts);

    const bodies = chunks(ctx.workload.sent, s.requestEvents).map((c) => JSON.stringify({ events: c }));
    const cpu = new CpuMeter(s.serverUrl, db.name, redis, () =>
      Object.fromEntries(children.map((c, i) => [i === 0 ? c.name : `${c.name} #${i}`, c.pid])),
    );
    await cpu.start();
    const t0 = Date.now();
    let sent = false;
    const [accepted] = await Promise.all([
      sendAll(port, key, bodies, s.clients).finally(() => (sent = true)),
      waitDrained(queues, children, { done: () => sent }),
    ]);
    const seen = await waitDrained(queues, children);
    result.cpu = await cpu.stop();
    const acceptedAll = Math.max(...accepted.map((a) => a.acceptedAt));

    const latencies: number[] = [];
    let end = 0;
    for (const a of accepted) {
      const job = (await Promise.all(queues.map((q) => q.getJob(a.jobId)))).find((j) => j);
      if (!job?.finishedOn) continue;
      end = Math.max(end, job.finishedOn);
      latencies.push(job.finishedOn - a.acceptedAt);
    }
    if (latencies.length < accepted.length) end = seen;
    let failed = 0;
    for (const q of queues) failed += await q.getFailedCount();
    if (failed > 0) throw new Error(`${failed} job(s) failed`);
    if (metricsPorts.length > 0) {
      const after = await applyRetries(metricsPorts);
      const by = [...after].map(([reason, n]) => [reason, n - (retriesBefore.get(reason) ?? 0)] as const);
      const total = by.reduce((a, [, n]) => a + n, 0);
      result.retries = total;
      result.notes.push(
        `apply statements aborted and run again: ${total}${
          total > 0
            ? ` (${by
                .filter(([, n]) => n > 0)
                .map(([r, n]) => `${r} ${n}`)
                .join(', ')})`
            : ''
        }`,
      );
    }

    result.count = ctx.workload.sent.length;
    result.seconds = (end - t0) / 1000;
    result.rate = result.count / result.seconds;
    result.latency = {
      p50: percentile(latencies, 50),
      p99: percentile(latencies, 99),
      max: percentile(latencies, 100),
      samples: latencies.length,
    };
    result.notes.push(
      `${bodies.length} requests of ≤${s.requestEvents} events from ${s.clients} clients; all accepted after ${((acceptedAll - t0) / 1000).toFixed(2)} s (${Math.round(result.count / ((acceptedAll - t0) / 1000))} events/s accepted)`,
    );
    if (latencies.length < accepted.length)
      result.notes.push(
        `latency from ${latencies.length} of ${accepted.length} jobs (the rest were trimmed)`,
      );

    await stopAll(children);
    const warmExpected = expectedStates(ctx.registry, warm, 'bench');
    result.convergence = await verifyConvergence(
      store.pool,
      ctx.workload.machine,
      ctx.expected.size + warmExpected.size,
      (eid) => ctx.expected.get(eid) ?? warmExpected.get(eid),
      ctx.workload.sent.length + warm.sent.length,
    );
    if (!result.convergence.ok) result.error = 'did not converge';
  } catch (err) {
    result.error = err instanceof Error ? err.message : String(err);
  } finally {
    await stopAll(children);
    await store.close();
    await dispose();
    redis.disconnect();
    await db.drop();
  }
  return result;
}
