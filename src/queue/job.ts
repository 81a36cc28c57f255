import type { Outcome } from '../domain/index.ts';
import { PromosyncError } from '../domain/index.ts';
import { z } from 'zod';
import { sourceSchema, splitBody, type SplitBody } from '../domain/index.ts';

/** Job data: one event or `{ events: [...] }`, plus the producer's `source`. */
export type JobData = Record<string, unknown> & { source: string };

/** The result of one event, as `?wait=true` and job return values report it. */
export interface EventResult {
  eventId: string | null;
  entityId: string;
  outcome: Outcome;
  anomaly: boolean;
  /** The entity's status after the batch that carried the event. */
  state: string | null;
  /** Why it was `rejected` or a `conflict`. */
  reason?: string;
}

/** A job's return value: per-event results when the producer asked for them, counts otherwise. */
export interface JobResult {
  counts: Partial<Record<Outcome, number>>;
  results?: EventResult[];
}

/** Job data keys that are not part of the event contract. */
const ENVELOPE_KEYS = new Set(['source', 'wait', 'mayWriteFor']);

const grantsSchema = z.array(sourceSchema).max(100).optional();

/** Job data split into the producer's source, the raw events and whether results were asked for. */
export interface JobEnvelope extends SplitBody {
  source: string;
  wait: boolean;
  /** Owners the events may act for besides their source. */
  mayWriteFor: string[];
}

/**
 * Splits job data into the producer's source, the raw events, whether per-event results
 * were asked for, and the owners the events may act for besides their source (`mayWriteFor`,
 * taken as given: whoever can add jobs is trusted; docs/api.md#ownership).
 * @throws PromosyncError `invalid_event` when the envelope is malformed.
 */
export function readJobData(data: unknown): JobEnvelope {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw new PromosyncError('invalid_event', 'job data must be an object', {
      problems: [{ path: '(job)', message: 'expected one event or { events: [...] } with a source' }],
    });
  }
  const record = data as Record<string, unknown>;
  const source = sourceSchema.safeParse(record.source);
  if (!source.success) {
    throw new PromosyncError('invalid_event', 'job data needs the producer source', {
      problems: [{ path: 'source', message: source.error.issues[0]?.message ?? 'required' }],
    });
  }
  const grants = grantsSchema.safeParse(record.mayWriteFor);
  if (!grants.success) {
    throw new PromosyncError('invalid_event', 'mayWriteFor must be a list of sources', {
      problems: [
        { path: 'mayWriteFor', message: grants.error.issues[0]?.message ?? 'expected a list of sources' },
      ],
    });
  }
  const body: Record<string, unknown> = {};
  for (const k of Object.keys(record)) {
    if (ENVELOPE_KEYS.has(k)) continue;
    // An own "__proto__" key (JSON.parse makes one) must stay a key, for validation to reject it.
    if (k === '__proto__') Object.defineProperty(body, k, { value: record[k], enumerable: true });
    else body[k] = record[k];
  }
  return {
    source: source.data,
    ...splitBody(body),
    wait: record.wait === true,
    mayWriteFor: grants.data ?? [],
  };
}
