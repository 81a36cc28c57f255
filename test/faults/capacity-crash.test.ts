import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { postStatus } from '../helpers/capacity.ts';
import { useFaultStage } from '../helpers/fault-stage.ts';
import { REDIS_URL } from '../helpers/db.ts';
import { sleep } from '../helpers/load.ts';
import { startApi, type Child } from '../helpers/processes.ts';
import { openDatabase } from '../../src/store/db.ts';
import { createKey } from '../../src/store/keys.ts';
import { checkCapacityInvariants, setLimits } from '../../src/store/capacity.ts';

const ORDERS = 4000;
const CAP = 1000;
const CLIENTS = 150;

describe('capacity with API processes killed and Postgres cut mid-load', () => {
  const stage = useFaultStage('capacity', { postgresProxy: true });

  it('never exceeds a limit, loses no acknowledged reservation and takes no order twice', async () => {
    const store = openDatabase(stage.databaseUrl, 1);
    const { key } = await createKey(store.prisma, { role: 'checkout' });
    await store.close();
    await stage.pool.query(
      `INSERT INTO entity (machine, entity_id, status, last_event, key) VALUES ('promotion', 'hot', 'ACTIVATED', 'activate', 1)`,
    );
    await setLimits(stage.pool, 'hot', { total: CAP, perCustomer: 2 });

    const { proxy, databaseUrl } = stage.viaProxy!;
    const env = stage.env({ REDIS_URL, DATABASE_URL: databaseUrl, RATE_LIMIT_PER_SECOND: '0' });
    const apis: Array<{ child: Child; url: string }> = [];
    for (let i = 0; i < 3; i++) apis.push(await startApi(`api-${i}`, env, stage.track));

    // A sampler straight to the database (not through the proxy): no moment may break a rule.
    const violations: string[] = [];
    let sampling = true;
    let samples = 0;
    const sampler = (async () => {
      while (sampling) {
        try {
          for (const v of await checkCapacityInvariants(stage.pool))
            violations.push(`${v.rule}: ${v.detail}`);
          samples += 1;
        } catch (err) {
          violations.push(`sampler: ${String(err)}`);
        }
        await sleep(50);
      }
    })();

    // Each order is retried (on any API) until it gets a definite answer, as a checkout would.
    const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
    const acked = new Set<string>();
    const refused = new Set<string>();
    const confirmed = new Set<string>();
    let next = 0;
    let retries = 0;
    let done = 0;
    // Retried on no answer (a killed process, a timeout) and on 5xx (the database away).
    const call = async (path: string, body: unknown, ok: (s: number) => boolean): Promise<number> => {
      for (let attempt = 0; ; attempt++) {
        const alive = apis.filter((a) => a.child.running);
        const api = alive[(next + attempt) % alive.length]!;
        const status = await postStatus(agent, api.url, key, path, body);
        if (ok(status)) return status;
        if (status !== 0 && status < 500) throw new Error(`${path}: unexpected ${status}`);
        retries += 1;
        if (attempt > 400) throw new Error(`${path}: no answer after ${attempt} attempts (last ${status})`);
        await sleep(20);
      }
    };
    const clients = Array.from({ length: CLIENTS }, async () => {
      while (next < ORDERS) {
        const i = next++;
        const orderId = `o-${i}`;
        const status = await call(
          '/v1/promotions/hot/reservations',
          { orderId, customerId: `c-${i % 1700}` },
          (s) => s === 201 || s === 200 || s === 409,
        );
        if (status === 409) refused.add(orderId);
        else {
          acked.add(orderId);
          if (i % 3 === 0) {
            await call(`/v1/promotions/hot/reservations/${orderId}/confirm`, undefined, (s) => s === 200);
            confirmed.add(orderId);
          }
        }
        done += 1;
      }
    });

    const reached = async (n: number) => {
      while (done < n) await sleep(20);
    };
    const load = Promise.all(clients);
    await reached(ORDERS * 0.15);
    apis[1]!.child.kill('SIGKILL');
    expect((await apis[1]!.child.exited).signal).toBe('SIGKILL');
    stage.children.delete(apis[1]!.child);
    await reached(ORDERS * 0.3);
    await proxy.down();
    await sleep(3000);
    await proxy.up();
    await reached(ORDERS * 0.6);
    apis[0]!.child.kill('SIGKILL');
    await load;
    sampling = false;
    await sampler;
    agent.destroy();

    const { rows } = await stage.pool.query<{ order_id: string; status: string; units: string }>(
      "SELECT order_id, status, units FROM reservation WHERE promotion_id = 'hot'",
    );
    const stored = new Map(rows.map((r) => [r.order_id, r]));
    // Every acknowledged reservation is there, and nothing else is.
    expect([...acked].filter((o) => !stored.has(o))).toEqual([]);
    expect([...stored.keys()].filter((o) => !acked.has(o))).toEqual([]);
    expect([...confirmed].filter((o) => stored.get(o)?.status !== 'confirmed')).toEqual([]);
    // Enough demand for every unit: the cap is reached exactly, one unit per order.
    expect(rows.reduce((n, r) => n + Number(r.units), 0)).toBe(CAP);
    expect(acked.size + refused.size).toBe(ORDERS);
    expect(violations).toEqual([]);
    expect(samples).toBeGreaterThan(10);
    expect(await checkCapacityInvariants(stage.pool)).toEqual([]);
    console.log(
      `capacity faults: ${acked.size} granted, ${refused.size} refused, ${retries} retries, ${samples} invariant samples`,
    );
  });
});
