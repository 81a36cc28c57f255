import { mkdir, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { machines } from '../machines/index.ts';
import { MachineRegistry, type EventInput } from '../src/domain/index.ts';
import { createKey, openDatabase } from '../src/store/index.ts';
import { createRedis } from '../src/queue/index.ts';
import type { BenchSettings } from './context.ts';
import { createDatabase, uniqueQueueName } from './db.ts';
import { ROOT, spawnPromosync, type Child } from './proc.ts';
import { defaultSettings, runBench } from './run.ts';
import { benchQueue, promosyncEnv, stopAll, waitDrained } from './scenarios/common.ts';
import { postEvents } from './scenarios/rest.ts';
import { expectedStates, verifyConvergence, type ConvergenceReport } from './verify.ts';
import { chunks, makeWorkload } from './workload.ts';
import { machineInfo } from './report.ts';

export interface SoakOptions {
  minutes: number;
  /** Events per second to send; by default half of the peak measured first. */
  rate?: number;
  seed?: number;
  outDir?: string;
  settings?: Partial<BenchSettings>;
  log?: (line: string) => void;
}

interface Sample {
  atSeconds: number;
  workerRssMb: number;
  apiRssMb: number;
  sentEvents: number;
  queuedJobs: number;
}

export interface SoakReport {
  startedAt: string;
  machine: Record<string, string | number>;
  minutes: number;
  peakRate: number | undefined;
  targetRate: number;
  achievedRate: number;
  events: number;
  samples: Sample[];
  maxWorkerRssMb: number;
  convergence: ConvergenceReport | undefined;
  error?: string;
  ok: boolean;
}

const RSS_LIMIT_MB = 300;

/**
 * The soak: REST batches at a fixed rate (half the peak unless told) for `minutes`, to an API
 * process and one worker process, sampling both processes' RSS every 5 s. The input is one
 * generated workload sent round after round under new entity ids (`s<round>.<id>`), whole
 * rounds only, so every entity can be checked for convergence at the end.
 */
export async function runSoak(serverUrl: string, redisUrl: string, o: SoakOptions): Promise<SoakReport> {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const s = { ...defaultSettings(serverUrl, redisUrl), ...o.settings };
  const startedAt = new Date().toISOString();
  let peakRate: number | undefined;
  let rate = o.rate;
  if (rate === undefined) {
    log('measuring the peak first (batched REST ingest, API and worker processes apart)');
    const peak = await runBench(serverUrl, redisUrl, {
      events: 60_000,
      entities: 20_000,
      only: ['rest-split-1'],
      settings: o.settings ?? {},
      ...(o.outDir ? { outDir: o.outDir } : {}),
      log,
    });
    const r = peak.results[0];
    if (!r || r.error) throw new Error(`the peak run failed: ${r?.error ?? 'no result'}`);
    peakRate = r.rate;
    rate = Math.round(r.rate / 2);
  }
  log(`soak: ${o.minutes} min at ${rate} events/s`);

  const registry = MachineRegistry.from(machines);
  const info = registry.get('promotion')!;
  // One round ≈ 20 s of sending.
  const base = makeWorkload(info, {
    minEvents: Math.max(10_000, rate * 20),
    minEntities: 1,
    seed: o.seed ?? 42,
  });
  const baseExpected = expectedStates(registry, base, 'bench');
  const baseChunks = chunks(base.sent, s.requestEvents);
  const rename = (round: number, events: EventInput[]): string =>
    JSON.stringify({
      events: events.map((e) => {
        const entityId = `s${round}.${e.entityId}`;
        return { ...e, entityId, eventId: `s${round}.${e.eventId!}` };
      }),
    });

  const db = await createDatabase(s.serverUrl);
  const queueName = uniqueQueueName('soak');
  const redis = createRedis(s.redisUrl);
  const { queue, dispose } = benchQueue(queueName, redis);
  const store = openDatabase(db.url, 2);
  const children: Child[] = [];
  const samples: Sample[] = [];
  const report: SoakReport = {
    startedAt,
    machine: machineInfo({}),
    minutes: o.minutes,
    peakRate,
    targetRate: rate,
    achievedRate: 0,
    events: 0,
    samples,
    maxWorkerRssMb: 0,
    convergence: undefined,
    ok: false,
  };
  let sampler: NodeJS.Timeout | undefined;
  try {
    const { key } = await createKey(store.prisma, { role: 'producer', source: 'bench' });
    const env = promosyncEnv(s, db.url, queueName, s.restConcurrency);
    const api = await spawnPromosync('api', env, s.nodeArgs);
    children.push(api);
    const worker = await spawnPromosync('worker', env, s.nodeArgs);
    children.push(worker);
    const agent = new http.Agent({ keepAlive: true, maxSockets: s.clients });
    const t0 = performance.now();
    const deadline = t0 + o.minutes * 60_000;
    let sentEvents = 0;
    const sample = async (): Promise<void> => {
      const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      const x: Sample = {
        atSeconds: Math.round((performance.now() - t0) / 1000),
        workerRssMb: Math.round(worker.rssMb()),
        apiRssMb: Math.round(api.rssMb()),
        sentEvents,
        queuedJobs: Object.values(counts).reduce((a, b) => a + b, 0),
      };
      samples.push(x);
      log(
        `t=${String(x.atSeconds).padStart(4)} s  worker RSS ${x.workerRssMb} MB  API RSS ${x.apiRssMb} MB  sent ${x.sentEvents}  queued jobs ${x.queuedJobs}`,
      );
    };
    await sample();
    sampler = setInterval(() => void sample().catch(() => {}), 5000);
    let rounds = 0;
    let request = 0;
    const inFlight = new Set<Promise<void>>();
    while (performance.now() < deadline) {
      for (const c of baseChunks) {
        const due = t0 + (request * s.requestEvents * 1000) / rate;
        request += 1;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        while (inFlight.size >= s.clients) await Promise.race(inFlight);
        const p = postEvents(agent, api.port!, key, rename(rounds, c)).then(() => {
          sentEvents += c.length;
        });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p)).catch(() => {});
        const dead = children.find((ch) => !ch.alive());
        if (dead) throw new Error(`${dead.name} exited:\n${dead.output()}`);
      }
      rounds += 1;
    }
    await Promise.all(inFlight);
    const sentSeconds = (performance.now() - t0) / 1000;
    await waitDrained(queue, children);
    clearInterval(sampler);
    await sample();
    agent.destroy();
    report.events = rounds * base.sent.length;
    report.achievedRate = Math.round(report.events / sentSeconds);
    report.maxWorkerRssMb = Math.max(...samples.map((x) => x.workerRssMb));
    await stopAll(children);
    log(`soak: ${rounds} rounds, ${report.events} events sent; checking convergence`);
    report.convergence = await verifyConvergence(
      store.pool,
      base.machine,
      rounds * baseExpected.size,
      (eid) => {
        const dot = eid.indexOf('.');
        const round = Number(eid.slice(1, dot));
        return round < rounds ? baseExpected.get(eid.slice(dot + 1)) : undefined;
      },
      report.events,
    );
    report.ok = report.convergence.ok && report.maxWorkerRssMb < RSS_LIMIT_MB;
  } catch (err) {
    report.error = err instanceof Error ? err.message : String(err);
  } finally {
    if (sampler) clearInterval(sampler);
    await stopAll(children);
    await store.close();
    await dispose();
    redis.disconnect();
    await db.drop();
  }

  const outDir = o.outDir ?? path.join(ROOT, 'bench', 'results');
  await mkdir(outDir, { recursive: true });
  const json = path.join(outDir, `soak-${startedAt.replace(/[:.]/g, '-')}.json`);
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(path.join(outDir, 'soak.md'), soakMarkdown(report));
  const verdict = report.ok ? 'passed' : 'FAILED';
  process.stdout.write(
    `\nsoak ${verdict}: ${report.events} events at ${report.achievedRate} events/s (target ${report.targetRate}), worker RSS max ${report.maxWorkerRssMb} MB (limit ${RSS_LIMIT_MB}), ${report.convergence?.ok ? 'converged' : `did not converge${report.error ? `: ${report.error}` : ''}`}\n`,
  );
  return report;
}

function soakMarkdown(r: SoakReport): string {
  const lines = [
    '# promosync soak',
    '',
    `Run ${r.startedAt}: ${r.minutes} min of batched REST ingest at ${r.targetRate} events/s${r.peakRate ? ` (half the measured peak of ${Math.round(r.peakRate)})` : ''}; API and worker in separate processes.`,
    '',
    `- verdict: ${r.ok ? 'passed' : '**failed**'}${r.error ? ` (${r.error.split('\n')[0]})` : ''}`,
    `- events: ${r.events}, achieved ${r.achievedRate} events/s`,
    `- worker RSS max: ${r.maxWorkerRssMb} MB (limit ${RSS_LIMIT_MB} MB)`,
    `- convergence: ${r.convergence ? (r.convergence.ok ? `every one of ${r.convergence.entities} entities converged, ${r.convergence.logged} events logged` : JSON.stringify(r.convergence)) : 'not checked'}`,
    '',
    '| t (s) | worker RSS (MB) | API RSS (MB) | events sent | jobs queued |',
    '|---|---|---|---|---|',
    ...r.samples.map(
      (x) => `| ${x.atSeconds} | ${x.workerRssMb} | ${x.apiRssMb} | ${x.sentEvents} | ${x.queuedJobs} |`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}
