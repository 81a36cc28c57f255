import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { applyLocks, laneOf } from '../../src/queue/worker.ts';
import { partitionOf } from '../../src/queue/partitions.ts';
import type { BatchEvent } from '../../src/store/apply.ts';

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

describe('apply locks', () => {
  const item = (entityId: string) => ({
    event: { machine: 'promotion', entityId } as BatchEvent['event'],
    jobId: null,
  });

  it('one queue: a lane takes its own lock, whatever its entities', () => {
    expect(applyLocks([item('a'), item('b')], 1, 1)).toEqual([1]);
  });

  it("partitioned: one lock per partition of the batch's entities, for the lane, sorted", () => {
    const ids = Array.from({ length: 200 }, (_, i) => `p-${i}`);
    const locks = applyLocks(ids.map(item), 3, 4);
    const expected = [...new Set(ids.map((id) => partitionOf('promotion', id, 4) * 1024 + 3))].sort(
      (a, b) => a - b,
    );
    expect(locks).toEqual(expected);
    expect(locks).toEqual([3, 1027, 2051, 3075]);
    // Two workers consuming different partitions never share a lock.
    const only0 = ids.filter((id) => partitionOf('promotion', id, 4) === 0).map(item);
    const only1 = ids.filter((id) => partitionOf('promotion', id, 4) === 1).map(item);
    expect(applyLocks(only0, 3, 4)).toEqual([3]);
    expect(applyLocks(only1, 3, 4)).toEqual([1027]);
  });
});
