// Idle watch streams: what 1,000 open `GET /v1/promotions/watch` connections cost one API process.
//
//   npx tsx bench/watch-idle.ts [--watchers 1000] [--idle-s 30] [--heartbeat-ms 15000] [--poll-ms 1000]
//
// Starts `promosync api` on a fresh database, measures its RSS and CPU, opens the streams (each
// its own TCP connection, as browsers and `promosync watch` hold them), stays idle, then applies
// one change and times how long until every stream has received it. Prints a table and writes
// bench/results/watch-idle.json. The figures are indicative: the machine is shared.
import { mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { machines } from '../machines/index.ts';
import { MachineRegistry } from '../src/domain/index.ts';
import { Applier, createKey, openDatabase } from '../src/store/index.ts';
import { createDatabase, uniqueQueueName } from './db.ts';
import { cpuSeconds, rssMb as rss, spawnPromosync } from './proc.ts';

const { values } = parseArgs({
  options: {
    watchers: { type: 'string', default: '1000' },
    'idle-s': { type: 'string', default: '30' },
    'heartbeat-ms': { type: 'string', default: '15000' },
    'poll-ms': { type: 'string', default: '1000' },
  },
});
const WATCHERS = Number(values.watchers);
const IDLE_S = Number(values['idle-s']);
const SERVER = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const REDIS = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The median of 7 RSS samples a second apart: one sample lands anywhere in V8's GC cycle. */
async function steadyRss(pid: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 7; i++) {
    samples.push(rss(pid));
    await sleep(1000);
  }
  return samples.sort((a, b) => a - b)[3]!;
}

const db = await createDatabase(SERVER);
const queue = uniqueQueueName('watch');
const handles = openDatabase(db.url, 2);
const { key } = await createKey(handles.prisma, { role: 'admin' });
const api = await spawnPromosync('api', {
  DATABASE_URL: db.url,
  REDIS_URL: REDIS,
  QUEUE_NAME: queue,
  LOG_LEVEL: 'warn',
  WATCH_HEARTBEAT_MS: String(values['heartbeat-ms']),
  WATCH_POLL_MS: String(values['poll-ms']),
  RATE_LIMIT_PER_SECOND: '0',
});
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
const requests: http.ClientRequest[] = [];
try {
  // Past start-up work (module loading, the first queries' compilation) before the baseline.
  await sleep(10_000);
  const rssBefore = await steadyRss(api.pid);
  const cpu0 = cpuSeconds(api.pid);
  await sleep(5000);
  const cpuBaseline = (cpuSeconds(api.pid) - cpu0) / 5;

  // Open the streams, 50 at a time.
  const received = new Array<number>(WATCHERS).fill(0);
  let firstChangeAt = new Array<number>(WATCHERS).fill(0);
  const opened: Promise<void>[] = [];
  const openStart = Date.now();
  for (let i = 0; i < WATCHERS; i++) {
    opened.push(
      new Promise<void>((resolve, reject) => {
        const req = http.get(
          {
            host: '127.0.0.1',
            port: api.port,
            path: '/v1/promotions/watch',
            headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream' },
            agent,
          },
          (res) => {
            if (res.statusCode !== 200) return reject(new Error(`stream ${i}: ${res.statusCode}`));
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => {
              if (chunk.includes('event: change')) {
                received[i]!++;
                if (firstChangeAt[i] === 0) firstChangeAt[i] = Date.now();
              }
            });
            resolve();
          },
        );
        req.on('error', reject);
        requests.push(req);
      }),
    );
    if (i % 50 === 49) await Promise.all(opened.slice(i - 49, i + 1));
  }
  await Promise.all(opened);
  const openSeconds = (Date.now() - openStart) / 1000;
  await sleep(2000);
  const rssOpen = await steadyRss(api.pid);
  const cpu1 = cpuSeconds(api.pid);
  await sleep(IDLE_S * 1000);
  const cpuIdle = (cpuSeconds(api.pid) - cpu1) / IDLE_S;
  const rssIdle = await steadyRss(api.pid);

  // One change, fanned out to every stream.
  firstChangeAt = firstChangeAt.fill(0);
  const registry = MachineRegistry.from(machines);
  const applier = new Applier(handles.pool, registry, pino({ level: 'silent' }));
  await applier.apply(
    registry
      .prepare([{ machine: 'promotion', entityId: 'bench-1', type: 'create' }], 'bench', true)
      .map((event) => ({ event, jobId: null })),
  );
  // From the commit: what the fan-out adds to the apply.
  const t0 = Date.now();
  for (let i = 0; i < 200 && received.some((n) => n === 0); i++) await sleep(25);
  const all = received.every((n) => n === 1);
  const lat = firstChangeAt.filter((t) => t > 0).map((t) => t - t0);
  lat.sort((a, b) => a - b);

  const result = {
    watchers: WATCHERS,
    idleSeconds: IDLE_S,
    heartbeatMs: Number(values['heartbeat-ms']),
    openSeconds,
    rssMbBefore: rssBefore,
    rssMbOpen: rssOpen,
    rssMbAfterIdle: rssIdle,
    kibPerWatcher: ((rssIdle - rssBefore) * 1024) / WATCHERS,
    cpuBaselinePerSecond: cpuBaseline,
    cpuIdlePerSecond: cpuIdle,
    everyStreamGotTheChange: all,
    fanOutMs: { p50: lat[Math.floor(lat.length / 2)] ?? null, max: lat.at(-1) ?? null },
  };
  const rows: Array<[string, string]> = [
    ['watch streams', String(WATCHERS)],
    ['opened in', `${openSeconds.toFixed(1)} s`],
    ['API RSS before', `${rssBefore.toFixed(0)} MiB`],
    ['API RSS, streams open', `${rssOpen.toFixed(0)} MiB`],
    [`API RSS after ${IDLE_S} s idle`, `${rssIdle.toFixed(0)} MiB`],
    ['per stream', `${result.kibPerWatcher.toFixed(0)} KiB`],
    ['API CPU, no streams', `${(cpuBaseline * 100).toFixed(1)} % of a core`],
    ['API CPU, streams idle', `${(cpuIdle * 100).toFixed(1)} % of a core`],
    ['one change reached every stream', all ? 'yes' : `no (${received.filter((n) => n > 0).length})`],
    ['fan-out p50 / max', `${result.fanOutMs.p50} / ${result.fanOutMs.max} ms`],
  ];
  for (const [k, v] of rows) console.log(`${k.padEnd(34)} ${v}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/watch-idle.json', `${JSON.stringify(result, null, 2)}\n`);
} finally {
  for (const r of requests) r.destroy();
  agent.destroy();
  await api.stop();
  await handles.close();
  await db.drop();
}
