import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { orderingKey, unpackKey } from '../../src/domain/ordering.ts';
import { MAX_RANK } from '../../src/domain/ranking.ts';

const rank = fc.integer({ min: 1, max: MAX_RANK });
const version = fc.option(fc.maxSafeNat(), { nil: undefined });
/** Versions near the edges, where packing mistakes show. */
const edgyVersion = fc.oneof(
  version,
  fc.constantFrom(0, 1, 2 ** 32, 2 ** 53 - 2, Number.MAX_SAFE_INTEGER),
  fc.integer({ min: Number.MAX_SAFE_INTEGER - 1000, max: Number.MAX_SAFE_INTEGER }),
);
const event = fc.record({ rank, version: edgyVersion });

const sign = (n: number | bigint): number => (n > 0 ? 1 : n < 0 ? -1 : 0);
const lexicographic = (a: [number, number], b: [number, number]): number =>
  sign(a[0] - b[0]) || sign(a[1] - b[1]);

const RUNS = { numRuns: 2000 };

describe('ordering keys', () => {
  it('rank mode: keys compare like (rank, version) lexicographically', () => {
    fc.assert(
      fc.property(event, event, (a, b) => {
        const ka = orderingKey('rank', a.rank, a.version);
        const kb = orderingKey('rank', b.rank, b.version);
        expect(sign(ka - kb)).toBe(lexicographic([a.rank, a.version ?? 0], [b.rank, b.version ?? 0]));
      }),
      RUNS,
    );
  });

  it('version mode: keys compare like (version, rank) lexicographically', () => {
    fc.assert(
      fc.property(event, event, (a, b) => {
        const ka = orderingKey('version', a.rank, a.version);
        const kb = orderingKey('version', b.rank, b.version);
        expect(sign(ka - kb)).toBe(lexicographic([a.version ?? 0, a.rank], [b.version ?? 0, b.rank]));
      }),
      RUNS,
    );
  });

  it('a missing version orders like version 0', () => {
    fc.assert(
      fc.property(rank, (r) => {
        expect(orderingKey('rank', r, undefined)).toBe(orderingKey('rank', r, 0));
        expect(orderingKey('version', r, undefined)).toBe(orderingKey('version', r, 0));
      }),
    );
  });

  it('in rank mode the highest version of a rank stays below the lowest version of the next rank', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_RANK - 1 }), (r) => {
        expect(orderingKey('rank', r, Number.MAX_SAFE_INTEGER)).toBeLessThan(orderingKey('rank', r + 1, 0));
      }),
    );
  });

  it('every key fits a signed 64-bit integer (a Postgres bigint)', () => {
    fc.assert(
      fc.property(event, fc.constantFrom('rank' as const, 'version' as const), (e, mode) => {
        const k = orderingKey(mode, e.rank, e.version);
        expect(k).toBeGreaterThan(0n);
        expect(k).toBeLessThan(2n ** 63n);
        expect(BigInt.asIntN(64, k)).toBe(k);
      }),
      RUNS,
    );
  });

  it('rank and version can be read back from a key, in both modes', () => {
    fc.assert(
      fc.property(event, (e) => {
        expect(unpackKey('rank', orderingKey('rank', e.rank, e.version))).toEqual({
          rank: e.rank,
          version: e.version ?? 0,
        });
        expect(unpackKey('version', orderingKey('version', e.rank, e.version))).toEqual({
          rank: e.rank,
          version: e.version ?? 0,
        });
      }),
      RUNS,
    );
  });

  it('the packing matches the documented layout', () => {
    expect(orderingKey('rank', 1, 0)).toBe(2n ** 53n);
    expect(orderingKey('rank', 3, 17)).toBe(3n * 2n ** 53n + 17n);
    expect(orderingKey('version', 3, 17)).toBe(17n * 512n + 3n);
    expect(orderingKey('rank', MAX_RANK, Number.MAX_SAFE_INTEGER)).toBe(2n ** 62n - 1n);
  });
});
