import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { machines } from '../machines/index.ts';
import { MachineRegistry } from '../src/domain/index.ts';
import type { BenchContext, BenchSettings, ScenarioResult } from './context.ts';
import { ROOT } from './proc.ts';
import {
  checkTargets,
  machineInfo,
  markdownReport,
  tableRatios,
  tableRows,
  textTable,
  type BenchReport,
} from './report.ts';
import { postgresDesigns, type PostgresDesign } from './scenarios/postgres.ts';
import { pgbenchDesigns } from './scenarios/pgbench.ts';
import { singleEventJobs } from './scenarios/queue.ts';
import { restIngest, type RestLayout } from './scenarios/rest.ts';
import { writeSet } from './scenarios/write-set.ts';
import { capacityScenarios } from './scenarios/capacity.ts';
import { expectedStates } from './verify.ts';
import { makeWorkload } from './workload.ts';

/** Every scenario, in the order a run executes them. */
export const SCENARIOS = [
  'rest-combined',
  'rest-split-1',
  'rest-split-3',
  'rest-split-3p',
  'queue-noop',
  'queue-noop-peak',
  'queue-promosync',
  'write-set',
  'write-set-pgbench',
  'sync1-pgbench',
  'sync2-pgbench',
  'ceiling-pgbench',
  'sync1',
  'sync2',
  'naive',
  'ceiling',
  'capacity',
] as const;
export type ScenarioId = (typeof SCENARIOS)[number];

export interface BenchOptions {
  /** Small input (≈12k events) that finishes in about 1.5 minutes on a quiet machine: the CI smoke run. */
  quick?: boolean;
  /** Events to send (duplicates included) and the least number of entities. */
  events?: number;
  entities?: number;
  seed?: number;
  /** Scenarios to run. @defaultValue all of {@link SCENARIOS} */
  only?: ScenarioId[];
  /**
   * Runs of every scenario, interleaved (all scenarios, then all again, ...); each line of the
   * table is the scenario's median run. On a machine whose speed drifts, this keeps one slow
   * spell from landing on one design only. @defaultValue 1
   */
  rounds?: number;
  /** Where the JSON and markdown go. @defaultValue bench/results */
  outDir?: string;
  /** Overrides of the defaults in {@link defaultSettings}. */
  settings?: Partial<BenchSettings>;
  /** Progress lines (stderr by default). */
  log?: (line: string) => void;
}

export function defaultSettings(serverUrl: string, redisUrl: string): BenchSettings {
  return {
    serverUrl,
    redisUrl,
    restConcurrency: 8,
    queueConcurrency: 4096,
    noopPeakConcurrency: 1024,
    batchMaxEvents: 5000,
    batchFlushMs: 5,
    batchLanes: 2,
    dbPoolSize: 10,
    clients: 4,
    requestEvents: 1000,
    pgConnections: 8,
    ceilingConnections: 2,
    ceilingRows: 500,
    nodeArgs: [],
  };
}

async function serverVersions(s: BenchSettings): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const c = new pg.Client({ connectionString: s.serverUrl });
  try {
    await c.connect();
    const { rows } = await c.query<{ v: string; sc: string; sb: string }>(
      `SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc,
              current_setting('shared_buffers') AS sb`,
    );
    out.postgres = `${rows[0]!.v} (synchronous_commit ${rows[0]!.sc}, shared_buffers ${rows[0]!.sb})`;
  } catch (err) {
    out.postgres = `unreachable: ${String(err)}`;
  } finally {
    await c.end().catch(() => {});
  }
  const r = new Redis(s.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await r.connect();
    const info = await r.info('server');
    const persistence = await r.info('persistence');
    out.redis = `${/redis_version:(\S+)/.exec(info)?.[1] ?? '?'} (aof ${/aof_enabled:(\d)/.exec(persistence)?.[1] === '1' ? 'on' : 'off'})`;
  } catch (err) {
    out.redis = `unreachable: ${String(err)}`;
  } finally {
    r.disconnect();
  }
  return out;
}

/**
 * The run that stands for a scenario: any failed run (a failure is never averaged away),
 * else the median by rate (or by p99, for a scenario that says so), noting the spread of all runs.
 */
export function medianRun(all: ScenarioResult[], rounds: number): ScenarioResult {
  const failed = all.find((r) => r.error);
  if (failed || all.length === 1) return failed ?? all[0]!;
  const byP99 = all[0]!.medianBy === 'p99';
  const value = (r: ScenarioResult): number => (byP99 ? (r.latency?.p99 ?? Infinity) : r.rate);
  const sorted = [...all].sort((a, b) => value(a) - value(b));
  const median = sorted[Math.floor((sorted.length - 1) / 2)]!;
  const k = (v: number): string => `${(v / 1000).toFixed(1)}k`;
  const spread = byP99
    ? `p99 ${all.map((r) => (r.latency ? r.latency.p99.toFixed(1) : '—')).join(', ')} ms`
    : `${all.map((r) => k(r.rate)).join(', ')} ${median.unit}`;
  return {
    ...median,
    notes: [...median.notes, `median of ${rounds} rounds${byP99 ? ' by p99' : ''}; all rounds: ${spread}`],
  };
}

/**
 * Runs the scenarios side by side on one input, prints the table, and writes
 * `<outDir>/<mode>-<time>.json` and `<outDir>/<mode>.md`.
 */
export async function runBench(
  serverUrl: string,
  redisUrl: string,
  o: BenchOptions = {},
): Promise<BenchReport> {
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const settings = { ...defaultSettings(serverUrl, redisUrl), ...o.settings };
  const mode = o.quick ? 'quick' : o.events !== undefined || o.only !== undefined ? 'custom' : 'full';
  const registry = MachineRegistry.from(machines);
  const info = registry.get('promotion')!;
  const startedAt = new Date().toISOString();
  const machine = machineInfo(await serverVersions(settings));

  const t = performance.now();
  const workload = makeWorkload(info, {
    minEvents: o.events ?? (o.quick ? 12_000 : 110_000),
    minEntities: o.entities ?? (o.quick ? 4_000 : 20_000),
    seed: o.seed ?? 42,
  });
  const expected = expectedStates(registry, workload, 'bench');
  log(
    `input: ${workload.sent.length} events over ${workload.histories.length} entities (${workload.duplicates} duplicates, ${workload.dropped} dropped), built in ${Math.round(performance.now() - t)} ms`,
  );
  const ctx: BenchContext = { settings, registry, workload, expected, log };
  const only = new Set<ScenarioId>(o.only ?? SCENARIOS);
  const rounds = Math.max(1, o.rounds ?? 1);
  const runs = new Map<string, ScenarioResult[]>();
  const record = (r: ScenarioResult, quiet = false): void => {
    runs.set(r.id, [...(runs.get(r.id) ?? []), r]);
    if (!quiet)
      log(`${r.name}: ${r.error ? `FAILED: ${r.error.split('\n')[0]}` : `${Math.round(r.rate)} ${r.unit}`}`);
  };

  const layouts: [ScenarioId, RestLayout][] = [
    ['rest-combined', { kind: 'combined' }],
    ['rest-split-1', { kind: 'split', workers: 1 }],
    ['rest-split-3', { kind: 'split', workers: 3 }],
    ['rest-split-3p', { kind: 'split', workers: 3, partitioned: true }],
  ];
  for (let round = 1; round <= rounds; round++) {
    if (rounds > 1) log(`round ${round} of ${rounds}`);
    // Three worker processes: on demand or in a full run, not in the quick smoke run.
    const several = (id: ScenarioId): boolean =>
      id.startsWith('rest-split-3') && !!o.quick && !o.only?.includes(id);
    for (const [id, layout] of layouts)
      if (only.has(id) && !several(id)) record(await restIngest(ctx, layout));
    if (only.has('queue-noop')) record(await singleEventJobs(ctx, 'noop'));
    if (only.has('queue-noop-peak')) record(await singleEventJobs(ctx, 'noop-peak'));
    if (only.has('queue-promosync')) record(await singleEventJobs(ctx, 'promosync'));
    if (only.has('write-set')) record(await writeSet(ctx, 'node'), true);
    if (only.has('write-set-pgbench')) record(await writeSet(ctx, 'pgbench'), true);
    const viaPgbench = (['sync1', 'sync2', 'ceiling'] as const).filter((d) => only.has(`${d}-pgbench`));
    if (viaPgbench.length > 0) for (const r of await pgbenchDesigns(ctx, viaPgbench)) record(r, true);
    const designs = (['sync1', 'sync2', 'naive', 'ceiling'] as const).filter((d) => only.has(d));
    if (designs.length > 0)
      // These log their own lines.
      for (const r of await postgresDesigns(ctx, designs as PostgresDesign[])) record(r, true);
    // A minute of closed-loop HTTP load: run on demand (--only capacity or a full run), not in the quick smoke run.
    if (only.has('capacity') && (!o.quick || o.only?.includes('capacity')))
      for (const r of await capacityScenarios(ctx)) record(r, true);
  }
  const results = [...runs.values()].map((all) => medianRun(all, rounds));

  const { nodeArgs: _n, serverUrl: _s, redisUrl: _r, ...shown } = settings;
  const report: BenchReport = {
    mode,
    startedAt,
    machine,
    settings: { ...shown, nodeArgs: settings.nodeArgs },
    rounds,
    workload: {
      events: workload.sent.length,
      entities: workload.histories.length,
      duplicates: workload.duplicates,
      dropped: workload.dropped,
      seed: workload.seed,
    },
    results,
    ratios: tableRatios(results),
    targets: checkTargets(results),
    ok: results.every((r) => !r.error),
  };

  process.stdout.write(`\n${textTable(tableRows(results))}\n\n`);
  for (const tc of report.targets)
    process.stdout.write(
      `${tc.met ? 'met    ' : 'NOT MET'}  ${tc.name} (${tc.goal}; ${tc.figure} over ${tc.reference}): ${tc.detail}\n`,
    );
  const outDir = o.outDir ?? path.join(ROOT, 'bench', 'results');
  await mkdir(outDir, { recursive: true });
  const stamp = startedAt.replace(/[:.]/g, '-');
  const json = path.join(outDir, `${mode}-${stamp}.json`);
  const md = path.join(outDir, `${mode}.md`);
  await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(md, markdownReport(report));
  process.stdout.write(
    `\nwrote ${path.relative(process.cwd(), json)} and ${path.relative(process.cwd(), md)}\n`,
  );
  return report;
}
