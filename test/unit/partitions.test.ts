import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  groupByPartition,
  keySlot,
  parsePartitionList,
  partitionOf,
  queueNameOf,
  queueNamesOf,
} from '../../src/queue/partitions.ts';
import { laneOf } from '../../src/queue/worker.ts';

describe('queue partitions', () => {
  it('an entity always goes to the same partition, in range', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.string({ minLength: 1, maxLength: 128 }),
        fc.integer({ min: 1, max: 1024 }),
        (m, id, k) => {
          const p = partitionOf(m, id, k);
          expect(p).toBe(partitionOf(m, id, k));
          expect(p).toBeGreaterThanOrEqual(0);
          expect(p).toBeLessThan(k);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('routing is stable across releases: known entities keep their partitions', () => {
    // Producers outside this package route with the same function: changing it moves entities.
    expect(['p-1', 'p-2', 'p-3', 'c-9'].map((id) => partitionOf('promotion', id, 6))).toEqual([3, 4, 5, 3]);
    expect(queueNamesOf('status-events', 6)).toEqual([
      'status-events-{p0.1}',
      'status-events-{p1.20}',
      'status-events-{p2.2}',
      'status-events-{p3.11}',
      'status-events-{p4.33}',
      'status-events-{p5.52}',
    ]);
  });

  it('spreads entities evenly over the partitions', () => {
    const counts = new Array<number>(6).fill(0);
    for (let i = 0; i < 60_000; i++) counts[partitionOf('promotion', `promo-${i}`, 6)]! += 1;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(600);
  });

  it("a partition's entities still spread over the worker's lanes", () => {
    for (const k of [2, 4, 6]) {
      const lanes = [0, 0];
      for (let i = 0; i < 20_000; i++) {
        if (partitionOf('promotion', `promo-${i}`, k) === 0)
          lanes[laneOf('promotion', `promo-${i}`, 2)]! += 1;
      }
      const n = lanes[0]! + lanes[1]!;
      for (const l of lanes) expect(Math.abs(l - n / 2)).toBeLessThan(n * 0.1);
    }
  });

  it('one partition keeps the plain queue name; several carry a hash tag each, on distinct masters', () => {
    expect(queueNameOf('status-events', 0, 1)).toBe('status-events');
    for (const k of [2, 3, 4, 6, 8, 16]) {
      const names = queueNamesOf('status-events', k);
      expect(names.every((n) => /\{[^}]+\}$/.test(n))).toBe(true);
      // All of a queue's keys share a slot; partition p's slot lies in the p-th share of the slots.
      names.forEach((n, p) => {
        const slot = keySlot(`bull:${n}:wait`);
        expect(keySlot(`bull:${n}:active`)).toBe(slot);
        expect(Math.floor((slot * k) / 16384)).toBe(p);
      });
    }
    expect(() => queueNameOf('status-events', 6, 6)).toThrow(/not in 0\.\.5/);
  });

  it('groups keep the items of each partition in order and say where each came from', () => {
    const items = Array.from({ length: 50 }, (_, i) => ({ machine: 'promotion', entityId: `e-${i}` }));
    const groups = groupByPartition(items, 4);
    expect(groups.map((g) => g.partition)).toEqual([...groups.map((g) => g.partition)].sort());
    const back = new Array<unknown>(items.length);
    for (const g of groups) g.items.forEach((it, j) => (back[g.at[j]!] = it));
    expect(back).toEqual(items);
    for (const g of groups)
      expect(g.items.every((x) => partitionOf(x.machine, x.entityId, 4) === g.partition)).toBe(true);
  });

  it('parses WORKER_PARTITIONS lists and refuses partitions that do not exist', () => {
    expect(parsePartitionList('0,2-3', 6)).toEqual([0, 2, 3]);
    expect(parsePartitionList(' 5 , 1-2,2 ', 6)).toEqual([1, 2, 5]);
    expect(() => parsePartitionList('0,6', 6)).toThrow(/partition 6 does not exist/);
    expect(() => parsePartitionList('3-1', 6)).toThrow(/backwards/);
  });
});
