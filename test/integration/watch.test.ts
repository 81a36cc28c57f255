import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
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
import { openSse, type SseStream } from '../helpers/sse.ts';
import { testPool } from '../helpers/db.ts';

/** The watch stream: Server-Sent Events of a collection's changes (docs/design.md#changes). */

const registry = MachineRegistry.from(machines);
const logger = pino({ level: 'silent' });
const MAX_BUFFERED = 64 * 1024;

describe('watching a collection', () => {
  const h = useHarness({
    env: {
      WATCH_HEARTBEAT_MS: '300',
      WATCH_POLL_MS: '200',
      WATCH_MAX_BUFFERED_BYTES: String(MAX_BUFFERED),
      WATCH_STALL_TIMEOUT_MS: '10000',
    },
  });
  let pool: pg.Pool;
  let applier: Applier;
  const streams: SseStream[] = [];

  beforeAll(async () => {
    pool = testPool(h.databaseUrl, 4);
    applier = new Applier(pool, registry, logger);
  });
  afterAll(async () => {
    for (const s of streams) s.close();
    await pool?.end();
  });

  const apply = (events: EventInput[]) =>
    applier.apply(registry.prepare(events, 'test-src', true).map((event) => ({ event, jobId: null })));

  async function watch(
    query = '',
    key = h.keys.admin,
    headers: Record<string, string> = {},
  ): Promise<SseStream> {
    const s = await openSse(`${h.url}/v1/promotions/watch${query}`, {
      authorization: `Bearer ${key}`,
      ...headers,
    });
    streams.push(s);
    return s;
  }

  const changes = (s: SseStream) =>
    s.events.filter((e) => e.event === 'change').map((e) => JSON.parse(e.data) as EntityView);

  it('streams each change with its changeSeq as the event id, and resumes after Last-Event-ID', async () => {
    const start = (
      (await (await h.request('/v1/promotions', { key: h.keys.admin })).json()) as { changesSince: string }
    ).changesSince;
    const s = await watch(`?since=${start}`);
    expect(s.status).toBe(200);
    await apply([promo('w-1', 'create', { data: { title: 'one' } })]);
    const e = await s.until((x) => x.event === 'change');
    const view = JSON.parse(e.data) as EntityView;
    expect(view).toMatchObject({ id: 'w-1', status: 'CREATED', attributes: { title: 'one' } });
    expect(e.id).toBe(view.changeSeq);
    const stored = (await (
      await h.request('/v1/promotions/w-1', { key: h.keys.admin })
    ).json()) as EntityView;
    expect(view).toEqual(stored);
    s.close();

    // Missed while disconnected: delivered on reconnect, and w-1's change is not repeated.
    await apply([promo('w-2', 'create')]);
    const resumed = await watch('?since=ignored-when-the-header-is-sent', h.keys.admin, {
      'last-event-id': e.id!,
    });
    await resumed.until((x) => x.event === 'change');
    await apply([promo('w-1', 'activate')]);
    await resumed.until((x) => x.event === 'change' && (JSON.parse(x.data) as EntityView).id === 'w-1');
    expect(changes(resumed).map((v) => [v.id, v.status])).toEqual([
      ['w-2', 'CREATED'],
      ['w-1', 'ACTIVATED'],
    ]);
  });

  it('a merchant sees only its own entities, and bookmarks move its position while others change', async () => {
    const s = await watch('', h.keys.merchant);
    await apply([
      promo('m-other', 'create', { merchantId: 'm-2' }),
      promo('m-mine', 'create', { merchantId: 'm-1' }),
    ]);
    await s.until((x) => x.event === 'change');
    await apply([promo('m-other', 'activate', { merchantId: 'm-2' })]);
    const mark = await s.until(
      (x) => x.event === 'bookmark' && x.id !== s.events.find((c) => c.event === 'change')!.id,
    );
    expect(JSON.parse(mark.data)).toEqual({ changesSince: mark.id });
    expect(changes(s).map((v) => v.id)).toEqual(['m-mine']);
    // The bookmark is a valid place to resume: nothing of the other merchant's comes back.
    const page = (await (
      await h.request(`/v1/promotions?changesSince=${mark.id!}`, { key: h.keys.merchant })
    ).json()) as { items: EntityView[] };
    expect(page.items).toEqual([]);
  });

  it('accepts the key as access_token (for EventSource) and refuses a stream without a key', async () => {
    const res = await fetch(`${h.url}/v1/promotions/watch`);
    expect(res.status).toBe(401);
    const s = await openSse(`${h.url}/v1/promotions/watch?access_token=${h.keys.merchant}`, {});
    streams.push(s);
    expect(s.status).toBe(200);
    const bad = await fetch(`${h.url}/v1/promotions/watch?access_token=psk_nope`);
    expect(bad.status).toBe(401);
    expect(JSON.stringify(await bad.json())).not.toContain('psk_nope');
  });

  it('answers 410 before streaming when the cursor is older than a purge', async () => {
    const old = (
      (await (await h.request('/v1/promotions', { key: h.keys.admin })).json()) as { changesSince: string }
    ).changesSince;
    const live = await watch();
    await apply([promo('w-gone', 'create'), promo('w-gone', 'delete')]);
    // Watchers that saw the tombstone's final state are not affected by its purge.
    await live.until((e) => e.event === 'change' && (JSON.parse(e.data) as EntityView).id === 'w-gone');
    await pool.query(`UPDATE entity SET updated_at = now() - interval '2 days' WHERE entity_id = 'w-gone'`);
    await purgeTombstones(pool, registry, new Date(Date.now() - 86_400_000));
    const res = await fetch(`${h.url}/v1/promotions/watch?since=${old}`, {
      headers: { authorization: `Bearer ${h.keys.admin}` },
    });
    expect(res.status).toBe(410);
    expect(((await res.json()) as { code: string }).code).toBe('cursor_expired');
    await apply([promo('w-after', 'create')]);
    await live.until((e) => e.event === 'change' && (JSON.parse(e.data) as EntityView).id === 'w-after');
    expect(live.events.some((e) => e.event === 'resync')).toBe(false);
  });

  it('a client that stops reading is cut off with a bounded buffer; one that reads gets every change', async () => {
    const hub = h.service.changes!;
    // Only the two streams of this test, so the one cut off can only be the one that does not read.
    for (const s of streams.splice(0)) s.close();
    for (let i = 0; i < 100 && hub.watcherCount > 0; i++) await sleep(50);
    const reader = await watch();
    const before = hub.watcherCount;
    expect(before).toBe(1);
    const socket = connect(Number(new URL(h.url).port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(
      `GET /v1/promotions/watch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.keys.admin}\r\n\r\n`,
    );
    socket.pause(); // never reads
    let closed = false;
    socket.on('close', () => (closed = true));
    socket.on('error', () => {});
    for (let i = 0; i < 100 && hub.watcherCount === before; i++) await sleep(50);
    expect(hub.watcherCount).toBe(before + 1);

    const title = 'x'.repeat(8000);
    let batches = 0;
    for (; batches < 60 && hub.watcherCount > before; batches++) {
      await apply(
        Array.from({ length: 200 }, (_, i) => promo(`slow-${batches}-${i}`, 'create', { data: { title } })),
      );
    }
    for (let i = 0; i < 100 && hub.watcherCount > before; i++) await sleep(50);
    expect(hub.watcherCount, `still connected after ${batches} batches of 1.6 MB`).toBe(before);
    // One frame (an entity of about 8 KB) at most beyond the limit.
    expect(hub.maxBufferedSeen).toBeLessThanOrEqual(MAX_BUFFERED + 32 * 1024);
    // The client that reads got all of them, although each batch arrived as one burst.
    const got = new Set<string>();
    await reader
      .until((e) => {
        if (e.event === 'change') got.add((JSON.parse(e.data) as EntityView).id);
        return got.size === batches * 200;
      }, 30_000)
      .catch(() => {});
    expect(got.size).toBe(batches * 200);
    // The connection is gone: reading what the kernel still holds ends in end-of-stream.
    socket.on('end', () => (closed = true));
    socket.resume();
    for (let i = 0; i < 400 && !closed; i++) await sleep(50);
    expect(closed).toBe(true);
    socket.destroy();
  });
});
