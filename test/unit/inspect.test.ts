import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { AnyActorRef, InspectionEvent, StateValue } from 'xstate';
import { machines } from '../../machines/index.ts';
import {
  planReplay,
  runReplay,
  stateNameOf,
  stateValueOf,
  type HistoryEvent,
} from '../../src/diagram/index.ts';
import {
  MachineRegistry,
  mergeEvent,
  type EntityState,
  type EventInput,
  type MachineInfo,
} from '../../src/domain/index.ts';
import { deliveryArb, historyArb } from '../helpers/histories.ts';

const registry = MachineRegistry.from(machines);
const promotion = registry.get('promotion')!;
const campaign = registry.get('campaign')!;

/** A readable trace of the inspection events an inspector would receive. */
interface Trace {
  actors: Array<{ id: string; sessionId: string }>;
  /** `type` of every event the actors received, with `*` marking inferred ones. */
  events: string[];
  /** State after every snapshot, in order. */
  snapshots: string[];
  raw: InspectionEvent[];
}

/** The dotted state of an inspected machine snapshot. */
const stateOf = (snapshot: unknown): string => stateNameOf((snapshot as { value: StateValue }).value);

function replay(info: MachineInfo, actorId: string, history: HistoryEvent[], maxSteps?: number) {
  const raw: InspectionEvent[] = [];
  const plan = planReplay(info, actorId, history, maxSteps === undefined ? {} : { maxSteps });
  const result = runReplay(info, plan, (e) => raw.push(e));
  const live = result.actors.at(-1)!.getSnapshot().status;
  const trace: Trace = { actors: [], events: [], snapshots: [], raw: raw.splice(0) };
  for (const a of result.actors) a.stop();
  for (const e of trace.raw) {
    if (e.type === '@xstate.actor')
      trace.actors.push({ id: (e.actorRef as AnyActorRef).id, sessionId: e.actorRef.sessionId });
    if (e.type === '@xstate.event') {
      trace.events.push(`${e.event.type}${(e.event as { inferred?: boolean }).inferred ? '*' : ''}`);
    }
    if (e.type === '@xstate.snapshot') {
      trace.snapshots.push(stateOf(e.snapshot));
    }
  }
  return { plan, result, trace, live };
}

const h = (type: string, version: number | null = null, eventId?: string): HistoryEvent => ({
  type,
  version,
  ...(eventId ? { eventId } : {}),
});

describe('replaying an entity for the inspector', () => {
  it('shows the machine alone as one actor in its initial state', () => {
    const { plan, trace, result, live } = replay(promotion, 'promotion', []);
    expect(live).toBe('active');
    expect(plan).toMatchObject({ start: 'CREATED', steps: [], end: 'CREATED', omitted: 0 });
    expect(trace.actors).toEqual([{ id: 'promotion', sessionId: expect.any(String) }]);
    expect(trace.events).toEqual(['xstate.init']);
    expect(trace.snapshots).toEqual(['CREATED']);
    expect(result.end).toBe('CREATED');
  });

  it('registers the entity as an actor and sends its applied events in log order', () => {
    const { trace, result } = replay(promotion, 'promo-123', [
      h('create', 1, 'e1'),
      h('activate', 2, 'e2'),
      h('complete', 3, 'e3'),
    ]);
    expect(trace.actors.map((a) => a.id)).toEqual(['promo-123']);
    expect(trace.events).toEqual(['xstate.init', 'create', 'activate', 'complete']);
    expect(trace.snapshots).toEqual(['CREATED', 'CREATED', 'ACTIVATED', 'COMPLETED']);
    // What the log knows travels with the event, so the inspector shows it.
    const activate = trace.raw.find((e) => e.type === '@xstate.event' && e.event.type === 'activate');
    expect(activate).toMatchObject({ event: { type: 'activate', version: 2, eventId: 'e2' } });
    const last = trace.raw.filter((e) => e.type === '@xstate.snapshot').at(-1)!;
    expect((last as { snapshot: { status: string } }).snapshot.status).toBe('done');
    expect(result.end).toBe('COMPLETED');
  });

  it('fills lost intermediate events, marked inferred, on the shortest way to the next logged one', () => {
    // launch and pause were lost; resume moved the row from DRAFT to LIVE.
    const { plan, trace } = replay(campaign, 'c-1', [h('create', 1), h('resume', 7)]);
    expect(plan.steps.map((s) => [s.kind, s.type, s.from, s.to])).toEqual([
      ['creation', 'create', 'DRAFT', 'DRAFT'],
      ['inferred', 'launch', 'DRAFT', 'LIVE'],
      ['inferred', 'pause', 'LIVE', 'PAUSED'],
      ['event', 'resume', 'PAUSED', 'LIVE'],
    ]);
    expect(trace.events).toEqual(['xstate.init', 'create', 'launch*', 'pause*', 'resume']);
    expect(trace.snapshots).toEqual(['DRAFT', 'DRAFT', 'LIVE', 'PAUSED', 'LIVE']);
  });

  it('restarts the actor in the target state after an anomaly the machine cannot follow', () => {
    // delete outranks complete: a late delete moves a COMPLETED promotion to DELETED.
    const { plan, trace, result } = replay(promotion, 'p-9', [h('create'), h('complete'), h('delete')]);
    expect(plan.steps.map((s) => s.kind)).toEqual(['creation', 'inferred', 'event', 'jump']);
    expect(trace.actors.map((a) => a.id)).toEqual(['p-9', 'p-9']);
    expect(trace.events).toEqual(['xstate.init', 'create', 'activate*', 'complete', 'delete', 'xstate.init']);
    expect(trace.snapshots).toEqual(['CREATED', 'CREATED', 'ACTIVATED', 'COMPLETED', 'DELETED']);
    const jumped = trace.raw.find((e) => e.type === '@xstate.event' && e.event.type === 'delete');
    expect(jumped).toMatchObject({ event: { anomaly: true } });
    expect(result).toMatchObject({ end: 'DELETED' });
    expect(result.actors).toHaveLength(2);
  });

  it('ignores events the machine no longer has and events not newer than the one before', () => {
    const { plan, trace } = replay(campaign, 'c-2', [
      h('create', 1),
      h('schedule', 2),
      h('launch', 5),
      h('pause', 4), // logged after launch although older: batches committed out of log order
      h('pause', 6),
    ]);
    expect(plan.ignored.map((i) => [i.event.type, i.reason])).toEqual([
      ['schedule', '"schedule" is not an event of machine "campaign" any more'],
      ['pause', 'not newer than the event applied before it'],
    ]);
    expect(trace.events).toEqual(['xstate.init', 'create', 'launch', 'pause']);
  });

  it('shows only the last steps of a long history, starting the actor where they begin', () => {
    const history = [h('create', 1), h('launch', 2)];
    for (let v = 3; v < 103; v += 2) history.push(h('pause', v), h('resume', v + 1));
    const { plan, trace } = replay(campaign, 'c-3', history, 10);
    expect(plan.omitted).toBe(history.length - 10);
    expect(plan.start).toBe('LIVE');
    expect(trace.events).toEqual(['xstate.init', ...Array(5).fill(['pause', 'resume']).flat()]);
    expect(trace.snapshots[0]).toBe('LIVE');
    expect(plan.end).toBe('LIVE');
  });

  it('converts dotted state names to state values and back', () => {
    expect(stateValueOf('ACTIVE')).toBe('ACTIVE');
    expect(stateValueOf('ACTIVE.running.fast')).toEqual({ ACTIVE: { running: 'fast' } });
    expect(stateNameOf({ ACTIVE: { running: 'fast' } })).toBe('ACTIVE.running.fast');
  });

  for (const info of [promotion, campaign]) {
    it(`matches the row after every applied ${info.analysis.name} event, whatever the delivery`, () => {
      fc.assert(
        fc.property(
          historyArb(info, 'x-1').chain((hist) => deliveryArb([hist])),
          ({ sent }) => {
            // The worker's view: which events were applied, in arrival order, and the row after each.
            let row: EntityState | undefined;
            const seen = new Map<string, string>();
            const applied: HistoryEvent[] = [];
            const rowAfter: string[] = [];
            for (const input of sent as EventInput[]) {
              const [e] = registry.prepare([input], 'test-src', false);
              const r = mergeEvent(row, e!, seen, (a, b) => registry.isReachable(e!.machine, a, b));
              row = r.state;
              if (r.outcome === 'applied') {
                applied.push({ type: e!.type, version: e!.version, eventId: e!.eventId });
                rowAfter.push(row.status);
              }
            }
            const { trace, result, plan } = replay(info, 'x-1', applied);
            expect(plan.ignored).toEqual([]);
            // Every applied event reaches the inspector once, in order, between inferred ones.
            const logged = trace.raw.filter(
              (e): e is Extract<InspectionEvent, { type: '@xstate.event' }> =>
                e.type === '@xstate.event' &&
                e.event.type !== 'xstate.init' &&
                !(e.event as { inferred?: boolean }).inferred,
            );
            expect(logged.map((e) => e.event.type)).toEqual(applied.map((a) => a.type));
            // After each of them, the inspected actor is where the row was.
            const stateAfter: string[] = [];
            let current = '';
            let pending = false;
            for (const e of trace.raw) {
              // The row's state after a logged event: the last snapshot before the next event
              // sent (inferred or logged); a jump's new actor reports its state in its init.
              if (e.type === '@xstate.event' && e.event.type !== 'xstate.init') {
                if (pending) stateAfter.push(current);
                pending = logged.includes(e);
              }
              if (e.type === '@xstate.snapshot') {
                current = stateOf(e.snapshot);
              }
            }
            if (pending) stateAfter.push(current);
            expect(stateAfter).toEqual(rowAfter);
            expect(result.end).toBe(row?.status ?? info.analysis.initial);
          },
        ),
        { numRuns: 300 },
      );
    });
  }
});
