import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import pg from 'pg';
import pino from 'pino';
import { setup } from 'xstate';
import { machines } from '../../machines/index.ts';
import {
  MachineRegistry,
  mergeEvent,
  orderingKey,
  PromosyncError,
  type EntityState,
  type EventInput,
} from '../../src/domain/index.ts';
import { Applier, syncMachineDefs } from '../../src/store/index.ts';
import { freshDatabase, testPool } from '../helpers/db.ts';

const logger = pino({ level: 'silent' });

/** Today's promotion with a step added: CREATED -schedule-> SCHEDULED -activate-> ACTIVATED. */
const scheduledPromotion = setup({}).createMachine({
  id: 'promotion',
  initial: 'CREATED',
  meta: { creationEvent: 'create', collection: 'promotions', ranks: { complete: 1, delete: 2 } },
  states: {
    CREATED: { on: { schedule: 'SCHEDULED', delete: 'DELETED' } },
    SCHEDULED: { on: { activate: 'ACTIVATED', delete: 'DELETED' } },
    ACTIVATED: { on: { complete: 'COMPLETED', delete: 'DELETED' } },
    COMPLETED: { type: 'final' },
    DELETED: { type: 'final' },
  },
});

/** The scheduled promotion without `complete` and COMPLETED: rows in COMPLETED lose their meaning. */
const uncompletable = setup({}).createMachine({
  id: 'promotion',
  initial: 'CREATED',
  meta: { creationEvent: 'create', collection: 'promotions' },
  states: {
    CREATED: { on: { schedule: 'SCHEDULED', delete: 'DELETED' } },
    SCHEDULED: { on: { activate: 'ACTIVATED', delete: 'DELETED' } },
    ACTIVATED: { on: { delete: 'DELETED' } },
    DELETED: { type: 'final' },
  },
});

/** The campaign with a SCHEDULED step before LIVE: version-ordered keys change in their low bits. */
const scheduledCampaign = setup({}).createMachine({
  id: 'campaign',
  initial: 'DRAFT',
  meta: { creationEvent: 'create', collection: 'campaigns', ordering: 'version' },
  states: {
    DRAFT: { on: { schedule: 'SCHEDULED', cancel: 'CANCELLED' } },
    SCHEDULED: { on: { launch: 'LIVE', cancel: 'CANCELLED' } },
    LIVE: { on: { pause: 'PAUSED', end: 'ENDED', cancel: 'CANCELLED' } },
    PAUSED: { on: { resume: 'LIVE', end: 'ENDED', cancel: 'CANCELLED' } },
    ENDED: { type: 'final' },
    CANCELLED: { type: 'final' },
  },
});

const v1 = MachineRegistry.from(machines);
const v2 = MachineRegistry.from({ ...machines, promotion: scheduledPromotion });
const v3 = MachineRegistry.from({ ...machines, promotion: uncompletable });

const promo = (entityId: string, type: string, version: number, data?: EventInput['data']): EventInput => ({
  machine: 'promotion',
  entityId,
  type,
  version,
  eventId: `${entityId}-${type}-${version}`,
  ...(data ? { data } : {}),
});

/** What a worker running `registry` does with these events, one batch each. */
async function applyEach(pool: pg.Pool, registry: MachineRegistry, events: EventInput[]): Promise<string[]> {
  const applier = new Applier(pool, registry, logger);
  const outcomes: string[] = [];
  for (const event of registry.prepare(events, 'test-src', true)) {
    const [r] = await applier.apply([{ event, jobId: null }]);
    outcomes.push(r!.outcome);
  }
  return outcomes;
}

/** The row the events lead to when `registry` applies them in this order, in memory. */
function expectedRow(registry: MachineRegistry, events: EventInput[]): EntityState | undefined {
  let row: EntityState | undefined;
  const seen = new Map<string, string>();
  for (const e of registry.prepare(events, 'test-src', false)) {
    row = mergeEvent(row, e, seen, (a, b) => registry.isReachable(e.machine, a, b)).state;
  }
  // Re-ranking pins the owner (its key becomes 0): compared apart from the rest.
  return row && { ...row, owner: null };
}

interface Row {
  status: string;
  last_event: string;
  key: string;
  version: string | null;
  /** `k` as text: field keys exceed 2^53, which JSON numbers in JavaScript cannot hold exactly. */
  fields: Record<string, { v: unknown; k: string; e: string; n: number | null }>;
}

async function rowOf(pool: pg.Pool, machine: string, entityId: string): Promise<Row> {
  const { rows } = await pool.query<Row>(
    `SELECT status, last_event, key::text AS key, version::text AS version,
            (SELECT coalesce(jsonb_object_agg(f.key, f.value || jsonb_build_object('k', f.value ->> 'k')), '{}')
               FROM jsonb_each(fields) f) AS fields
       FROM entity WHERE machine = $1 AND entity_id = $2`,
    [machine, entityId],
  );
  return rows[0]!;
}

/** A stored row in the shape of the in-memory reference. */
const asState = (r: Row): EntityState => ({
  status: r.status,
  lastEvent: r.last_event,
  key: BigInt(r.key),
  version: r.version === null ? null : Number(r.version),
  merchantId: null,
  owner: null,
  fields: Object.fromEntries(
    Object.entries(r.fields).map(([name, f]) => [
      name,
      { value: f.v as string | number | boolean, key: BigInt(f.k), event: f.e, version: f.n },
    ]),
  ),
});

const rank = (registry: MachineRegistry, machine: string, type: string): number =>
  registry.get(machine)!.events.get(type)!.rank;

// The promotions stored while the service ran the current machines.
const before: EventInput[] = [
  promo('p-active', 'create', 1, { title: 'spring sale' }),
  promo('p-active', 'activate', 2, { discount: 10 }),
  promo('p-new', 'create', 1),
  promo('p-done', 'create', 1),
  promo('p-done', 'activate', 2),
  promo('p-done', 'complete', 3),
];
// What arrives after the restart with the scheduled promotion.
const after: EventInput[] = [
  // Late: the producer scheduled p-active before activating it. Its data is older than
  // the discount the activate set, but newer than the title the create set.
  promo('p-active', 'schedule', 5, { title: 'spring sale!', discount: 99 }),
  promo('p-new', 'schedule', 2),
  // A late activate for a completed promotion, with a version above the complete's.
  promo('p-done', 'activate', 9),
];

describe('re-ranking stored rows when a machine changes', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let pool: pg.Pool;
  const pools: pg.Pool[] = [];

  beforeEach(async () => {
    db = await freshDatabase();
    pool = testPool(db.url, 4);
    pools.push(pool);
    expect(await syncMachineDefs(pool, v1)).toEqual([
      { machine: 'promotion', status: 'new', rows: 0 },
      { machine: 'campaign', status: 'new', rows: 0 },
    ]);
    expect(await applyEach(pool, v1, before)).toEqual(Array(before.length).fill('applied'));
  });
  afterEach(async () => {
    for (const p of pools.splice(0)) await p.end();
    await db.drop();
  });

  it('a restart with unchanged machines leaves rows alone', async () => {
    const keys = await rowOf(pool, 'promotion', 'p-active');
    expect(await syncMachineDefs(pool, v1)).toEqual([
      { machine: 'promotion', status: 'unchanged', rows: 0 },
      { machine: 'campaign', status: 'unchanged', rows: 0 },
    ]);
    expect(await rowOf(pool, 'promotion', 'p-active')).toEqual(keys);
  });

  it('recomputes row and field keys from the stored event names when ranks shift', async () => {
    expect(rank(v1, 'promotion', 'activate')).toBe(2);
    expect(rank(v2, 'promotion', 'activate')).toBe(3);
    expect(await syncMachineDefs(pool, v2)).toEqual([
      { machine: 'promotion', status: 'reranked', rows: 3 },
      { machine: 'campaign', status: 'unchanged', rows: 0 },
    ]);
    const active = await rowOf(pool, 'promotion', 'p-active');
    expect(active.status).toBe('ACTIVATED');
    expect(BigInt(active.key)).toBe(orderingKey('rank', rank(v2, 'promotion', 'activate'), 2));
    expect(BigInt(active.fields.discount!.k)).toBe(orderingKey('rank', rank(v2, 'promotion', 'activate'), 2));
    expect(BigInt(active.fields.title!.k)).toBe(orderingKey('rank', rank(v2, 'promotion', 'create'), 1));
    const done = await rowOf(pool, 'promotion', 'p-done');
    expect(BigInt(done.key)).toBe(orderingKey('rank', rank(v2, 'promotion', 'complete'), 3));
    // Each stored row is now what the new machine gives for the same events.
    for (const id of ['p-active', 'p-new', 'p-done']) {
      const events = before.filter((e) => e.entityId === id);
      expect(asState(await rowOf(pool, 'promotion', id)), id).toEqual(expectedRow(v2, events));
    }
    const def = await pool.query<{ ranks: Record<string, number>; states: string[] }>(
      "SELECT ranks, states FROM machine_def WHERE name = 'promotion'",
    );
    expect(def.rows[0]!.ranks).toEqual({ create: 1, schedule: 2, activate: 3, complete: 4, delete: 5 });
    expect(def.rows[0]!.states).toContain('SCHEDULED');
  });

  it('without the re-rank, the same late events would overwrite newer state', async () => {
    // What a process with the new ranks would do to rows keyed by the old ones.
    expect(await applyEach(pool, v2, after)).toEqual(['applied', 'applied', 'applied']);
    expect((await rowOf(pool, 'promotion', 'p-active')).status).toBe('SCHEDULED');
    expect((await rowOf(pool, 'promotion', 'p-done')).status).toBe('ACTIVATED');
  });

  it('applies later events by the new ranks', async () => {
    await syncMachineDefs(pool, v2);
    // Against the old keys, the first and last of these would have been applied.
    expect(await applyEach(pool, v2, after)).toEqual(['stale', 'applied', 'stale']);
    const active = await rowOf(pool, 'promotion', 'p-active');
    expect(active.status).toBe('ACTIVATED');
    expect(active.fields.title!.v).toBe('spring sale!');
    expect(active.fields.discount!.v).toBe(10);
    expect((await rowOf(pool, 'promotion', 'p-new')).status).toBe('SCHEDULED');
    expect((await rowOf(pool, 'promotion', 'p-done')).status).toBe('COMPLETED');
    for (const id of ['p-active', 'p-new', 'p-done']) {
      const events = [...before, ...after].filter((e) => e.entityId === id);
      expect(asState(await rowOf(pool, 'promotion', id)), id).toEqual(expectedRow(v2, events));
    }
  });

  it('re-ranks version-ordered rows too: the version stays first, the new rank breaks ties', async () => {
    const campaignEvents: EventInput[] = [
      { machine: 'campaign', entityId: 'c-1', type: 'create', version: 1, data: { budget: 5 } },
      { machine: 'campaign', entityId: 'c-1', type: 'launch', version: 4 },
    ];
    await applyEach(pool, v1, campaignEvents);
    const v2c = MachineRegistry.from({ ...machines, campaign: scheduledCampaign });
    expect(await syncMachineDefs(pool, v2c)).toEqual([
      { machine: 'promotion', status: 'unchanged', rows: 0 },
      { machine: 'campaign', status: 'reranked', rows: 1 },
    ]);
    const row = await rowOf(pool, 'campaign', 'c-1');
    expect(BigInt(row.key)).toBe(orderingKey('version', rank(v2c, 'campaign', 'launch'), 4));
    expect(BigInt(row.fields.budget!.k)).toBe(orderingKey('version', rank(v2c, 'campaign', 'create'), 1));
    expect(rank(v2c, 'campaign', 'launch')).not.toBe(rank(v1, 'campaign', 'launch'));
  });

  it('refuses to start while rows use a removed state or event, naming machine, names and row counts', async () => {
    await syncMachineDefs(pool, v2);
    const keysBefore = await pool.query('SELECT entity_id, key, fields FROM entity ORDER BY entity_id');
    const err = await syncMachineDefs(pool, v3).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PromosyncError);
    expect((err as PromosyncError).code).toBe('machine_invalid');
    const message = (err as Error).message;
    expect(message).toContain('machine "promotion" no longer has');
    expect(message).toContain('state "COMPLETED" (1 row)');
    expect(message).toContain('event type "complete" (1 row)');
    expect(message).toContain('--accept-removed');
    // Nothing changed: the stored definition and the rows are those of the previous start.
    expect((await pool.query('SELECT entity_id, key, fields FROM entity ORDER BY entity_id')).rows).toEqual(
      keysBefore.rows,
    );
    const def = await pool.query<{ ranks: Record<string, number> }>(
      "SELECT ranks FROM machine_def WHERE name = 'promotion'",
    );
    expect(def.rows[0]!.ranks).toHaveProperty('complete');
  });

  it('counts rows whose attributes were written by a removed event', async () => {
    await syncMachineDefs(pool, v2);
    // p-new gets a field from `schedule`, then the next machine drops `schedule` again.
    await applyEach(pool, v2, [
      promo('p-new', 'schedule', 2, { channel: 'web' }),
      promo('p-new', 'activate', 3),
    ]);
    const err = await syncMachineDefs(pool, v1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PromosyncError);
    expect((err as Error).message).toContain('event type "schedule" (1 row)');
  });

  it('starts with acceptRemoved and keeps the affected rows as they are', async () => {
    await syncMachineDefs(pool, v2);
    const done = await rowOf(pool, 'promotion', 'p-done');
    expect(await syncMachineDefs(pool, v3, { acceptRemoved: true })).toEqual([
      { machine: 'promotion', status: 'reranked', rows: 3 },
      { machine: 'campaign', status: 'unchanged', rows: 0 },
    ]);
    expect(await rowOf(pool, 'promotion', 'p-done')).toEqual(done);
    const active = await rowOf(pool, 'promotion', 'p-active');
    expect(BigInt(active.key)).toBe(orderingKey('rank', rank(v3, 'promotion', 'activate'), 2));
    // The next start finds the accepted definition unchanged and no longer asks.
    expect((await syncMachineDefs(pool, v3))[0]!.status).toBe('unchanged');
    // Later events still apply to the kept rows, compared with the key they kept.
    expect(await applyEach(pool, v3, [promo('p-done', 'delete', 4)])).toEqual(['applied']);
    expect((await rowOf(pool, 'promotion', 'p-done')).status).toBe('DELETED');
  });

  it('refuses to start without a machine that still has rows; accepted, re-adding it re-ranks its rows', async () => {
    const onlyCampaign = MachineRegistry.from({ campaign: machines.campaign! });
    const err = await syncMachineDefs(pool, onlyCampaign).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PromosyncError);
    expect((err as Error).message).toContain(
      'machine "promotion" is no longer in the registry (machines/index.ts) but has 3 rows',
    );
    expect(await syncMachineDefs(pool, onlyCampaign, { acceptRemoved: true })).toEqual([
      { machine: 'campaign', status: 'unchanged', rows: 0 },
      { machine: 'promotion', status: 'removed', rows: 3 },
    ]);
    // Back, with the scheduled step: no definition is stored, the rows are re-ranked all the same.
    expect((await syncMachineDefs(pool, v2))[0]).toEqual({ machine: 'promotion', status: 'new', rows: 3 });
    const active = await rowOf(pool, 'promotion', 'p-active');
    expect(BigInt(active.key)).toBe(orderingKey('rank', rank(v2, 'promotion', 'activate'), 2));
  });

  it('two processes starting at once re-rank once', async () => {
    const other = testPool(db.url, 2);
    pools.push(other);
    const reports = await Promise.all([syncMachineDefs(pool, v2), syncMachineDefs(other, v2)]);
    const statuses = reports.map((r) => r.find((s) => s.machine === 'promotion')!.status).sort();
    expect(statuses).toEqual(['reranked', 'unchanged']);
    const active = await rowOf(pool, 'promotion', 'p-active');
    expect(BigInt(active.key)).toBe(orderingKey('rank', rank(v2, 'promotion', 'activate'), 2));
  });
});
