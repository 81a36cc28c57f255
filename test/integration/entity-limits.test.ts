import { describe, expect, it } from 'vitest';
import pino from 'pino';
import { machines } from '../../machines/index.ts';
import { DEFAULT_EVENT_LIMITS, type EventInput } from '../../src/domain/event-schema.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import { Applier } from '../../src/store/apply.ts';
import { rebuildRows } from '../../src/store/rebuild.ts';
import { useStore } from '../helpers/store.ts';

// An entity's attributes are bounded (docs/design.md#attribute-limits): an event that would give
// it more fields, or larger ones, than its limits allow is rejected whole, with the reason, in
// arrival order within a batch; what is already stored never blocks events that do not grow it.
const MAX_FIELDS = 5;
const MAX_BYTES = 200;
const registry = MachineRegistry.from(machines, false, {
  ...DEFAULT_EVENT_LIMITS,
  entity: { maxFields: MAX_FIELDS, maxFieldBytes: MAX_BYTES },
});
const SOURCE = 'limits-src';

let seq = 0;
/** A promotion event; `version` orders events of one type. */
const ev = (entityId: string, type: string, version: number, data?: EventInput['data']): EventInput => ({
  machine: 'promotion',
  entityId,
  type,
  version,
  eventId: `e-${++seq}`,
  ...(data ? { data } : {}),
});

const names = (prefix: string, n: number): Record<string, number> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`${prefix}${i}`, i]));

describe('entity field limits', () => {
  const store = useStore(registry);
  const apply = (inputs: EventInput[], source = SOURCE) =>
    store.applier.apply(registry.prepare(inputs, source, true).map((event) => ({ event, jobId: null })));
  const row = async (id: string) =>
    (
      await store.pool.query<{ status: string; fields: Record<string, { v: unknown }> }>(
        `SELECT status, fields FROM entity WHERE machine = 'promotion' AND entity_id = $1`,
        [id],
      )
    ).rows[0];
  const fieldNames = async (id: string) => Object.keys((await row(id))!.fields).sort();

  it('rejects an event that would pass the field count, whole and with the reason', async () => {
    await apply([ev('p1', 'create', 1, names('a', 3))]);
    const [r] = await apply([ev('p1', 'activate', 1, names('b', 3))]);
    expect(r).toMatchObject({
      outcome: 'rejected',
      status: 'CREATED',
      reason: `entity field limit: the entity would have 6 fields, at most ${MAX_FIELDS} are allowed`,
    });
    // Nothing of it: neither its status nor any of its fields.
    expect((await row('p1'))!.status).toBe('CREATED');
    expect(await fieldNames('p1')).toEqual(['a0', 'a1', 'a2']);
    const log = await store.pool.query(
      `SELECT outcome, reason FROM event_log WHERE entity_id = 'p1' AND type = 'activate'`,
    );
    expect(log.rows).toEqual([{ outcome: 'rejected', reason: r!.reason }]);
  });

  it('still applies events that stay within the limits: updates of stored fields, status alone', async () => {
    const [a, b] = await apply([
      ev('p1', 'activate', 2, { a0: 'updated', b0: 1, b1: 2 }),
      ev('p1', 'activate', 3),
    ]);
    expect([a!.outcome, b!.outcome]).toEqual(['applied', 'applied']);
    expect(await fieldNames('p1')).toEqual(['a0', 'a1', 'a2', 'b0', 'b1']);
    expect((await row('p1'))!.fields.a0!.v).toBe('updated');
  });

  it('rejects an event that would make the fields larger than the byte limit', async () => {
    await apply([ev('p2', 'create', 1, { title: 'x'.repeat(100) })]);
    const [grow, same] = await apply([
      ev('p2', 'activate', 1, { title: 'y'.repeat(100), note: 'é'.repeat(50) }),
      ev('p2', 'activate', 2, { title: 'z'.repeat(90) }),
    ]);
    // 'title' (5) + 100 + 'note' (4) + 50 × 2 bytes = 209 > 200.
    expect(grow).toMatchObject({
      outcome: 'rejected',
      reason: `entity field limit: its fields would take 209 bytes, at most ${MAX_BYTES} are allowed`,
    });
    expect(same!.outcome).toBe('applied');
    expect((await row('p2'))!.fields).toMatchObject({ title: { v: 'z'.repeat(90) } });
    expect(await fieldNames('p2')).toEqual(['title']);
  });

  it('holds one batch to the limits in arrival order, and a retry of a rejected event is a duplicate', async () => {
    const batch = [
      ev('p3', 'create', 1, names('a', 2)),
      ev('p3', 'activate', 1, names('b', 2)),
      ev('p3', 'activate', 2, names('c', 2)), // 6 fields: rejected
      ev('p3', 'activate', 3, { a0: 7, d0: 1 }), // 5 fields: fits once the one before is out
      ev('p3', 'activate', 4, { e0: 1 }), // 6 fields: rejected
    ];
    const out = await apply(batch);
    expect(out.map((r) => r.outcome)).toEqual(['applied', 'applied', 'rejected', 'applied', 'rejected']);
    expect(await fieldNames('p3')).toEqual(['a0', 'a1', 'b0', 'b1', 'd0']);
    const [again] = await apply([batch[2]!]);
    expect(again!.outcome).toBe('duplicate');
  });

  it('lowered limits: a row above them takes events that do not grow it, and no others', async () => {
    const roomy = MachineRegistry.from(machines, false, {
      ...DEFAULT_EVENT_LIMITS,
      entity: { maxFields: 50, maxFieldBytes: 10_000 },
    });
    const big = new Applier(store.pool, roomy, pino({ level: 'silent' }));
    await big.apply(
      roomy
        .prepare([ev('p4', 'create', 1, names('a', 8))], SOURCE, true)
        .map((event) => ({ event, jobId: null })),
    );
    const out = await apply([
      ev('p4', 'activate', 1, { a0: 5 }),
      ev('p4', 'activate', 2),
      ev('p4', 'activate', 3, { z: 1 }),
    ]);
    expect(out.map((r) => r.outcome)).toEqual(['applied', 'applied', 'rejected']);
    expect((await fieldNames('p4')).length).toBe(8);
  });

  it('a row recomputed because its owner moved is held to the limits, and the log says so', async () => {
    await apply([ev('p5', 'create', 2, { x: 1 })], 'src-b');
    // src-a does not own p5 yet: rejected for their source, these count once it does.
    await apply([ev('p5', 'activate', 1, names('a', 3)), ev('p5', 'activate', 2, names('b', 3))], 'src-a');
    // A lower key than src-b's first event: src-a owns p5 from now on, and its row is recomputed.
    const [moved] = await apply([ev('p5', 'create', 1)], 'src-a');
    expect(moved!.status).toBe('ACTIVATED');
    expect(await fieldNames('p5')).toEqual(['a0', 'a1', 'a2']);
    const log = await store.pool.query<{
      source: string;
      type: string;
      version: string;
      outcome: string;
      reason: string;
    }>(
      `SELECT source, type, version, outcome, reason FROM event_log WHERE entity_id = 'p5' AND type = 'activate' ORDER BY id`,
    );
    expect(log.rows.map((r) => [r.version, r.outcome, r.reason])).toEqual([
      ['1', 'rejected', 'owned by source src-b'],
      [
        '2',
        'rejected',
        `entity field limit: the entity would have 6 fields, at most ${MAX_FIELDS} are allowed`,
      ],
    ]);
  });

  it('rebuild recomputes every row as stored: rejections for the limits are final', async () => {
    const report = await rebuildRows(store.pool, registry);
    expect(report.drifted).toEqual([]);
    expect(report.machines.find((m) => m.machine === 'promotion')!.rows).toBeGreaterThanOrEqual(4);
  });
});
