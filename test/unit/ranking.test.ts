import { describe, expect, it } from 'vitest';
import { createMachine, setup, type AnyStateMachine } from 'xstate';
import { analyzeMachine, type Diagnostic, type MachineAnalysis } from '../../src/domain/ranking.ts';
import { MachineRegistry } from '../../src/domain/registry.ts';
import { PromosyncError } from '../../src/domain/errors.ts';
import { promotionMachine } from '../../machines/promotion.ts';

const rankOf = (a: MachineAnalysis) => Object.fromEntries(a.events.map((e) => [e.type, e.rank]));
const errors = (a: MachineAnalysis): Diagnostic[] => a.diagnostics.filter((d) => d.level === 'error');
const withCode = (a: MachineAnalysis, code: string): Diagnostic[] =>
  a.diagnostics.filter((d) => d.code === code);

/** CREATED -activate-> ACTIVATED -pause-> PAUSED -activate-> ACTIVATED: a cycle the ranking cannot order. */
const pausable = (meta: Record<string, unknown> = {}) =>
  createMachine({
    id: 'pausable',
    initial: 'CREATED',
    meta,
    states: {
      CREATED: { on: { activate: 'ACTIVATED' } },
      ACTIVATED: { on: { pause: 'PAUSED' } },
      PAUSED: { on: { activate: 'ACTIVATED' } },
    },
  });

/** A straight line A -first-> B -second-> C: `first` always happens before `second`. */
const line = (meta: Record<string, unknown> = {}) =>
  createMachine({
    id: 'line',
    initial: 'A',
    meta,
    states: { A: { on: { first: 'B' } }, B: { on: { second: 'C' } }, C: { type: 'final' } },
  });

describe('the promotion machine', () => {
  const a = analyzeMachine('promotion', promotionMachine);

  it('is accepted without diagnostics', () => {
    expect(a.ok).toBe(true);
    expect(a.diagnostics).toEqual([]);
  });

  it('ranks create < activate < complete < delete', () => {
    expect(a.events.map((e) => [e.type, e.rank])).toEqual([
      ['create', 1],
      ['activate', 2],
      ['complete', 3],
      ['delete', 4],
    ]);
  });

  it('gives each event its one target and the states that accept it', () => {
    expect(a.events).toEqual([
      { type: 'create', rank: 1, target: 'CREATED', from: [] },
      { type: 'activate', rank: 2, target: 'ACTIVATED', from: ['CREATED'] },
      { type: 'complete', rank: 3, target: 'COMPLETED', from: ['ACTIVATED'] },
      { type: 'delete', rank: 4, target: 'DELETED', from: ['CREATED', 'ACTIVATED'] },
    ]);
  });

  it('knows its states, final states, creation event and collection', () => {
    expect(a.states).toEqual(['CREATED', 'ACTIVATED', 'COMPLETED', 'DELETED']);
    expect(a.finalStates).toEqual(['COMPLETED', 'DELETED']);
    expect(a.initial).toBe('CREATED');
    expect(a.creationEvent).toBe('create');
    expect(a.collection).toBe('promotions');
    expect(a.ordering).toBe('rank');
  });

  it('knows which states can follow which: nothing leaves a final state', () => {
    const sorted = Object.fromEntries(Object.entries(a.reachable).map(([s, r]) => [s, [...r].sort()]));
    expect(sorted).toEqual({
      CREATED: ['ACTIVATED', 'COMPLETED', 'DELETED'],
      ACTIVATED: ['COMPLETED', 'DELETED'],
      COMPLETED: [],
      DELETED: [],
    });
  });
});

describe('cycles', () => {
  it('a pause/activate cycle is rejected, naming both events and the states of the loop', () => {
    const a = analyzeMachine('pausable', pausable());
    expect(a.ok).toBe(false);
    const [cycle, ...more] = withCode(a, 'cycle');
    expect(more).toEqual([]);
    expect(cycle!.level).toBe('error');
    expect([...cycle!.cycle!].sort()).toEqual(['activate', 'pause']);
    expect(cycle!.message).toContain('ACTIVATED -pause-> PAUSED');
    expect(cycle!.message).toContain('PAUSED -activate-> ACTIVATED');
    expect(cycle!.message).toMatch(/meta\.ranks|ordering/);
  });

  it('an event that loops on its own state is a cycle unless its rank is pinned', () => {
    const touch = (meta: Record<string, unknown>) =>
      createMachine({ id: 't', initial: 'A', meta, states: { A: { on: { touch: 'A' } } } });
    const open = analyzeMachine('t', touch({}));
    expect(open.ok).toBe(false);
    expect(withCode(open, 'cycle')[0]!.message).toContain('A -touch-> A');
    expect(analyzeMachine('t', touch({ ranks: { touch: 1 } })).ok).toBe(true);
  });

  it('a version-ordered machine may have a cycle: accepted, with an info diagnostic', () => {
    const a = analyzeMachine('pausable', pausable({ ordering: 'version' }));
    expect(a.ok).toBe(true);
    expect(a.ordering).toBe('version');
    expect(errors(a)).toEqual([]);
    const [info] = withCode(a, 'cycle');
    expect(info!.level).toBe('info');
    expect([...info!.cycle!].sort()).toEqual(['activate', 'pause']);
    expect(info!.message).toContain('version');
    expect(a.events.map((e) => e.type).sort()).toEqual(['activate', 'pause']);
  });
});

describe('targets', () => {
  it('an event that leads to two different states is rejected, naming both transitions', () => {
    const m = createMachine({
      id: 'amb',
      initial: 'A',
      states: { A: { on: { x: 'B', y: 'C' } }, B: {}, C: { on: { x: 'D' } }, D: {} },
    });
    const a = analyzeMachine('amb', m);
    expect(a.ok).toBe(false);
    const [d, ...more] = withCode(a, 'ambiguous_target');
    expect(more).toEqual([]);
    expect(d).toMatchObject({ level: 'error', event: 'x' });
    expect(d!.message).toContain('A -> B');
    expect(d!.message).toContain('C -> D');
  });

  it('the creation event must lead to the initial state like every other use of it', () => {
    const m = createMachine({
      id: 'c',
      initial: 'A',
      meta: { creationEvent: 'go' },
      states: { A: { on: { go: 'B' } }, B: {} },
    });
    const a = analyzeMachine('c', m);
    expect(a.ok).toBe(false);
    expect(withCode(a, 'ambiguous_target')[0]!.message).toContain('(start) -> A');
  });
});

describe('rank overrides (meta.ranks)', () => {
  it('breaking the pause/activate cycle is accepted, the dropped precedence reported as a warning', () => {
    const a = analyzeMachine('pausable', pausable({ ranks: { pause: 1, activate: 2 } }));
    expect(a.ok).toBe(true);
    expect(rankOf(a)).toEqual({ pause: 1, activate: 2 });
    expect(errors(a)).toEqual([]);
    const warnings = a.diagnostics.filter((d) => d.level === 'warning');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ code: 'override_drops_precedence', event: 'activate' });
    expect(warnings[0]!.message).toContain('"pause"');
  });

  it('lists every precedence the override drops, one warning each', () => {
    // activate, pause and suspend can each happen before the others.
    const m = createMachine({
      id: 'm',
      initial: 'CREATED',
      meta: { ranks: { pause: 1, suspend: 2, activate: 3 } },
      states: {
        CREATED: { on: { activate: 'ACTIVE' } },
        ACTIVE: { on: { pause: 'PAUSED', suspend: 'SUSPENDED' } },
        PAUSED: { on: { activate: 'ACTIVE' } },
        SUSPENDED: { on: { activate: 'ACTIVE' } },
      },
    });
    const a = analyzeMachine('m', m);
    expect(a.ok).toBe(true);
    expect(rankOf(a)).toEqual({ pause: 1, suspend: 2, activate: 3 });
    const dropped = withCode(a, 'override_drops_precedence').map((d) => {
      expect(d.level).toBe('warning');
      const below = ['pause', 'suspend', 'activate'].find(
        (e) => e !== d.event && d.message.includes(`"${e}"`),
      );
      return `${d.event} before ${below}`;
    });
    expect(dropped.sort()).toEqual([
      'activate before pause',
      'activate before suspend',
      'suspend before pause',
    ]);
  });

  it('an override that leaves part of a cycle unresolved still reports the cycle', () => {
    const m = createMachine({
      id: 'tri',
      initial: 'A',
      meta: { ranks: { a: 1, b: 2 } },
      states: { A: { on: { a: 'B' } }, B: { on: { b: 'C' } }, C: { on: { c: 'A' } } },
    });
    const a = analyzeMachine('tri', m);
    expect(a.ok).toBe(false);
    expect(withCode(a, 'cycle')[0]!.level).toBe('error');
  });

  it('an override between unordered events only orders them (the promotion: complete below delete)', () => {
    const flipped = createMachine({
      id: 'promotion',
      initial: 'CREATED',
      meta: { creationEvent: 'create', ranks: { complete: 2, delete: 1 } },
      states: {
        CREATED: { on: { activate: 'ACTIVATED', delete: 'DELETED' } },
        ACTIVATED: { on: { complete: 'COMPLETED', delete: 'DELETED' } },
        COMPLETED: { type: 'final' },
        DELETED: { type: 'final' },
      },
    });
    const a = analyzeMachine('promotion', flipped);
    expect(a.ok).toBe(true);
    expect(rankOf(a)).toEqual({ create: 1, activate: 2, delete: 3, complete: 4 });
    expect(a.diagnostics).toEqual([]);
  });

  it('an override contradicting an acyclic precedence is rejected', () => {
    const a = analyzeMachine('line', line({ ranks: { first: 2, second: 1 } }));
    expect(a.ok).toBe(false);
    const [d] = errors(a);
    expect(d).toMatchObject({ code: 'bad_override', event: 'first' });
    expect(d!.message).toContain('"second"');
  });

  it('equal override values are rejected', () => {
    const a = analyzeMachine('line', line({ ranks: { first: 1, second: 1 } }));
    expect(a.ok).toBe(false);
    const [d, ...more] = errors(a);
    expect(more).toEqual([]);
    expect(d!.code).toBe('bad_override');
    expect(d!.message).toContain('same rank');
  });

  it('an override naming an event the machine does not have is rejected', () => {
    const a = analyzeMachine('line', line({ ranks: { third: 1 } }));
    expect(a.ok).toBe(false);
    expect(errors(a)).toEqual([expect.objectContaining({ code: 'bad_override', event: 'third' })]);
    expect(errors(a)[0]!.message).toContain('"third"');
  });

  it('malformed meta is reported, not thrown', () => {
    for (const meta of [
      { ranks: 'high' },
      { ranks: [1, 2] },
      { ranks: { first: 'x' } },
      { ranks: { first: Number.NaN } },
      { ordering: 'time' },
    ]) {
      const a = analyzeMachine('line', line(meta));
      expect(a.ok, JSON.stringify(meta)).toBe(false);
      expect(errors(a).map((d) => d.code)).toContain('bad_meta');
    }
  });
});

describe('unsupported constructs are errors that name the state', () => {
  const cases: { name: string; code: string; state: string; machine: () => AnyStateMachine }[] = [
    {
      name: 'a parallel state',
      code: 'unsupported_parallel',
      state: 'RUNNING',
      machine: () =>
        createMachine({
          id: 'p',
          initial: 'RUNNING',
          states: {
            RUNNING: {
              type: 'parallel',
              states: { X: { initial: 'x', states: { x: {} } }, Y: { initial: 'y', states: { y: {} } } },
            },
          },
        }),
    },
    {
      name: 'a wildcard event',
      code: 'unsupported_wildcard',
      state: 'OPEN',
      machine: () =>
        createMachine({ id: 'w', initial: 'OPEN', states: { OPEN: { on: { '*': 'CLOSED' } }, CLOSED: {} } }),
    },
    {
      name: 'a delayed (after) transition',
      code: 'unsupported_after',
      state: 'WAITING',
      machine: () =>
        createMachine({
          id: 'a',
          initial: 'WAITING',
          states: { WAITING: { after: { 1000: 'EXPIRED' } }, EXPIRED: {} },
        }),
    },
    {
      name: 'an eventless (always) transition',
      code: 'unsupported_always',
      state: 'CHECKING',
      machine: () =>
        createMachine({ id: 'e', initial: 'CHECKING', states: { CHECKING: { always: 'DONE' }, DONE: {} } }),
    },
    {
      name: 'guarded alternatives with different targets',
      code: 'unsupported_guarded_alternatives',
      state: 'REVIEW',
      machine: () =>
        setup({ guards: { big: () => true, small: () => false } }).createMachine({
          id: 'g',
          initial: 'REVIEW',
          states: {
            REVIEW: {
              on: {
                decide: [
                  { guard: 'big', target: 'ESCALATED' },
                  { guard: 'small', target: 'APPROVED' },
                ],
              },
            },
            ESCALATED: {},
            APPROVED: {},
          },
        }),
    },
    {
      name: 'a targetless transition',
      code: 'unsupported_targetless',
      state: 'IDLE',
      machine: () =>
        createMachine({
          id: 't',
          initial: 'IDLE',
          states: { IDLE: { on: { ping: { actions: [] }, go: 'GONE' } }, GONE: {} },
        }),
    },
  ];

  for (const c of cases) {
    it(`${c.name} is rejected with code ${c.code}, naming state ${c.state}`, () => {
      let a: MachineAnalysis | undefined;
      expect(() => (a = analyzeMachine('m', c.machine()))).not.toThrow();
      expect(a!.ok).toBe(false);
      const found = withCode(a!, c.code);
      expect(found.length).toBeGreaterThan(0);
      expect(found[0]).toMatchObject({ level: 'error', state: c.state });
      expect(found[0]!.message).toContain(c.state);
    });
  }

  it('guarded alternatives that agree on the target are fine', () => {
    const m = setup({ guards: { g: () => true } }).createMachine({
      id: 'g',
      initial: 'A',
      states: { A: { on: { go: [{ guard: 'g', target: 'B' }, { target: 'B' }] } }, B: {} },
    });
    const a = analyzeMachine('g', m);
    expect(a.ok).toBe(true);
    expect(a.events).toEqual([{ type: 'go', rank: 1, target: 'B', from: ['A'] }]);
  });

  it('a wildcard inherited from a parent is reported at the parent', () => {
    const m = createMachine({
      id: 'w',
      initial: 'A',
      states: { A: { initial: 'a1', on: { '*': 'B' }, states: { a1: {}, a2: {} } }, B: {} },
    });
    const a = analyzeMachine('w', m);
    expect(a.ok).toBe(false);
    expect(withCode(a, 'unsupported_wildcard').every((d) => d.state === 'A')).toBe(true);
  });
});

describe('nested (compound) states', () => {
  const nested = createMachine({
    id: 'n',
    initial: 'NEW',
    meta: { creationEvent: 'create' },
    states: {
      NEW: { on: { start: 'LIVE' } },
      LIVE: {
        initial: 'running',
        on: { cancel: 'CANCELLED' },
        states: {
          running: { on: { hold: 'held' } },
          held: { on: { release: 'done' } },
          done: { type: 'final' },
        },
      },
      CANCELLED: { type: 'final' },
    },
  });
  const a = analyzeMachine('n', nested);

  it('are flattened into their leaves, named by dotted path', () => {
    expect(a.ok).toBe(true);
    expect(a.states).toEqual(['NEW', 'LIVE.running', 'LIVE.held', 'LIVE.done', 'CANCELLED']);
    expect(a.finalStates).toEqual(['LIVE.done', 'CANCELLED']);
  });

  it('entering a compound state means entering its initial leaf', () => {
    expect(a.events.find((e) => e.type === 'start')!.target).toBe('LIVE.running');
  });

  it("a parent's transition is inherited by every leaf inside it", () => {
    const cancel = a.events.find((e) => e.type === 'cancel')!;
    expect(cancel.target).toBe('CANCELLED');
    expect(cancel.from).toEqual(['LIVE.running', 'LIVE.held', 'LIVE.done']);
    expect(rankOf(a)).toEqual({ create: 1, start: 2, hold: 3, release: 4, cancel: 5 });
  });

  it('an initial state that is itself compound starts in its deepest initial leaf', () => {
    const m = createMachine({
      id: 'd',
      initial: 'LIVE',
      meta: { creationEvent: 'create' },
      states: {
        LIVE: {
          initial: 'a',
          on: { stop: 'STOPPED' },
          states: { a: { initial: 'a1', states: { a1: { on: { next: 'a2' } }, a2: {} } } },
        },
        STOPPED: {},
      },
    });
    const d = analyzeMachine('d', m);
    expect(d.initial).toBe('LIVE.a.a1');
    expect(d.events.find((e) => e.type === 'create')!.target).toBe('LIVE.a.a1');
    expect(d.events.find((e) => e.type === 'stop')!.from).toEqual(['LIVE.a.a1', 'LIVE.a.a2']);
  });

  it('an inner handler shadows the parent handler of the same event', () => {
    const m = createMachine({
      id: 's',
      initial: 'P',
      states: {
        P: { initial: 'a', on: { go: 'Z' }, states: { a: { on: { go: 'b' } }, b: {} } },
        Z: {},
      },
    });
    const s = analyzeMachine('s', m);
    // In P.a, go leads to P.b (the inner handler); in P.b to Z: two targets.
    expect(withCode(s, 'ambiguous_target')[0]!.message).toMatch(/P\.a -> P\.b/);
    expect(withCode(s, 'ambiguous_target')[0]!.message).toMatch(/P\.b -> Z/);
  });
});

describe('ties', () => {
  const fork = (order: 'xy' | 'yx') =>
    createMachine({
      id: 'fork',
      initial: 'A',
      states: {
        A: { on: order === 'xy' ? { x: 'B', y: 'C' } : { y: 'C', x: 'B' } },
        B: { type: 'final' },
        C: { type: 'final' },
      },
    });

  it('unordered events are ranked by definition order', () => {
    expect(rankOf(analyzeMachine('fork', fork('xy')))).toEqual({ x: 1, y: 2 });
    expect(rankOf(analyzeMachine('fork', fork('yx')))).toEqual({ y: 1, x: 2 });
  });

  it('the analysis is deterministic: the same definition always gives the same result', () => {
    expect(analyzeMachine('promotion', promotionMachine)).toEqual(
      analyzeMachine('promotion', promotionMachine),
    );
    expect(analyzeMachine('fork', fork('xy'))).toEqual(analyzeMachine('fork', fork('xy')));
    expect(analyzeMachine('p', pausable())).toEqual(analyzeMachine('p', pausable()));
  });

  it('ranks are 1-based and unique', () => {
    const ranks = analyzeMachine('promotion', promotionMachine).events.map((e) => e.rank);
    expect(new Set(ranks).size).toBe(ranks.length);
    expect(Math.min(...ranks)).toBe(1);
  });
});

describe('bad definitions', () => {
  it('the analysis of an empty machine is empty, not a crash', () => {
    const a = analyzeMachine('empty', createMachine({ id: 'empty' }));
    expect(a.events).toEqual([]);
    expect(a.ok).toBe(true);
  });

  it('internal events (done, invoke) are reported, not ranked', () => {
    const m = createMachine({
      id: 'd',
      initial: 'A',
      states: { A: { initial: 'a', states: { a: { type: 'final' } }, onDone: 'B' }, B: {} },
    });
    const a = analyzeMachine('d', m);
    expect(a.ok).toBe(false);
    expect(withCode(a, 'unsupported_internal_event')[0]!.state).toBe('A');
  });

  // Bug (src/domain/machine-graph.ts + ranking.ts): a transition into a history state ends in
  // a state that is not a leaf of the flattened graph, and analyzeMachine throws a TypeError
  // ("Cannot read properties of undefined (reading 'has')") instead of reporting it.
  it('a transition into a history state is reported, not thrown', () => {
    const m = createMachine({
      id: 'h',
      initial: 'A',
      states: {
        A: {
          initial: 'a',
          on: { leave: 'B' },
          states: { a: { on: { n: 'b' } }, b: {}, hist: { type: 'history' } },
        },
        B: { on: { back: 'A.hist' } },
      },
    });
    let a: MachineAnalysis | undefined;
    expect(() => (a = analyzeMachine('h', m))).not.toThrow();
    expect(withCode(a!, 'unsupported_history')[0]!.state).toBe('A.hist');
  });

  // Same bug: a parallel state is not a leaf either, so a transition into one throws.
  it('a transition into a parallel state is reported, not thrown', () => {
    const m = createMachine({
      id: 'p',
      initial: 'B',
      states: {
        A: {
          type: 'parallel',
          states: { X: { initial: 'x', states: { x: {} } }, Y: { initial: 'y', states: { y: {} } } },
        },
        B: { on: { go: 'A' } },
      },
    });
    let a: MachineAnalysis | undefined;
    expect(() => (a = analyzeMachine('p', m))).not.toThrow();
    expect(withCode(a!, 'unsupported_parallel')[0]!.state).toBe('A');
  });

  it('the registry refuses invalid machines, naming the machine and the problem', () => {
    let err: unknown;
    try {
      MachineRegistry.from({ pausable: pausable() });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PromosyncError);
    expect((err as PromosyncError).code).toBe('machine_invalid');
    expect((err as PromosyncError).message).toContain('pausable: cycle');
  });

  it('the registry can still load invalid machines when asked to (for `machines check`)', () => {
    const r = MachineRegistry.from({ pausable: pausable() }, true);
    expect(r.get('pausable')!.analysis.ok).toBe(false);
  });
});
