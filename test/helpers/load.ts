import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import type pg from 'pg';
import { expect } from 'vitest';
import { Queue, QueueEvents } from 'bullmq';
import type { EventInput } from '../../src/domain/event-schema.ts';
import type { MachineRegistry } from '../../src/domain/registry.ts';
import { createRedis } from '../../src/queue/redis.ts';
import { applyInOrder, comparable } from './expected.ts';
import { historyArb, renamed, type GeneratedHistory } from './histories.ts';
import { prng } from '../../bench/workload.ts';
import { comparableRow, type ComparedRow } from '../../bench/verify.ts';

// The benchmark's seeded PRNG (mulberry32): a failing load can be replayed from its seed.
export { prng };

export interface Workload {
  /** Every entity's valid history, in order. */
  histories: GeneratedHistory[];
  /** What the producer sends, in sending order: shuffled, some events twice, some never. */
  sends: EventInput[];
}

/**
 * Valid histories of several machines (from walks of the machines themselves), until the
 * delivery holds at least `minEvents` events: each history's events shuffled in with all
 * the others, about `dupRate` of them sent twice and `dropRate` of the non-final ones never
 * sent (lost before they reached us).
 */
export function buildWorkload(
  registry: MachineRegistry,
  opts: { minEvents: number; seed: number; prefix: string; dupRate?: number; dropRate?: number },
): Workload {
  const rnd = prng(opts.seed);
  const infos = registry.list();
  const histories: GeneratedHistory[] = [];
  const sends: EventInput[] = [];
  let i = 0;
  while (sends.length < opts.minEvents) {
    const info = infos[i % infos.length]!;
    const [h] = fc.sample(historyArb(info), { numRuns: 1, seed: opts.seed + i });
    const history = renamed(h!, `${opts.prefix}-${info.analysis.name}-${i}`);
    i += 1;
    if (history.events.length === 0) continue;
    histories.push(history);
    history.events.forEach((e, k) => {
      const last = k === history.events.length - 1;
      if (!last && rnd() < (opts.dropRate ?? 0)) return;
      sends.push(e);
      if (rnd() < (opts.dupRate ?? 0)) sends.push(e);
    });
  }
  shuffle(sends, rnd);
  return { histories, sends };
}

export function shuffle<T>(xs: T[], rnd: () => number): T[] {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
}

/** What a producer saw. */
export interface ProducerStats {
  /** Event copies the producer set out to send (duplicates included). */
  sent: number;
  /** Event copies answered 202. */
  acknowledged: number;
  /** Event copies it gave up on (never 202 before the deadline). */
  unacknowledged: number;
  /** POST requests made, retries included. */
  requests: number;
  /** Requests made again after an error. */
  retries: number;
  /** Responses by status, `network` for requests that got none. */
  statuses: Record<string, number>;
}

export interface ProducerOptions {
  /** API base URL, or a function giving it (an API that moves). */
  url: string | (() => string);
  key: string;
  /** Events per request: uniform in [1, maxBatch]; a request of one is sent as a bare event. */
  maxBatch: number;
  /** Requests in flight at once. */
  concurrency: number;
  /** Target pace in events per second; unpaced when absent. */
  eventsPerSecond?: number;
  /**
   * Stop retrying this long after the run started: what is not acknowledged by then counts
   * as unacknowledged (so a broken service fails the test with counts instead of hanging it).
   * @defaultValue 150000
   */
  deadlineMs?: number;
  seed: number;
}

/**
 * A well-behaved producer: sends the events over HTTP in requests of random size, and sends
 * a request again (same events, same eventIds) until it is answered 202 — after an error,
 * a 503, a 429 (honouring Retry-After) or no answer at all.
 */
export class Producer {
  readonly stats: ProducerStats = {
    sent: 0,
    acknowledged: 0,
    unacknowledged: 0,
    requests: 0,
    retries: 0,
    statuses: {},
  };
  /** eventIds with at least one copy answered 202. */
  readonly acked = new Set<string>();
  /** Responses other than 202/429/5xx: a well-formed event must never get one. */
  readonly unexpected: string[] = [];
  private done = 0;
  private total = 0;
  private deadline = Infinity;
  private readonly progressWaiters: Array<{ at: number; resolve: () => void }> = [];

  constructor(private readonly opts: ProducerOptions) {}

  /** Fraction of the event copies answered (or given up on). */
  get progress(): number {
    return this.total === 0 ? 0 : this.done / this.total;
  }

  /** Resolves once `fraction` of the load is through. */
  reached(fraction: number): Promise<void> {
    if (this.progress >= fraction) return Promise.resolve();
    return new Promise((resolve) => this.progressWaiters.push({ at: fraction, resolve }));
  }

  private advance(n: number): void {
    this.done += n;
    for (const w of [...this.progressWaiters]) {
      if (this.progress >= w.at) {
        this.progressWaiters.splice(this.progressWaiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  async run(events: EventInput[]): Promise<ProducerStats> {
    const rnd = prng(this.opts.seed);
    const requests: EventInput[][] = [];
    for (let at = 0; at < events.length;) {
      const n = 1 + Math.floor(rnd() * this.opts.maxBatch);
      requests.push(events.slice(at, at + n));
      at += n;
    }
    this.total += events.length;
    this.stats.sent += events.length;
    const started = Date.now();
    this.deadline = started + (this.opts.deadlineMs ?? 150_000);
    let sentSoFar = 0;
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < requests.length) {
        const batch = requests[next++]!;
        if (this.opts.eventsPerSecond) {
          const due = started + (sentSoFar / this.opts.eventsPerSecond) * 1000;
          sentSoFar += batch.length;
          const wait = due - Date.now();
          if (wait > 0) await sleep(wait);
        }
        await this.deliver(batch);
        this.advance(batch.length);
      }
    };
    await Promise.all(Array.from({ length: this.opts.concurrency }, lane));
    return this.stats;
  }

  private async deliver(batch: EventInput[]): Promise<void> {
    const body = JSON.stringify(batch.length === 1 ? batch[0] : { events: batch });
    for (let attempt = 0; ; attempt++) {
      if (Date.now() > this.deadline) {
        this.stats.unacknowledged += batch.length;
        return;
      }
      if (attempt > 0) this.stats.retries += 1;
      this.stats.requests += 1;
      let status = 'network';
      let retryAfterS = 0;
      try {
        const url = typeof this.opts.url === 'string' ? this.opts.url : this.opts.url();
        const res = await fetch(`${url}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${this.opts.key}`, 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(20_000),
        });
        status = String(res.status);
        retryAfterS = Number(res.headers.get('retry-after') ?? 0);
        const text = await res.text();
        if (res.status === 202) {
          this.count(status);
          this.stats.acknowledged += batch.length;
          for (const e of batch) this.acked.add(e.eventId!);
          return;
        }
        if (res.status !== 429 && res.status < 500) {
          this.count(status);
          this.unexpected.push(`${res.status} ${text.slice(0, 300)}`);
          this.stats.unacknowledged += batch.length;
          return;
        }
      } catch {
        // No answer: the events may or may not be queued; sending them again is safe.
      }
      this.count(status);
      const backoff = Math.min(2000, 100 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random());
      await sleep(Math.max(backoff, retryAfterS * 1000));
    }
  }

  private count(status: string): void {
    this.stats.statuses[status] = (this.stats.statuses[status] ?? 0) + 1;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until a queue has nothing waiting, active, delayed or prioritized. */
export async function waitDrained(redisUrl: string, queueName: string, timeoutMs = 180_000): Promise<void> {
  const redis = createRedis(redisUrl);
  const queue = new Queue(queueName, { connection: redis });
  try {
    const deadline = Date.now() + timeoutMs;
    let quietSince = 0;
    for (;;) {
      const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
      if (Object.values(c).every((n) => n === 0)) {
        // Twice in a row, a moment apart: a job between two states is in none of them.
        if (quietSince && Date.now() - quietSince > 300) return;
        quietSince ||= Date.now();
      } else quietSince = 0;
      if (Date.now() > deadline) throw new Error(`queue ${queueName} not drained: ${JSON.stringify(c)}`);
      await sleep(100);
    }
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

/** The outcome of comparing the database with what the producer was told. */
export interface Convergence {
  /** Entities whose history had at least one acknowledged event. */
  entities: number;
  /** Entities whose row differs from the in-order application of their acknowledged events. */
  mismatches: string[];
  /** Acknowledged eventIds with exactly one non-duplicate row in the event log. */
  applied: number;
  /** Acknowledged eventIds with no non-duplicate row: accepted, never applied. */
  lost: number;
  /** eventIds with more than one non-duplicate row: applied twice. */
  appliedTwice: number;
  /** Every event-log row of the source (duplicates included). */
  logRows: number;
  /** Event-log rows by outcome. */
  outcomes: Record<string, number>;
}

interface Row extends ComparedRow {
  machine: string;
}

/**
 * The convergence check: every entity's row must equal the in-order application of the
 * events of its history the producer got 202 for (an entity with none must have no row),
 * and every acknowledged event must have been applied exactly once.
 */
export async function checkConvergence(
  pool: pg.Pool,
  registry: MachineRegistry,
  histories: GeneratedHistory[],
  acked: ReadonlySet<string>,
  source: string,
): Promise<Convergence> {
  const rows = await pool.query<Row>(
    'SELECT machine, entity_id, status, last_event, version, merchant_id, fields FROM entity',
  );
  const byId = new Map(rows.rows.map((r) => [`${r.machine}/${r.entity_id}`, r]));
  const mismatches: string[] = [];
  let entities = 0;
  for (const h of histories) {
    const delivered = h.events.filter((e) => acked.has(e.eventId!));
    if (delivered.length > 0) entities += 1;
    const expected = comparable(applyInOrder(registry, delivered, source));
    const row = byId.get(`${h.events[0]!.machine}/${h.entityId}`);
    const actual = row && comparableRow(row);
    if (!isDeepStrictEqual(actual, expected)) {
      mismatches.push(`${h.entityId}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
    }
  }
  const log = await pool.query<{ event_id: string; firsts: string }>(
    `SELECT event_id, count(*) FILTER (WHERE outcome <> 'duplicate') AS firsts
     FROM event_log WHERE source = $1 GROUP BY event_id`,
    [source],
  );
  const firsts = new Map(log.rows.map((r) => [r.event_id, Number(r.firsts)]));
  let applied = 0;
  let lost = 0;
  for (const id of acked) {
    const n = firsts.get(id) ?? 0;
    if (n === 1) applied += 1;
    else if (n === 0) lost += 1;
  }
  const appliedTwice = [...firsts.values()].filter((n) => n > 1).length;
  const outcomes = await pool.query<{ outcome: string; n: string }>(
    'SELECT outcome, count(*) AS n FROM event_log WHERE source = $1 GROUP BY outcome',
    [source],
  );
  const byOutcome = Object.fromEntries(outcomes.rows.map((r) => [r.outcome, Number(r.n)]));
  return {
    entities,
    mismatches,
    applied,
    lost,
    appliedTwice,
    logRows: Object.values(byOutcome).reduce((a, b) => a + b, 0),
    outcomes: byOutcome,
  };
}

/** One line per scenario with the counts the fault tests report. */
export function report(
  scenario: string,
  producers: Producer | Producer[],
  c: Convergence,
  extra: Record<string, unknown> = {},
): void {
  const ps = Array.isArray(producers) ? producers : [producers];
  const sum = (f: (s: ProducerStats) => number): number => ps.reduce((n, p) => n + f(p.stats), 0);
  const statuses: Record<string, number> = {};
  for (const p of ps)
    for (const [k, n] of Object.entries(p.stats.statuses)) statuses[k] = (statuses[k] ?? 0) + n;
  console.log(
    `[fault] ${scenario}: ${JSON.stringify({
      sent: sum((s) => s.sent),
      acknowledged: sum((s) => s.acknowledged),
      acknowledgedEventIds: new Set(ps.flatMap((p) => [...p.acked])).size,
      applied: c.applied,
      lost: c.lost,
      appliedTwice: c.appliedTwice,
      entities: c.entities,
      mismatches: c.mismatches.length,
      requests: sum((s) => s.requests),
      retries: sum((s) => s.retries),
      statuses,
      logOutcomes: c.outcomes,
      ...extra,
    })}`,
  );
}

/** Removes a queue and all its jobs from Redis. */
export async function obliterate(redisUrl: string, queueName: string): Promise<void> {
  const redis = createRedis(redisUrl);
  const queue = new Queue(queueName, { connection: redis });
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  redis.disconnect();
}

/** Jobs in the failed set: accepted events that will not be applied without an operator. */
export async function failedJobs(redisUrl: string, queueName: string): Promise<string[]> {
  const redis = createRedis(redisUrl);
  const queue = new Queue(queueName, { connection: redis });
  try {
    const jobs = await queue.getFailed(0, 20);
    return jobs.map((j) => `${j.id}: ${j.failedReason}`);
  } finally {
    await queue.close();
    redis.disconnect();
  }
}

/**
 * The load every fault scenario runs: a workload of at least `minEvents` (15% duplicated, 10%
 * of intermediates dropped) sent over HTTP at 1500 events/s by 8 clients in requests of up to
 * 30 events. Seeds make each scenario's load the same on every run.
 */
export function startFaultLoad(
  registry: MachineRegistry,
  target: { url: string; key: string },
  o: { minEvents: number; seed: number; prefix: string; producerSeed: number },
): {
  load: Workload;
  producer: Producer;
  running: Promise<ProducerStats>;
  t0: number;
  /** The events the load was asked to hold at least. */
  minEvents: number;
} {
  const load = buildWorkload(registry, {
    minEvents: o.minEvents,
    seed: o.seed,
    prefix: o.prefix,
    dupRate: 0.15,
    dropRate: 0.1,
  });
  const producer = new Producer({
    url: target.url,
    key: target.key,
    maxBatch: 30,
    concurrency: 8,
    eventsPerSecond: 1500,
    seed: o.producerSeed,
  });
  const t0 = Date.now();
  return { load, producer, running: producer.run(load.sends), t0, minEvents: o.minEvents };
}

/** How a fault scenario's load ended: the producer's counts, the queue drained, the rows checked. */
export interface SettledLoad {
  stats: ProducerStats;
  /** Seconds from the first request to the producer's last answer. */
  loadSeconds: number;
  /** When the queue was found drained (epoch ms). */
  drainedAt: number;
  /** Ids of the queue's failed jobs. */
  failed: string[];
  c: Convergence;
}

/**
 * Waits for a load of {@link startFaultLoad} to end and the queue to drain, then checks every
 * acknowledged event against the database.
 */
export async function settleFaultLoad(
  run: ReturnType<typeof startFaultLoad>,
  at: { redisUrl: string; queueName: string; pool: pg.Pool; registry: MachineRegistry; source: string },
): Promise<SettledLoad> {
  const stats = await run.running;
  const loadSeconds = (Date.now() - run.t0) / 1000;
  await waitDrained(at.redisUrl, at.queueName);
  const drainedAt = Date.now();
  const failed = await failedJobs(at.redisUrl, at.queueName);
  const c = await checkConvergence(at.pool, at.registry, run.load.histories, run.producer.acked, at.source);
  return { stats, loadSeconds, drainedAt, failed, c };
}

/**
 * What every fault scenario must end with: the producer saw no unexpected answer and got 202
 * for all of its events (at least the load's `minEvents`), no job failed, and every acknowledged event was
 * applied exactly once, with every row equal to the in-order application of its events.
 */
export function expectEveryEventApplied(run: ReturnType<typeof startFaultLoad>, s: SettledLoad): void {
  expect(run.producer.unexpected).toEqual([]);
  expect(s.stats.sent).toBeGreaterThanOrEqual(run.minEvents);
  expect(s.stats.unacknowledged).toBe(0);
  expect(s.failed).toEqual([]);
  expect(s.c.lost).toBe(0);
  expect(s.c.appliedTwice).toBe(0);
  expect(s.c.applied).toBe(run.producer.acked.size);
  expect(s.c.mismatches.slice(0, 5)).toEqual([]);
}

/** A queue seen from the test: its jobs, and how many of them stalled since it was opened. */
export interface QueueWatch {
  queue: Queue;
  /** Jobs found stalled (their worker went away holding them). */
  readonly stalled: number;
  close(): Promise<void>;
}

export async function watchQueue(redisUrl: string, queueName: string): Promise<QueueWatch> {
  const redis = createRedis(redisUrl);
  const queue = new Queue(queueName, { connection: redis });
  const events = new QueueEvents(queueName, { connection: createRedis(redisUrl) });
  let stalled = 0;
  events.on('stalled', () => (stalled += 1));
  await events.waitUntilReady();
  return {
    queue,
    get stalled() {
      return stalled;
    },
    async close() {
      await events.close();
      await queue.close();
      redis.disconnect();
    },
  };
}
