import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type Harness } from '../helpers/harness.ts';
import { createKey } from '../../src/store/keys.ts';
import { checkCapacityInvariants } from '../../src/store/capacity.ts';
import { expectCapacityInvariants, pushPromotion } from '../helpers/capacity.ts';

/** POSTs a reservation with a keep-alive agent; resolves with the status code. */
function post(agent: http.Agent, url: URL, key: string, path: string, body: unknown): Promise<number> {
  const data = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path,
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(data),
        },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

describe('capacity under concurrent checkout', () => {
  let h: Harness;
  let key: string;

  beforeAll(async () => {
    // The per-key rate limit is not what this test is about.
    h = await startHarness({ env: { RATE_LIMIT_PER_SECOND: '0' } });
    key = (await createKey(h.service.db.prisma, { role: 'checkout' })).key;
  });
  afterAll(async () => {
    if (h) await expectCapacityInvariants(h.service.db.pool);
    await h?.close();
  });

  it(
    '5,000 concurrent reservations against a cap of 1,000 grant exactly 1,000',
    { timeout: 300_000 },
    async () => {
      await pushPromotion(h.request, 'hot', ['activate']);
      expect(
        (
          await h.request('/v1/promotions/hot/limits', {
            method: 'PUT',
            json: { total: 1000, perCustomer: 3 },
          })
        ).status,
      ).toBe(200);
      const agent = new http.Agent({ keepAlive: true, maxSockets: 200 });
      const url = new URL(h.url);
      // A sampler reads the counters while the load runs: no moment may show more than the cap.
      let sampling = true;
      let samples = 0;
      const seen: string[] = [];
      const sampler = (async () => {
        while (sampling) {
          const { rows } = await h.service.db.pool.query<{ used: string }>(
            "SELECT used FROM capacity WHERE promotion_id = 'hot'",
          );
          if (Number(rows[0]?.used ?? 0) > 1000) seen.push(`used ${rows[0]!.used}`);
          seen.push(
            ...(await checkCapacityInvariants(h.service.db.pool)).map((v) => `${v.rule}: ${v.detail}`),
          );
          samples += 1;
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const statuses = await Promise.all(
        Array.from({ length: 5000 }, (_, i) =>
          post(agent, url, key, '/v1/promotions/hot/reservations', {
            orderId: `o-${i}`,
            customerId: `c-${i % 2000}`,
          }),
        ),
      );
      sampling = false;
      await sampler;
      agent.destroy();
      const count = (s: number) => statuses.filter((x) => x === s).length;
      expect(count(201)).toBe(1000);
      expect(count(409)).toBe(4000);
      expect(seen).toEqual([]);
      expect(samples).toBeGreaterThan(0);
      const { rows } = await h.service.db.pool.query<{ n: number; units: number }>(
        "SELECT count(*)::int AS n, sum(units)::int AS units FROM reservation WHERE promotion_id = 'hot'",
      );
      expect(rows[0]).toEqual({ n: 1000, units: 1000 });
    },
  );
});
