// EXPLAIN (ANALYZE, BUFFERS) of the apply statement on a realistic batch: half of a generated
// workload is applied first (so the batch meets existing rows, stale events and duplicates),
// then the next batch is explained inside a transaction that is rolled back.
//
//   npx tsx bench/explain.ts [--batch 2000] [--events 40000] [--by-cte] [--setup <sql>]
//
// --setup runs SQL on the new database before anything is applied: a schema change to weigh
// (an index dropped, a fillfactor) against the same batches without it.
// --by-cte prints, instead of the plan, each CTE's own time: every node's time minus its
// children's, summed over the nodes of that CTE (a CTE's scans count nothing: the CTE's nodes
// carry its work), as the median of three runs on the same batch.
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

interface PlanNode {
  'Node Type': string;
  'Actual Total Time': number;
  'Actual Loops': number;
  'Parent Relationship'?: string;
  'Subplan Name'?: string;
  Plans?: PlanNode[];
}

/** Adds each node's own time (its time minus its children's) to the CTE or subplan it belongs to. */
function ownTimes(node: PlanNode, part: string, into: Map<string, number>): void {
  const here = node['Subplan Name'] ?? part;
  const kids = node.Plans ?? [];
  const total = (n: PlanNode): number => n['Actual Total Time'] * n['Actual Loops'];
  let own = 0;
  if (node['Node Type'] !== 'CTE Scan') {
    own = total(node);
    // A CTE's own plan hangs off the top node but runs inside the CTE scans that read it, whose
    // time is already a child's; other init plans and subplans run inside this node.
    for (const k of kids) if (!k['Subplan Name']?.startsWith('CTE ')) own -= total(k);
  }
  into.set(here, (into.get(here) ?? 0) + Math.max(0, own));
  for (const k of kids) ownTimes(k, here, into);
}

const { values } = parseArgs({
  options: {
    batch: { type: 'string' },
    events: { type: 'string' },
    runs: { type: 'string' },
    'by-cte': { type: 'boolean' },
    setup: { type: 'string' },
  },
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
  if (values.setup) await store.pool.query(values.setup);
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
    const params = applyParams(batches[half]!, machinesParam(registry));
    if (values['by-cte']) {
      const runs = [0, 1, 2].map(() => 0).map(() => new Map<string, number>());
      const totals: number[] = [];
      for (const run of runs) {
        await client.query(APPLY_BEGIN);
        const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode; 'Execution Time': number }] }>(
          `EXPLAIN (ANALYZE, FORMAT JSON) ${APPLY_SQL}`,
          params,
        );
        await client.query('ROLLBACK');
        const plan = rows[0]!['QUERY PLAN'][0];
        totals.push(plan['Execution Time']);
        ownTimes(plan.Plan, 'main', run);
      }
      const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      const total = median(totals);
      process.stdout.write(`execution ${total.toFixed(1)} ms (median of ${runs.length})\n`);
      const names = [...new Set(runs.flatMap((r) => [...r.keys()]))];
      const rowsOut = names
        .map((n) => ({ n, ms: median(runs.map((r) => r.get(n) ?? 0)) }))
        .sort((a, b) => b.ms - a.ms);
      for (const { n, ms } of rowsOut)
        process.stdout.write(
          `${ms.toFixed(1).padStart(8)} ms ${((100 * ms) / total).toFixed(0).padStart(4)}%  ${n}\n`,
        );
    } else {
      // The settings the Applier runs the statement with.
      await client.query(APPLY_BEGIN);
      const { rows } = await client.query<{ 'QUERY PLAN': string }>(
        `EXPLAIN (ANALYZE, BUFFERS, VERBOSE false) ${APPLY_SQL}`,
        params,
      );
      process.stdout.write(`${rows.map((r) => r['QUERY PLAN']).join('\n')}\n`);
      await client.query('ROLLBACK');
    }
  } finally {
    client.release();
  }
} finally {
  await store.close();
  await db.drop();
}
