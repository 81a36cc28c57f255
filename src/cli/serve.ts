import type { Command } from 'commander';
import pino, { type Logger } from 'pino';
import { loadConfig, type Config } from '../config.ts';
import { createLogger, startService, type Service } from '../service.ts';
import { createKey, migrate } from '../store/index.ts';
import {
  startBackends,
  waitForPostgres,
  waitForRedis,
  writeRunningInfo,
  type Backends,
} from '../runtime/index.ts';
import { DEFAULT_REDIS_URL } from '../queue/index.ts';
import { runUntilSignal } from './run.ts';
import { startBanner } from './start-banner.ts';

export type ServeMode = 'start' | 'api' | 'worker';

export interface LaunchOptions {
  mode: ServeMode;
  config: Readonly<Config>;
  logger: Logger;
  /** Start even if stored rows use states or events the machines no longer have. */
  acceptRemoved?: boolean;
  /** `start`: the Redis tried when REDIS_URL is unset, before a private one. @defaultValue redis://127.0.0.1:6379 */
  defaultRedisUrl?: string;
  /** `start`: the binary of a private Redis. @defaultValue 'redis-server' */
  redisCommand?: string;
}

/** A running `start`, `api` or `worker`, with what a person at the terminal should read. */
export interface Launched {
  service: Service;
  /** `start`: the database and Redis in use, and which of them this process runs. */
  backends?: Backends;
  /** The API's base URL, when this process serves it. */
  apiUrl?: string;
  /** The admin key created for a new embedded database; it exists nowhere else. */
  firstKey?: string;
  /** Human-readable summary: URLs and, for `start`, a copy-paste example. */
  banner: string;
  close(): Promise<void>;
}

/**
 * What `promosync start|api|worker` do before waiting for a signal. `start` also provides
 * the backing services (an embedded Postgres and a private Redis when none is configured,
 * see {@link startBackends}), applies migrations, and on a new embedded database creates a
 * first admin key, so `npm start` alone gives a working system.
 */
export async function launch(opts: LaunchOptions): Promise<Launched> {
  const { mode, logger } = opts;
  let backends: Backends | undefined;
  let config = opts.config;
  if (mode === 'start') {
    backends = await startBackends({
      config,
      logger,
      ...(opts.defaultRedisUrl ? { defaultRedisUrl: opts.defaultRedisUrl } : {}),
      ...(opts.redisCommand ? { redisCommand: opts.redisCommand } : {}),
    });
    config = Object.freeze({
      ...config,
      databaseUrl: backends.databaseUrl,
      redisUrl: backends.redisUrl,
      // The embedded database is one backend behind a socket: a NOTIFY sent on one connection
      // is not delivered to the others, so a cached key would outlive its revocation.
      ...(backends.embeddedPostgres ? { keyCacheTtlMs: 0 } : {}),
    });
  } else if (!config.databaseUrl) {
    throw new Error(
      `DATABASE_URL is not set: \`promosync ${mode}\` runs against a shared Postgres (use \`promosync start\` for the embedded one)`,
    );
  }

  // Started together with their databases (compose, systemd), processes wait for them
  // instead of exiting at once; STARTUP_WAIT_MS bounds the wait.
  const wait = { totalMs: config.startupWaitMs, logger };
  await Promise.all([
    waitForPostgres(config.databaseUrl!, wait),
    waitForRedis(config.redisClusterNodes ?? config.redisUrl ?? DEFAULT_REDIS_URL, wait),
  ]).catch(async (err: unknown) => {
    await backends?.close();
    throw err;
  });

  let service: Service | undefined;
  let forgetRunning: (() => Promise<void>) | undefined;
  const close = async (): Promise<void> => {
    await service?.close();
    await forgetRunning?.();
    await backends?.close();
  };
  try {
    if (mode === 'start') {
      const report = await migrate(config.databaseUrl!);
      if (report.applied.length > 0) logger.info({ applied: report.applied }, 'migrations applied');
    }
    service = await startService({
      config,
      logger,
      api: mode !== 'worker',
      worker: mode !== 'api',
      acceptRemoved: opts.acceptRemoved ?? false,
    });
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const apiUrl = service.port === undefined ? undefined : `http://${host}:${service.port}`;

    let firstKey: string | undefined;
    if (backends?.embeddedPostgres && (await service.db.prisma.apiKey.count()) === 0) {
      firstKey = (
        await createKey(service.db.prisma, { role: 'admin', label: 'first key, created by promosync start' })
      ).key;
      logger.info('created a first admin key for the new embedded database');
    }
    if (backends?.embeddedPostgres || backends?.privateRedis) {
      forgetRunning = await writeRunningInfo(config.dataDir, {
        ...(apiUrl ? { apiUrl } : {}),
        ...(backends.embeddedPostgres ? { databaseUrl: backends.databaseUrl } : {}),
        ...(backends.privateRedis ? { redisUrl: backends.redisUrl } : {}),
      });
    }
    const banner =
      mode === 'start' && backends
        ? startBanner({ apiUrl, backends, firstKey, dataDir: config.dataDir })
        : apiUrl
          ? `promosync ${mode}: API on ${apiUrl} (health ${apiUrl}/healthz)\n`
          : `promosync ${mode}: worker on queue ${config.queueName}\n`;
    return {
      service,
      ...(backends ? { backends } : {}),
      ...(apiUrl ? { apiUrl } : {}),
      ...(firstKey ? { firstKey } : {}),
      banner,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** `start`, `api`, `worker` and `migrate`. */
export function registerServe(program: Command): void {
  const serve = async (mode: ServeMode, o: { acceptRemoved?: boolean }): Promise<void> => {
    const config = loadConfig();
    const logger = createLogger(config.logLevel);
    const launched = await launch({ mode, config, logger, acceptRemoved: o.acceptRemoved ?? false });
    process.stderr.write(launched.banner);
    await runUntilSignal({ ...launched.service, close: launched.close });
  };
  const accept = '--accept-removed';
  const acceptHelp = 'start even if stored rows use states or events the machines no longer have';
  program
    .command('start')
    .description('apply migrations, then run the API and a worker in one process')
    .option(accept, acceptHelp)
    .addHelpText(
      'after',
      `
With no DATABASE_URL, start uses an embedded Postgres (PGlite) under $DATA_DIR/pglite
(default .data/pglite). With no REDIS_URL, it uses the Redis on 127.0.0.1:6379 if one
answers, or starts a private redis-server from PATH under $DATA_DIR/redis.

Examples:
  npm start                     # everything embedded, data in .data/
  DATABASE_URL=postgresql://postgres@127.0.0.1/promosync REDIS_URL=redis://127.0.0.1:6379 promosync start
  PORT=8080 DATA_DIR=/var/lib/promosync promosync start`,
    )
    .action((o) => serve('start', o));
  program
    .command('api')
    .description('run the REST API only (scale out with several processes)')
    .option(accept, acceptHelp)
    .addHelpText(
      'after',
      '\nExample:\n  DATABASE_URL=postgresql://db/promosync REDIS_URL=redis://redis:6379 PORT=3000 promosync api',
    )
    .action((o) => serve('api', o));
  program
    .command('worker')
    .description('run a queue worker only (run as many as you need, on any host)')
    .option(accept, acceptHelp)
    .addHelpText(
      'after',
      '\nExample:\n  DATABASE_URL=postgresql://db/promosync REDIS_URL=redis://redis:6379 WORKER_CONCURRENCY=64 promosync worker',
    )
    .action((o) => serve('worker', o));
  program
    .command('migrate')
    .description('apply pending database migrations (same history as `prisma migrate deploy`)')
    .addHelpText('after', '\nExample:\n  DATABASE_URL=postgresql://db/promosync promosync migrate')
    .action(async () => {
      const config = loadConfig();
      if (!config.databaseUrl) throw new Error('DATABASE_URL is not set');
      await waitForPostgres(config.databaseUrl, {
        totalMs: config.startupWaitMs,
        // On stderr: stdout carries the command's result.
        logger: pino({ level: config.logLevel, base: { service: 'promosync' } }, pino.destination(2)),
      });
      const r = await migrate(config.databaseUrl);
      process.stdout.write(
        r.applied.length === 0
          ? `database is up to date (${r.alreadyApplied.length} migrations)\n`
          : `applied ${r.applied.join(', ')}\n`,
      );
    });
}
