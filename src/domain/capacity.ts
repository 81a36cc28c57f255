// Capacity of a promotion: limits, reservations and the rule that admits them (docs/design.md#capacity).
// The types here are shared by the store, the API and the CLI; `CapacityModel` is the rule as a
// pure, sequential reference that the property tests compare the database against.

/** The limits a promotion may carry; null means no such limit. */
export interface Limits {
  /** Units over the promotion's lifetime. */
  total: number | null;
  /** Units one customer may hold or have confirmed. */
  perCustomer: number | null;
  /** Units reserved within any sliding window of `seconds`. */
  perWindow: { seconds: number; max: number } | null;
}

/** A change of limits: an absent field leaves a limit as it is, null removes it. */
export type LimitsPatch = { [K in keyof Limits]?: Limits[K] };

export type LimitName = 'total' | 'perCustomer' | 'perWindow';

/** held: counts until it expires; confirmed: counts forever; released, expired: counts no more. */
export type ReservationStatus = 'held' | 'confirmed' | 'released' | 'expired';

/** Largest number of units one reservation may take. */
export const MAX_UNITS = 1_000_000;
/** Longest hold, in seconds, and the default one. */
export const MAX_HOLD_SECONDS = 86_400;
export const DEFAULT_HOLD_SECONDS = 300;

export interface ReserveRequest {
  orderId: string;
  customerId: string | null;
  units: number;
  holdSeconds: number;
}

/** Units left under each limit right after a grant; null for a limit the promotion lacks. */
export interface Remaining {
  total: number | null;
  perCustomer: number | null;
  perWindow: number | null;
}

export interface Reservation {
  promotionId: string;
  orderId: string;
  customerId: string | null;
  units: number;
  status: ReservationStatus;
  createdAt: Date;
  expiresAt: Date;
  resolvedAt: Date | null;
  /** What the first answer said was left; a retried request gets the same answer. */
  remaining: Remaining;
}

/** The answer to one reservation request. */
export type AdmitResult =
  | { kind: 'granted' | 'replay'; reservation: Reservation }
  | { kind: 'conflict'; reservation: Reservation }
  | { kind: 'not_active' }
  | { kind: 'customer_required' }
  | { kind: 'exhausted'; limit: LimitName };

/** A hold past its expiry counts for nothing, whether or not it has been marked expired yet. */
export function isLive(r: Pick<Reservation, 'status' | 'expiresAt'>, now: Date): boolean {
  return r.status === 'confirmed' || (r.status === 'held' && r.expiresAt.getTime() > now.getTime());
}

/**
 * The admission rule on one promotion, applied one request at a time: the reference the
 * database functions must agree with. Time is passed in, so the model is deterministic.
 */
export class CapacityModel {
  readonly reservations = new Map<string, Reservation>();

  constructor(
    readonly promotionId: string,
    public limits: Limits = { total: null, perCustomer: null, perWindow: null },
    public active = true,
  ) {}

  private live(now: Date, pick: (r: Reservation) => boolean = () => true): number {
    let n = 0;
    for (const r of this.reservations.values()) if (isLive(r, now) && pick(r)) n += r.units;
    return n;
  }

  /** Units of live holds and confirmed reservations: what counts against `total`. */
  used(now: Date): number {
    return this.live(now);
  }

  confirmed(): number {
    let n = 0;
    for (const r of this.reservations.values()) if (r.status === 'confirmed') n += r.units;
    return n;
  }

  customerUsed(customerId: string, now: Date): number {
    return this.live(now, (r) => r.customerId === customerId);
  }

  windowUsed(now: Date): number {
    const w = this.limits.perWindow;
    if (!w) return 0;
    const from = now.getTime() - w.seconds * 1000;
    return this.live(now, (r) => r.createdAt.getTime() > from);
  }

  reserve(req: ReserveRequest, now: Date): AdmitResult {
    const prior = this.reservations.get(req.orderId);
    if (prior) {
      const same = prior.units === req.units && prior.customerId === req.customerId;
      return { kind: same ? 'replay' : 'conflict', reservation: prior };
    }
    if (!this.active) return { kind: 'not_active' };
    const { total, perCustomer, perWindow } = this.limits;
    if (perCustomer !== null && req.customerId === null) return { kind: 'customer_required' };
    const used = this.used(now);
    if (total !== null && used + req.units > total) return { kind: 'exhausted', limit: 'total' };
    const cust = req.customerId === null ? 0 : this.customerUsed(req.customerId, now);
    if (perCustomer !== null && cust + req.units > perCustomer)
      return { kind: 'exhausted', limit: 'perCustomer' };
    const win = this.windowUsed(now);
    if (perWindow !== null && win + req.units > perWindow.max)
      return { kind: 'exhausted', limit: 'perWindow' };
    const left = (max: number | null, after: number): number | null =>
      max === null ? null : Math.max(max - after, 0);
    const reservation: Reservation = {
      promotionId: this.promotionId,
      orderId: req.orderId,
      customerId: req.customerId,
      units: req.units,
      status: 'held',
      createdAt: now,
      expiresAt: new Date(now.getTime() + req.holdSeconds * 1000),
      resolvedAt: null,
      remaining: {
        total: left(total, used + req.units),
        perCustomer: left(perCustomer, cust + req.units),
        perWindow: left(perWindow?.max ?? null, win + req.units),
      },
    };
    this.reservations.set(req.orderId, reservation);
    return { kind: 'granted', reservation };
  }

  /** Confirms a live hold; an expired or released one cannot be. */
  confirm(orderId: string, now: Date): 'confirmed' | 'hold_expired' | 'missing' {
    const r = this.reservations.get(orderId);
    if (!r) return 'missing';
    this.expire(now);
    if (r.status === 'confirmed') return 'confirmed';
    if (r.status !== 'held') return 'hold_expired';
    r.status = 'confirmed';
    r.resolvedAt = now;
    return 'confirmed';
  }

  /** Releases a hold; a confirmed reservation stays confirmed. */
  release(orderId: string, now: Date): ReservationStatus | 'missing' {
    const r = this.reservations.get(orderId);
    if (!r) return 'missing';
    this.expire(now);
    if (r.status === 'held') {
      r.status = 'released';
      r.resolvedAt = now;
    }
    return r.status;
  }

  /** Marks holds past their expiry as expired (what the sweeper does). */
  expire(now: Date): number {
    let n = 0;
    for (const r of this.reservations.values()) {
      if (r.status === 'held' && r.expiresAt.getTime() <= now.getTime()) {
        r.status = 'expired';
        r.resolvedAt = now;
        n += 1;
      }
    }
    return n;
  }
}
