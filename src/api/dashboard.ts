import type { Queue } from 'bullmq';
import { Router, type RequestHandler, type Response } from 'express';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { PromosyncError } from '../domain/index.ts';
import type { KeyVerifier } from './auth.ts';

/** Where the queue dashboard is served. */
export const DASHBOARD_PATH = '/admin/queues';

const REALM = 'promosync admin';

/** A 401 that makes browsers ask for a login, in the API's problem+json format. */
function challenge(res: Response, detail: string): void {
  res
    .status(401)
    .setHeader('WWW-Authenticate', `Basic realm="${REALM}", charset="UTF-8"`)
    .type('application/problem+json')
    .send(
      JSON.stringify({
        type: 'urn:promosync:problem:unauthorized',
        title: 'Unauthorized',
        status: 401,
        code: 'unauthorized',
        detail,
        instance: res.req.originalUrl,
      }),
    );
}

/** The key a request presents: the password of HTTP Basic auth (any username), or a Bearer token. */
function presentedKey(header: string | undefined): string | null {
  if (header === undefined) return null;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!basic) return null;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const key = decoded.slice(decoded.indexOf(':') + 1);
  return key === '' ? null : key;
}

/**
 * Admits admin keys only. Browsers cannot send Bearer headers, so the key may also come as the
 * password of HTTP Basic auth; any failure to authenticate answers with a Basic challenge.
 */
export function adminAuth(verify: KeyVerifier): RequestHandler {
  return async (req, res, next) => {
    const key = presentedKey(req.headers.authorization);
    if (key === null) {
      challenge(res, 'log in with an admin key as the password (any username), or send it as a Bearer token');
      return;
    }
    const principal = await verify(key);
    if (!principal) {
      challenge(res, 'the key is unknown or revoked');
      return;
    }
    if (principal.role !== 'admin') {
      throw new PromosyncError('forbidden', `the dashboard needs an admin key, not a ${principal.role} key`);
    }
    req.principal = principal;
    next();
  };
}

/** The bull-board dashboard of the event queue (each partition's) at {@link DASHBOARD_PATH}, for admin keys. */
export function dashboardRouter(deps: { queues: Queue[]; verify: KeyVerifier }): Router {
  const adapter = new ExpressAdapter();
  adapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: deps.queues.map((q) => new BullMQAdapter(q)),
    // @bull-board/api and @bull-board/express are pinned to the same version: one copy of the types.
    serverAdapter: adapter,
    options: { uiConfig: { boardTitle: 'promosync' } },
  });
  const router = Router();
  // The dashboard is a single-page app served from here: its own scripts, styles and API only.
  const csp: RequestHandler = (_req, res, next) => {
    res.setHeader(
      'Content-Security-Policy',
      "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'",
    );
    next();
  };
  router.use(DASHBOARD_PATH, csp, adminAuth(deps.verify), adapter.getRouter());
  return router;
}
