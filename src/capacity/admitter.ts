import type { Pool } from 'pg';
import { DEFAULTS } from '../config.ts';
import type { AdmitResult, ReserveRequest } from '../domain/index.ts';
import { admitReservationsMany, isRetryable, type AdmitBatch } from '../store/index.ts';

/** Options of an {@link Admitter}. */
export interface AdmitterOptions {
  /** Requests admitted by one statement at most. @defaultValue 500 */
  maxBatch?: number;
  /** Admission statements in flight at once. @defaultValue `DEFAULTS.capacityMaxStatements` */
  maxStatements?: number;
  /**
   * Longest a request waits for company after large statements were answered.
   * @defaultValue 1
   */
  gatherMs?: number;
  /** Called after every statement with its size, its duration and the holds it expired. */
  onBatch?: (requests: number, seconds: number, expired: number) => void;
}

interface Pending {
  /** When it arrived (performance.now()). */
  at: number;
  request: ReserveRequest;
  resolve: (r: AdmitResult) => void;
  reject: (err: unknown) => void;
}

interface Group {
  promotionId: string;
  batch: Pending[];
}

/**
 * Group commit of reservations (docs/capacity.md#group-commit-on-the-hot-row): requests that
 * arrive while earlier statements run wait and go out together, so a hot promotion takes its row
 * lock once per batch instead of once per request, and batches grow with load. At most
 * `maxStatements` statements run at once; each takes what is pending for every promotion that
 * has no statement running (one promotion is in one statement at a time, its requests in order
 * of arrival), so many quiet promotions share one statement and one commit too.
 *
 * A request that finds a statement slot free is sent at once, unless large statements were
 * answered a moment ago: under load their answers bring the next requests back within a moment,
 * and without a wait the first of them would go alone, cost a commit for one request, and leave
 * the others to the next statement (the statements would then alternate between one request and
 * all the others). So the answers of a statement of N ≥ 4 requests add N to the requests
 * expected, each statement started takes what it sends from them, and a statement starts only
 * once half of those expected are pending, or the oldest pending request has waited `gatherMs`;
 * a wait that runs out clears the expectation.
 *
 * A statement starts beside a running one only once that one has run twice as long as
 * statements usually take (a moving average, at least 1 ms): one statement at a time makes the
 * largest statements when requests are spread over many promotions (two at once split them in
 * halves, each paying the per-promotion work for about one request), while a statement that
 * waits — for a row lock another API process holds, for a slow commit — does not hold up the
 * other promotions longer than that. When a statement's answer arrives, the next one is sent
 * before its callers are answered, so Postgres runs it while the answers are written.
 */
export class Admitter {
  /** Requests not yet sent, by promotion, in order of arrival. */
  private readonly pending = new Map<string, Pending[]>();
  /** Promotions with a statement running. */
  private readonly busy = new Set<string>();
  /** Requests expected soon: answered by large statements, not yet matched by requests sent. */
  private expected = 0;
  private readonly gatherMs: number;
  /** Statements running, with when each started (performance.now()). */
  private readonly running = new Map<Promise<void>, number>();
  /** Moving average of statement durations, in ms. */
  private usualMs = 0;
  /** The one timer that pumps again when a wait (for company, for a late statement) ends. */
  private wakeTimer: NodeJS.Timeout | undefined;
  private wakeAt = Infinity;
  private readonly maxBatch: number;
  private readonly maxStatements: number;
  private closed = false;

  constructor(
    private readonly pool: Pool,
    private readonly opts: AdmitterOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 500;
    this.gatherMs = opts.gatherMs ?? 1;
    this.maxStatements = Math.max(1, opts.maxStatements ?? DEFAULTS.capacityMaxStatements);
  }

  /** Resolves once the request's answer is committed (or known not to need a write). */
  reserve(promotionId: string, request: ReserveRequest): Promise<AdmitResult> {
    if (this.closed) return Promise.reject(new Error('admitter is closed'));
    return new Promise<AdmitResult>((resolve, reject) => {
      const lane = this.pending.get(promotionId);
      const p = { at: performance.now(), request, resolve, reject };
      if (lane) lane.push(p);
      else this.pending.set(promotionId, [p]);
      this.pump();
    });
  }

  /**
   * Starts statements while slots are free and something is pending for an idle promotion; a
   * statement beside a running one only once that one has run longer than usual (see the class
   * comment).
   */
  private pump(): void {
    while (this.running.size < this.maxStatements) {
      if (this.waitingForStall()) return;
      const groups = this.take();
      if (groups.length === 0) return;
      const run: Promise<void> = this.run(groups, () => {
        this.running.delete(run);
        for (const g of groups) this.busy.delete(g.promotionId);
        this.pump();
      });
      this.running.set(run, performance.now());
    }
  }

  /**
   * Whether a statement is running and has not yet run twice its usual time (at least 1 ms);
   * arms the timer that looks again when it will have.
   */
  private waitingForStall(): boolean {
    if (this.running.size === 0 || this.closed) return false;
    let newest = 0;
    for (const startedAt of this.running.values()) newest = Math.max(newest, startedAt);
    const wait = newest + Math.max(1, 2 * this.usualMs) - performance.now();
    if (wait <= 0) return false;
    if (this.pending.size > 0) this.wake(wait);
    return true;
  }

  /** Pumps again in `ms`, unless a wake is already due sooner. */
  private wake(ms: number): void {
    const at = performance.now() + ms;
    if (this.wakeTimer && this.wakeAt <= at) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wakeAt = Infinity;
      this.pump();
    }, ms);
  }

  /** Up to `maxBatch` pending requests of idle promotions, grouped by promotion, sorted by id. */
  private take(): Group[] {
    if (this.gathering()) return [];
    const groups: Group[] = [];
    let n = 0;
    for (const [promotionId, lane] of this.pending) {
      if (n >= this.maxBatch) break;
      if (this.busy.has(promotionId)) continue;
      const batch = lane.splice(0, this.maxBatch - n);
      if (lane.length === 0) this.pending.delete(promotionId);
      this.busy.add(promotionId);
      groups.push({ promotionId, batch });
      n += batch.length;
    }
    this.expected = Math.max(0, this.expected - n);
    // One order of capacity row locks for every statement: two cannot wait for each other.
    return groups.sort((a, b) =>
      a.promotionId < b.promotionId ? -1 : a.promotionId > b.promotionId ? 1 : 0,
    );
  }

  /**
   * Whether the requests that could be sent wait for more to arrive (see the class comment);
   * arms the timer that ends the wait.
   */
  private gathering(): boolean {
    if (this.closed || this.expected < 2) return false;
    const want = Math.min(this.maxBatch, this.expected >> 1);
    let ready = 0;
    let oldest = Infinity;
    for (const [promotionId, lane] of this.pending) {
      if (this.busy.has(promotionId)) continue;
      ready += lane.length;
      oldest = Math.min(oldest, lane[0]!.at);
      if (ready >= want) return false;
    }
    if (ready === 0) return false;
    const wait = oldest + this.gatherMs - performance.now();
    if (wait <= 0) {
      // Fewer came than expected: send what is here and expect nothing more.
      this.expected = 0;
      return false;
    }
    this.wake(wait);
    return true;
  }

  /**
   * Runs one statement. `done` frees its promotions and starts what is pending before any caller
   * is answered: the next statement then runs in Postgres while this one's answers are written,
   * instead of after them.
   */
  private async run(groups: Group[], done: () => void): Promise<void> {
    const t0 = performance.now();
    let batches: AdmitBatch[];
    try {
      batches = await this.admit(groups);
    } catch (err) {
      done();
      // The statement's outcome is unknown to the callers: they retry with the same order ids,
      // which is safe because a committed order answers as a replay.
      for (const g of groups) for (const p of g.batch) p.reject(err);
      return;
    }
    const requests = groups.reduce((s, g) => s + g.batch.length, 0);
    const ms = performance.now() - t0;
    this.usualMs = this.usualMs === 0 ? ms : 0.8 * this.usualMs + 0.2 * ms;
    // Only large statements make the next requests wait (see the class comment).
    if (requests >= 4) this.expected = Math.min(this.expected + requests, this.maxBatch * this.maxStatements);
    done();
    groups.forEach((g, i) => g.batch.forEach((p, j) => p.resolve(batches[i]!.results[j]!)));
    const expired = batches.reduce((s, b) => s + b.expired, 0);
    this.opts.onBatch?.(requests, ms / 1000, expired);
  }

  private async admit(groups: Group[]): Promise<AdmitBatch[]> {
    const input = groups.map((g) => ({
      promotionId: g.promotionId,
      requests: g.batch.map((p) => p.request),
    }));
    for (let attempt = 1; ; attempt++) {
      try {
        return await admitReservationsMany(this.pool, input);
      } catch (err) {
        // Deadlocks and serialization failures rolled everything back: run it again.
        if (attempt >= 5 || !isRetryable(err)) throw err;
      }
    }
  }

  /** Waits for every pending request to be answered; new ones are refused. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.pump();
    while (this.running.size > 0) await Promise.allSettled([...this.running.keys()]);
  }
}
