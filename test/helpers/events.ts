import type { EventInput } from '../../src/domain/event-schema.ts';

/**
 * An event of the promotion machine, with whatever else `extra` sets (eventId, data,
 * merchantId…, or fields an event must not have, for the tests that send them).
 */
export const promo = <X extends object = Partial<EventInput>>(entityId: string, type: string, extra?: X) => ({
  machine: 'promotion',
  entityId,
  type,
  ...(extra as X),
});
