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

async function postgresPids(client: pg.Client, database: string): Promise<number[]> {
  // Our database's backends only: the server's own processes (WAL writer, checkpointer) work
  // for every database on it, and the machine is shared.
  const { rows } = await client.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
    [database],
  );
  return rows.map((r) => r.pid);
}

async function redisPid(redis: Redis): Promise<number | undefined> {
  const info = await redis.info('server');
  const m = /process_id:(\d+)/.exec(info);
  return m ? Number(m[1]) : undefined;
}

/**
 * Measures CPU per component between `start()` and `stop()` from /proc. Postgres backends are
 * sampled every 250 ms, so one that appears meanwhile counts from zero and one that exits
 * keeps what it had used at its last sample. Linux-only; 0 elsewhere.
 */
export class CpuMeter {
  private readonly startPids = new Map<number, number>();
  /** Postgres backends seen during the run: CPU at first sight (0 if new) and at last sight. */
  private readonly backends = new Map<number, { first: number; last: number }>();
  private startSelf = process.cpuUsage();
  private startMachine = machineCpu();
  private startAt = 0;
  private sampler: NodeJS.Timeout | undefined;
  private sampling: Promise<void> = Promise.resolve();
  private client: pg.Client | undefined;

  constructor(
    private readonly serverUrl: string,
    private readonly database: string,
    /** The Redis to measure, if the scenario uses one. */
    private readonly redis: Redis | undefined,
    private readonly children: () => Record<string, number>,
  ) {}

  private async others(): Promise<Record<string, number[]>> {
    const out: Record<string, number[]> = {};
    for (const [name, pid] of Object.entries(this.children())) out[name] = [pid];
    const r = this.redis ? await redisPid(this.redis).catch(() => undefined) : undefined;
    if (r !== undefined) out.redis = [r];
    return out;
  }

  private async sampleBackends(initial: boolean): Promise<void> {
    if (!this.client) return;
    for (const pid of await postgresPids(this.client, this.database).catch(() => [])) {
      const now = cpuSeconds(pid);
      const b = this.backends.get(pid);
      if (b) b.last = Math.max(b.last, now);
      else this.backends.set(pid, { first: initial ? now : 0, last: now });
    }
  }

  async start(): Promise<void> {
    this.client = new pg.Client({
      connectionString: this.serverUrl,
      application_name: 'promosync-bench-meter',
    });
    await this.client.connect();
    for (const pids of Object.values(await this.others())) {
      for (const pid of pids) this.startPids.set(pid, cpuSeconds(pid));
    }
    await this.sampleBackends(true);
    this.sampler = setInterval(() => {
      this.sampling = this.sampling.then(() => this.sampleBackends(false));
    }, 250);
    this.sampler.unref();
    this.startSelf = process.cpuUsage();
    this.startMachine = machineCpu();
    this.startAt = performance.now();
  }

  async stop(): Promise<CpuReport> {
    const wall = (performance.now() - this.startAt) / 1000;
    const self = process.cpuUsage(this.startSelf);
    const machine = machineCpu();
    clearInterval(this.sampler);
    await this.sampling;
    await this.sampleBackends(false);
    const seconds: Record<string, number> = { bench: (self.user + self.system) / 1e6 };
    for (const [name, pids] of Object.entries(await this.others())) {
      seconds[name] = pids.reduce((s, pid) => s + cpuSeconds(pid) - (this.startPids.get(pid) ?? 0), 0);
    }
    seconds.postgres = [...this.backends.values()].reduce((s, b) => s + b.last - b.first, 0);
    await this.client?.end().catch(() => {});
    this.client = undefined;
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
