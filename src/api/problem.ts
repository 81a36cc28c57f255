import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorRequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { PromosyncError, type ErrorCode } from '../domain/index.ts';
import { isTransient } from '../store/index.ts';
import { LogThrottle } from './log-throttle.ts';

/** The one place error codes become HTTP statuses. */
export const STATUS: Record<ErrorCode, number> = {
  invalid_event: 400,
  invalid_request: 400,
  invalid_json: 400,
  payload_too_large: 413,
  too_many_events: 413,
  unsupported_media_type: 415,
  unknown_machine: 404,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  rate_limited: 429,
  unavailable: 503,
  redis_eviction_policy: 503,
  machine_invalid: 500,
  cursor_expired: 410,
  internal: 500,
  capacity_exhausted: 409,
  promotion_not_active: 409,
  order_conflict: 409,
  hold_expired: 409,
};

export const TITLE: Record<ErrorCode, string> = {
  invalid_event: 'Invalid event',
  invalid_request: 'Invalid request',
  invalid_json: 'Malformed JSON',
  payload_too_large: 'Payload too large',
  too_many_events: 'Too many events',
  unsupported_media_type: 'Unsupported media type',
  unknown_machine: 'Unknown machine',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  not_found: 'Not found',
  rate_limited: 'Too many requests',
  unavailable: 'Service unavailable',
  redis_eviction_policy: 'Redis may evict queued events',
  machine_invalid: 'Invalid machine definition',
  cursor_expired: 'Cursor expired',
  internal: 'Internal error',
  capacity_exhausted: 'Capacity exhausted',
  promotion_not_active: 'Promotion not active',
  order_conflict: 'Order conflict',
  hold_expired: 'Hold expired',
};

/** Writes an RFC 9457 problem document about the request at `instance` (its path and query). */
export function writeProblem(res: ServerResponse, err: PromosyncError, instance: string): void {
  const status = STATUS[err.code];
  if (err.code === 'unauthorized') res.setHeader('WWW-Authenticate', 'Bearer realm="promosync"');
  const body = JSON.stringify({
    type: `urn:promosync:problem:${err.code}`,
    title: TITLE[err.code],
    status,
    code: err.code,
    detail: err.message,
    instance,
    ...(err.problems.length > 0 ? { errors: err.problems } : {}),
  });
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/problem+json; charset=utf-8');
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.end(body);
}

/** Writes an RFC 9457 problem document about an Express request. */
export function sendProblem(res: Response, err: PromosyncError): void {
  writeProblem(res, err, res.req.originalUrl);
}

/** The problem of a body that does not parse as JSON; `reason` is the parser's message. */
export function invalidJson(reason: string): PromosyncError {
  return new PromosyncError('invalid_json', 'the body is not valid JSON', {
    problems: [{ path: '(body)', message: reason }],
  });
}

interface BodyParserError {
  type?: string;
  status?: number;
}

/** Turns anything thrown while serving a request into the problem to answer, and logs it. */
export type ProblemReporter = (err: unknown, req: IncomingMessage, instance: string) => PromosyncError;

/** A {@link ProblemReporter} logging to `logger`; share one per process, so its throttle is one. */
export function problemReporter(logger: Logger): ProblemReporter {
  // Anyone can send bogus keys: one line a second says it happens, with how often.
  const unauthorized = new LogThrottle();
  return (err, req, instance) => {
    let problem: PromosyncError;
    const bp = err as BodyParserError;
    if (err instanceof PromosyncError) problem = err;
    else if (bp?.type === 'entity.parse.failed') {
      problem = invalidJson((err as Error).message);
    } else if (bp?.type === 'entity.too.large') {
      const limit = (err as { limit?: number }).limit;
      problem = new PromosyncError('payload_too_large', 'the body is larger than this server accepts', {
        problems: [{ path: '(body)', message: limit ? `at most ${limit} bytes` : 'too large' }],
      });
    } else if (
      bp?.status === 415 ||
      bp?.type === 'charset.unsupported' ||
      bp?.type === 'encoding.unsupported'
    ) {
      problem = new PromosyncError('invalid_request', (err as Error).message);
    } else if (err instanceof URIError && bp?.status === 400) {
      // The router could not decode a path parameter.
      problem = new PromosyncError('invalid_request', 'the path holds a malformed percent-escape', {
        problems: [{ path: '(path)', message: err.message }],
      });
    } else if (typeof bp?.status === 'number' && bp.status >= 400 && bp.status < 500) {
      // Reading the body failed on the client's side: e.g. a Content-Encoding whose data
      // does not decompress, or a body cut short.
      const encoding = req.headers['content-encoding'];
      problem = new PromosyncError(
        'invalid_request',
        encoding
          ? `the body could not be decoded as Content-Encoding: ${encoding}`
          : 'the body could not be read',
        { problems: [{ path: '(body)', message: (err as Error).message }] },
      );
    } else if (isTransient(err)) {
      problem = new PromosyncError('unavailable', 'the database is unavailable; retry later', { cause: err });
    } else {
      problem = new PromosyncError('internal', 'an unexpected error occurred', { cause: err });
    }
    const status = STATUS[problem.code];
    const meta = { method: req.method, url: instance, code: problem.code, problems: problem.problems };
    if (status >= 500) logger.error({ ...meta, err }, problem.message);
    else if (problem.code !== 'unauthorized') logger.warn(meta, problem.message);
    else {
      const suppressed = unauthorized.take();
      if (suppressed !== undefined) logger.warn({ ...meta, suppressed }, problem.message);
    }
    return problem;
  };
}

/** Maps anything thrown by a route or by body parsing to a problem response, and logs it. */
export function problemHandler(report: ProblemReporter): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const problem = report(err, req, req.originalUrl);
    if (res.headersSent) return;
    sendProblem(res, problem);
  };
}
