import { Router, type NextFunction, type Request, type Response } from 'express';
import { PromosyncError } from '../../domain/index.ts';
import type { MachineRegistry } from '../../domain/index.ts';
import { decodeChangeCursor, readHorizon, type PrismaClient } from '../../store/index.ts';
import { authenticate, mayUseMachine, principalOf, type KeyVerifier } from '../auth.ts';
import type { ChangeHub } from '../change-hub.ts';
import { parseQuery } from '../validate.ts';
import { watchQuery } from '../schemas.ts';

/**
 * EventSource cannot send headers, so the watch accepts the key as `access_token` too — here
 * only, and only when no Authorization header is sent. The token is removed from the URL that
 * logs and problem documents show; responses already send `Referrer-Policy: no-referrer`.
 */
function tokenFromQuery(req: Request, _res: Response, next: NextFunction): void {
  const url = new URL(req.originalUrl, 'http://x');
  const token = url.searchParams.get('access_token');
  if (token !== null) {
    if (req.headers.authorization === undefined) req.headers.authorization = `Bearer ${token}`;
    url.searchParams.set('access_token', 'redacted');
    req.originalUrl = `${url.pathname}${url.search}`;
  }
  next();
}

/**
 * `GET /v1/{collection}/watch`: the collection's changes as Server-Sent Events
 * (docs/design.md#changes). Each change is `event: change` with the entity's changeSeq as
 * `id:`, so a client resumes after a disconnect with `Last-Event-ID`; `bookmark` events move
 * an idle client's position on; `resync` means list again.
 */
export function watchRouter(deps: {
  registry: MachineRegistry;
  prisma: PrismaClient;
  verify: KeyVerifier;
  changes: ChangeHub;
}): Router {
  const router = Router();
  const auth = authenticate(deps.verify, ['merchant', 'producer', 'admin']);

  router.get('/v1/:collection/watch', tokenFromQuery, auth, async (req, res) => {
    const info = deps.registry.byCollection(String(req.params.collection));
    if (!info) throw new PromosyncError('not_found', `no collection ${String(req.params.collection)}`);
    const p = principalOf(req);
    if (!mayUseMachine(p, info.analysis.name))
      throw new PromosyncError('not_found', 'no such collection for this key');
    const scope = { merchantId: p.role === 'merchant' ? p.merchantId : null };
    const q = parseQuery(watchQuery, req.query);
    const lastEventId = req.header('last-event-id');
    const since =
      lastEventId !== undefined && lastEventId !== ''
        ? decodeChangeCursor(lastEventId, 'Last-Event-ID')
        : q.since !== undefined
          ? decodeChangeCursor(q.since, 'since')
          : await readHorizon(deps.prisma);
    // Before the stream starts, so a cursor that is too old is an ordinary 410 answer.
    const first = await deps.changes.firstPage(info.analysis.name, scope, since);

    res.status(200);
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('X-Accel-Buffering', 'no');
    res.flushHeaders();
    res.socket?.setNoDelay(true);
    // Tells EventSource how soon to reconnect; also opens the stream at once for proxies.
    res.write('retry: 2000\n\n');
    const detach = deps.changes.attach(info.analysis.name, scope, since, first, res, () => {});
    res.on('close', detach);
  });
  return router;
}
