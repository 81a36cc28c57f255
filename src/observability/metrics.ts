import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { SOURCE_PATTERN, type Outcome } from '../domain/index.ts';

/** Outcome labels counted per event: the apply outcomes, plus anomalies and bad jobs. */
export type CountedOutcome = Outcome | 'anomaly' | 'invalid';

/** The label value that stands for every value a label does not keep. */
export const OTHER_LABEL = 'other';

/** Distinct sources one process keeps as label values; later ones are counted as `other`. */
export const MAX_SOURCE_LABELS = 100;

// A Record, so that a new outcome fails to compile here instead of being counted as `other`.
const COUNTED: Record<CountedOutcome, true> = {
  applied: true,
  stale: true,
  duplicate: true,
  conflict: true,
  rejected: true,
  anomaly: true,
  invalid: true,
};

/** Options of {@link Metrics}. */
export interface MetricsOptions {
  /** Collect prom-client's process metrics. @defaultValue true */
  defaults?: boolean;
  /** The machines served: the only machine label values besides `other` (and `''` for bad jobs). */
  machines?: Iterable<string>;
  /** @defaultValue {@link MAX_SOURCE_LABELS} */
  maxSources?: number;
}

/**
 * Prometheus metrics of one process. Each process owns a registry (no global state).
 *
 * Event counters are bumped through {@link Metrics.countReceived} and {@link Metrics.countOutcome},
 * which keep every label to a bounded set: jobs put on the queue directly carry whatever source
 * and machine their producer wrote, and each distinct label value is a series kept forever.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly received: Counter<'machine' | 'source'>;
  readonly outcomes: Counter<'machine' | 'source' | 'outcome'>;
  readonly batchSize: Histogram;
  readonly applySeconds: Histogram;
  readonly applyRetries: Counter<'reason'>;
  readonly queueDepth: Gauge<'queue' | 'state'>;
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly machines: ReadonlySet<string>;
  private readonly sources = new Set<string>();
  private readonly maxSources: number;
  readonly watchers: Gauge;
  readonly changeHorizonLag: Gauge;

  constructor(options: MetricsOptions = {}) {
    this.machines = new Set(options.machines ?? []);
    this.maxSources = options.maxSources ?? MAX_SOURCE_LABELS;
    if (options.defaults !== false) collectDefaultMetrics({ register: this.registry, prefix: 'promosync_' });
    this.received = new Counter({
      name: 'promosync_events_received_total',
      help: 'Events accepted for processing, by machine and source',
      labelNames: ['machine', 'source'],
      registers: [this.registry],
    });
    this.outcomes = new Counter({
      name: 'promosync_events_total',
      help: 'Events processed, by outcome (applied, stale, duplicate, conflict, rejected, anomaly, invalid)',
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
    this.applyRetries = new Counter({
      name: 'promosync_apply_retries_total',
      help: 'Apply statements aborted and run again, by reason (entity_created, event_id_claimed: a concurrent batch got there first; deadlock; serialization; other)',
      labelNames: ['reason'],
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

  /** Counts `n` events accepted by the API. */
  countReceived(machine: string, source: string, n = 1): void {
    this.received.inc({ machine: this.machineLabel(machine), source: this.sourceLabel(source) }, n);
  }

  /** Counts `n` events (or bad jobs, with machine `''`) by outcome. */
  countOutcome(machine: string, source: string, outcome: CountedOutcome, n = 1): void {
    this.outcomes.inc(
      {
        machine: machine === '' ? '' : this.machineLabel(machine),
        source: this.sourceLabel(source),
        outcome: Object.hasOwn(COUNTED, outcome) ? outcome : OTHER_LABEL,
      },
      n,
    );
  }

  /** A served machine's name, else `other`. */
  machineLabel(machine: string): string {
    return this.machines.has(machine) ? machine : OTHER_LABEL;
  }

  /**
   * A source as a label: a valid source name among the first {@link MetricsOptions.maxSources}
   * distinct ones this process saw, else `other`.
   */
  sourceLabel(source: string): string {
    if (this.sources.has(source)) return source;
    if (this.sources.size >= this.maxSources || !SOURCE_PATTERN.test(source)) return OTHER_LABEL;
    this.sources.add(source);
    return source;
  }
}
