import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createMachine } from 'xstate';
import {
  analyzeMachine,
  mergeEvent,
  MachineRegistry,
  orderingKey,
  PromosyncError,
  unpackKey,
  type EntityState,
  type EventInput,
} from '../../src/domain/index.ts';
import { machines } from '../../machines/index.ts';

/**
 * A promotion that can be switched off and on again: ACTIVE -deactivate-> INACTIVE
 * -activate-> ACTIVE is a cycle, which the ranking alone cannot order.
 */
const toggle = (meta: Record<string, unknown>) =>
  createMachine({
    id: 'toggle',
    initial: 'CREATED',
    meta: { creationEvent: 'create', ...meta },
    states: {
      CREATED: { on: { activate: 'ACTIVE', delete: 'DELETED' } },
      ACTIVE: { on: { deactivate: 'INACTIVE', delete: 'DELETED' } },
      INACTIVE: { on: { activate: 'ACTIVE', delete: 'DELETED' } },
      DELETED: { type: 'final' },
    },
  });

const ranksOf = (meta: Record<string, unknown>) =>
  Object.fromEntries(analyzeMachine('toggle', toggle(meta)).events.map((e) => [e.type, e.rank]));

const ev = (type: string, version?: number, eventId?: string): EventInput => ({
  machine: 'toggle',
  entityId: 'p-1',
  type,
  ...(version !== undefined ? { version } : {}),
  ...(eventId !== undefined ? { eventId } : {}),
});

/** The row the events lead to when applied one by one, as the worker does. */
function applyAll(registry: MachineRegistry, inputs: EventInput[]): { row: EntityState; outcomes: string[] } {
  let row: EntityState | undefined;
  const seen = new Map<string, string>();
  const outcomes: string[] = [];
  for (const e of registry.prepare(inputs, 'src', true)) {
    const r = mergeEvent(row, e, seen, (a, b) => registry.isReachable('toggle', a, b));
    row = r.state;
    outcomes.push(r.outcome);
  }
  return { row: row!, outcomes };
}

describe('a cycle without a resolution', () => {
  it('is an error that names the cycle and how to break it', () => {
    const a = analyzeMachine('toggle', toggle({}));
    expect(a.ok).toBe(false);
    const cycle = a.diagnostics.find((d) => d.code === 'cycle')!;
    expect(cycle.level).toBe('error');
    expect(cycle.cycle).toEqual(['activate', 'deactivate']);
    expect(cycle.message).toContain('INACTIVE -activate-> ACTIVE -deactivate-> INACTIVE');
    expect(cycle.message).toMatch(/meta\.ranks.*meta\.ordering = "version"/);
    expect(() => MachineRegistry.from({ toggle: toggle({}) })).toThrow(/toggle: cycle INACTIVE/);
  });
});

describe('rank overrides (meta.ranks)', () => {
  const meta = { ranks: { deactivate: 1, activate: 2 } };

  it('break the cycle and report the precedence they drop as a warning', () => {
    const a = analyzeMachine('toggle', toggle(meta));
    expect(a.ok).toBe(true);
    expect(a.diagnostics).toEqual([
      expect.objectContaining({
        level: 'warning',
        code: 'override_drops_precedence',
        event: 'activate',
        message: expect.stringContaining('a late "deactivate" is treated as older than "activate"'),
      }),
    ]);
    expect(ranksOf(meta)).toEqual({ create: 1, deactivate: 2, activate: 3, delete: 4 });
  });

  it('decide the direction: the reverse override ranks deactivate above activate', () => {
    const reverse = { ranks: { activate: 1, deactivate: 2 } };
    expect(ranksOf(reverse)).toEqual({ create: 1, activate: 2, deactivate: 3, delete: 4 });
    const [w] = analyzeMachine('toggle', toggle(reverse)).diagnostics;
    expect(w).toMatchObject({ level: 'warning', code: 'override_drops_precedence', event: 'deactivate' });
  });

  it('only order the events they name: the rest keep the machine’s precedence', () => {
    // delete can follow either, so it stays above both although the override does not name it.
    const r = ranksOf(meta);
    expect(r.delete).toBeGreaterThan(r.activate!);
    expect(r.delete).toBeGreaterThan(r.deactivate!);
    expect(r.create).toBeLessThan(r.deactivate!);
  });

  it('are stable: the same definition gives the same ranks on every run', () => {
    const first = ranksOf(meta);
    for (let i = 0; i < 5; i++) expect(ranksOf(meta)).toEqual(first);
  });

  it('that contradict the machine outside a cycle are errors', () => {
    const a = analyzeMachine('toggle', toggle({ ranks: { deactivate: 1, activate: 2, delete: 0 } }));
    expect(a.ok).toBe(false);
    const bad = a.diagnostics.filter((d) => d.code === 'bad_override');
    expect(bad.map((d) => d.message)).toEqual(
      expect.arrayContaining([expect.stringContaining('"activate" always happens before "delete"')]),
    );
  });

  it('that tie, or name an event the machine does not have, are errors', () => {
    const tie = analyzeMachine('toggle', toggle({ ranks: { deactivate: 1, activate: 1 } }));
    expect(tie.ok).toBe(false);
    expect(tie.diagnostics.map((d) => d.message)).toContainEqual(expect.stringContaining('the same rank 1'));
    const unknown = analyzeMachine('toggle', toggle({ ranks: { deactivate: 1, activate: 2, pause: 3 } }));
    expect(unknown.ok).toBe(false);
    expect(unknown.diagnostics).toContainEqual(
      expect.objectContaining({ code: 'bad_override', event: 'pause', level: 'error' }),
    );
  });

  it('reach the ordering key: activate outranks deactivate whatever the versions', () => {
    const registry = MachineRegistry.from({ toggle: toggle(meta) });
    const [act, deact] = registry.prepare([ev('activate', 1), ev('deactivate', 1_000_000)], 'src', true);
    expect(act!.key).toBe(orderingKey('rank', 3, 1));
    expect(deact!.key).toBe(orderingKey('rank', 2, 1_000_000));
    expect(act!.key > deact!.key).toBe(true);
    expect(unpackKey('rank', act!.key).rank).toBe(3);
  });

  it('keep a switched-off promotion active: a deactivate after an activate is stale, even in order', () => {
    // The trade-off overrides make deliberately: the row stops following the producer
    // through repeated cycles. Version ordering (below) follows it instead.
    const registry = MachineRegistry.from({ toggle: toggle(meta) });
    const { row, outcomes } = applyAll(registry, [
      ev('create', 1),
      ev('activate', 2),
      ev('deactivate', 3),
      ev('activate', 4),
      ev('deactivate', 5),
    ]);
    // The second activate wins over the first by its version; both deactivates lose by rank.
    expect(outcomes).toEqual(['applied', 'applied', 'stale', 'applied', 'stale']);
    expect(row.status).toBe('ACTIVE');
  });

  it('still make the row independent of the arrival order', () => {
    const registry = MachineRegistry.from({ toggle: toggle(meta) });
    const history = [ev('create', 1), ev('activate', 2), ev('deactivate', 3), ev('delete', 4)];
    const inOrder = applyAll(registry, history).row;
    fc.assert(
      fc.property(fc.shuffledSubarray(history, { minLength: history.length }), (order) => {
        expect(applyAll(registry, order).row).toEqual(inOrder);
      }),
    );
    expect(inOrder.status).toBe('DELETED');
  });
});

describe('version ordering (meta.ordering = "version")', () => {
  const registry = MachineRegistry.from({ toggle: toggle({ ordering: 'version' }) });

  it('accepts the cycle and says it is ordered by version', () => {
    const a = registry.get('toggle')!.analysis;
    expect(a.ok).toBe(true);
    expect(a.ordering).toBe('version');
    expect(a.diagnostics).toEqual([
      expect.objectContaining({ level: 'info', code: 'cycle', cycle: ['activate', 'deactivate'] }),
    ]);
  });

  it('rejects events without a version, naming the field', () => {
    let err: unknown;
    try {
      registry.prepare([ev('activate', 3), ev('deactivate')], 'src', true);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PromosyncError);
    expect((err as PromosyncError).code).toBe('invalid_event');
    expect((err as PromosyncError).problems).toEqual([
      { index: 1, path: 'version', message: 'machine "toggle" is ordered by version: version is required' },
    ]);
  });

  it('orders by version first and breaks ties between types by rank', () => {
    const [a, d, sameV] = registry.prepare(
      [ev('activate', 7), ev('deactivate', 8), ev('deactivate', 7)],
      'src',
      true,
    );
    const rank = (t: string) => registry.get('toggle')!.events.get(t)!.rank;
    expect(a!.key).toBe(7n * 512n + BigInt(rank('activate')));
    expect(d!.key > a!.key).toBe(true);
    expect(sameV!.key > a!.key).toBe(rank('deactivate') > rank('activate'));
    expect(unpackKey('version', d!.key).rank).toBe(rank('deactivate'));
  });

  it('keeps the largest keys below 2^63', () => {
    const key = orderingKey('version', 511, Number.MAX_SAFE_INTEGER);
    expect(key < 2n ** 63n).toBe(true);
    expect(unpackKey('version', key).rank).toBe(511);
  });

  it('follows the producer through repeated cycles, in any arrival order', () => {
    const history = [
      ev('create', 1, 'e1'),
      ev('activate', 2, 'e2'),
      ev('deactivate', 3, 'e3'),
      ev('activate', 4, 'e4'),
      ev('deactivate', 5, 'e5'),
    ];
    const inOrder = applyAll(registry, history);
    expect(inOrder.outcomes).toEqual(['applied', 'applied', 'applied', 'applied', 'applied']);
    expect(inOrder.row).toMatchObject({ status: 'INACTIVE', lastEvent: 'deactivate', version: 5 });
    fc.assert(
      fc.property(
        fc.shuffledSubarray([...history, ...history], { minLength: history.length * 2 }),
        (delivered) => {
          expect(applyAll(registry, delivered).row).toEqual(inOrder.row);
        },
      ),
    );
  });

  it('applies the campaign machine of the registry the same way', () => {
    const campaigns = MachineRegistry.from(machines);
    const info = campaigns.get('campaign')!;
    expect(info.analysis.ordering).toBe('version');
    expect(info.analysis.ok).toBe(true);
    const [resume, pause] = campaigns.prepare(
      [
        { machine: 'campaign', entityId: 'c-1', type: 'resume', version: 10 },
        { machine: 'campaign', entityId: 'c-1', type: 'pause', version: 11 },
      ],
      'src',
      true,
    );
    expect(pause!.key > resume!.key).toBe(true);
    expect(pause!.target).toBe('PAUSED');
    expect(() =>
      campaigns.prepare([{ machine: 'campaign', entityId: 'c-1', type: 'pause' }], 'src', false),
    ).toThrow(PromosyncError);
  });
});
