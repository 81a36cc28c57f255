import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { useHarness, type Harness } from '../helpers/harness.ts';
import { promo } from '../helpers/events.ts';

/**
 * Hostile query strings and paths on the read endpoints: never a 5xx, always a JSON answer,
 * a merchant never sees another merchant's entity, and reading changes nothing.
 */

const RUNS = 1000;

interface State {
  entities: string;
  events: string;
  lastUpdate: string | null;
}

describe('fuzzing the query parameters and paths of the read endpoints', () => {
  const h = useHarness({ env: { RATE_LIMIT_PER_SECOND: '0' } });
  let validCursor = '';
  /** Entity ids owned by merchant m-1, the merchant key's own. */
  const mine = new Set<string>();

  const state = async (): Promise<State> =>
    (
      await h.service.db.pool.query<State>(
        `SELECT (SELECT count(*) FROM entity)::text AS entities, (SELECT count(*) FROM event_log)::text AS events,
                (SELECT max(updated_at)::text FROM entity) AS "lastUpdate"`,
      )
    ).rows[0]!;

  beforeAll(async () => {
    const events = [];
    for (let i = 0; i < 6; i++) {
      const owner = i % 3 === 0 ? 'm-1' : i % 3 === 1 ? 'm-2' : undefined;
      if (owner === 'm-1') mine.add(`q-${i}`);
      events.push(
        promo(`q-${i}`, 'create', { eventId: `q-${i}-c`, ...(owner ? { merchantId: owner } : {}) }),
      );
      events.push(promo(`q-${i}`, 'activate', { eventId: `q-${i}-a`, data: { title: `t${i}` } }));
    }
    const res = await h.request('/v1/events?wait=true', { method: 'POST', json: { events } });
    expect(res.status).toBe(200);
    const page = (await (await h.request('/v1/promotions?limit=1', { key: h.keys.admin })).json()) as {
      nextCursor: string;
    };
    validCursor = page.nextCursor;
    expect(validCursor).toBeTruthy();
  });

  const paramName = fc.oneof(
    fc.constantFrom(
      'status',
      'updatedSince',
      'limit',
      'cursor',
      'wait',
      'timeoutMs',
      'merchantId',
      'machine',
      '__proto__',
      'constructor',
      'prototype',
      'hasOwnProperty',
      'toString',
      'status[]',
      'limit[$gt]',
      'cursor.x',
    ),
    fc.string({ maxLength: 20 }),
    fc.string({ unit: 'binary', maxLength: 10 }),
  );
  const paramValue = fc.oneof(
    fc.constantFrom(
      '',
      '0',
      '-1',
      '1',
      '1000',
      '1001',
      '1e3',
      '1.5',
      '0x10',
      ' 5',
      'NaN',
      'Infinity',
      '-0',
      '9007199254740993',
      '9223372036854775807',
      '9223372036854775808',
      '9999999999999999999',
      '99999999999999999999999999',
      'true',
      '[]',
      '{}',
      'null',
      'ACTIVATED',
      'DELETED',
      'activated',
      '2026-01-01T00:00:00Z',
      '9999-12-31T23:59:59.999+14:00',
      '2026-02-30T00:00:00Z',
      '2026-01-01T00:00:00',
      "' OR 1=1 --",
      '\u0000',
      '\ud800',
    ),
    fc.constant(null).map(() => validCursor),
    fc.string({ maxLength: 8 }).map((s) => validCursor.slice(0, -2) + s),
    fc.base64String({ maxLength: 80 }),
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }).map(String),
    fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    fc.nat({ max: 5000 }).map((n) => 'x'.repeat(n)),
  );
  /**
   * Dates from year 1 to the end of what JavaScript can represent, as ISO strings. Years 0 and
   * before are left to the known-fault cases below.
   */
  const anyDate = fc
    .date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date(8.64e15), noInvalidDate: true })
    .map((d) => d.toISOString());
  const dateish = fc.oneof(
    anyDate,
    fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
    fc.constantFrom('0001-01-01T00:00:00Z', '1969-12-31T23:59:59.999Z', '2026-13-01T00:00:00Z'),
  );
  /** Cursors a client could forge: base64url of JSON arrays with hostile dates and ids. */
  const forgedCursor = fc
    .tuple(
      fc.oneof(dateish, fc.jsonValue({ maxDepth: 2 })),
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 20 }),
        fc.constantFrom('q-0', ''),
        fc.jsonValue({ maxDepth: 2 }),
      ),
    )
    .map((t) => Buffer.from(JSON.stringify(t)).toString('base64url'));
  const knownParams = {
    status: fc.oneof(
      fc.constantFrom('CREATED', 'ACTIVATED', 'DELETED', 'RUNNING', 'created', ''),
      paramValue,
    ),
    updatedSince: fc.oneof(dateish, paramValue),
    limit: fc.oneof(fc.integer({ min: -5, max: 2000 }).map(String), paramValue),
    cursor: fc.oneof(forgedCursor, fc.bigInt({ min: -1n, max: 10n ** 20n }).map(String), paramValue),
  };
  const wellNamed = fc
    .record(knownParams, { requiredKeys: [] })
    .map((q) => new URLSearchParams(q as Record<string, string>).toString());
  /** A query string: known parameters with hostile values, anything at all, or broken escapes. */
  const query = fc.oneof(
    { weight: 4, arbitrary: wellNamed },
    {
      weight: 2,
      arbitrary: fc.array(fc.tuple(paramName, paramValue), { maxLength: 5 }).map((pairs) => {
        const p = new URLSearchParams();
        for (const [k, v] of pairs) p.append(k, v);
        return p.toString();
      }),
    },
    {
      weight: 1,
      arbitrary: fc
        .array(
          fc.tuple(
            fc.constantFrom('limit', 'cursor', 'status', 'updatedSince', '%', '%zz', '%00', '%C0%AE', 'a%'),
            fc.constantFrom('%', '%zz', '%FF', '%00', '%E0%A4%A', '%2e%2e', '1%20', '&&', '=', '+', '%2B1'),
          ),
          { maxLength: 4 },
        )
        .map((pairs) => pairs.map(([k, v]) => `${k}=${v}`).join('&')),
    },
  );
  const id = fc.oneof(
    fc.constantFrom(
      'q-0',
      'q-1',
      'q-2',
      'q-3',
      'nope',
      '..',
      '.',
      '%2e%2e',
      '%2F',
      '%00',
      'q-0%00',
      'Q-0',
      'q-0 ',
      'q-0%20',
    ),
    fc.string({ maxLength: 40 }).map(encodeURIComponent),
    fc.string({ unit: 'binary', maxLength: 20 }).map(encodeURIComponent),
    fc.nat({ max: 10_000 }).map((n) => 'a'.repeat(n)),
  );
  const known = fc.constantFrom('q-0', 'q-1', 'q-2', 'q-3', 'q-4', 'q-5');
  // Mostly real endpoints, so the hostile query strings reach the validation behind them.
  const path = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom('/v1/promotions', '/v1/campaigns') },
    { weight: 4, arbitrary: known.map((i) => `/v1/promotions/${i}/events`) },
    { weight: 1, arbitrary: known.map((i) => `/v1/promotions/${i}`) },
    { weight: 1, arbitrary: fc.constantFrom('/v1/machines', '/v1/promotions/', '/v1//promotions') },
    { weight: 1, arbitrary: id.map((i) => `/v1/promotions/${i}`) },
    { weight: 1, arbitrary: id.map((i) => `/v1/promotions/${i}/events`) },
    { weight: 1, arbitrary: id.map((i) => `/v1/campaigns/${i}/events`) },
    { weight: 1, arbitrary: id.map((i) => `/v1/machines/${i}`) },
    { weight: 1, arbitrary: id.map((i) => `/v1/${i}`) },
    { weight: 1, arbitrary: id.map((i) => `/v1/${i}/${i}/events`) },
  );
  const keyName = fc.constantFrom(
    'producer',
    'producer2',
    'merchant',
    'otherMerchant',
    'admin',
  ) as fc.Arbitrary<keyof Harness['keys']>;

  it(`${RUNS} hostile reads: never a 5xx, always JSON, never another merchant's data, nothing changes`, async () => {
    const before = await state();
    const statuses: Record<number, number> = {};
    await fc.assert(
      fc.asyncProperty(path, query, keyName, async (p, q, who) => {
        const url = `${h.url}${p}${q ? `?${q}` : ''}`;
        const res = await fetch(url, { headers: { authorization: `Bearer ${h.keys[who]}` } });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        const text = await res.text();
        expect(res.status, `${url} -> ${text.slice(0, 300)}`).toBeLessThan(500);
        expect([200, 400, 404, 414, 431]).toContain(res.status);
        // Node itself refuses request lines and headers over its limit, before the app sees them.
        if (res.status === 431 || res.status === 414) return;
        expect(res.headers.get('content-type') ?? '').toMatch(/^application\/(problem\+)?json/);
        const body = JSON.parse(text) as Record<string, unknown>;
        if (res.status !== 200) {
          expect(body).toMatchObject({ status: res.status });
          return;
        }
        if (who === 'merchant') {
          // Whatever got through is the merchant's own: its entities, or its entity's log.
          const pathname = new URL(url).pathname;
          const log = /^\/v1\/[^/]+\/([^/]+)\/events$/.exec(pathname);
          if (log) expect(mine.has(decodeURIComponent(log[1]!))).toBe(true);
          else if (Array.isArray(body.items)) {
            for (const item of body.items as Array<Record<string, unknown>>)
              if ('lastEvent' in item) expect(item.merchantId).toBe('m-1');
          } else if ('lastEvent' in body) expect(body.merchantId).toBe('m-1');
        }
      }),
      { numRuns: RUNS, endOnFailure: true },
    );
    expect(await state()).toEqual(before);
    console.log(`fuzz-query statuses: ${JSON.stringify(statuses)}`);
  });

  // Inputs the fuzzing found out of the database's range: each once answered 500.
  describe('inputs out of the database range are bad requests, not server errors', () => {
    const cursorOf = (at: string, id: string): string =>
      Buffer.from(JSON.stringify([at, id])).toString('base64url');
    for (const [name, path] of [
      ['updatedSince in year 0', '/v1/promotions?updatedSince=0000-01-01T00:00:00Z'],
      [
        'a cursor dated before year 1',
        `/v1/promotions?cursor=${cursorOf('-000001-01-01T00:00:00.000Z', 'q-0')}`,
      ],
      [
        'a cursor whose id holds a NUL character',
        `/v1/promotions?cursor=${cursorOf('2026-01-01T00:00:00.000Z', 'q\u0000')}`,
      ],
    ] as const) {
      it(`${name} is refused with 400`, async () => {
        const res = await h.request(path, { key: h.keys.admin });
        expect(res.status).toBe(400);
      });
    }
  });
});
