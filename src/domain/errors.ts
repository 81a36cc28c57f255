/** Stable error codes; the API maps each to one HTTP status in one place. */
export type ErrorCode =
  | 'invalid_event'
  | 'invalid_request'
  | 'invalid_json'
  | 'payload_too_large'
  | 'too_many_events'
  | 'unsupported_media_type'
  | 'unknown_machine'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'rate_limited'
  | 'unavailable'
  | 'redis_eviction_policy'
  | 'machine_invalid'
  | 'cursor_expired'
  | 'internal'
  | 'capacity_exhausted'
  | 'promotion_not_active'
  | 'order_conflict'
  | 'hold_expired';

/** A problem detail for one field of one input. */
export interface FieldProblem {
  /** Index in the request's `events` array, when the request held several. */
  index?: number;
  /** Dotted path of the field, e.g. `data.title`. */
  path: string;
  message: string;
}

/** The one error type of promosync: a stable `code`, a human message, optional details. */
export class PromosyncError extends Error {
  readonly code: ErrorCode;
  readonly problems: FieldProblem[];

  constructor(
    code: ErrorCode,
    message: string,
    options: { problems?: FieldProblem[]; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PromosyncError';
    this.code = code;
    this.problems = options.problems ?? [];
  }
}
