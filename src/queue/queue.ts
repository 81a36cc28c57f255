import { Queue, QueueEvents, type JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import type { EventInput } from '../domain/index.ts';
import { PromosyncError } from '../domain/index.ts';
import type { JobResult } from './job.ts';

export interface EventQueueOptions {
  connection: Redis;
  name: string;
  /** Attempts of each job; transient failures retry with exponential backoff. @defaultValue 25 */
  attempts?: number;
  /** First backoff delay, doubling each attempt. @defaultValue 500 */
  backoffMs?: number;
}

/**
 * The producer side of the `status-events` queue, as the API uses it: one job per request,
 * acknowledged once Redis has it.
 */
export class EventQueue {
  readonly queue: Queue;
  private events: QueueEvents | undefined;
  private eventsConnection: Redis | undefined;
  private readonly jobOptions: JobsOptions;

  constructor(private readonly opts: EventQueueOptions) {
    this.queue = new Queue(opts.name, { connection: opts.connection });
    this.queue.on('error', () => {}); // surfaced to callers through rejected adds
    this.jobOptions = {
      attempts: opts.attempts ?? 25,
      backoff: { type: 'exponential', delay: opts.backoffMs ?? 500 },
      removeOnComplete: { count: 1000, age: 3600 },
      removeOnFail: { age: 14 * 24 * 3600 },
    };
  }

  /**
   * Adds one job carrying `events` from `source`, with the sending key's grants
   * (`mayWriteFor`); resolves once Redis acknowledged it.
   * @throws PromosyncError `unavailable` when Redis cannot take it.
   */
  async enqueue(
    events: EventInput[],
    source: string,
    wait = false,
    mayWriteFor: readonly string[] = [],
  ): Promise<string> {
    try {
      const job = await this.queue.add(
        'events',
        {
          source,
          events,
          ...(wait ? { wait: true } : {}),
          ...(mayWriteFor.length > 0 ? { mayWriteFor } : {}),
        },
        this.jobOptions,
      );
      return job.id!;
    } catch (err) {
      throw new PromosyncError('unavailable', 'the queue is unavailable; nothing was accepted, retry later', {
        cause: err,
      });
    }
  }

  /** Waits until the job is processed and returns its result. */
  async waitFor(jobId: string, timeoutMs: number): Promise<JobResult> {
    if (!this.events) {
      this.eventsConnection = this.opts.connection.duplicate({
        maxRetriesPerRequest: null,
        enableOfflineQueue: true,
      });
      this.events = new QueueEvents(this.opts.name, { connection: this.eventsConnection });
      this.events.on('error', () => {});
    }
    await this.events.waitUntilReady();
    const job = await this.queue.getJob(jobId);
    if (!job) throw new PromosyncError('internal', `job ${jobId} disappeared before it finished`);
    return (await job.waitUntilFinished(this.events, timeoutMs)) as JobResult;
  }

  /** Jobs by state, for metrics and readiness. */
  async counts(): Promise<Record<string, number>> {
    return this.queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed', 'prioritized');
  }

  async close(): Promise<void> {
    await this.events?.close();
    this.eventsConnection?.disconnect();
    await this.queue.close();
  }
}
