import { describe, expect, it } from 'vitest';
import { attributesOf, mergeEvent, type EntityState, type Outcome } from '../../src/domain/merge.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import type { EventInput } from '../../src/domain/event-schema.ts';
import { orderingKey } from '../../src/domain/ordering.ts';
import { contentHash } from '../../src/domain/content-hash.ts';
import { machines } from '../../machines/index.ts';

const registry = MachineRegistry.from(machines);

type Options = Omit<Partial<EventInput>, 'type'>;
const promo = (type: string, opts: Options = {}): EventInput => ({
  machine: 'promotion',
  entityId: 'p-1',
  type,
  ...opts,
});

interface Step {
  outcome: Outcome;
  anomaly: boolean;
  state: EntityState | undefined;
}

/** Folds events one by one with the apply rule, as the reference for the SQL statement does. */
function fold(inputs: EventInput[], source = 'src'): { steps: Step[]; state: EntityState | undefined } {
  const seen = new Map<string, string>();
  let state: EntityState | undefined;
  const steps: Step[] = [];
  for (const input of inputs) {
    const [e] = registry.prepare([input], source, false);
    const r = mergeEvent(state, e!, seen, (a, b) => registry.isReachable(e!.machine, a, b));
    state = r.state;
    steps.push({ outcome: r.outcome, anomaly: r.anomaly, state });
  }
  return { steps, state };
}
const outcomes = (inputs: EventInput[]) => fold(inputs).steps.map((s) => s.outcome);

describe('status', () => {
  it('the first event creates the promotion in its target state', () => {
    const { steps, state } = fold([promo('create')]);
    expect(steps[0]!.outcome).toBe('applied');
    expect(state).toMatchObject({ status: 'CREATED', lastEvent: 'create', version: null, merchantId: null });
  });

  it('a first event may be any event: a promotion first heard of by its activate is ACTIVATED', () => {
    const { steps, state } = fold([promo('activate')]);
    expect(steps[0]).toMatchObject({ outcome: 'applied', anomaly: false });
    expect(state!.status).toBe('ACTIVATED');
  });

  it('a later event in the history moves the promotion on', () => {
    expect(outcomes([promo('create'), promo('activate'), promo('complete')])).toEqual([
      'applied',
      'applied',
      'applied',
    ]);
    expect(fold([promo('create'), promo('activate'), promo('complete')]).state!.status).toBe('COMPLETED');
  });

  it('a late activate after delete leaves the promotion DELETED', () => {
    const { steps, state } = fold([promo('create'), promo('delete'), promo('activate')]);
    expect(steps.map((s) => s.outcome)).toEqual(['applied', 'applied', 'stale']);
    expect(state).toMatchObject({ status: 'DELETED', lastEvent: 'delete' });
  });

  it('a create that arrives after the activate is stale', () => {
    const { steps, state } = fold([promo('activate'), promo('create')]);
    expect(steps[1]!.outcome).toBe('stale');
    expect(state!.status).toBe('ACTIVATED');
  });

  it('the same event twice without an eventId is a duplicate', () => {
    const { steps, state } = fold([promo('create'), promo('activate'), promo('activate')]);
    expect(steps[2]!.outcome).toBe('duplicate');
    expect(steps[2]!.state).toBe(steps[1]!.state);
    expect(state!.status).toBe('ACTIVATED');
  });

  it('among events of one type, the higher version wins', () => {
    expect(outcomes([promo('activate', { version: 1 }), promo('activate', { version: 2 })])).toEqual([
      'applied',
      'applied',
    ]);
    const late = fold([promo('activate', { version: 2 }), promo('activate', { version: 1 })]);
    expect(late.steps[1]!.outcome).toBe('stale');
    expect(late.state!.version).toBe(2);
  });

  it('the rank decides before the version: a complete with a low version still beats an activate', () => {
    const { steps, state } = fold([promo('activate', { version: 900 }), promo('complete', { version: 3 })]);
    expect(steps[1]!.outcome).toBe('applied');
    expect(state).toMatchObject({ status: 'COMPLETED', lastEvent: 'complete', version: 3 });
    expect(state!.key).toBe(orderingKey('rank', 3, 3));
  });

  it('in a version-ordered campaign, a newer pause beats an older resume', () => {
    const c = (type: string, version: number): EventInput => ({
      machine: 'campaign',
      entityId: 'c-1',
      type,
      version,
    });
    const { steps, state } = fold([c('create', 1), c('launch', 2), c('pause', 5), c('resume', 4)]);
    expect(steps.map((s) => s.outcome)).toEqual(['applied', 'applied', 'applied', 'stale']);
    expect(state).toMatchObject({ status: 'PAUSED', lastEvent: 'pause', version: 5 });
  });
});

describe('idempotency', () => {
  it('an eventId seen before with a different payload is a conflict and changes nothing', () => {
    const { steps, state } = fold([
      promo('create', { eventId: 'e-1', data: { title: 'first' } }),
      promo('delete', { eventId: 'e-1', data: { title: 'second' }, merchantId: 'm-1' }),
    ]);
    expect(steps[1]!.outcome).toBe('conflict');
    expect(state).toMatchObject({ status: 'CREATED', merchantId: null });
    expect(attributesOf(state!)).toEqual({ title: 'first' });
  });

  it('an eventId seen before with the same content is a duplicate, fields in any order', () => {
    const { steps } = fold([
      promo('create', { eventId: 'e-1', version: 2, data: { title: 'first', n: 1 } }),
      promo('create', { eventId: 'e-1', version: 2, data: { n: 1, title: 'first', gone: null } }),
      promo('create', { eventId: 'e-1', version: 2, data: { n: 2, title: 'first' } }),
    ]);
    expect(steps.map((s) => s.outcome)).toEqual(['applied', 'duplicate', 'conflict']);
  });

  it('eventIds are per source: the same eventId from another source is a new event', () => {
    const seen = new Map<string, string>();
    const [a] = registry.prepare([promo('create', { eventId: 'x' })], 'cashback', false);
    const [b] = registry.prepare([promo('activate', { eventId: 'x' })], 'sku', false);
    const reach = (f: string, t: string) => registry.isReachable('promotion', f, t);
    const first = mergeEvent(undefined, a!, seen, reach);
    // sku's key may write for cashback, the owner.
    expect(mergeEvent(first.state, { ...b!, mayWriteFor: ['cashback'] }, seen, reach).outcome).toBe(
      'applied',
    );
  });

  it('a duplicate of an event for a promotion never seen leaves no promotion behind', () => {
    const [e] = registry.prepare([promo('create', { eventId: 'e-1' })], 'src', false);
    const seen = new Map([['src\u0000e-1', contentHash(e!)]]);
    const r = mergeEvent(undefined, e!, seen, () => true);
    expect(r.outcome).toBe('duplicate');
    expect(r.state).toBeUndefined();
  });
});

describe('merchant', () => {
  it('the first event that carries a merchantId sets the owner', () => {
    const { state } = fold([promo('create'), promo('activate', { merchantId: 'm-1' })]);
    expect(state!.merchantId).toBe('m-1');
  });

  it('a stale event may still set a missing owner', () => {
    const { steps, state } = fold([promo('activate'), promo('create', { merchantId: 'm-1' })]);
    expect(steps[1]!.outcome).toBe('stale');
    expect(state).toMatchObject({ status: 'ACTIVATED', merchantId: 'm-1' });
  });

  it('an event naming another merchant is rejected and changes nothing', () => {
    const { steps, state } = fold([
      promo('create', { merchantId: 'm-1', data: { title: 'mine' } }),
      promo('delete', { merchantId: 'm-2', data: { title: 'theirs' } }),
    ]);
    expect(steps[1]!.outcome).toBe('rejected');
    expect(steps[1]!.state).toBe(steps[0]!.state);
    expect(state).toMatchObject({ status: 'CREATED', merchantId: 'm-1' });
    expect(attributesOf(state!)).toEqual({ title: 'mine' });
  });

  it('an event without a merchantId is accepted on an owned promotion', () => {
    expect(outcomes([promo('create', { merchantId: 'm-1' }), promo('activate')])).toEqual([
      'applied',
      'applied',
    ]);
  });

  it('the owner never changes once set', () => {
    const { state } = fold([
      promo('create', { merchantId: 'm-1' }),
      promo('activate', { merchantId: 'm-1' }),
      promo('complete', { merchantId: 'm-2' }),
    ]);
    expect(state).toMatchObject({ status: 'ACTIVATED', merchantId: 'm-1' });
  });
});

describe('attributes (per-field last writer wins by key)', () => {
  it('fields of a newer event replace older values, other fields stay', () => {
    const { state } = fold([
      promo('create', { data: { title: 'a', budget: 10 } }),
      promo('activate', { data: { title: 'b' } }),
    ]);
    expect(attributesOf(state!)).toEqual({ title: 'b', budget: 10 });
  });

  it('a stale event fills a field that nothing newer set, but cannot overwrite a newer one', () => {
    const { steps, state } = fold([
      promo('activate', { data: { title: 'new' } }),
      promo('create', { data: { title: 'old', budget: 5 } }),
    ]);
    expect(steps[1]!.outcome).toBe('stale');
    expect(state!.status).toBe('ACTIVATED');
    expect(attributesOf(state!)).toEqual({ title: 'new', budget: 5 });
    expect(state!.fields.budget).toMatchObject({ event: 'create', key: orderingKey('rank', 1, undefined) });
  });

  it('a null field means no change', () => {
    const { state } = fold([
      promo('create', { data: { title: 'kept' } }),
      promo('activate', { data: { title: null, channel: 'web' } }),
    ]);
    expect(attributesOf(state!)).toEqual({ title: 'kept', channel: 'web' });
  });

  it('an absent data object means no change', () => {
    const { state } = fold([promo('create', { data: { title: 'kept' } }), promo('activate')]);
    expect(attributesOf(state!)).toEqual({ title: 'kept' });
  });

  it('the field remembers the key, event and version that wrote it', () => {
    const { state } = fold([promo('activate', { version: 7, data: { title: 't' } })]);
    expect(state!.fields.title).toEqual({
      value: 't',
      key: orderingKey('rank', 2, 7),
      event: 'activate',
      version: 7,
    });
  });

  it('a duplicate does not write fields, even ones nothing has set', () => {
    const { state } = fold([
      promo('create', { eventId: 'e-1' }),
      promo('create', { eventId: 'e-1', data: { title: 'x' } }),
    ]);
    expect(attributesOf(state!)).toEqual({});
  });

  it('a rejected event does not write fields', () => {
    const { state } = fold([
      promo('activate', { merchantId: 'm-1' }),
      promo('create', { merchantId: 'm-2', data: { x: 1 } }),
    ]);
    expect(attributesOf(state!)).toEqual({});
  });

  it('false and 0 are values, not "no change"', () => {
    const { state } = fold([
      promo('create', { data: { live: true, budget: 10 } }),
      promo('activate', { data: { live: false, budget: 0 } }),
    ]);
    expect(attributesOf(state!)).toEqual({ live: false, budget: 0 });
  });
});

describe('anomalies', () => {
  it('a delete after complete is applied but flagged: DELETED cannot follow COMPLETED', () => {
    const { steps, state } = fold([promo('create'), promo('activate'), promo('complete'), promo('delete')]);
    expect(steps[3]).toMatchObject({ outcome: 'applied', anomaly: true });
    expect(state!.status).toBe('DELETED');
  });

  it('a lost intermediate event is not an anomaly: CREATED -> COMPLETED is reachable', () => {
    const { steps } = fold([promo('create'), promo('complete')]);
    expect(steps[1]).toMatchObject({ outcome: 'applied', anomaly: false });
  });

  it('the first event and stale events are never anomalies', () => {
    const { steps } = fold([promo('complete'), promo('delete'), promo('activate')]);
    expect(steps.map((s) => [s.outcome, s.anomaly])).toEqual([
      ['applied', false],
      ['applied', true],
      ['stale', false],
    ]);
  });
});
