import { loadConfig, type Config } from '../config.ts';
import { DEFAULT_REDIS_URL } from '../queue/index.ts';
import { readRunningInfo } from '../runtime/index.ts';
import { openDatabase, type Database } from '../store/index.ts';

/** The API a client command talks to when neither --url nor PROMOSYNC_URL says. */
export const DEFAULT_API_URL = 'http://127.0.0.1:3000';

/** Where the services a command needs are. */
export interface Targets {
  databaseUrl: string | undefined;
  redisUrl: string;
  apiUrl: string;
}

/**
 * Resolves the services' URLs: the environment first, then a `promosync start` running on
 * the same DATA_DIR (its embedded database and private Redis have random ports), then the
 * defaults. So on a machine where `npm start` runs, the other commands need no setup.
 */
export async function resolveTargets(config: Readonly<Config>): Promise<Targets> {
  const running = await readRunningInfo(config.dataDir);
  return {
    databaseUrl: config.databaseUrl ?? running?.databaseUrl,
    redisUrl: config.redisUrl ?? running?.redisUrl ?? DEFAULT_REDIS_URL,
    apiUrl: config.apiUrl ?? running?.apiUrl ?? DEFAULT_API_URL,
  };
}

/** @throws Error saying how to point the command at a database. */
export function requireDatabase(targets: Targets, dataDir: string): string {
  if (targets.databaseUrl) return targets.databaseUrl;
  throw new Error(
    `DATABASE_URL is not set, and no \`promosync start\` with an embedded database is running on ${dataDir}; ` +
      'set DATABASE_URL (or DATA_DIR to the running one)',
  );
}

/**
 * Runs `fn` on the database a command works on directly (DATABASE_URL, else the embedded
 * database of a `promosync start` running on DATA_DIR) through a pool of `poolSize`
 * connections, and closes it afterwards.
 */
export async function withDatabase<T>(fn: (db: Database) => Promise<T>, poolSize = 1): Promise<T> {
  const config = loadConfig();
  const db = openDatabase(requireDatabase(await resolveTargets(config), config.dataDir), poolSize);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
