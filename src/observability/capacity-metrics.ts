import { Counter, Histogram, type Registry } from 'prom-client';

/** Outcomes of a reservation request, as counted. */
export type ReservationOutcome =
  | 'granted'
  | 'replay'
  | 'conflict'
  | 'not_active'
  | 'customer_required'
  | 'exhausted_total'
  | 'exhausted_per_customer'
  | 'exhausted_per_window'
  | 'error';

/** Metrics of the capacity path, registered on a process's registry. */
export class CapacityMetrics {
  readonly reservations: Counter<'outcome'>;
  readonly expiries: Counter;
  readonly reserveSeconds: Histogram;
  readonly admitBatch: Histogram;

  constructor(registry: Registry) {
    this.reservations = new Counter({
      name: 'promosync_reservations_total',
      help: 'Reservation requests by outcome (granted, replay, conflict, not_active, exhausted_*, …)',
      labelNames: ['outcome'],
      registers: [registry],
    });
    this.expiries = new Counter({
      name: 'promosync_reservation_expiries_total',
      help: 'Holds that expired unconfirmed and gave their units back',
      registers: [registry],
    });
    this.reserveSeconds = new Histogram({
      name: 'promosync_reservation_seconds',
      help: 'Time from a reservation request reaching the admitter to its committed answer',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    this.admitBatch = new Histogram({
      name: 'promosync_reservation_batch_requests',
      help: 'Reservation requests admitted by one statement',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers: [registry],
    });
  }
}
