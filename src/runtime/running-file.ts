import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive } from './dir-lock.ts';

/** Where a running `promosync start` serves, for the other commands run next to it. */
export interface RunningInfo {
  pid: number;
  apiUrl?: string;
  /** Set when the database is the embedded one. */
  databaseUrl?: string;
  /** Set when Redis is the private one. */
  redisUrl?: string;
}

const fileIn = (dataDir: string): string => path.join(dataDir, 'running.json');

/**
 * Records the embedded servers' URLs under the data directory while `start` runs, so
 * `promosync failed`, `rebuild` or `send` on the same machine find them without any setup.
 * @returns a function that removes the record.
 */
export async function writeRunningInfo(
  dataDir: string,
  info: Omit<RunningInfo, 'pid'>,
): Promise<() => Promise<void>> {
  const file = fileIn(dataDir);
  await writeFile(file, `${JSON.stringify({ pid: process.pid, ...info }, null, 2)}\n`);
  return async () => {
    const current = await readRunningInfo(dataDir, true);
    if (current?.pid === process.pid) await rm(file, { force: true });
  };
}

/** The record of a `promosync start` that is still running on `dataDir`, if any. */
export async function readRunningInfo(
  dataDir: string,
  evenIfStopped = false,
): Promise<RunningInfo | undefined> {
  try {
    const info = JSON.parse(await readFile(fileIn(dataDir), 'utf8')) as RunningInfo;
    if (typeof info.pid !== 'number') return undefined;
    return evenIfStopped || isAlive(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}
