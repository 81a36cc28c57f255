import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { PromosyncError } from '../domain/index.ts';
import { isAlive, lockDirectory, type DirLock } from './dir-lock.ts';
import { freePort, redisAnswers } from './ports.ts';

/** What to tell someone who has no Redis at all: one paragraph, every way to get one. */
export const NO_REDIS_HELP =
  'promosync needs Redis (6.2 or newer) for its queue. None answers at redis://127.0.0.1:6379, and there is no ' +
  '`redis-server` on PATH to start a private one. Install it and run the command again: on Debian or Ubuntu ' +
  '`sudo apt-get install redis-server`, on Fedora `sudo dnf install redis`, on macOS `brew install redis`; or run ' +
  'one in Docker with `docker run -d --name promosync-redis -p 6379:6379 redis:7 redis-server --appendonly yes`; ' +
  'or point promosync at an existing Redis with `REDIS_URL=redis://host:6379 npm start`.';

export interface PrivateRedisOptions {
  /** Directory of the append-only file; created on first start. */
  dir: string;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** @defaultValue a free port */
  port?: number;
  /** The server binary, looked up on PATH. @defaultValue 'redis-server' */
  command?: string;
  /** @defaultValue 60000 (loading a large append-only file takes a while) */
  startTimeoutMs?: number;
  logger?: Logger;
}

/**
 * A `redis-server` child process of our own, for machines without a Redis: bound to
 * 127.0.0.1 on a free port, append-only file on (every accepted event survives a restart),
 * RDB snapshots off, data under `dir`. It runs in its own process group, so Ctrl-C in a
 * terminal reaches promosync, which finishes its jobs before stopping Redis.
 */
export class PrivateRedis {
  private child: ChildProcess | undefined;
  private lock: DirLock | undefined;
  private readonly output: string[] = [];
  /** The connection URL, once started. */
  url: string | undefined;

  constructor(private readonly opts: PrivateRedisOptions) {}

  private get pidFile(): string {
    return path.join(path.resolve(this.opts.dir), 'redis.pid');
  }

  /**
   * Starts the server and resolves with its URL once it answers PING.
   * @throws PromosyncError `unavailable` with {@link NO_REDIS_HELP} when there is no redis-server.
   */
  async start(): Promise<string> {
    const dir = path.resolve(this.opts.dir);
    const host = this.opts.host ?? '127.0.0.1';
    this.lock = await lockDirectory(dir, 'the private Redis');
    try {
      if (this.lock.staleOwner !== undefined) await this.stopOrphan();
      await mkdir(dir, { recursive: true });
      for (let attempt = 1; ; attempt++) {
        const port = this.opts.port ?? (await freePort(host));
        const url = `redis://${host}:${port}`;
        const result = await this.launch(dir, host, port, url);
        if (result === 'ready') {
          this.url = url;
          this.opts.logger?.info({ dir, url, pid: this.child?.pid }, 'private redis-server ready');
          return url;
        }
        // Someone took the free port between our check and redis-server's bind: pick another.
        if (result === 'port-taken' && this.opts.port === undefined && attempt < 3) continue;
        throw new Error(`redis-server did not start:\n${this.output.slice(-15).join('\n')}`);
      }
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private async launch(
    dir: string,
    host: string,
    port: number,
    url: string,
  ): Promise<'ready' | 'port-taken' | 'exited'> {
    const args = [
      '--port',
      String(port),
      '--bind',
      host,
      '--protected-mode',
      'yes',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--daemonize',
      'no',
      '--pidfile',
      this.pidFile,
      '--logfile',
      '',
    ];
    this.output.length = 0;
    const child = spawn(this.opts.command ?? 'redis-server', args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    try {
      await Promise.race([
        once(child, 'spawn'),
        once(child, 'error').then(([err]) => Promise.reject(err as Error)),
      ]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new PromosyncError('unavailable', NO_REDIS_HELP, { cause: err });
      }
      throw err;
    }
    this.child = child;
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        this.output.push(line);
        if (this.output.length > 50) this.output.shift();
        this.opts.logger?.debug({ redis: line }, 'redis-server');
      });
    }
    let exited = false;
    child.once('exit', () => {
      exited = true;
    });
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 60_000);
    while (Date.now() < deadline) {
      if (exited) {
        this.child = undefined;
        return this.output.some((l) => /Address already in use/i.test(l)) ? 'port-taken' : 'exited';
      }
      if (await redisAnswers(url, 500)) return 'ready';
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.close();
    throw new Error(`redis-server did not answer within ${this.opts.startTimeoutMs ?? 60_000} ms`);
  }

  /** A redis-server left running by a promosync that was killed: stop it before reusing its files. */
  private async stopOrphan(): Promise<void> {
    const pid = Number.parseInt(await readFile(this.pidFile, 'utf8').catch(() => ''), 10);
    if (!isAlive(pid)) return;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.includes('redis-server')) return;
    this.opts.logger?.warn({ pid }, 'stopping the redis-server an earlier promosync left running');
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 200 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  }

  /** Stops the server (SIGTERM: it flushes the append-only file), SIGKILL after 10 s. */
  async close(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    this.url = undefined;
    await this.lock?.release();
    this.lock = undefined;
  }
}
