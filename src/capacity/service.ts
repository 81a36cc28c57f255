import type { Pool } from 'pg';
import type { Logger } from 'pino';
import type { AdmitResult, LimitsPatch, ReserveRequest, Reservation } from '../domain/index.ts';
import type { CapacityMetrics, ReservationOutcome } from '../observability/index.ts';
import {
  capacitySummary,
  confirmReservation,
  getReservation,
  releaseReservation,
  setLimits,
  type CapacitySummary,
} from '../store/index.ts';
import { Admitter } from './admitter.ts';
import { Sweeper } from './sweeper.ts';

/** Options of a {@link CapacityService}. */
export interface CapacityOptions {
  pool: Pool;
  logger: Logger;
  metrics?: CapacityMetrics;
  /** Requests one admission statement takes at most. @defaultValue 500 */
  maxBatch?: number;
  /** Admission statements at once. @defaultValue `DEFAULTS.capacityMaxStatements` */
  maxStatements?: number;
  /** Pause between sweeps of expired holds. @defaultValue 250 */
  sweepIntervalMs?: number;
}

function outcomeLabel(r: AdmitResult): ReservationOutcome {
  if (r.kind !== 'exhausted') return r.kind;
  return r.limit === 'total'
    ? 'exhausted_total'
    : r.limit === 'perCustomer'
      ? 'exhausted_per_customer'
      : 'exhausted_per_window';
}

/**
 * Promotion capacity in one process: group-committed admissions, confirmations, releases,
 * summaries and the sweeper of expired holds (docs/design.md#capacity).
 */
export class CapacityService {
  readonly admitter: Admitter;
  readonly sweeper: Sweeper;

  constructor(private readonly o: CapacityOptions) {
    this.admitter = new Admitter(o.pool, {
      ...(o.maxBatch !== undefined ? { maxBatch: o.maxBatch } : {}),
      ...(o.maxStatements !== undefined ? { maxStatements: o.maxStatements } : {}),
      onBatch: (n, _seconds, expired) => {
        o.metrics?.admitBatch.observe(n);
        if (expired > 0) o.metrics?.expiries.inc(expired);
      },
    });
    this.sweeper = new Sweeper(o.pool, o.logger, {
      ...(o.sweepIntervalMs !== undefined ? { intervalMs: o.sweepIntervalMs } : {}),
      onExpired: (n) => o.metrics?.expiries.inc(n),
    });
  }

  start(): void {
    this.sweeper.start();
  }

  async reserve(promotionId: string, request: ReserveRequest): Promise<AdmitResult> {
    const t0 = performance.now();
    try {
      const result = await this.admitter.reserve(promotionId, request);
      this.o.metrics?.reservations.inc({ outcome: outcomeLabel(result) });
      return result;
    } catch (err) {
      this.o.metrics?.reservations.inc({ outcome: 'error' });
      throw err;
    } finally {
      this.o.metrics?.reserveSeconds.observe((performance.now() - t0) / 1000);
    }
  }

  confirm(promotionId: string, orderId: string): Promise<Reservation | null> {
    return confirmReservation(this.o.pool, promotionId, orderId);
  }

  release(promotionId: string, orderId: string): Promise<Reservation | null> {
    return releaseReservation(this.o.pool, promotionId, orderId);
  }

  get(promotionId: string, orderId: string): Promise<Reservation | null> {
    return getReservation(this.o.pool, promotionId, orderId);
  }

  summary(promotionId: string, customerId?: string): Promise<CapacitySummary | null> {
    return capacitySummary(this.o.pool, promotionId, customerId);
  }

  async setLimits(promotionId: string, patch: LimitsPatch): Promise<CapacitySummary> {
    await setLimits(this.o.pool, promotionId, patch);
    return (await capacitySummary(this.o.pool, promotionId))!;
  }

  /** Answers what is pending, then stops the sweeper. */
  async close(): Promise<void> {
    await this.admitter.close();
    await this.sweeper.close();
  }
}
