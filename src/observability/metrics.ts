import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Outcome labels counted per event. */
export type CountedOutcome = 'applied' | 'stale' | 'duplicate' | 'rejected' | 'anomaly' | 'invalid';

/** Prometheus metrics of one process. Each process owns a registry (no global state). */
export class Metrics {
  readonly registry = new Registry();
  readonly received: Counter<'machine' | 'source'>;
  readonly outcomes: Counter<'machine' | 'source' | 'outcome'>;
  readonly batchSize: Histogram;
  readonly applySeconds: Histogram;
  readonly queueDepth: Gauge<'queue' | 'state'>;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly watchers: Gauge;
  readonly changeHorizonLag: Gauge;

  constructor(options: { defaults?: boolean } = {}) {
    if (options.defaults !== false) collectDefaultMetrics({ register: this.registry, prefix: 'promosync_' });
    this.received = new Counter({
      name: 'promosync_events_received_total',
      help: 'Events accepted for processing, by machine and source',
      labelNames: ['machine', 'source'],
      registers: [this.registry],
    });
    this.outcomes = new Counter({
      name: 'promosync_events_total',
      help: 'Events processed, by outcome (applied, stale, duplicate, rejected, anomaly, invalid)',
      labelNames: ['machine', 'source', 'outcome'],
      registers: [this.registry],
    });
    this.batchSize = new Histogram({
      name: 'promosync_apply_batch_events',
      help: 'Events per apply statement',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
      registers: [this.registry],
    });
    this.applySeconds = new Histogram({
      name: 'promosync_apply_seconds',
      help: 'Duration of one apply statement, retries included',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [this.registry],
    });
    this.queueDepth = new Gauge({
      name: 'promosync_queue_jobs',
      help: 'Jobs in the queue by state, read at scrape time',
      labelNames: ['queue', 'state'],
      registers: [this.registry],
    });
    this.httpRequests = new Counter({
      name: 'promosync_http_requests_total',
      help: 'HTTP requests by method, route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.watchers = new Gauge({
      name: 'promosync_watch_streams',
      help: 'Open watch (Server-Sent Events) streams of this process',
      registers: [this.registry],
    });
    this.changeHorizonLag = new Gauge({
      name: 'promosync_change_horizon_lag_seconds',
      help: 'Age of the oldest running write transaction, which holds back the change feed (docs/design.md#changes)',
      registers: [this.registry],
    });
  }
}
