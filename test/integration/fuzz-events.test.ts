import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { splitBody } from '../../src/domain/event-schema.ts';
import { useHarness } from '../helpers/harness.ts';

/**
 * Hostile bodies on POST /v1/events: never a 5xx, and an input the contract rejects never
 * reaches the queue or the database. The contract itself (the domain validator) is the
 * oracle: the API accepts exactly the bodies it accepts.
 */

const RUNS = 1000;

interface Sent {
  /** Events of bodies answered 202. */
  accepted: number;
  acceptedEntities: Set<string>;
  statuses: Record<number, number>;
}

describe('fuzzing POST /v1/events', () => {
  const h = useHarness({ env: { RATE_LIMIT_PER_SECOND: '0' } });
  const sent: Sent = { accepted: 0, acceptedEntities: new Set(), statuses: {} };

  /** Whether the contract accepts a parsed body, for the producer key (source test-src, all machines). */
  const valid = (body: unknown): { ok: true; events: Array<{ entityId: string }> } | { ok: false } => {
    try {
      const { raw, indexed } = splitBody(body);
      const { inputs } = h.service.registry.validate(raw, 'test-src', indexed);
      return { ok: true, events: inputs };
    } catch {
      return { ok: false };
    }
  };

  /** Sends one body and checks the answer against the oracle. */
  const post = async (text: string | Uint8Array, contentType = 'application/json'): Promise<void> => {
    const res = await fetch(`${h.url}/v1/events`, {
      method: 'POST',
      headers: { authorization: `Bearer ${h.keys.producer}`, 'content-type': contentType },
      body: text,
    });
    sent.statuses[res.status] = (sent.statuses[res.status] ?? 0) + 1;
    const answer = await res.text();
    const shown = typeof text === 'string' ? text.slice(0, 200) : `${text.length} bytes`;
    expect(res.status, `${shown} -> ${answer.slice(0, 300)}`).toBeLessThan(500);
    let parsed: { ok: true; value: unknown } | { ok: false } = { ok: false };
    if (typeof text === 'string' && contentType === 'application/json') {
      try {
        parsed = { ok: true, value: JSON.parse(text) };
      } catch {
        // not JSON: must be refused
      }
    }
    const verdict = parsed.ok ? valid(parsed.value) : { ok: false as const };
    if (res.status === 202) {
      expect(verdict.ok, `accepted a body the contract rejects: ${shown}`).toBe(true);
      if (verdict.ok) {
        sent.accepted += verdict.events.length;
        for (const e of verdict.events) sent.acceptedEntities.add(e.entityId);
      }
    } else {
      expect([400, 413, 415]).toContain(res.status);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      if (parsed.ok)
        expect(verdict.ok, `refused a body the contract accepts: ${shown} -> ${answer}`).toBe(false);
    }
  };

  /** A JSON object written as text, so keys like `__proto__` really are own keys on the wire. */
  const objectText = (pairs: Array<[string, string]>): string =>
    `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;

  const hostileKey = fc.oneof(
    fc.constantFrom(
      '__proto__',
      'constructor',
      'prototype',
      'toString',
      'hasOwnProperty',
      'source',
      'wait',
      'machine',
      'entityId',
      'type',
      'eventId',
      'version',
      'merchantId',
      'occurredAt',
      'data',
      'events',
    ),
    fc.string({ maxLength: 12 }),
    fc.string({ unit: 'binary', maxLength: 6 }),
  );
  const bigNumberText = fc.constantFrom(
    '9007199254740991',
    '9007199254740992',
    '9007199254740993',
    '18446744073709551616',
    '123456789012345678901234567890',
    '1e308',
    '1e400',
    '-1e400',
    '-0',
    '0.1',
    '1.0',
    '1e2',
    '-1',
    '5e-324',
  );
  const jsonText = fc.oneof(
    { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: bigNumberText },
    { weight: 1, arbitrary: fc.nat({ max: 200_000 }).map((n) => JSON.stringify('x'.repeat(n))) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 50 }).map((s) => JSON.stringify(s)) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(hostileKey, fc.jsonValue({ maxDepth: 2 }))
        .map(([k, v]) => objectText([[k, JSON.stringify(v)]])),
    },
  );

  it(`${RUNS} arbitrary JSON bodies`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), async (v) => post(JSON.stringify(v))),
      { numRuns: RUNS, endOnFailure: true },
    );
  });

  it(`${RUNS} objects with hostile keys: __proto__, constructor, source, duplicates, unicode`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(hostileKey, jsonText), { maxLength: 10 }), async (pairs) =>
        post(objectText(pairs)),
      ),
      { numRuns: RUNS, endOnFailure: true },
    );
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  /** A valid event of a served machine. */
  const validEvent = fc
    .record({
      machine: fc.constantFrom('promotion', 'campaign'),
      entityId: fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
      pick: fc.nat(),
      eventId: fc.option(fc.stringMatching(/^[\x21-\x7e]{1,30}$/), { nil: undefined }),
      version: fc.option(fc.nat({ max: 1_000_000 }), { nil: undefined }),
      merchantId: fc.option(fc.constantFrom('m-1', 'm-2'), { nil: undefined }),
      data: fc.option(
        fc.dictionary(
          fc.constantFrom('title', 'discount', 'budget'),
          fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean(), fc.constant(null)),
          { maxKeys: 3 },
        ),
        { nil: undefined },
      ),
    })
    .map(({ machine, pick, ...rest }) => {
      const types = h.service.registry.get(machine)!.analysis.events.map((e) => e.type);
      const e: Record<string, unknown> = { machine, type: types[pick % types.length]!, ...rest };
      if (machine === 'campaign' && e.version === undefined) e.version = pick % 1000;
      for (const k of Object.keys(e)) if (e[k] === undefined) delete e[k];
      return e;
    });

  /** One change that may or may not break an event. */
  const mutation = fc.oneof(
    fc.record({ op: fc.constant('delete' as const), key: hostileKey }),
    fc.record({ op: fc.constant('set' as const), key: hostileKey, value: jsonText }),
    fc.record({
      op: fc.constant('data' as const),
      key: fc.oneof(hostileKey, fc.constant('__proto__'), fc.constant('constructor')),
      value: jsonText,
    }),
  );

  const mutate = (
    e: Record<string, unknown>,
    ms: Array<{ op: 'delete' | 'set' | 'data'; key: string; value?: string }>,
  ): string => {
    const pairs: Array<[string, string]> = Object.entries(e).map(([k, v]) => [k, JSON.stringify(v)]);
    for (const m of ms) {
      if (m.op === 'delete') {
        const i = pairs.findIndex(([k]) => k === m.key);
        if (i >= 0) pairs.splice(i, 1);
      } else if (m.op === 'set') {
        const i = pairs.findIndex(([k]) => k === m.key);
        if (i >= 0) pairs[i] = [m.key, m.value!];
        else pairs.push([m.key, m.value!]);
      } else {
        const i = pairs.findIndex(([k]) => k === 'data');
        const data = i >= 0 ? pairs[i]![1] : '{}';
        const inner =
          data.startsWith('{') && data !== '{}'
            ? `${data.slice(0, -1)},${JSON.stringify(m.key)}:${m.value}}`
            : objectText([[m.key, m.value!]]);
        if (i >= 0) pairs[i] = ['data', inner];
        else pairs.push(['data', inner]);
      }
    }
    return objectText(pairs);
  };

  it(`${RUNS} mutated valid events, alone and in batches`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(validEvent, fc.array(mutation, { maxLength: 3 })), { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        async (items, batch) => {
          const texts = items.map(([e, ms]) => mutate(e, ms));
          await post(batch || texts.length > 1 ? `{"events":[${texts.join(',')}]}` : texts[0]!);
        },
      ),
      { numRuns: RUNS, endOnFailure: true },
    );
  });

  it(`${RUNS} malformed texts: deep nesting, huge strings, broken JSON, bad bytes, wrong media types`, async () => {
    const nested = fc
      .tuple(fc.nat({ max: 100_000 }), fc.constantFrom('[', '{"a":', '{"events":['))
      .map(([n, open]) => {
        const close = open === '[' ? ']' : open === '{"a":' ? '}' : ']}';
        return open.repeat(n) + '1' + close.repeat(n);
      });
    const broken = fc.tuple(validEvent, fc.nat(), fc.string({ maxLength: 3 })).map(([e, at, junk]) => {
      const t = JSON.stringify(e);
      const i = at % (t.length + 1);
      return t.slice(0, i) + junk + t.slice(i + 1);
    });
    const huge = fc
      .tuple(
        validEvent,
        fc.constantFrom('entityId', 'eventId', 'type', 'machine', 'merchantId'),
        fc.nat({ max: 300_000 }),
      )
      .map(([e, k, n]) => JSON.stringify({ ...e, [k]: 'a'.repeat(n) }));
    const hugeData = fc
      .tuple(validEvent, fc.nat({ max: 40_000 }), fc.nat({ max: 2000 }))
      .map(([e, len, keys]) =>
        JSON.stringify({
          ...e,
          data: Object.fromEntries(
            Array.from({ length: keys }, (_, i) => [`f${i}`, 'x'.repeat(len / Math.max(keys, 1))]),
          ),
        }),
      );
    const manyEvents = fc
      .tuple(validEvent, fc.integer({ min: 990, max: 1010 }))
      .map(([e, n]) =>
        JSON.stringify({ events: Array.from({ length: n }, (_, i) => ({ ...e, entityId: `many-${i}` })) }),
      );
    const text = fc.oneof(
      nested,
      broken,
      huge,
      hugeData,
      manyEvents,
      fc.constantFrom(
        '',
        ' ',
        'null',
        'NaN',
        'undefined',
        '\ufeff{}',
        '{"events":[]}',
        '{"events":null}',
        '[]',
        '"x"',
        '1e400',
      ),
      fc.string({ unit: 'binary', maxLength: 200 }),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          {
            weight: 8,
            arbitrary: text.map((t) => ({ body: t as string | Uint8Array, type: 'application/json' })),
          },
          {
            weight: 1,
            arbitrary: fc
              .uint8Array({ maxLength: 300 })
              .map((b) => ({ body: b as string | Uint8Array, type: 'application/json' })),
          },
          {
            weight: 1,
            arbitrary: fc
              .tuple(
                validEvent,
                fc.constantFrom(
                  'text/plain',
                  'application/x-www-form-urlencoded',
                  'application/json; charset=latin1',
                  'application/json; charset=utf-16',
                  'multipart/form-data; boundary=x',
                  '',
                ),
              )
              .map(([e, type]) => ({ body: JSON.stringify(e) as string | Uint8Array, type })),
          },
        ),
        async ({ body, type }) => post(body, type),
      ),
      { numRuns: RUNS, endOnFailure: true },
    );
  });

  it('no refused body changed anything: the queue and the log hold exactly the accepted events', async () => {
    await h.drain(120_000);
    const failed = await h.queue.getFailed(0, 10);
    expect(failed.map((j) => j.failedReason)).toEqual([]);
    const log = await h.service.db.pool.query<{ n: string }>('SELECT count(*) AS n FROM event_log');
    expect(Number(log.rows[0]!.n)).toBe(sent.accepted);
    const entities = await h.service.db.pool.query<{ entity_id: string }>('SELECT entity_id FROM entity');
    for (const r of entities.rows) expect(sent.acceptedEntities.has(r.entity_id)).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    console.log(`fuzz-events: ${JSON.stringify({ accepted: sent.accepted, statuses: sent.statuses })}`);
  });
});
