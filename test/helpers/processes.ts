import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The CLI entry point, as operators run it. */
export const BIN = fileURLToPath(new URL('../../bin/promosync.js', import.meta.url));

/** A port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** How a child process ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A child process whose output is kept (the last lines, for failure messages) and can be
 * waited on line by line.
 */
export class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<Exit>;
  private readonly lines: string[] = [];
  private readonly waiters: Array<{ test: (line: string) => boolean; resolve: (line: string) => void }> = [];

  constructor(
    readonly name: string,
    command: string,
    args: string[],
    env: Record<string, string>,
  ) {
    this.proc = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => resolve({ code, signal }));
    });
    for (const stream of [this.proc.stdout!, this.proc.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => this.onLine(line));
    }
  }

  private onLine(line: string): void {
    this.lines.push(line);
    if (this.lines.length > 300) this.lines.shift();
    for (const w of [...this.waiters]) {
      if (w.test(line)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  }

  /** Resolves with the first line from now on that matches; rejects if the process ends first. */
  waitForLine(test: RegExp | ((line: string) => boolean), timeoutMs = 60_000): Promise<string> {
    const match = typeof test === 'function' ? test : (l: string) => test.test(l);
    const seen = this.lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `${this.name}: no line matching ${String(test)} within ${timeoutMs} ms\n${this.tail()}`,
            ),
          ),
        timeoutMs,
      );
      const waiter = {
        test: match,
        resolve: (l: string) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      this.waiters.push(waiter);
      void this.exited.then((e) => {
        clearTimeout(timer);
        reject(
          new Error(`${this.name} exited (${e.code ?? e.signal}) before ${String(test)}\n${this.tail()}`),
        );
      });
    });
  }

  /** The last lines of output. */
  tail(n = 40): string {
    return this.lines.slice(-n).join('\n');
  }

  /** Lines seen so far that match. */
  grep(test: RegExp): string[] {
    return this.lines.filter((l) => test.test(l));
  }

  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.running) this.proc.kill(signal);
  }

  /** SIGTERM, then SIGKILL if it has not ended within `graceMs`. */
  async stop(graceMs = 35_000): Promise<Exit> {
    if (!this.running) return this.exited;
    this.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }
}

/** Environment every promosync child gets in the fault tests. */
export interface ServiceEnv {
  DATABASE_URL: string;
  REDIS_URL: string;
  QUEUE_NAME: string;
  [name: string]: string;
}

/** Called with each child as soon as it is spawned, so that it is stopped even if it never gets ready. */
export type OnSpawn = (child: Child) => void;

/** Starts `promosync api` on a free port and resolves once it listens. */
export async function startApi(
  name: string,
  env: ServiceEnv,
  onSpawn?: OnSpawn,
): Promise<{ child: Child; url: string }> {
  const child = new Child(name, process.execPath, [BIN, 'api'], {
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    ...env,
  });
  onSpawn?.(child);
  const line = await child.waitForLine(/API on http:\/\/\S+/);
  const url = /API on (http:\/\/\S+?)\s/.exec(`${line} `)![1]!;
  return { child, url };
}

/** Starts `promosync worker` and resolves once it takes jobs. */
export async function startWorker(name: string, env: ServiceEnv, onSpawn?: OnSpawn): Promise<Child> {
  const child = new Child(name, process.execPath, [BIN, 'worker'], { LOG_LEVEL: 'info', ...env });
  onSpawn?.(child);
  await child.waitForLine(/"msg":"worker started"/);
  return child;
}

/**
 * Starts a private redis-server on `port`, bound to 127.0.0.1, with RDB snapshots off and its
 * log on stdout, plus the given arguments; resolves once it accepts connections.
 */
export async function startRedisServer(
  port: number,
  args: string[],
  opts: { name?: string; onSpawn?: OnSpawn } = {},
): Promise<Child> {
  const child = new Child(
    opts.name ?? 'redis',
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--logfile', '', ...args],
    {},
  );
  opts.onSpawn?.(child);
  await child.waitForLine(/Ready to accept connections/);
  return child;
}
