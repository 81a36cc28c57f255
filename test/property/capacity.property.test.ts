import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import pino from 'pino';
import { CapacityModel, type AdmitResult, type Limits } from '../../src/domain/capacity.ts';
import { CapacityService } from '../../src/capacity/index.ts';
import {
  admitReservationsMany,
  capacitySummary,
  checkCapacityInvariants,
  setLimits,
} from '../../src/store/capacity.ts';
import { openDatabase, type Database } from '../../src/store/db.ts';
import { freshDatabase } from '../helpers/db.ts';

/**
 * Reservations, confirmations and releases, retried in random subsets and orders with time
 * passing in between, leave the database's answers and counters equal to the sequential model.
 * Time passes by shifting every stored time back (the model's clock moves forward as much);
 * holds and the window last odd numbers of seconds and time moves in tens, so no hold expires
 * exactly at a step and the real milliseconds of the run never change an outcome.
 */

const ORDERS = ['o0', 'o1', 'o2', 'o3', 'o4', 'o5', 'o6'];
const CUSTOMERS = ['c0', 'c1', 'c2'];

type Command =
  | { kind: 'reserve'; orders: Array<{ order: string; customer: number; units: number; hold: number }> }
  | { kind: 'confirm' | 'release'; order: string }
  | { kind: 'advance'; seconds: number };

// A customer and units are derived from the order id half the time, so that retries of the
// same order are mostly true repeats and sometimes conflicts.
const reserveItem = fc.record({
  order: fc.constantFrom(...ORDERS),
  customer: fc.integer({ min: -1, max: CUSTOMERS.length - 1 }),
  units: fc.integer({ min: 1, max: 3 }),
  hold: fc.constantFrom(101, 251),
});

const commandArb: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc
      .array(reserveItem, { minLength: 1, maxLength: 4 })
      .map((orders) => ({ kind: 'reserve' as const, orders })),
  },
  { weight: 2, arbitrary: fc.constantFrom(...ORDERS).map((order) => ({ kind: 'confirm' as const, order })) },
  { weight: 2, arbitrary: fc.constantFrom(...ORDERS).map((order) => ({ kind: 'release' as const, order })) },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1, max: 20 }).map((t) => ({ kind: 'advance' as const, seconds: t * 10 })),
  },
);

const limitsArb: fc.Arbitrary<Limits> = fc.record({
  total: fc.option(fc.integer({ min: 0, max: 8 }), { nil: null }),
  perCustomer: fc.option(fc.integer({ min: 1, max: 4 }), { nil: null }),
  perWindow: fc.option(
    fc.integer({ min: 1, max: 6 }).map((max) => ({ seconds: 205, max })),
    { nil: null },
  ),
});

const shape = (r: AdmitResult) =>
  r.kind === 'exhausted'
    ? { kind: r.kind, limit: r.limit }
    : 'reservation' in r
      ? { kind: r.kind, units: r.reservation.units, remaining: r.reservation.remaining }
      : { kind: r.kind };

describe('capacity against the sequential model', () => {
  let db: Database;
  let drop: () => Promise<void>;
  let service: CapacityService;
  let run = 0;

  beforeAll(async () => {
    const fresh = await freshDatabase();
    drop = fresh.drop;
    db = openDatabase(fresh.url, 4);
    // No sweeper: expiry must be exact without it; the model's `expire` stands in for it.
    service = new CapacityService({ pool: db.pool, logger: pino({ level: 'silent' }) });
  });
  afterAll(async () => {
    if (db) expect(await checkCapacityInvariants(db.pool)).toEqual([]);
    await service?.close();
    await db?.close();
    await drop?.();
  });

  it('answers and counters equal the model for any order of retried requests', async () => {
    await fc.assert(
      fc.asyncProperty(
        limitsArb,
        fc.array(commandArb, { minLength: 5, maxLength: 30 }),
        async (limits, commands) => {
          const id = `p-${run++}`;
          await db.pool.query(
            `INSERT INTO entity (machine, entity_id, status, last_event, key) VALUES ('promotion', $1, 'ACTIVATED', 'activate', 1)`,
            [id],
          );
          await setLimits(db.pool, id, limits);
          const model = new CapacityModel(id, limits);
          let now = new Date(0);
          for (const c of commands) {
            if (c.kind === 'advance') {
              const shift = [id, c.seconds];
              await db.pool.query(
                `UPDATE reservation SET created_at = created_at - make_interval(secs => $2),
                 expires_at = expires_at - make_interval(secs => $2),
                 resolved_at = resolved_at - make_interval(secs => $2) WHERE promotion_id = $1`,
                shift,
              );
              await db.pool.query(
                'UPDATE capacity SET next_expiry = next_expiry - make_interval(secs => $2) WHERE promotion_id = $1',
                shift,
              );
              now = new Date(now.getTime() + c.seconds * 1000);
            } else if (c.kind === 'reserve') {
              const requests = c.orders.map((o) => {
                const i = ORDERS.indexOf(o.order);
                const customerId = o.customer < 0 ? CUSTOMERS[i % CUSTOMERS.length]! : CUSTOMERS[o.customer]!;
                const units = o.customer < 0 ? 1 + (i % 3) : o.units;
                return { orderId: o.order, customerId, units, holdSeconds: o.hold };
              });
              // Sent at once: all but the first are folded into one admission statement.
              const got = await Promise.all(requests.map((r) => service.reserve(id, r)));
              const want = requests.map((r) => model.reserve(r, now));
              expect(got.map(shape)).toEqual(want.map(shape));
            } else {
              const r =
                c.kind === 'confirm'
                  ? await service.confirm(id, c.order)
                  : await service.release(id, c.order);
              const want = c.kind === 'confirm' ? model.confirm(c.order, now) : model.release(c.order, now);
              if (want === 'missing') expect(r).toBeNull();
              else if (c.kind === 'confirm') expect(r?.status === 'confirmed').toBe(want === 'confirmed');
              else expect(r?.status).toBe(want);
            }
            const s = await capacitySummary(db.pool, id);
            const used = model.used(now);
            const confirmed = model.confirmed();
            expect(s?.total ? { confirmed: s.total.confirmed, held: s.total.held } : null).toEqual(
              limits.total === null ? null : { confirmed, held: used - confirmed },
            );
            if (limits.perWindow)
              expect(s!.perWindow!.confirmed + s!.perWindow!.held).toBe(model.windowUsed(now));
          }
        },
      ),
      { numRuns: 40 },
    );
  });
  // One statement admits the pending requests of every idle promotion at once
  // (promosync_capacity_admit_all): each promotion must be judged as if it were alone, with
  // the same customer and order ids in several promotions, repeats inside the statement, and
  // promotions that are not active or have no capacity row yet.
  it('one statement over several promotions answers each as its own model does', async () => {
    const PROMOTIONS = 3;
    await fc.assert(
      fc.asyncProperty(
        fc.array(limitsArb, { minLength: PROMOTIONS, maxLength: PROMOTIONS }),
        fc.array(fc.boolean(), { minLength: PROMOTIONS, maxLength: PROMOTIONS }),
        fc.array(
          fc.oneof(
            {
              weight: 5,
              arbitrary: fc.array(
                fc.record({ promotion: fc.nat({ max: PROMOTIONS - 1 }), item: reserveItem }),
                { minLength: 1, maxLength: 12 },
              ),
            },
            { weight: 1, arbitrary: fc.integer({ min: 1, max: 20 }).map((t) => t * 10) },
          ),
          { minLength: 3, maxLength: 15 },
        ),
        async (limits, limited, steps) => {
          const base = `m-${run++}`;
          const ids = Array.from({ length: PROMOTIONS }, (_, i) => `${base}-${i}`);
          // The last promotion is not active; the others have limits only where drawn.
          await db.pool.query(
            `INSERT INTO entity (machine, entity_id, status, last_event, key)
             SELECT 'promotion', id, CASE WHEN n = $2 THEN 'CREATED' ELSE 'ACTIVATED' END, 'x', 1
               FROM unnest($1::text[]) WITH ORDINALITY AS u(id, n)`,
            [ids, PROMOTIONS],
          );
          const models = ids.map((id, i) => {
            const l = limited[i] ? limits[i]! : { total: null, perCustomer: null, perWindow: null };
            return new CapacityModel(id, l, i < PROMOTIONS - 1);
          });
          for (const [i, id] of ids.entries()) if (limited[i]) await setLimits(db.pool, id, limits[i]!);
          let now = new Date(0);
          for (const step of steps) {
            if (typeof step === 'number') {
              await db.pool.query(
                `UPDATE reservation SET created_at = created_at - make_interval(secs => $2),
                 expires_at = expires_at - make_interval(secs => $2),
                 resolved_at = resolved_at - make_interval(secs => $2) WHERE promotion_id = ANY ($1)`,
                [ids, step],
              );
              await db.pool.query(
                'UPDATE capacity SET next_expiry = next_expiry - make_interval(secs => $2) WHERE promotion_id = ANY ($1)',
                [ids, step],
              );
              now = new Date(now.getTime() + step * 1000);
              continue;
            }
            const groups = ids.map((promotionId, p) => ({
              promotionId,
              requests: step
                .filter((s) => s.promotion === p)
                .map(({ item: o }) => {
                  const i = ORDERS.indexOf(o.order);
                  return {
                    orderId: o.order,
                    customerId: o.customer < 0 ? null : CUSTOMERS[o.customer]!,
                    units: o.customer < 0 ? 1 + (i % 3) : o.units,
                    holdSeconds: o.hold,
                  };
                }),
            }));
            const sent = groups.filter((g) => g.requests.length > 0);
            const got = await admitReservationsMany(db.pool, sent);
            for (const [j, g] of sent.entries()) {
              const model = models[ids.indexOf(g.promotionId)]!;
              const want = g.requests.map((r) => model.reserve(r, now));
              expect(got[j]!.results.map(shape), g.promotionId).toEqual(want.map(shape));
            }
          }
          // Holds past their expiry count for nothing; the sweeper (absent here) records them.
          for (const [i, id] of ids.entries()) {
            await db.pool.query(
              'SELECT promosync_capacity_expire($1) FROM capacity WHERE promotion_id = $1',
              [id],
            );
            const { rows } = await db.pool.query<{ used: string }>(
              'SELECT used FROM capacity WHERE promotion_id = $1',
              [id],
            );
            expect(Number(rows[0]?.used ?? 0), id).toBe(models[i]!.used(now));
          }
        },
      ),
      { numRuns: 60 },
    );
  });
});
