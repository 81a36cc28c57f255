import type { MachineRegistry } from '../src/domain/index.ts';
import type { CpuReport } from './cpu.ts';
import type { ConvergenceReport, Comparable } from './verify.ts';
import type { Workload } from './workload.ts';

/** Knobs of one benchmark run; every scenario of the run shares them. */
export interface BenchSettings {
  /** A Postgres URL on the server to benchmark; scenarios create databases next to it. */
  serverUrl: string;
  redisUrl: string;
  /** WORKER_CONCURRENCY of the REST scenarios' workers (jobs of `requestEvents` events). */
  restConcurrency: number;
  /** WORKER_CONCURRENCY of the single-event scenario: promosync's worker and the no-op one alike. */
  queueConcurrency: number;
  /** Concurrency of a second no-op run, where BullMQ alone does best (context for the ratio). */
  noopPeakConcurrency: number;
  batchMaxEvents: number;
  batchFlushMs: number;
  /** BATCH_LANES of promosync's workers: connections of the write-set ceiling too. */
  batchLanes: number;
  dbPoolSize: number;
  /** Concurrent HTTP clients of the REST scenario, and events per request. */
  clients: number;
  requestEvents: number;
  /** Connections of the per-event designs, and of the batched-upsert ceiling. */
  pgConnections: number;
  ceilingConnections: number;
  /** Rows per statement of the batched-upsert ceiling. */
  ceilingRows: number;
  /** Extra `node` flags for promosync's child processes, e.g. --cpu-prof. */
  nodeArgs: string[];
}

/** What every scenario of a run gets: the same input, its expected outcome, the settings. */
export interface BenchContext {
  settings: BenchSettings;
  registry: MachineRegistry;
  workload: Workload;
  /** Expected state of every entity of the workload. */
  expected: Map<string, Comparable>;
  log(message: string): void;
}

/** Rows per table after a write-set run (`got`) and the rows the input calls for (`want`). */
export interface RowCounts {
  ok: boolean;
  got: { eventLog: number; eventKey: number; entity: number };
  want: { eventLog: number; eventKey: number; entity: number };
}

/** One line of the table. */
export interface ScenarioResult {
  /** Stable identifier, e.g. `rest-split`. */
  id: string;
  name: string;
  /** Events (or jobs, or rows) processed, and the wall-clock seconds they took. */
  count: number;
  seconds: number;
  rate: number;
  unit: 'events/s' | 'jobs/s' | 'rows/s' | 'reservations/s';
  /** Accept-to-applied latency, in milliseconds, for designs that accept before applying. */
  latency?: { p50: number; p99: number; max: number; samples: number };
  /** promosync runs: the convergence check; a failed check makes the run a failure. */
  convergence?: ConvergenceReport;
  /** Reference designs that keep only a status: entities left in a status other than expected. */
  wrongStatuses?: number;
  /** The write-set ceiling: rows it left in promosync's tables, against the rows it had to write. */
  rowCounts?: RowCounts;
  cpu?: CpuReport;
  /** Worker processes' apply statements aborted and run again (promosync_apply_retries_total). */
  retries?: number;
  /**
   * What the median of several rounds is taken by: the rate (the default), or the p99 latency
   * for a scenario whose rate is fixed and whose figure is its latency.
   */
  medianBy?: 'rate' | 'p99';
  /** Anything the reader needs to judge the figure. */
  notes: string[];
  /** Set when the run failed; the rate is then not a figure. */
  error?: string;
}
