import { parseArgs } from 'node:util';
import path from 'node:path';
import { runBench, SCENARIOS, type BenchOptions, type ScenarioId } from './run.ts';
import { runSoak } from './soak.ts';
import { ROOT } from './proc.ts';

export const BENCH_USAGE = `Usage: npm run bench -- [options]

Runs promosync and the reference designs side by side on one generated input, checks that
every promosync run converged, prints a table and writes bench/results/<mode>.md and a JSON file.

  --quick                 ≈12k events: the CI smoke run (well under two minutes)
  --soak                  5 minutes of REST ingest at half the peak rate, worker RSS sampled
  --soak-minutes <n>      length of the soak (default 5)
  --soak-rate <events/s>  soak rate instead of half the measured peak
  --events <n>            events to send, duplicates included (default 110000)
  --entities <n>          least number of entities (default 20000)
  --seed <n>              input seed (default 42)
  --only <ids>            comma-separated: ${SCENARIOS.join(',')}
  --rounds <n>            run every scenario n times, interleaved; report each one's median run (default 1)
  --rest-concurrency <n>  worker concurrency with REST batches (default 8)
  --queue-concurrency <n> worker concurrency with single-event jobs, no-op worker alike (default 4096)
  --noop-peak-concurrency <n>  concurrency of the second no-op run (default 1024)
  --batch-max <n>         events per apply statement at most (default 5000)
  --flush-ms <n>          batch flush timer (default 5)
  --pool <n>              worker database pool size (default 10)
  --clients <n>           concurrent HTTP clients (default 4)
  --pg-connections <n>    connections of the per-event designs (default 8)
  --cpu-prof              run promosync's processes with node --cpu-prof (profiles in bench/results/profiles)
  --out <dir>             where results go (default bench/results)

Environment: BENCH_DATABASE_URL (any database on the server to use; bench databases are
created next to it and dropped; default postgresql://postgres@127.0.0.1:5432/postgres),
BENCH_REDIS_URL (default redis://127.0.0.1:6379).`;

const int = (v: string | undefined): number | undefined =>
  v === undefined ? undefined : Number.parseInt(v, 10);

/**
 * Parses the benchmark's arguments and runs it; resolves with the process exit code
 * (1 when a promosync run failed or did not converge).
 */
export async function main(
  argv: string[],
  urls: { databaseUrl?: string | undefined; redisUrl?: string | undefined } = {},
): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean' },
      soak: { type: 'boolean' },
      'soak-minutes': { type: 'string' },
      'soak-rate': { type: 'string' },
      events: { type: 'string' },
      entities: { type: 'string' },
      seed: { type: 'string' },
      only: { type: 'string' },
      rounds: { type: 'string' },
      'rest-concurrency': { type: 'string' },
      'queue-concurrency': { type: 'string' },
      'noop-peak-concurrency': { type: 'string' },
      'batch-max': { type: 'string' },
      'flush-ms': { type: 'string' },
      pool: { type: 'string' },
      clients: { type: 'string' },
      'pg-connections': { type: 'string' },
      'cpu-prof': { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${BENCH_USAGE}\n`);
    return 0;
  }
  const serverUrl = urls.databaseUrl ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  const redisUrl = urls.redisUrl ?? 'redis://127.0.0.1:6379';
  const only = values.only?.split(',').map((s) => s.trim()) as ScenarioId[] | undefined;
  const unknown = only?.filter((s) => !(SCENARIOS as readonly string[]).includes(s)) ?? [];
  if (unknown.length > 0)
    throw new Error(`unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.join(', ')}`);
  const settings: BenchOptions['settings'] = {};
  const set = <K extends keyof NonNullable<BenchOptions['settings']>>(k: K, v: number | undefined): void => {
    if (v !== undefined) (settings as Record<string, unknown>)[k] = v;
  };
  set('restConcurrency', int(values['rest-concurrency']));
  set('queueConcurrency', int(values['queue-concurrency']));
  set('noopPeakConcurrency', int(values['noop-peak-concurrency']));
  set('batchMaxEvents', int(values['batch-max']));
  set('batchFlushMs', int(values['flush-ms']));
  set('dbPoolSize', int(values.pool));
  set('clients', int(values.clients));
  set('pgConnections', int(values['pg-connections']));
  if (values['cpu-prof'])
    settings.nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${path.join(ROOT, 'bench', 'results', 'profiles')}`];
  const common = {
    ...(values.out !== undefined ? { outDir: path.resolve(values.out) } : {}),
    ...(values.seed !== undefined ? { seed: int(values.seed)! } : {}),
    settings,
  };
  if (values.soak) {
    const report = await runSoak(serverUrl, redisUrl, {
      ...common,
      minutes: Number(values['soak-minutes'] ?? 5),
      ...(values['soak-rate'] !== undefined ? { rate: Number(values['soak-rate']) } : {}),
    });
    return report.ok ? 0 : 1;
  }
  const report = await runBench(serverUrl, redisUrl, {
    ...common,
    quick: values.quick ?? false,
    ...(values.events !== undefined ? { events: int(values.events)! } : {}),
    ...(values.entities !== undefined ? { entities: int(values.entities)! } : {}),
    ...(only ? { only } : {}),
    ...(values.rounds !== undefined ? { rounds: int(values.rounds)! } : {}),
  });
  return report.ok ? 0 : 1;
}

// Run directly (`tsx bench/cli.ts`, `npm run bench`), not when imported.
if (process.argv[1] && path.resolve(process.argv[1]) === path.join(ROOT, 'bench', 'cli.ts')) {
  main(process.argv.slice(2), {
    databaseUrl: process.env.BENCH_DATABASE_URL,
    redisUrl: process.env.BENCH_REDIS_URL,
  })
    .then((code) => process.exit(code))
    .catch((err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    });
}
