import http from 'node:http';
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

/**
 * One JSON POST through a keep-alive agent, as a checkout client sends it; resolves with the
 * status (0 when the connection failed or stayed silent for a minute).
 */
export function postStatus(
  agent: http.Agent,
  base: string,
  key: string,
  path: string,
  body?: unknown,
): Promise<number> {
  const url = new URL(base);
  const data = body === undefined ? '' : JSON.stringify(body);
  return new Promise((resolve) => {
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path,
        timeout: 60_000,
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
        res.on('error', () => resolve(0));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end(data);
  });
}
