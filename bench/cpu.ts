import pg from 'pg';
import type { Redis } from 'ioredis';
import { cpuSeconds, machineCpu } from './proc.ts';

/** Where the CPU time of one scenario went, in seconds, and how busy the whole machine was. */
export interface CpuReport {
  /** Seconds of CPU per component: bench (this process), each child, redis, postgres. */
  seconds: Record<string, number>;
  /** Wall-clock seconds measured. */
  wall: number;
  /** CPU of the whole machine, other users included, as a share of all its cores (0–1). */
  machineBusy: number;
}

async function postgresPids(serverUrl: string, database: string): Promise<number[]> {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    // Our database's backends only: the server's own processes (WAL writer, checkpointer) work
    // for every database on it, and the machine is shared.
    const { rows } = await c.query<{ pid: number }>(
      `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`,
      [database],
    );
    return rows.map((r) => r.pid);
  } finally {
    await c.end();
  }
}

async function redisPid(redis: Redis): Promise<number | undefined> {
  const info = await redis.info('server');
  const m = /process_id:(\d+)/.exec(info);
  return m ? Number(m[1]) : undefined;
}

/**
 * Measures CPU per component between `start()` and `stop()` from /proc. Postgres backends
 * that appear meanwhile count from zero; the figures are Linux-only and 0 elsewhere.
 */
export class CpuMeter {
  private startPids = new Map<number, number>();
  private startSelf = process.cpuUsage();
  private startMachine = machineCpu();
  private startAt = 0;

  constructor(
    private readonly serverUrl: string,
    private readonly database: string,
    /** The Redis to measure, if the scenario uses one. */
    private readonly redis: Redis | undefined,
    private readonly children: () => Record<string, number>,
  ) {}

  private async components(): Promise<Record<string, number[]>> {
    const out: Record<string, number[]> = {};
    for (const [name, pid] of Object.entries(this.children())) out[name] = [pid];
    const r = this.redis ? await redisPid(this.redis).catch(() => undefined) : undefined;
    if (r !== undefined) out.redis = [r];
    out.postgres = await postgresPids(this.serverUrl, this.database).catch(() => []);
    return out;
  }

  async start(): Promise<void> {
    for (const pids of Object.values(await this.components())) {
      for (const pid of pids) this.startPids.set(pid, cpuSeconds(pid));
    }
    this.startSelf = process.cpuUsage();
    this.startMachine = machineCpu();
    this.startAt = performance.now();
  }

  async stop(): Promise<CpuReport> {
    const wall = (performance.now() - this.startAt) / 1000;
    const self = process.cpuUsage(this.startSelf);
    const machine = machineCpu();
    const seconds: Record<string, number> = { bench: (self.user + self.system) / 1e6 };
    for (const [name, pids] of Object.entries(await this.components())) {
      seconds[name] = pids.reduce((s, pid) => s + cpuSeconds(pid) - (this.startPids.get(pid) ?? 0), 0);
    }
    const total = machine.total - this.startMachine.total;
    return {
      seconds,
      wall,
      machineBusy: total > 0 ? (machine.busy - this.startMachine.busy) / total : 0,
    };
  }
}

/** The p-th percentile (0–100) of `values`, nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}
