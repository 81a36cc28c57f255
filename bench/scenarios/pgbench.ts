import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { PreparedEvent } from '../../src/domain/index.ts';
import type { BenchContext, ScenarioResult } from '../context.ts';
import { CpuMeter, type CpuReport } from '../cpu.ts';
import { benchPool, createDatabase, type BenchDatabase } from '../db.ts';
import { wrongStatuses } from '../verify.ts';
import { designTable, foldedChunks } from './postgres.ts';

/** What a pgbench run measured: its own duration (connections excluded), CPU, and notes. */
export interface PgbenchRun {
  seconds: number;
  cpu: CpuReport;
  notes: string[];
}

/** The pgbench binary: `PGBENCH`, else the one on PATH (it ships with PostgreSQL). */
const PGBENCH = process.env.PGBENCH ?? 'pgbench';

/** `user`+`sys` seconds of one line of the shell's `times` (e.g. `0m1.230s 0m0.450s`). */
function timesSeconds(line: string): number {
  let total = 0;
  for (const m of line.matchAll(/(\d+)m([\d.]+)s/g)) total += Number(m[1]) * 60 + Number(m[2]);
  return total;
}

/**
 * Runs `script` with pgbench: `clients` connections (threads: up to 2), prepared statements,
 * `transactions` runs of the script per client, `vars` as `-D` variables. The duration is
 * pgbench's own (transactions over its tps, without connection set-up); the CPU of pgbench
 * itself comes from the shell's `times` once it has exited.
 * @throws when pgbench fails, aborts a client or processes fewer transactions than asked.
 */
export async function runPgbench(
  url: string,
  script: string,
  cpu: CpuMeter,
  o: { clients: number; transactions: number; vars: Record<string, number> },
): Promise<PgbenchRun> {
  const dir = await mkdtemp(path.join(tmpdir(), 'promosync-pgbench-'));
  try {
    const file = path.join(dir, 'script.sql');
    await writeFile(file, script);
    const args = [
      '-n',
      '-M',
      'prepared',
      '-c',
      String(o.clients),
      '-j',
      String(Math.min(2, o.clients)),
      '-t',
      String(o.transactions),
      ...Object.entries(o.vars).flatMap(([k, v]) => ['-D', `${k}=${v}`]),
      '-f',
      file,
      url,
    ];
    await cpu.start();
    const { code, out } = await new Promise<{ code: number; out: string }>((resolve, reject) => {
      // `times` after pgbench exits prints the CPU its children (pgbench) used.
      const child = spawn('sh', ['-c', `"$0" "$@"; rc=$?; times; exit $rc`, PGBENCH, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const parts: Buffer[] = [];
      child.stdout.on('data', (c: Buffer) => parts.push(c));
      child.stderr.on('data', (c: Buffer) => parts.push(c));
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c ?? 1, out: Buffer.concat(parts).toString() }));
    });
    const report = await cpu.stop();
    if (code === 127)
      throw new Error(`${PGBENCH} not found: install PostgreSQL's pgbench or name it in PGBENCH`);
    const lines = out.trimEnd().split('\n');
    const processed = /actually processed: (\d+)\/(\d+)/.exec(out);
    const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
    const failed = /number of failed transactions: (\d+)/.exec(out);
    if (code !== 0 || !processed || !tps || processed[1] !== processed[2] || (failed && failed[1] !== '0'))
      throw new Error(
        `pgbench failed (exit ${code}): ${lines
          .filter((l) => /error|abort|fail|not found/i.test(l))
          .slice(0, 3)
          .join(' | ')
          .slice(0, 400)}`,
      );
    report.seconds.pgbench = timesSeconds(lines[lines.length - 1] ?? '');
    return {
      seconds: Number(processed[1]) / Number(tps[1]),
      cpu: report,
      notes: [
        `pgbench -M prepared -c ${o.clients} -j ${Math.min(2, o.clients)} -t ${o.transactions}; Postgres CPU is sampled every 250 ms, so a backend's last fraction of a second may be missing`,
      ],
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Per-event scripts: client `:client_id` of `:clients` takes events client_id, client_id +
 * clients, … of the arrival order from `bench_input` (an index lookup inside the statement,
 * no extra round trip); runs past the end do nothing.
 */
const NEXT_EVENT = `\\set i :i + 1
\\set seq (:i - 1) * :clients + :client_id
\\if :seq < :events`;

const SYNC1_PGBENCH = `${NEXT_EVENT}
INSERT INTO sync1 AS t (entity_id, status, key)
SELECT entity_id, status, key FROM bench_input WHERE seq = :seq
ON CONFLICT (entity_id) DO UPDATE SET status = EXCLUDED.status, key = EXCLUDED.key
WHERE t.key < EXCLUDED.key;
\\endif
`;

/**
 * SYNC2 as the Node driver runs it: BEGIN, lock the row and read its key (with the event, in
 * the same round trip), compare in the client, UPDATE or INSERT, COMMIT. When another client
 * created the row meanwhile, the INSERT does nothing and the row is locked and compared again,
 * as the Node driver's second attempt does.
 */
const SYNC2_PGBENCH = `${NEXT_EVENT}
BEGIN;
SELECT i.entity_id AS eid, i.status AS st, i.key AS k, coalesce(s.key, -1) AS cur
FROM bench_input i
LEFT JOIN LATERAL (SELECT key FROM sync2 WHERE entity_id = i.entity_id FOR UPDATE) s ON true
WHERE i.seq = :seq \\gset
\\if :cur < 0
\\set ins 0
INSERT INTO sync2 (entity_id, status, key) VALUES (:eid, :st, :k) ON CONFLICT DO NOTHING RETURNING 1 AS ins \\aset
\\if :ins = 0
SELECT key AS cur FROM sync2 WHERE entity_id = :eid FOR UPDATE \\gset
\\if :cur < :k
UPDATE sync2 SET status = :st, key = :k WHERE entity_id = :eid;
\\endif
\\endif
\\elif :cur < :k
UPDATE sync2 SET status = :st, key = :k WHERE entity_id = :eid;
\\endif
COMMIT;
\\endif
`;

/** The raw batched upsert: batch `:seq` of the folded chunks, in entity order as the Node driver sends it. */
const CEILING_PGBENCH = `${NEXT_EVENT}
INSERT INTO ceiling AS t (entity_id, status, key)
SELECT entity_id, status, key FROM ceiling_input WHERE batch = :seq ORDER BY entity_id
ON CONFLICT (entity_id) DO UPDATE SET status = EXCLUDED.status, key = EXCLUDED.key
WHERE t.key < EXCLUDED.key;
\\endif
`;

async function loadEvents(pool: pg.Pool, events: PreparedEvent[]): Promise<void> {
  await pool.query('CREATE TABLE bench_input (seq int PRIMARY KEY, entity_id text, status text, key bigint)');
  for (let i = 0; i < events.length; i += 20_000) {
    const part = events.slice(i, i + 20_000);
    await pool.query(
      'INSERT INTO bench_input SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::bigint[])',
      [
        part.map((_, j) => i + j),
        part.map((e) => e.entityId),
        part.map((e) => e.target),
        part.map((e) => e.key.toString()),
      ],
    );
  }
  await pool.query('ANALYZE bench_input');
}

async function loadChunks(pool: pg.Pool, events: PreparedEvent[], size: number): Promise<number> {
  const chunks = foldedChunks(events, size);
  await pool.query(
    'CREATE TABLE ceiling_input (batch int, entity_id text, status text, key bigint, PRIMARY KEY (batch, entity_id))',
  );
  for (const [b, c] of chunks.entries())
    await pool.query(
      'INSERT INTO ceiling_input SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[])',
      [b, c.ids, c.statuses, c.keys],
    );
  await pool.query('ANALYZE ceiling_input');
  return chunks.length;
}

export type PgbenchDesign = 'sync1' | 'sync2' | 'ceiling';

const NAMES: Record<PgbenchDesign, string> = {
  sync1: 'SYNC1 driven by pgbench',
  sync2: 'SYNC2 driven by pgbench',
  ceiling: 'Raw batched upsert driven by pgbench',
};

/**
 * SYNC1, SYNC2 and the raw batched upsert driven by pgbench (a C driver) instead of Node, on
 * the same events in the same arrival order, into the same bare tables, checked the same way
 * (entities left in a status other than the expected one).
 */
export async function pgbenchDesigns(ctx: BenchContext, designs: PgbenchDesign[]): Promise<ScenarioResult[]> {
  const s = ctx.settings;
  const events = ctx.registry.prepare(ctx.workload.sent, 'bench', false);
  const out: ScenarioResult[] = [];
  let db: BenchDatabase | undefined;
  try {
    db = await createDatabase(s.serverUrl, false);
    const admin = benchPool(db.url);
    try {
      let loaded = false;
      for (const d of designs) {
        const result: ScenarioResult = {
          id: `${d}-pgbench`,
          name: NAMES[d],
          count: events.length,
          seconds: 0,
          rate: 0,
          unit: d === 'ceiling' ? 'rows/s' : 'events/s',
          notes: [],
        };
        try {
          await admin.query(designTable(d));
          const cpu = new CpuMeter(s.serverUrl, db.name, undefined, () => ({}));
          let run: PgbenchRun;
          if (d === 'ceiling') {
            const batches = await loadChunks(admin, events, s.ceilingRows);
            const clients = s.ceilingConnections;
            run = await runPgbench(db.url, CEILING_PGBENCH, cpu, {
              clients,
              transactions: Math.ceil(batches / clients),
              vars: { i: 0, clients, events: batches },
            });
            result.notes.push(
              `${s.ceilingRows} events per statement (folded to one row per entity), read from an input table`,
            );
          } else {
            if (!loaded) await loadEvents(admin, events);
            loaded = true;
            const clients = s.pgConnections;
            run = await runPgbench(db.url, d === 'sync1' ? SYNC1_PGBENCH : SYNC2_PGBENCH, cpu, {
              clients,
              transactions: Math.ceil(events.length / clients),
              vars: { i: 0, clients, events: events.length },
            });
            result.notes.push(
              `one ${d === 'sync2' ? 'transaction' : 'statement'} per event, the event read from an input table by its primary key inside the first statement`,
            );
          }
          result.notes.push(...run.notes);
          result.seconds = run.seconds;
          result.cpu = run.cpu;
          result.rate = result.count / result.seconds;
          result.wrongStatuses = await wrongStatuses(admin, d, ctx.expected);
        } catch (err) {
          result.error = err instanceof Error ? err.message : String(err);
        }
        out.push(result);
        ctx.log(
          `${result.name}: ${result.error ? `FAILED: ${result.error}` : `${Math.round(result.rate)} ${result.unit}`}`,
        );
      }
    } finally {
      await admin.end();
    }
  } finally {
    await db?.drop();
  }
  return out;
}
