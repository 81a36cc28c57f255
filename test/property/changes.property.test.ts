import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import pg from 'pg';
import pino from 'pino';
import { Applier } from '../../src/store/apply.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import type { EventInput } from '../../src/domain/event-schema.ts';
import { ENTITY_COLUMNS, toView, type EntityRow, type EntityView } from '../../src/store/entity-view.ts';
import { machines } from '../../machines/index.ts';
import { useHarness } from '../helpers/harness.ts';
import { deliveryArb, historyArb, renamed } from '../helpers/histories.ts';
import { openSse, type SseStream } from '../helpers/sse.ts';
import { testPool } from '../helpers/db.ts';

/**
 * Followers miss nothing: while several appliers on their own connections commit random
 * histories concurrently, a follower polling changesSince and a watch stream each end up
 * holding exactly the database's rows (docs/design.md#changes).
 */

const registry = MachineRegistry.from(machines);
const logger = pino({ level: 'silent' });
const promotion = registry.get('promotion')!;
const campaign = registry.get('campaign')!;
const APPLIERS = 3;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a follower compares: everything a client sees of an entity. */
const seen = (v: EntityView) => ({
  status: v.status,
  lastEvent: v.lastEvent,
  attributes: v.attributes,
  merchantId: v.merchantId,
  version: v.version,
  changeSeq: v.changeSeq,
});

describe('following changes under concurrent appliers', () => {
  const h = useHarness({ env: { WATCH_POLL_MS: '100' } });
  const pools: pg.Pool[] = [];
  const appliers: Applier[] = [];
  let stream: SseStream;
  let streamed = 0;
  const watched = new Map<string, EntityView>();
  const polled = new Map<string, EntityView>();
  let cursor: string;
  let stop = false;
  let poller: Promise<void>;

  beforeAll(async () => {
    for (let i = 0; i < APPLIERS; i++) {
      const pool = testPool(h.databaseUrl, 2);
      pools.push(pool);
      appliers.push(new Applier(pool, registry, logger));
    }
    const list = (await (await h.request('/v1/promotions', { key: h.keys.admin })).json()) as {
      changesSince: string;
    };
    cursor = list.changesSince;
    stream = await openSse(`${h.url}/v1/promotions/watch?since=${cursor}`, {
      authorization: `Bearer ${h.keys.admin}`,
    });
    // The follower polls all along, small pages, while the appliers commit.
    poller = (async () => {
      while (!stop) {
        const res = await h.request(`/v1/promotions?changesSince=${encodeURIComponent(cursor)}&limit=7`, {
          key: h.keys.admin,
        });
        const page = (await res.json()) as { items: EntityView[]; nextChangesSince: string; more: boolean };
        for (const e of page.items) polled.set(e.id, e);
        cursor = page.nextChangesSince;
        if (!page.more) await sleep(5);
      }
    })();
  });
  afterAll(async () => {
    stop = true;
    await poller;
    stream?.close();
    for (const p of pools) await p.end();
  });

  function takeStream(): void {
    for (; streamed < stream.events.length; streamed++) {
      const e = stream.events[streamed]!;
      if (e.event === 'change') {
        const v = JSON.parse(e.data) as EntityView;
        watched.set(v.id, v);
      }
      expect(e.event).not.toBe('resync');
    }
  }

  async function database(): Promise<Map<string, ReturnType<typeof seen>>> {
    const { rows } = await pools[0]!.query<EntityRow>(
      `SELECT ${ENTITY_COLUMNS} FROM entity e WHERE e.machine = 'promotion'`,
    );
    return new Map(rows.map((r) => [r.entityId, seen(toView(r))]));
  }
  const copy = (m: Map<string, EntityView>) => new Map([...m].map(([k, v]) => [k, seen(v)]));

  let run = 0;
  it('a polling follower and a watch stream both end with exactly the rows of the database', async () => {
    const history = fc
      .array(historyArb(promotion), { minLength: 4, maxLength: 12 })
      .map((hs) => hs.map((x, i) => renamed(x, `p${i}`)));
    const scenario = history.chain((hs) =>
      fc.record({
        hs: fc.constant(hs),
        delivery: deliveryArb(hs),
        lanes: fc.array(fc.nat({ max: APPLIERS - 1 }), { minLength: 200, maxLength: 200 }),
        sizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 200, maxLength: 200 }),
        campaignHistory: historyArb(campaign, 'c0'),
      }),
    );
    await fc.assert(
      fc.asyncProperty(scenario, async ({ delivery, lanes, sizes, campaignHistory }) => {
        run++;
        const rename = (e: EventInput): EventInput => ({
          ...e,
          entityId: `r${run}-${e.entityId}`,
          ...(e.eventId ? { eventId: `r${run}-${e.eventId}` } : {}),
        });
        // Each applier gets its share of the events, in batches of random sizes.
        const work: EventInput[][][] = Array.from({ length: APPLIERS }, () => []);
        const sent = [...delivery.sent, ...campaignHistory.events].map(rename);
        for (let at = 0, b = 0; at < sent.length; b++) {
          const n = sizes[b % sizes.length]!;
          work[lanes[b % lanes.length]!]!.push(sent.slice(at, at + n));
          at += n;
        }
        await Promise.all(
          work.map(async (batches, i) => {
            for (const batch of batches) {
              const prepared = registry.prepare(batch, 'test-src', true);
              await appliers[i]!.apply(prepared.map((event) => ({ event, jobId: null })));
            }
          }),
        );
        // Delayed, never lost: both copies reach the database's rows (a long transaction
        // elsewhere on the server may hold the horizon back for a while).
        const want = await database();
        for (let i = 0; i < 600; i++) {
          takeStream();
          const a = copy(polled);
          const b = copy(watched);
          if (sameMaps(a, want) && sameMaps(b, want)) break;
          await sleep(50);
        }
        takeStream();
        expect(copy(polled)).toEqual(want);
        expect(copy(watched)).toEqual(want);
      }),
      { numRuns: 30 },
    );
  }, 120_000);
});

function sameMaps<V>(a: Map<string, V>, b: Map<string, V>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (JSON.stringify(v) !== JSON.stringify(b.get(k))) return false;
  return true;
}
