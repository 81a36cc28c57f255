import type { Job, Queue } from 'bullmq';

/** A failed job as operators look at it. */
export interface FailedJob {
  id: string;
  failedReason: string;
  attemptsMade: number;
  /** Attempts the job was given. */
  attempts: number;
  /** When it was added and when it last failed (ms since the epoch). */
  timestamp: number;
  failedAt: number | null;
  /** A one-line summary of its data: source and events, or the raw data when it is malformed. */
  preview: string;
}

const clip = (s: string, n: number): string => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);

/** Source and events of job data, in a line: `source=cashback 2 events: promotion/p-1 activate, …`. */
export function previewJobData(data: unknown, max = 120): string {
  if (typeof data !== 'object' || data === null || Array.isArray(data))
    return clip(JSON.stringify(data) ?? '', max);
  const record = data as Record<string, unknown>;
  const events = Array.isArray(record.events) ? record.events : 'machine' in record ? [record] : undefined;
  if (!events) return clip(JSON.stringify(data), max);
  const one = (e: unknown): string => {
    if (typeof e !== 'object' || e === null) return JSON.stringify(e);
    const x = e as Record<string, unknown>;
    return `${String(x.machine)}/${String(x.entityId)} ${String(x.type)}`;
  };
  const source = typeof record.source === 'string' ? record.source : '(none)';
  return clip(
    `source=${source} ${events.length} event${events.length === 1 ? '' : 's'}: ${events.map(one).join(', ')}`,
    max,
  );
}

function toFailed(job: Job): FailedJob {
  return {
    id: job.id ?? '',
    failedReason: job.failedReason ?? '',
    attemptsMade: job.attemptsMade,
    attempts: Math.max(1, job.opts.attempts ?? 1),
    timestamp: job.timestamp,
    failedAt: job.finishedOn ?? null,
    preview: previewJobData(job.data),
  };
}

/** The most recently failed jobs first, at most `limit`, and how many there are in all. */
export async function listFailedJobs(
  queue: Queue,
  limit: number,
): Promise<{ total: number; jobs: FailedJob[] }> {
  const [total, jobs] = await Promise.all([queue.getFailedCount(), queue.getFailed(0, limit - 1)]);
  return {
    total,
    jobs: jobs.filter((j): j is Job => j !== undefined && j !== null).map((j) => toFailed(j as Job)),
  };
}

/** What happened to one job asked to be retried. */
export interface RetryResult {
  id: string;
  result: 'retried' | 'missing' | 'not-failed';
  /** The job's state when it was not failed. */
  state?: string;
}

/**
 * Moves failed jobs back to the wait list with fresh attempts (BullMQ `job.retry`), so a job
 * that failed because of something since fixed runs again with its full retry budget.
 * `ids: 'all'` retries every job failed at the time of the call (not the ones that fail again
 * meanwhile).
 */
export async function retryFailedJobs(queue: Queue, ids: string[] | 'all'): Promise<RetryResult[]> {
  const list = ids === 'all' ? await queue.getRanges(['failed'], 0, -1) : ids;
  const out: RetryResult[] = [];
  for (const id of list) {
    const job = await queue.getJob(id);
    if (!job) {
      out.push({ id, result: 'missing' });
      continue;
    }
    const state = await job.getState();
    if (state !== 'failed') {
      out.push({ id, result: 'not-failed', state });
      continue;
    }
    await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
    out.push({ id, result: 'retried' });
  }
  return out;
}
