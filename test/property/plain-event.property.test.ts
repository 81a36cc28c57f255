import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { eventSchema, MAX_DATA_BYTES, plainEvent } from '../../src/domain/index.ts';

// plainEvent is a shortcut around eventSchema for well-formed events. It may decline anything
// (the schema then decides), but what it accepts the schema must accept, unchanged.

const nasty = fc.constantFrom(
  '',
  ' ',
  'a b',
  '__proto__',
  'constructor',
  '\u0000',
  '\ud800',
  'é',
  '9abc',
  'x'.repeat(64),
  'x'.repeat(65),
  'x'.repeat(128),
  'x'.repeat(129),
  '2026-11-21T10:00:00Z',
  '2026-13-21T10:00:00Z',
  '0000-01-01T00:00:00Z',
  '2026-11-21T10:00:00+02:00',
  '2026-11-21 10:00:00',
);
const text = fc.oneof(fc.string({ maxLength: 140 }), fc.string({ unit: 'binary', maxLength: 20 }), nasty);
const num = fc.oneof(
  fc.integer(),
  fc.double(),
  fc.constantFrom(-0, -1, 0.5, 2 ** 53 - 1, 2 ** 53, Number.MAX_VALUE, NaN, Infinity),
);
const scalar = fc.oneof(text, num, fc.boolean(), fc.constant(null));
const value = fc.oneof(
  scalar,
  fc.array(scalar, { maxLength: 2 }),
  fc.dictionary(text, scalar, { maxKeys: 2 }),
);
const data = fc.oneof(
  fc.dictionary(fc.oneof(text, fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,5}$/)), value, { maxKeys: 4 }),
  fc.dictionary(fc.stringMatching(/^[a-z]{1,8}$/), fc.string({ maxLength: 8000 }), { maxKeys: 4 }),
  value,
);
const id = fc.oneof(fc.stringMatching(/^[A-Za-z0-9._:-]{1,130}$/), text);

/** Mostly `valid`, sometimes `odd`. */
const mostly = <T, U>(valid: fc.Arbitrary<T>, odd: fc.Arbitrary<U>): fc.Arbitrary<T | U> =>
  fc.oneof({ arbitrary: valid, weight: 6 }, { arbitrary: odd, weight: 1 });
const absent = Symbol('absent');
const maybe = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | typeof absent> =>
  fc.oneof({ arbitrary: a, weight: 3 }, { arbitrary: fc.constant(absent), weight: 1 });

/** Valid-looking events, each field now and then replaced by something odd or left out. */
const event = fc
  .record({
    machine: mostly(fc.constant('promotion'), fc.oneof(text, num)),
    entityId: mostly(fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/), fc.oneof(id, num)),
    type: mostly(fc.constant('activate'), text),
    eventId: maybe(mostly(fc.stringMatching(/^[\x21-\x7e]{1,128}$/), fc.oneof(text, num))),
    version: maybe(mostly(fc.nat(), fc.oneof(num, text))),
    merchantId: maybe(mostly(fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/), fc.oneof(id, fc.constant(null)))),
    occurredAt: maybe(
      mostly(
        fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
        text,
      ),
    ),
    data: maybe(
      mostly(
        fc.dictionary(
          fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/),
          fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)),
          { maxKeys: 4 },
        ),
        data,
      ),
    ),
    extra: fc.oneof({ arbitrary: fc.constant(absent), weight: 12 }, { arbitrary: value, weight: 1 }),
  })
  .map((o) => {
    const out = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== absent));
    return JSON.parse(JSON.stringify(out)) as unknown;
  });

describe('the plain-event shortcut of the event schema', () => {
  it('accepts only what the schema accepts, and returns what the schema returns', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.oneof({ arbitrary: event, weight: 4 }, value, fc.anything()), (item) => {
        const plain = plainEvent(item);
        if (plain === undefined) return;
        accepted += 1;
        const parsed = eventSchema.safeParse(item);
        expect(parsed.success).toBe(true);
        expect(plain).toEqual(parsed.data);
      }),
      { numRuns: 20_000 },
    );
    // Most generated events are close to valid: the shortcut must have been taken often.
    expect(accepted).toBeGreaterThan(2_000);
  });

  it('takes ordinary events, and declines own __proto__ keys and oversized data', () => {
    const ok = {
      machine: 'promotion',
      entityId: 'promo-1',
      type: 'activate',
      eventId: 'e-1',
      version: 3,
      merchantId: 'm-1',
      occurredAt: '2026-11-21T10:00:00Z',
      data: { title: '10% off', discount: 10, active: true, note: null },
    };
    expect(plainEvent(ok)).toBe(ok);
    expect(
      plainEvent(JSON.parse('{"machine":"promotion","entityId":"p","type":"create","__proto__":{}}')),
    ).toBeUndefined();
    expect(plainEvent({ ...ok, data: JSON.parse('{"__proto__":1}') })).toBeUndefined();
    const big = { ...ok, data: { a: 'x'.repeat(MAX_DATA_BYTES) } };
    expect(plainEvent(big)).toBeUndefined();
    expect(eventSchema.safeParse(big).success).toBe(false);
    const nearly = { ...ok, data: { a: 'x'.repeat(MAX_DATA_BYTES - 10) } };
    expect(plainEvent(nearly)).toBe(nearly);
  });
});
