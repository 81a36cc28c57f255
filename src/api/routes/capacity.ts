import express, { Router, type NextFunction, type Request, type Response } from 'express';
import type { z } from 'zod';
import { PromosyncError, type Reservation } from '../../domain/index.ts';
import type { CapacityService } from '../../capacity/index.ts';
import type { PrismaClient, Role } from '../../store/index.ts';
import { authenticate, principalOf, type KeyVerifier } from '../auth.ts';
import {
  CAPACITY_MACHINE,
  mayReadCapacity,
  mayReserve,
  maySetLimits,
  type PromotionRef,
} from '../capacity-auth.ts';
import { capacityQuery, limitsBody, orderIdParam, reserveBody } from '../capacity-schemas.ts';
import { idParam } from '../schemas.ts';
import { parseQuery } from '../validate.ts';

function jsonOnly(req: Request, _res: Response, next: NextFunction): void {
  if (!req.is('application/json') && !req.is('application/*+json')) {
    throw new PromosyncError('unsupported_media_type', 'send the body as application/json', {
      problems: [
        {
          path: 'content-type',
          message: `expected application/json, got ${req.headers['content-type'] ?? 'nothing'}`,
        },
      ],
    });
  }
  next();
}

/** Validates a JSON body with a strict schema: a 400 naming every bad or unknown field. */
function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new PromosyncError('invalid_request', 'invalid request body', {
      problems: parsed.error.issues.map((i) => ({
        path: i.path.map(String).join('.') || (i.code === 'unrecognized_keys' ? i.keys.join(', ') : '(body)'),
        message: i.message,
      })),
    });
  }
  return parsed.data;
}

const reservationView = (r: Reservation) => ({
  promotionId: r.promotionId,
  orderId: r.orderId,
  customerId: r.customerId,
  units: r.units,
  status: r.status,
  createdAt: r.createdAt.toISOString(),
  expiresAt: r.expiresAt.toISOString(),
  resolvedAt: r.resolvedAt?.toISOString() ?? null,
});

/**
 * Admits one reservation request of a principal who may reserve on promotion `id`: the status
 * and body of the answer, or a PromosyncError for a refusal.
 */
export async function reserveAnswer(
  capacity: CapacityService,
  id: string,
  raw: unknown,
): Promise<{ status: number; body: unknown }> {
  const body = parseBody(reserveBody, raw);
  const result = await capacity.reserve(id, {
    orderId: body.orderId,
    customerId: body.customerId ?? null,
    units: body.units,
    holdSeconds: body.holdSeconds,
  });
  switch (result.kind) {
    case 'granted':
    case 'replay': {
      const r = result.reservation;
      // A replay is the first answer again, whatever happened to the reservation since.
      return {
        status: result.kind === 'granted' ? 201 : 200,
        body: {
          orderId: r.orderId,
          status: 'held',
          units: r.units,
          customerId: r.customerId,
          expiresAt: r.expiresAt.toISOString(),
          remaining: r.remaining,
        },
      };
    }
    case 'conflict':
      throw new PromosyncError(
        'order_conflict',
        `order ${body.orderId} was reserved with ${result.reservation.units} unit(s) for customer ${result.reservation.customerId ?? '(none)'}; use a new orderId`,
      );
    case 'not_active':
      throw new PromosyncError('promotion_not_active', `promotion ${id} is not ACTIVATED`);
    case 'customer_required':
      throw new PromosyncError('invalid_request', 'this promotion has a perCustomer limit', {
        problems: [{ path: 'customerId', message: 'required: the promotion has a perCustomer limit' }],
      });
    case 'exhausted':
      throw new PromosyncError(
        'capacity_exhausted',
        `the ${result.limit} limit of promotion ${id} has no room for ${body.units} more unit(s)`,
        { problems: [{ path: result.limit, message: 'limit reached' }] },
      );
  }
}

/** Roles that may reserve, confirm and release. */
export const CHECKOUT_ROLES: Role[] = ['checkout', 'admin'];

/** Largest body of a capacity request. */
export const BODY_LIMIT = 16 * 1024;

/** Label of the reservation endpoint in `promosync_http_requests_total`, and its route. */
export const RESERVATIONS_ROUTE = '/v1/promotions/:id/reservations';

/**
 * Promotion capacity (docs/design.md#capacity): limits, reservations (held, then confirmed,
 * released or expired) and the capacity summary.
 */
export function capacityRouter(deps: {
  capacity: CapacityService;
  prisma: PrismaClient;
  verify: KeyVerifier;
}): Router {
  const router = Router();
  const json = express.json({ limit: BODY_LIMIT, type: () => true, strict: false });
  const checkout = authenticate(deps.verify, CHECKOUT_ROLES);
  const base = '/v1/promotions/:id';

  const promotionId = (req: Request): string => {
    const id = idParam.safeParse(req.params.id);
    if (!id.success) throw new PromosyncError('not_found', 'no such promotion');
    return id.data;
  };
  const orderId = (req: Request): string => {
    const id = orderIdParam.safeParse(req.params.orderId);
    if (!id.success) throw new PromosyncError('not_found', 'no such reservation');
    return id.data;
  };
  const promotion = async (id: string): Promise<PromotionRef | null> => {
    const e = await deps.prisma.entity.findUnique({
      where: { machine_entityId: { machine: CAPACITY_MACHINE, entityId: id } },
      select: { merchantId: true, ownerSource: true },
    });
    return e ? { id, merchantId: e.merchantId, ownerSource: e.ownerSource } : null;
  };
  const reservable = (req: Request): string => {
    const id = promotionId(req);
    // A checkout key scoped to other machines sees no promotions at all.
    if (!mayReserve(principalOf(req))) throw new PromosyncError('not_found', `no promotion ${id}`);
    return id;
  };

  router.put(
    `${base}/limits`,
    authenticate(deps.verify, ['producer', 'admin']),
    jsonOnly,
    json,
    async (req, res) => {
      const id = promotionId(req);
      const patch = parseBody(limitsBody, req.body);
      if (!maySetLimits(principalOf(req), await promotion(id)))
        throw new PromosyncError('forbidden', `this key may not set the limits of promotion ${id}`);
      res.json(await deps.capacity.setLimits(id, patch));
    },
  );

  router.get(
    `${base}/capacity`,
    authenticate(deps.verify, ['merchant', 'producer', 'checkout', 'admin']),
    async (req, res) => {
      const id = promotionId(req);
      const q = parseQuery(capacityQuery, req.query);
      if (!mayReadCapacity(principalOf(req), await promotion(id)))
        throw new PromosyncError('not_found', `no promotion ${id}`);
      const summary = await deps.capacity.summary(id, q.customerId);
      res.json(summary ?? { promotionId: id, total: null, perCustomer: null, perWindow: null });
    },
  );

  router.post(RESERVATIONS_ROUTE, checkout, jsonOnly, json, async (req, res) => {
    const { status, body } = await reserveAnswer(deps.capacity, reservable(req), req.body);
    res.status(status).json(body);
  });

  router.get(`${base}/reservations/:orderId`, checkout, async (req, res) => {
    const id = reservable(req);
    const r = await deps.capacity.get(id, orderId(req));
    if (!r) throw new PromosyncError('not_found', `no reservation ${String(req.params.orderId)}`);
    res.json(reservationView(r));
  });

  router.post(`${base}/reservations/:orderId/confirm`, checkout, async (req, res) => {
    const id = reservable(req);
    const r = await deps.capacity.confirm(id, orderId(req));
    if (!r) throw new PromosyncError('not_found', `no reservation ${String(req.params.orderId)}`);
    if (r.status !== 'confirmed')
      throw new PromosyncError(
        'hold_expired',
        `the hold of order ${r.orderId} ${r.status === 'released' ? 'was released' : 'expired'} before it was confirmed`,
      );
    res.json(reservationView(r));
  });

  router.post(`${base}/reservations/:orderId/release`, checkout, async (req, res) => {
    const id = reservable(req);
    const r = await deps.capacity.release(id, orderId(req));
    if (!r) throw new PromosyncError('not_found', `no reservation ${String(req.params.orderId)}`);
    if (r.status === 'confirmed')
      throw new PromosyncError('order_conflict', `order ${r.orderId} is confirmed and cannot be released`);
    res.json(reservationView(r));
  });

  return router;
}
