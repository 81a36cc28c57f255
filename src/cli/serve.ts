import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { createLogger, startService } from '../service.ts';
import { migrate } from '../store/index.ts';
import { runUntilSignal } from './run.ts';

/** `start`, `api` and `worker`: the long-running processes. */
export function registerServe(program: Command): void {
  const serve = async (mode: 'start' | 'api' | 'worker', o: { acceptRemoved?: boolean }): Promise<void> => {
    const config = loadConfig();
    const logger = createLogger(config.logLevel);
    if (!config.databaseUrl) throw new Error('DATABASE_URL is not set');
    if (mode === 'start') {
      const report = await migrate(config.databaseUrl);
      if (report.applied.length > 0) logger.info({ applied: report.applied }, 'migrations applied');
    }
    const service = await startService({
      config,
      logger,
      api: mode !== 'worker',
      worker: mode !== 'api',
      acceptRemoved: o.acceptRemoved ?? false,
    });
    if (service.port !== undefined) {
      const base = `http://${config.host === '0.0.0.0' ? '127.0.0.1' : config.host}:${service.port}`;
      process.stderr.write(`promosync ${mode}: API on ${base} (health ${base}/healthz)\n`);
    }
    await runUntilSignal(service);
  };
  const accept = '--accept-removed';
  const acceptHelp = 'start even if stored rows use states or events the machines no longer have';
  program
    .command('start')
    .description('apply migrations, then run the API and a worker in one process')
    .option(accept, acceptHelp)
    .addHelpText(
      'after',
      '\nExample:\n  DATABASE_URL=postgresql://postgres@127.0.0.1/promosync REDIS_URL=redis://127.0.0.1:6379 promosync start',
    )
    .action((o) => serve('start', o));
  program
    .command('api')
    .description('run the REST API only (scale out with several processes)')
    .option(accept, acceptHelp)
    .action((o) => serve('api', o));
  program
    .command('worker')
    .description('run a queue worker only (run as many as you need, on any host)')
    .option(accept, acceptHelp)
    .action((o) => serve('worker', o));
  program
    .command('migrate')
    .description('apply pending database migrations (same history as `prisma migrate deploy`)')
    .action(async () => {
      const config = loadConfig();
      if (!config.databaseUrl) throw new Error('DATABASE_URL is not set');
      const r = await migrate(config.databaseUrl);
      process.stdout.write(
        r.applied.length === 0
          ? `database is up to date (${r.alreadyApplied.length} migrations)\n`
          : `applied ${r.applied.join(', ')}\n`,
      );
    });
}
