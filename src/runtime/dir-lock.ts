import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PromosyncError } from '../domain/index.ts';

/** Whether a process with this id exists (and is not a zombie we could see). */
export function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A held lock; `release()` removes the lock file if it is still ours. */
export interface DirLock {
  /** The process id a previous, dead holder left behind, if any. */
  staleOwner: number | undefined;
  release(): Promise<void>;
}

/**
 * Takes `<dir>.lock`, so two processes never open the same embedded data directory: two
 * Postgres or Redis servers on the same files would corrupt them. A lock left by a process
 * that no longer exists is taken over.
 * @throws PromosyncError `unavailable` when a live process holds it.
 */
export async function lockDirectory(dir: string, what: string): Promise<DirLock> {
  const file = `${dir}.lock`;
  await mkdir(path.dirname(file), { recursive: true });
  let staleOwner: number | undefined;
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const owner = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
      if (isAlive(owner)) {
        throw new PromosyncError(
          'unavailable',
          `${what} in ${dir} is in use by process ${owner} (another \`promosync start\`?); stop it first, or set DATA_DIR to another directory`,
        );
      }
      staleOwner = Number.isNaN(owner) ? undefined : owner;
      await rm(file, { force: true });
    }
  }
  let released = false;
  return {
    staleOwner,
    async release() {
      if (released) return;
      released = true;
      const owner = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
      if (owner === process.pid) await rm(file, { force: true });
    },
  };
}
