import { describe, expect, it } from 'vitest';
import { useHarness } from '../helpers/harness.ts';
import { createKey } from '../../src/store/keys.ts';
import { pushPromotion } from '../helpers/capacity.ts';

/** Per-key rate limiting: RATE_LIMIT_PER_SECOND, RATE_LIMIT_BURST, 429 with Retry-After. */

const PER_SECOND = 2;
const BURST = 4;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('rate limiting per API key', () => {
  const h = useHarness({
    env: { RATE_LIMIT_PER_SECOND: String(PER_SECOND), RATE_LIMIT_BURST: String(BURST) },
    // A second API process on the same Redis and database.
    apis: 1,
  });

  const newKey = async (): Promise<string> =>
    (await createKey(h.service.db.prisma, { role: 'producer', source: 'rl-src' })).key;

  const volley = (key: string, n: number, base = h.url): Promise<Response[]> =>
    Promise.all(
      Array.from({ length: n }, () =>
        fetch(`${base}/v1/machines`, { headers: { authorization: `Bearer ${key}` } }),
      ),
    );

  it('a key over its limit gets 429 problem+json with a Retry-After in seconds', async () => {
    const key = await newKey();
    const res = await volley(key, 20);
    const limited = res.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(res.every((r) => r.status === 200 || r.status === 429)).toBe(true);
    const r = limited[0]!;
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const retryAfter = r.headers.get('retry-after');
    expect(retryAfter).toMatch(/^[1-9]\d*$/);
    expect(Number(retryAfter)).toBeLessThanOrEqual(10);
    expect(await r.json()).toMatchObject({ status: 429, code: 'rate_limited' });
  });

  it('reservations count against the same allowance, and the refused ones take no capacity', async () => {
    await pushPromotion(h.request, 'rl-promo', ['activate']);
    const key = (await createKey(h.service.db.prisma, { role: 'checkout' })).key;
    const res = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        fetch(`${h.url}/v1/promotions/rl-promo/reservations`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ orderId: `rl-${i}` }),
        }),
      ),
    );
    const granted = res.filter((r) => r.status === 201).length;
    const limited = res.filter((r) => r.status === 429);
    expect(granted + limited.length).toBe(20);
    expect(limited.length).toBeGreaterThan(0);
    expect(limited[0]!.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
    expect(await limited[0]!.json()).toMatchObject({ status: 429, code: 'rate_limited' });
    const { rows } = await h.service.db.pool.query<{ n: string }>(
      "SELECT count(*) AS n FROM reservation WHERE promotion_id = 'rl-promo'",
    );
    expect(Number(rows[0]!.n)).toBe(granted);
  });

  it('the key works again once Retry-After has passed', async () => {
    const key = await newKey();
    const res = await volley(key, 20);
    const limited = res.find((r) => r.status === 429)!;
    await sleep(Number(limited.headers.get('retry-after')) * 1000 + 100);
    const again = await fetch(`${h.url}/v1/machines`, { headers: { authorization: `Bearer ${key}` } });
    expect(again.status).toBe(200);
  });

  it("one key's flood does not limit another key", async () => {
    const flooder = await newKey();
    const other = await newKey();
    await volley(flooder, 30);
    const res = await fetch(`${h.url}/v1/machines`, { headers: { authorization: `Bearer ${other}` } });
    expect(res.status).toBe(200);
  });

  it('the limit holds across API processes: the allowance is counted once, in Redis', async () => {
    const key = await newKey();
    const second = h.otherApis[0]!;
    const res = (await Promise.all([volley(key, 15), volley(key, 15, second)])).flat();
    const ok = res.filter((r) => r.status === 200).length;
    // One window's steady allowance (two, should the volley straddle a second) plus the burst:
    // counted per process, each would let as many through.
    expect(ok).toBeGreaterThanOrEqual(PER_SECOND);
    expect(ok).toBeLessThanOrEqual(2 * PER_SECOND + BURST);
    expect(res.filter((r) => r.status === 429).length).toBe(30 - ok);
  });

  it('a flood of pushes is limited before the body is read or the key looked up', async () => {
    const key = await newKey();
    const body = JSON.stringify({ machine: 'promotion', entityId: 'rl-1', type: 'create' });
    const res = await Promise.all(
      Array.from({ length: 20 }, () =>
        fetch(`${h.url}/v1/events`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body,
        }),
      ),
    );
    expect(res.filter((r) => r.status === 429).length).toBeGreaterThan(0);
    expect(res.every((r) => r.status === 202 || r.status === 429)).toBe(true);
  });

  it('requests with a bad or no key are limited too, per credential or per address', async () => {
    const bogus = await volley('psk_000000000000_' + 'x'.repeat(43), 20);
    expect(bogus.filter((r) => r.status === 429).length).toBeGreaterThan(0);
    expect(bogus.every((r) => r.status === 401 || r.status === 429)).toBe(true);
    const anonymous = await Promise.all(Array.from({ length: 20 }, () => fetch(`${h.url}/v1/machines`)));
    expect(anonymous.filter((r) => r.status === 429).length).toBeGreaterThan(0);
  });

  it('health, readiness and metrics are never limited', async () => {
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const res = await Promise.all(Array.from({ length: 20 }, () => fetch(`${h.url}${path}`)));
      expect(res.map((r) => r.status).filter((s) => s === 429)).toEqual([]);
    }
  });
});
