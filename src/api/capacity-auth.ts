import type { Principal } from '../store/index.ts';
import { mayUseMachine } from './auth.ts';

/** The machine whose entities carry capacity. */
export const CAPACITY_MACHINE = 'promotion';

/** What the capacity permissions look at of a promotion; null when promosync has no row for it yet. */
export interface PromotionRef {
  id: string;
  merchantId: string | null;
  /** The source that owns it (docs/design.md#ownership); null while nobody does. */
  ownerSource: string | null;
}

/**
 * Whether a principal may set a promotion's limits: an admin, or a producer allowed on the
 * promotion machine whose source owns the promotion or was granted its owner
 * (docs/design.md#ownership). Limits may precede the promotion's first event: while nobody
 * owns it, any such producer may set them.
 */
export function maySetLimits(p: Principal, promotion: PromotionRef | null): boolean {
  if (p.role === 'admin') return true;
  if (p.role !== 'producer' || !mayUseMachine(p, CAPACITY_MACHINE)) return false;
  const owner = promotion?.ownerSource ?? null;
  return owner === null || owner === p.source || p.mayWriteFor.includes(owner);
}

/** Whether a principal may reserve, confirm, release and read reservations: checkout or admin. */
export function mayReserve(p: Principal): boolean {
  return p.role === 'admin' || (p.role === 'checkout' && mayUseMachine(p, CAPACITY_MACHINE));
}

/** Whether a principal may read a promotion's capacity: its merchant, checkout, its producers, admin. */
export function mayReadCapacity(p: Principal, promotion: PromotionRef | null): boolean {
  if (p.role === 'merchant') return promotion !== null && promotion.merchantId === p.merchantId;
  return p.role === 'admin' || mayUseMachine(p, CAPACITY_MACHINE);
}
