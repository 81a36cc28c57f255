import { expect } from 'vitest';
import type { Pool } from 'pg';
import { checkCapacityInvariants } from '../../src/store/capacity.ts';

/** Pushes promotion events and waits until they are applied. */
export async function pushPromotion(
  request: (path: string, init: { method: string; json: unknown; key?: string }) => Promise<Response>,
  entityId: string,
  types: string[],
  key?: string,
): Promise<void> {
  const res = await request('/v1/events?wait=true', {
    method: 'POST',
    json: { events: types.map((type) => ({ machine: 'promotion', entityId, type, merchantId: 'm-1' })) },
    ...(key ? { key } : {}),
  });
  expect(res.status, await res.clone().text()).toBe(200);
}

/** The capacity invariants (counters match rows, no limit exceeded) hold on the database. */
export async function expectCapacityInvariants(pool: Pool): Promise<void> {
  expect(await checkCapacityInvariants(pool)).toEqual([]);
}
