import { Router, type Request } from 'express';
import { PromosyncError } from '../../domain/index.ts';
import type { MachineInfo, MachineRegistry } from '../../domain/index.ts';
import type { PrismaClient } from '../../store/index.ts';
import {
  decodeChangeCursor,
  encodeChangeCursor,
  getEntity,
  getEntityEvents,
  listEntities,
  readChanges,
  type ReadScope,
} from '../../store/index.ts';
import { authenticate, mayUseMachine, principalOf, type KeyVerifier } from '../auth.ts';
import { parseQuery } from '../validate.ts';
import { eventsQuery, idParam, listQuery } from '../schemas.ts';

/**
 * Read endpoints of every machine's collection (`/v1/promotions`, …). A merchant sees only
 * its own entities; anything else looks like it does not exist.
 */
export function entitiesRouter(deps: {
  registry: MachineRegistry;
  prisma: PrismaClient;
  verify: KeyVerifier;
  /** Extra members of one entity's answer (a promotion's capacity summary). */
  embed?: (machine: string, entityId: string) => Promise<Record<string, unknown>>;
}): Router {
  const router = Router();
  const auth = authenticate(deps.verify, ['merchant', 'producer', 'admin']);

  const resolve = (req: Request): { info: MachineInfo; scope: ReadScope } => {
    const info = deps.registry.byCollection(String(req.params.collection));
    if (!info) throw new PromosyncError('not_found', `no collection ${String(req.params.collection)}`);
    const p = principalOf(req);
    if (!mayUseMachine(p, info.analysis.name))
      throw new PromosyncError('not_found', 'no such collection for this key');
    return { info, scope: { merchantId: p.role === 'merchant' ? p.merchantId : null } };
  };
  const entityId = (req: Request): string => {
    const id = idParam.safeParse(req.params.id);
    if (!id.success) throw new PromosyncError('not_found', 'no such entity');
    return id.data;
  };

  router.get('/v1/:collection', auth, async (req, res) => {
    const { info, scope } = resolve(req);
    const q = parseQuery(listQuery, req.query);
    if (q.status !== undefined && !info.analysis.states.includes(q.status)) {
      throw new PromosyncError(
        'invalid_request',
        `status must be one of ${info.analysis.states.join(', ')}`,
        {
          problems: [{ path: 'status', message: `unknown status "${q.status}"` }],
        },
      );
    }
    if (q.changesSince !== undefined) {
      const mixed = (['status', 'updatedSince', 'cursor'] as const).filter((k) => q[k] !== undefined);
      if (mixed.length > 0) {
        throw new PromosyncError('invalid_request', 'changesSince is not combined with other filters', {
          problems: mixed.map((k) => ({
            path: k,
            message: 'a follower sees every change; page on with nextChangesSince',
          })),
        });
      }
      const from = decodeChangeCursor(q.changesSince);
      const page = await readChanges(deps.prisma, info.analysis.name, scope, from, q.limit);
      res.json({ items: page.items, nextChangesSince: encodeChangeCursor(page.next), more: page.full });
      return;
    }
    const page = await listEntities(deps.prisma, info.analysis.name, scope, {
      limit: q.limit,
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.updatedSince !== undefined ? { updatedSince: new Date(q.updatedSince) } : {}),
      ...(q.cursor !== undefined ? { cursor: q.cursor } : {}),
    });
    res.json(page);
  });

  router.get('/v1/:collection/:id', auth, async (req, res) => {
    const { info, scope } = resolve(req);
    const entity = await getEntity(deps.prisma, info.analysis.name, entityId(req), scope);
    if (!entity) throw new PromosyncError('not_found', `no ${info.analysis.name} ${String(req.params.id)}`);
    res.json(deps.embed ? { ...entity, ...(await deps.embed(info.analysis.name, entity.id)) } : entity);
  });

  router.get('/v1/:collection/:id/events', auth, async (req, res) => {
    const { info, scope } = resolve(req);
    const q = parseQuery(eventsQuery, req.query);
    const page = await getEntityEvents(deps.prisma, info.analysis.name, entityId(req), scope, {
      limit: q.limit,
      ...(q.cursor !== undefined ? { after: BigInt(q.cursor) } : {}),
    });
    if (!page) throw new PromosyncError('not_found', `no ${info.analysis.name} ${String(req.params.id)}`);
    res.json(page);
  });
  return router;
}
