import type { Pool } from 'pg';
import type { AdmitResult, ReserveRequest } from '../domain/index.ts';
import { admitReservations, isRetryable } from '../store/index.ts';

/** Options of an {@link Admitter}. */
export interface AdmitterOptions {
  /** Requests admitted by one statement at most. @defaultValue 500 */
  maxBatch?: number;
  /** Called after every statement with its size, its duration and the holds it expired. */
  onBatch?: (requests: number, seconds: number, expired: number) => void;
}

interface Pending {
  request: ReserveRequest;
  resolve: (r: AdmitResult) => void;
  reject: (err: unknown) => void;
}

/**
 * Group commit of reservations (docs/design.md#capacity): requests for one promotion that
 * arrive while its previous statement runs are folded into the next one, so a hot promotion
 * takes its row lock once per batch instead of once per request, and batches grow with load.
 * A request alone is sent at once. Different promotions run side by side.
 */
export class Admitter {
  private readonly lanes = new Map<string, Pending[]>();
  private readonly running = new Set<Promise<void>>();
  private readonly maxBatch: number;
  private closed = false;

  constructor(
    private readonly pool: Pool,
    private readonly opts: AdmitterOptions = {},
  ) {
    this.maxBatch = opts.maxBatch ?? 500;
  }

  /** Resolves once the request's answer is committed (or known not to need a write). */
  reserve(promotionId: string, request: ReserveRequest): Promise<AdmitResult> {
    if (this.closed) return Promise.reject(new Error('admitter is closed'));
    return new Promise<AdmitResult>((resolve, reject) => {
      const lane = this.lanes.get(promotionId);
      if (lane) {
        lane.push({ request, resolve, reject });
        return;
      }
      this.lanes.set(promotionId, [{ request, resolve, reject }]);
      const run = this.drain(promotionId).finally(() => this.running.delete(run));
      this.running.add(run);
    });
  }

  /** Runs the lane's statements one after another until nothing is pending for it. */
  private async drain(promotionId: string): Promise<void> {
    const lane = this.lanes.get(promotionId)!;
    while (lane.length > 0) {
      const batch = lane.splice(0, this.maxBatch);
      const t0 = performance.now();
      try {
        const { results, expired } = await this.admit(
          promotionId,
          batch.map((p) => p.request),
        );
        this.opts.onBatch?.(batch.length, (performance.now() - t0) / 1000, expired);
        batch.forEach((p, i) => p.resolve(results[i]!));
      } catch (err) {
        // The statement's outcome is unknown to the callers: they retry with the same order ids,
        // which is safe because a committed order answers as a replay.
        for (const p of batch) p.reject(err);
      }
    }
    this.lanes.delete(promotionId);
  }

  private async admit(promotionId: string, requests: ReserveRequest[]) {
    for (let attempt = 1; ; attempt++) {
      try {
        return await admitReservations(this.pool, promotionId, requests);
      } catch (err) {
        // Deadlocks and serialization failures rolled everything back: run it again.
        if (attempt >= 5 || !isRetryable(err)) throw err;
      }
    }
  }

  /** Waits for every pending request to be answered; new ones are refused. */
  async close(): Promise<void> {
    this.closed = true;
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }
}
