import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { laneOf } from '../../src/queue/worker.ts';

describe('apply lanes', () => {
  it('an entity always belongs to the same lane, in range', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.string({ minLength: 1, maxLength: 128 }),
        fc.integer({ min: 1, max: 64 }),
        (m, id, n) => {
          const lane = laneOf(m, id, n);
          expect(lane).toBe(laneOf(m, id, n));
          expect(lane).toBeGreaterThanOrEqual(0);
          expect(lane).toBeLessThan(n);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('spreads entities evenly over the lanes', () => {
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 40_000; i++) counts[laneOf('promotion', `promo-${i}`, 4)]! += 1;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(600);
  });

  it('the same id in different machines may land in different lanes (entities are per machine)', () => {
    const lanes = new Set(['promotion', 'campaign', 'a', 'b', 'c', 'd'].map((m) => laneOf(m, 'x-1', 8)));
    expect(lanes.size).toBeGreaterThan(1);
  });
});
