import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import pino from 'pino';
import { Applier } from '../../src/store/apply.ts';
import { purgeTombstones } from '../../src/store/retention.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import type { EventInput } from '../../src/domain/event-schema.ts';
import type { EntityView } from '../../src/store/queries.ts';
import { machines } from '../../machines/index.ts';
import { useHarness } from '../helpers/harness.ts';
import { promo } from '../helpers/events.ts';
import { sleep } from '../helpers/load.ts';
import { testPool } from '../helpers/db.ts';

/** Following changes with changesSince: nothing a late commit writes is skipped (docs/design.md#changes). */

const registry = MachineRegistry.from(machines);
const logger = pino({ level: 'silent' });

interface ListPage {
  items: EntityView[];
  nextCursor: string | null;
  changesSince: string;
}
interface ChangePage {
  items: EntityView[];
  nextChangesSince: string;
  more: boolean;
}

describe('following changes', () => {
  const h = useHarness();
  let pool: pg.Pool;
  let applier: Applier;

  beforeAll(async () => {
    pool = testPool(h.databaseUrl, 6);
    applier = new Applier(pool, registry, logger);
  });
  afterAll(async () => {
    await pool?.end();
  });

  const apply = (events: EventInput[]) =>
    applier.apply(registry.prepare(events, 'test-src', true).map((event) => ({ event, jobId: null })));

  async function getJson<T>(path: string, key = h.keys.admin): Promise<T> {
    const res = await h.request(path, { key });
    expect(res.status, `${path}: ${res.status} ${res.status === 200 ? '' : await res.clone().text()}`).toBe(
      200,
    );
    return (await res.json()) as T;
  }

  /** Reads every change after `since`, page by page; returns them and where to go on. */
  async function follow(since: string, key = h.keys.admin): Promise<{ items: EntityView[]; next: string }> {
    const items: EntityView[] = [];
    let next = since;
    for (;;) {
      const page = await getJson<ChangePage>(
        `/v1/promotions?changesSince=${encodeURIComponent(next)}&limit=2`,
        key,
      );
      items.push(...page.items);
      next = page.nextChangesSince;
      if (!page.more) return { items, next };
    }
  }

  /** Follows from `since` until what arrived satisfies `done` (or 20 s passed). */
  async function followUntil(
    since: string,
    done: (items: EntityView[]) => boolean,
    key = h.keys.admin,
  ): Promise<{ items: EntityView[]; next: string }> {
    const all: EntityView[] = [];
    let next = since;
    for (let i = 0; i < 200; i++) {
      const got = await follow(next, key);
      all.push(...got.items);
      next = got.next;
      if (done(all)) break;
      await sleep(100);
    }
    return { items: all, next };
  }

  /** Waits until some backend waits for a lock: the apply of the locked row is blocked. */
  async function untilBlocked(): Promise<void> {
    for (let i = 0; i < 500; i++) {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`,
      );
      if (rows[0]!.n > 0) return;
      await sleep(20);
    }
    throw new Error('the apply never blocked on the row lock');
  }

  it('a change committed late is seen through changesSince, and lost through updatedSince', async () => {
    await apply([promo('late-a', 'create'), promo('late-b', 'create')]);
    const start = (await getJson<ListPage>('/v1/promotions')).changesSince;
    // Follow until both creations are in (a transaction elsewhere on the server may hold the
    // horizon back for a moment: changes are delayed, never lost).
    const seen = await followUntil(
      start,
      (items) => items.filter((e) => e.id.startsWith('late-')).length === 2,
    );

    // Another connection holds late-a's row lock for a while.
    const holder = await pool.connect();
    await holder.query('BEGIN');
    await holder.query(
      `SELECT 1 FROM entity WHERE machine = 'promotion' AND entity_id = 'late-a' FOR UPDATE`,
    );
    const blocked = apply([promo('late-a', 'activate')]);
    // Released whatever happens, or the horizon stays behind for the rest of the file.
    const release = setTimeout(() => void holder.query('ROLLBACK').catch(() => {}), 20_000);
    await untilBlocked();
    await apply([promo('late-b', 'activate')]);

    // A follower polls now: late-b's change is visible, with its updatedAt.
    const b = await getJson<EntityView>('/v1/promotions/late-b');
    expect(b.status).toBe('ACTIVATED');
    const byTime = await getJson<ListPage>(`/v1/promotions?updatedSince=${encodeURIComponent(b.updatedAt)}`);
    expect(byTime.items.map((e) => e.id)).toEqual(['late-b']);
    // The feed holds late-b back while late-a's transaction, which began earlier, may still commit.
    const during = await follow(seen.next);
    expect(during.items.filter((e) => e.status === 'ACTIVATED')).toEqual([]);

    await sleep(300);
    clearTimeout(release);
    await holder.query('COMMIT');
    holder.release();
    await blocked;

    // updatedSince is approximate: late-a now has an updatedAt older than the one the follower
    // passed, so it never shows up after it.
    const a = await getJson<EntityView>('/v1/promotions/late-a');
    expect(a.status).toBe('ACTIVATED');
    expect(Date.parse(a.updatedAt)).toBeLessThan(Date.parse(b.updatedAt));
    const again = await getJson<ListPage>(`/v1/promotions?updatedSince=${encodeURIComponent(b.updatedAt)}`);
    expect(again.items.map((e) => e.id)).not.toContain('late-a');

    // changesSince delivers both, with their final state.
    const after = await followUntil(during.next, (items) => items.length === 2);
    const byId = new Map(after.items.map((e) => [e.id, e]));
    expect(after.items).toHaveLength(2);
    expect(byId.get('late-a')).toEqual(a);
    expect(byId.get('late-b')).toEqual(b);
  });

  it("a list's changesSince, followed, brings the copy up to date and repeats nothing within a page", async () => {
    await apply([promo('list-1', 'create'), promo('list-2', 'create'), promo('list-3', 'create')]);
    const first = await getJson<ListPage>('/v1/promotions?limit=2');
    // Changes between the pages of the listing.
    await apply([promo('list-1', 'activate', { data: { title: 'moved' } })]);
    const second = await getJson<ListPage>(`/v1/promotions?limit=100&cursor=${first.nextCursor!}`);
    expect(second.changesSince).toBe(first.changesSince);
    const copy = new Map([...first.items, ...second.items].map((e) => [e.id, e]));
    const all = await getJson<ListPage>('/v1/promotions?limit=1000');
    // Until list-1's activation is below the horizon (delayed by transactions elsewhere, never lost).
    const changes = await followUntil(first.changesSince, (items) =>
      items.some((e) => e.id === 'list-1' && e.status === 'ACTIVATED'),
    );
    for (const e of changes.items) copy.set(e.id, e);
    expect(new Map([...copy].map(([k, v]) => [k, v.changeSeq]))).toEqual(
      new Map(all.items.map((e) => [e.id, e.changeSeq])),
    );
    expect(copy.get('list-1')?.attributes).toEqual({ title: 'moved' });
    const page = await getJson<ChangePage>(
      `/v1/promotions?changesSince=${encodeURIComponent(first.changesSince)}&limit=1000`,
    );
    expect(new Set(page.items.map((e) => e.id)).size).toBe(page.items.length);
  });

  it('a merchant follows only its own promotions', async () => {
    const start = (await getJson<ListPage>('/v1/promotions', h.keys.merchant)).changesSince;
    await apply([
      promo('mine-1', 'create', { merchantId: 'm-1' }),
      promo('theirs-1', 'create', { merchantId: 'm-2' }),
    ]);
    const got = await followUntil(start, (items) => items.length > 0, h.keys.merchant);
    // Anything of the other merchant's would have come first or with it (it committed with it).
    expect(got.items.map((e) => e.id)).toEqual(['mine-1']);
  });

  it('rejects a malformed cursor and changesSince mixed with other filters', async () => {
    const bad = await h.request('/v1/promotions?changesSince=not-a-cursor', { key: h.keys.admin });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { code: string }).code).toBe('invalid_request');
    const start = (await getJson<ListPage>('/v1/promotions')).changesSince;
    const mixed = await h.request(`/v1/promotions?changesSince=${start}&status=CREATED`, {
      key: h.keys.admin,
    });
    expect(mixed.status).toBe(400);
  });

  it('a cursor from before a purge answers 410 cursor_expired; the purge horizon lets later ones through', async () => {
    const old = (await getJson<ListPage>('/v1/promotions')).changesSince;
    await apply([promo('gone-1', 'create'), promo('gone-1', 'delete')]);
    const fresh = (await followUntil(old, (items) => items.some((e) => e.id === 'gone-1'))).next;
    await pool.query(`UPDATE entity SET updated_at = now() - interval '2 days' WHERE entity_id = 'gone-1'`);
    const report = await purgeTombstones(pool, registry, new Date(Date.now() - 86_400_000));
    expect(report.entities.promotion).toBe(1);

    const res = await h.request(`/v1/promotions?changesSince=${encodeURIComponent(old)}`, {
      key: h.keys.admin,
    });
    expect(res.status).toBe(410);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const problem = (await res.json()) as { code: string; detail: string };
    expect(problem.code).toBe('cursor_expired');
    expect(problem.detail).toMatch(/list the collection again/);
    // A follower that had already seen the purged row's final state goes on.
    expect((await follow(fresh)).items).toEqual([]);
  });
});
