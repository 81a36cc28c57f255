import type { IncomingMessage, ServerResponse } from 'node:http';
import { ID_PATTERN, PromosyncError } from '../domain/index.ts';
import type { CapacityService } from '../capacity/index.ts';
import type { Metrics } from '../observability/index.ts';
import { principalFor, type KeyVerifier } from './auth.ts';
import { mayReserve } from './capacity-auth.ts';
import { invalidJson, writeProblem, type ProblemReporter } from './problem.ts';
import type { RateRefusal } from './rate-limit.ts';
import { BODY_LIMIT, CHECKOUT_ROLES, RESERVATIONS_ROUTE, reserveAnswer } from './routes/capacity.ts';
import { SECURITY_HEADERS } from './security-headers.ts';

/** A path of `prefix`, one id (ID_PATTERN, captured), then `suffix`, nothing else. */
export function pathWithId(prefix: string, suffix: string): RegExp {
  return new RegExp(`^${prefix}(${ID_PATTERN.source.replace(/^\^|\$$/g, '')})${suffix}$`);
}

/** `POST /v1/promotions/{id}/reservations` written plainly: no escapes, slashes or query. */
const RESERVE_PATH = pathWithId('/v1/promotions/', '/reservations');
const PLAIN_JSON = /^application\/json(?:\s*;\s*charset=utf-8)?$/i;

export interface CheckoutPathDeps {
  capacity: CapacityService;
  verify: KeyVerifier;
  report: ProblemReporter;
  metrics?: Metrics;
  rateCheck?: ((req: IncomingMessage) => Promise<RateRefusal | null>) | null;
}

/**
 * The checkout path, in front of the Express app: a reservation written plainly (the path as
 * above, a JSON body with a Content-Length within the limit, no Content-Encoding) is answered
 * here, with the same headers, rate limit, key check, validation, answers, problems and
 * metrics as the route in routes/capacity.ts, which answers every other form of it. Express
 * gives each request it serves new prototypes, which costs the hot path its speed and turns
 * every request into garbage for the old generation (docs/performance.md#capacity).
 *
 * Returns whether it took the request; when it did not, nothing of the request was touched.
 */
export function checkoutPath(deps: CheckoutPathDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  const serve = async (req: IncomingMessage, res: ServerResponse, id: string, length: number) => {
    for (const [name, value] of SECURITY_HEADERS) res.setHeader(name, value);
    try {
      const refused = deps.rateCheck ? await deps.rateCheck(req) : null;
      if (refused) {
        res.setHeader('Retry-After', String(refused.retryAfter));
        throw refused.problem;
      }
      // In the route's order: key, body, then whether the key sees promotions, then the fields.
      const principal = await principalFor(deps.verify, req.headers.authorization, CHECKOUT_ROLES);
      const text = await readBody(req, length);
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch (err) {
        throw invalidJson((err as Error).message);
      }
      if (!mayReserve(principal)) throw new PromosyncError('not_found', `no promotion ${id}`);
      const { status, body } = await reserveAnswer(deps.capacity, id, raw);
      const json = JSON.stringify(body);
      res.statusCode = status;
      res.setHeader('Content-Type', 'application/json; charset=utf-8');
      res.setHeader('Content-Length', Buffer.byteLength(json));
      res.end(json);
    } catch (err) {
      const problem = deps.report(err, req, req.url!);
      if (!res.headersSent) writeProblem(res, problem, req.url!);
    }
    deps.metrics?.httpRequests.inc({
      method: 'POST',
      route: RESERVATIONS_ROUTE,
      status: String(res.statusCode),
    });
  };
  return (req, res) => {
    if (req.method !== 'POST') return false;
    const m = RESERVE_PATH.exec(req.url!);
    const length = Number(req.headers['content-length']);
    if (
      !m ||
      !(length <= BODY_LIMIT) ||
      req.headers['content-encoding'] !== undefined ||
      !PLAIN_JSON.test(req.headers['content-type'] ?? '')
    )
      return false;
    void serve(req, res, m[1]!, length);
    return true;
  };
}

/** The UTF-8 body of a request whose Content-Length is `length`. */
export function readBody(req: IncomingMessage, length: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    // A client that goes away mid-body is a bad request, not a server error.
    req.on('error', (err) =>
      reject(
        new PromosyncError('invalid_request', 'the body could not be read', {
          problems: [{ path: '(body)', message: err.message }],
        }),
      ),
    );
    req.on('end', () => {
      const buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      resolve(buf.toString('utf8'));
    });
  });
}
