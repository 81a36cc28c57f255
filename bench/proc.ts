import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The repository root, so child processes run the same code whatever the caller's cwd. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = fileURLToPath(new URL('../bin/promosync.js', import.meta.url));

/** A child process of the benchmark: a promosync process or a reference worker. */
export interface Child {
  name: string;
  pid: number;
  /** The API's port, for processes that serve one. */
  port: number | undefined;
  /** Resident set size now, in MiB (Linux /proc). */
  rssMb(): number;
  /** False once the process has exited. */
  alive(): boolean;
  /** The last lines it printed, for failure reports. */
  output(): string;
  /** Stops the process with SIGTERM (SIGKILL after 20 s) and waits for it. */
  stop(): Promise<void>;
}

/** CPU time (user + system) of a process in seconds, from /proc; 0 when it is gone or not on Linux. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Resident set size of a process in MiB, from /proc; 0 when it is gone. */
export function rssMb(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /VmRSS:\s+(\d+) kB/.exec(status);
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Busy and total CPU time of the whole machine, in seconds, from /proc/stat. */
export function machineCpu(): { busy: number; total: number } {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return { busy: (total - idle) / 100, total: total / 100 };
  } catch {
    return { busy: 0, total: 0 };
  }
}

interface SpawnOptions {
  name: string;
  args: string[];
  env: Record<string, string>;
  /** Output that means the process is ready; all must appear. */
  ready: RegExp[];
  nodeArgs?: string[];
}

function spawnChild(o: SpawnOptions): Promise<Child> {
  const child: ChildProcess = spawn(process.execPath, [...(o.nodeArgs ?? []), ...o.args], {
    cwd: ROOT,
    env: { ...process.env, ...o.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const tail: string[] = [];
  let port: number | undefined;
  const pending = new Set(o.ready);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  return new Promise<Child>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${o.name} did not start in 60 s:\n${tail.join('')}`));
    }, 60_000);
    const onData = (chunk: Buffer): void => {
      const text = chunk.toString();
      tail.push(text);
      if (tail.length > 40) tail.shift();
      const recent = tail.join('');
      const m = /API on http:\/\/[^:]+:(\d+)/.exec(recent);
      if (m) port = Number(m[1]);
      for (const r of [...pending]) if (r.test(recent)) pending.delete(r);
      if (pending.size === 0 && !exited) {
        clearTimeout(timer);
        pending.add(/$^/); // resolve once
        resolve({
          name: o.name,
          pid: child.pid!,
          port,
          rssMb: () => rssMb(child.pid!),
          alive: () => !exited,
          output: () => tail.join(''),
          async stop() {
            if (exited) return;
            child.kill('SIGTERM');
            const hard = setTimeout(() => child.kill('SIGKILL'), 20_000);
            await exit;
            clearTimeout(hard);
          },
        });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exit.then(() => {
      clearTimeout(timer);
      reject(new Error(`${o.name} exited with code ${child.exitCode}:\n${tail.join('')}`));
    });
  });
}

/** Starts `promosync <command>` (start, api or worker) and waits until it serves. */
export function spawnPromosync(
  command: 'start' | 'api' | 'worker',
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<Child> {
  const ready: RegExp[] = [];
  if (command !== 'api') ready.push(/"msg":"worker started"/);
  if (command !== 'worker') ready.push(/API on http/);
  return spawnChild({
    name: `promosync ${command}`,
    args: [CLI, command],
    env: { LOG_LEVEL: 'info', HOST: '127.0.0.1', PORT: '0', ...env },
    ready,
    nodeArgs,
  });
}

/** Starts the reference BullMQ worker whose processor does nothing (bench/noop-worker.ts). */
export function spawnNoopWorker(env: Record<string, string>): Promise<Child> {
  return spawnChild({
    name: 'bullmq no-op worker',
    args: ['--import', 'tsx', fileURLToPath(new URL('./noop-worker.ts', import.meta.url))],
    env,
    ready: [/no-op worker ready/],
  });
}

/** Starts a TypeScript server script of the benchmark and waits until it prints `API on http…`. */
export function spawnBenchServer(
  name: string,
  file: string,
  env: Record<string, string>,
  nodeArgs: string[] = [],
): Promise<Child> {
  return spawnChild({
    name,
    args: ['--import', 'tsx', fileURLToPath(new URL(file, import.meta.url))],
    env,
    ready: [/API on http/],
    nodeArgs,
  });
}
