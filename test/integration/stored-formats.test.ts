import fc from 'fast-check';
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { machines } from '../../machines/index.ts';
import {
  decodeFields,
  encodeFields,
  mergeEvent,
  MachineRegistry,
  orderingKey,
  sqlExactFields,
  sqlFieldEvent,
  sqlFieldBytes,
  sqlFieldKey,
  sqlFieldValue,
  sqlFieldVersion,
  sqlOrderingKey,
  sqlRankOfKey,
  sqlWithFieldKey,
  unpackKey,
  type FieldEntry,
  type Ordering,
  type StoredField,
} from '../../src/domain/index.ts';
import { MAX_RANK } from '../../src/domain/ranking.ts';
import { Applier } from '../../src/store/apply.ts';
import { freshDatabase, testPool } from '../helpers/db.ts';

// The ordering key and the fields column are written and read both in TypeScript and in SQL.
// Each side is built from one codec; these tests run the two sides against each other in
// Postgres, so a change on one side alone fails here.
describe('stored formats: TypeScript and SQL agree', () => {
  let db: Awaited<ReturnType<typeof freshDatabase>>;
  let pool: pg.Pool;
  beforeAll(async () => {
    db = await freshDatabase();
    pool = testPool(db.url, 2);
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });

  const rank = fc.integer({ min: 1, max: MAX_RANK });
  const version = fc.oneof(fc.maxSafeNat(), fc.constantFrom(0, 1, 2 ** 53 - 1));
  const inputs = fc.array(fc.record({ rank, version }), { minLength: 1, maxLength: 200 });

  for (const mode of ['rank', 'version'] as const satisfies Ordering[]) {
    it(`${mode} mode: keys packed and unpacked in SQL equal the TypeScript codec's`, async () => {
      await fc.assert(
        fc.asyncProperty(inputs, async (xs) => {
          const { rows } = await pool.query<{ key: string; rank: number }>(
            `SELECT ${sqlOrderingKey(mode, 'u.r', 'u.v')}::text AS key,
                    ${sqlRankOfKey(mode, 'u.k')}::int AS rank
             FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS u(r, v, k, ord)
             ORDER BY u.ord`,
            [
              xs.map((x) => x.rank),
              xs.map((x) => String(x.version)),
              xs.map((x) => orderingKey(mode, x.rank, x.version).toString()),
            ],
          );
          xs.forEach((x, i) => {
            const key = orderingKey(mode, x.rank, x.version);
            expect(rows[i]!.key).toBe(key.toString());
            expect(rows[i]!.rank).toBe(unpackKey(mode, key).rank);
          });
        }),
        { numRuns: 30 },
      );
    });
  }

  const value = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 8 }), fc.integer(), fc.boolean());
  const entry: fc.Arbitrary<FieldEntry> = fc.record({
    value,
    key: fc.bigInt({ min: 1n, max: 2n ** 62n - 1n }),
    event: fc.constantFrom('create', 'activate', 'a"b'),
    version: fc.option(fc.maxSafeNat(), { nil: null }),
  });
  const fieldsArb = fc.dictionary(fc.constantFrom('title', 'budget', 'channel', 'x_1', 'prix_€'), entry, {
    maxKeys: 4,
  });

  it('fields written by the TypeScript codec read back through the SQL readers unchanged', async () => {
    await fc.assert(
      fc.asyncProperty(fieldsArb, fc.bigInt({ min: 1n, max: 2n ** 62n - 1n }), async (fields, newKey) => {
        const { rows } = await pool.query<{
          exact: Record<string, StoredField>;
          parts: { name: string; k: string; e: string; n: string | null; rekeyed: string }[];
        }>(
          `SELECT ${sqlExactFields('$1::jsonb')} AS exact,
                  (SELECT coalesce(json_agg(json_build_object('name', f.key, 'k', ${sqlFieldKey('f.value')}::text,
                     'e', ${sqlFieldEvent('f.value')}, 'n', ${sqlFieldVersion('f.value')}::text,
                     'rekeyed', ${sqlFieldKey(sqlWithFieldKey('f.value', '$2::bigint'))}::text)), '[]')
                   FROM jsonb_each($1::jsonb) f) AS parts`,
          [encodeFields(fields), newKey.toString()],
        );
        expect(decodeFields(rows[0]!.exact)).toEqual(fields);
        for (const p of rows[0]!.parts) {
          const f = fields[p.name]!;
          expect(p).toEqual({
            name: p.name,
            k: f.key.toString(),
            e: f.event,
            n: f.version === null ? null : String(f.version),
            rekeyed: newKey.toString(),
          });
        }
      }),
      { numRuns: 100 },
    );
  });

  const byName = (a: { name: string }, b: { name: string }): number => (a.name < b.name ? -1 : 1);

  it("the SQL size of a stored field is its name's and string value's UTF-8 bytes, 8 for other values", async () => {
    await fc.assert(
      fc.asyncProperty(fieldsArb, async (fields) => {
        const { rows } = await pool.query<{ name: string; bytes: number }>(
          `SELECT f.key AS name, ${sqlFieldBytes('f.key', sqlFieldValue('f.value'))}::int AS bytes
           FROM jsonb_each($1::jsonb) f`,
          [encodeFields(fields)],
        );
        const expected = Object.entries(fields).map(([name, f]) => ({
          name,
          bytes: Buffer.byteLength(name) + (typeof f.value === 'string' ? Buffer.byteLength(f.value) : 8),
        }));
        expect(rows.sort(byName)).toEqual(expected.sort(byName));
      }),
      { numRuns: 100 },
    );
  });

  it('fields written by the apply statement decode to the pure rule’s field entries', async () => {
    const registry = MachineRegistry.from(machines);
    const applier = new Applier(pool, registry, pino({ level: 'silent' }));
    const events = registry.prepare(
      [
        {
          machine: 'promotion',
          entityId: 'codec-1',
          type: 'create',
          version: 7,
          data: { title: 'a', budget: 3 },
        },
        { machine: 'promotion', entityId: 'codec-1', type: 'activate', data: { title: 'b' } },
        { machine: 'campaign', entityId: 'codec-2', type: 'launch', version: 2 ** 53 - 1, data: { n: true } },
      ],
      'test-src',
      false,
    );
    await applier.apply(events.map((event) => ({ event, jobId: null })));
    const expected = new Map<string, Record<string, FieldEntry>>();
    const seen = new Map<string, string>();
    for (const e of events) {
      const prev = expected.get(e.entityId);
      const state = prev && {
        status: '',
        lastEvent: '',
        key: 0n,
        version: null,
        merchantId: null,
        owner: null,
        fields: prev,
      };
      const r = mergeEvent(state, e, seen, () => true);
      expected.set(e.entityId, r.state.fields);
    }
    const { rows } = await pool.query<{ entity_id: string; fields: Record<string, StoredField> }>(
      `SELECT entity_id, ${sqlExactFields('fields')} AS fields FROM entity ORDER BY entity_id`,
    );
    expect(rows.map((r) => r.entity_id)).toEqual(['codec-1', 'codec-2']);
    for (const r of rows) expect(decodeFields(r.fields)).toEqual(expected.get(r.entity_id));
  });
});
