// EXPLAIN (ANALYZE, BUFFERS) of the apply statement on a realistic batch: half of a generated
// workload is applied first (so the batch meets existing rows, stale events and duplicates),
// then the next batch is explained inside a transaction that is rolled back.
//
//   npx tsx bench/explain.ts [--batch 2000] [--events 40000]
import { parseArgs } from 'node:util';
import pino from 'pino';
import { machines } from '../machines/index.ts';
import { MachineRegistry } from '../src/domain/index.ts';
import {
  APPLY_BEGIN,
  APPLY_SQL,
  Applier,
  applyParams,
  machinesParam,
  openDatabase,
  type BatchEvent,
} from '../src/store/index.ts';
import { createDatabase } from './db.ts';
import { cpuSeconds } from './proc.ts';
import { chunks, makeWorkload } from './workload.ts';

const { values } = parseArgs({
  options: { batch: { type: 'string' }, events: { type: 'string' }, runs: { type: 'string' } },
});
const batchSize = Number(values.batch ?? 2000);
const serverUrl = process.env.BENCH_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
const registry = MachineRegistry.from(machines);
const workload = makeWorkload(registry.get('promotion')!, {
  minEvents: Number(values.events ?? 40_000),
  minEntities: 1,
  seed: 42,
});
const batches: BatchEvent[][] = chunks(registry.prepare(workload.sent, 'bench', false), batchSize).map((c) =>
  c.map((event) => ({ event, jobId: '1' })),
);
const db = await createDatabase(serverUrl);
// One connection, so its backend's CPU time can be read from /proc.
const store = openDatabase(db.url, 1);
try {
  const applier = new Applier(store.pool, registry, pino({ level: 'silent' }));
  const half = Math.floor(batches.length / 2);
  const { rows: pid } = await store.pool.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const backend = pid[0]!.pid;
  const cpu0 = cpuSeconds(backend);
  const self0 = process.cpuUsage();
  const t = performance.now();
  for (const b of batches.slice(0, half)) await applier.apply(b);
  const events = half * batchSize;
  const us = (seconds: number): string => ((seconds * 1e6) / events).toFixed(1);
  const self = process.cpuUsage(self0);
  process.stdout.write(
    `applied ${half} batches of ${batchSize} on one connection: ${us((performance.now() - t) / 1000)} µs per event wall, ` +
      `${us(cpuSeconds(backend) - cpu0)} µs postgres CPU, ${us((self.user + self.system) / 1e6)} µs node CPU\n\n`,
  );
  const client = await store.pool.connect();
  try {
    // The settings the Applier runs the statement with.
    await client.query(APPLY_BEGIN);
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(
      `EXPLAIN (ANALYZE, BUFFERS, VERBOSE false) ${APPLY_SQL}`,
      applyParams(batches[half]!, machinesParam(registry)),
    );
    process.stdout.write(`${rows.map((r) => r['QUERY PLAN']).join('\n')}\n`);
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
} finally {
  await store.close();
  await db.drop();
}
