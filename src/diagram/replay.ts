import { createActor, type AnyActorRef, type InspectionEvent, type Observer, type StateValue } from 'xstate';
import { orderingKey, type MachineInfo } from '../domain/index.ts';

/** One applied event of an entity, as the event log holds it. */
export interface HistoryEvent {
  type: string;
  version: number | null;
  eventId?: string | null;
  /** The event log id, to find the event again. */
  logId?: string;
  data?: unknown;
}

/**
 * One step of a replay:
 * - `creation`: the machine's creation event; the actor starts in the initial state for it.
 * - `event`: a logged event the machine accepts in the current state.
 * - `inferred`: an event the log lacks (lost in transit) on the shortest way to the next
 *   logged event; the row skipped it, the actor needs it.
 * - `jump`: a logged event the machine cannot take from the current state by any way (an
 *   anomaly): the actor is restarted in the event's target state.
 */
export interface ReplayStep {
  kind: 'creation' | 'event' | 'inferred' | 'jump';
  type: string;
  from: string;
  to: string;
  /** The logged event; null for inferred steps. */
  event: HistoryEvent | null;
}

/** What {@link runReplay} does with an entity's history, decided without running anything. */
export interface ReplayPlan {
  machine: string;
  /** The actor's id: the entity id, or the machine name when the machine is shown alone. */
  actorId: string;
  /** The state the first actor starts in: the initial state, or where a shortened replay begins. */
  start: string;
  steps: ReplayStep[];
  /** Steps left out at the beginning because the history is longer than `maxSteps`. */
  omitted: number;
  /** Logged events not replayed, with the reason. */
  ignored: Array<{ event: HistoryEvent; reason: string }>;
  /** The state the replay ends in: the entity's status if the log is complete. */
  end: string;
}

export interface PlanOptions {
  /**
   * The most steps to replay; longer histories show their last steps only.
   * @defaultValue Infinity
   */
  maxSteps?: number;
}

/** The shortest way from `from` that ends with `event` (events in order), or null when there is none. */
function pathEndingWith(info: MachineInfo, from: string, event: string): string[] | null {
  const rank = info.events.get(event);
  if (!rank || rank.from.length === 0) return null;
  const sources = new Set(rank.from);
  // Breadth-first over states; edges in rank order, so ties resolve the same way every run.
  const prev = new Map<string, { state: string; event: string } | null>([[from, null]]);
  const queue = [from];
  while (queue.length > 0) {
    const s = queue.shift()!;
    if (sources.has(s)) {
      const path = [event];
      for (let at = prev.get(s); at; at = prev.get(at.state)) path.unshift(at.event);
      return path;
    }
    for (const e of info.analysis.events) {
      if (e.from.includes(s) && !prev.has(e.target)) {
        prev.set(e.target, { state: s, event: e.type });
        queue.push(e.target);
      }
    }
  }
  return null;
}

/**
 * Plans the replay of an entity's applied events (in log order) through its machine, so
 * that after each logged event the actor is where the row was. Events whose type the
 * machine no longer has, or that are not newer than the event before (batches for the
 * same entity committed out of log order), are ignored with a reason. Pure.
 */
export function planReplay(
  info: MachineInfo,
  actorId: string,
  history: HistoryEvent[],
  options: PlanOptions = {},
): ReplayPlan {
  const a = info.analysis;
  const steps: ReplayStep[] = [];
  const ignored: ReplayPlan['ignored'] = [];
  let state = a.initial;
  let lastKey: bigint | null = null;
  for (const event of history) {
    const rank = info.events.get(event.type);
    if (!rank) {
      ignored.push({ event, reason: `"${event.type}" is not an event of machine "${a.name}" any more` });
      continue;
    }
    const key = orderingKey(a.ordering, rank.rank, event.version ?? undefined);
    if (lastKey !== null && key <= lastKey) {
      ignored.push({ event, reason: 'not newer than the event applied before it' });
      continue;
    }
    lastKey = key;
    if (steps.length === 0 && event.type === a.creationEvent) {
      steps.push({ kind: 'creation', type: event.type, from: state, to: a.initial, event });
      state = a.initial;
      continue;
    }
    const path = pathEndingWith(info, state, event.type);
    if (path === null) {
      steps.push({ kind: 'jump', type: event.type, from: state, to: rank.target, event });
    } else {
      for (const type of path.slice(0, -1)) {
        const to = info.events.get(type)!.target;
        steps.push({ kind: 'inferred', type, from: state, to, event: null });
        state = to;
      }
      steps.push({ kind: 'event', type: event.type, from: state, to: rank.target, event });
    }
    state = rank.target;
  }
  const max = options.maxSteps ?? Infinity;
  const omitted = Math.max(0, steps.length - max);
  const shown = steps.slice(omitted);
  return {
    machine: a.name,
    actorId,
    start: shown[0]?.from ?? state,
    steps: shown,
    omitted,
    ignored,
    end: state,
  };
}

/** `ACTIVE.running` as XState's state value `{ ACTIVE: 'running' }`. */
export function stateValueOf(state: string): StateValue {
  const parts = state.split('.');
  let value: StateValue = parts.pop()!;
  while (parts.length > 0) value = { [parts.pop()!]: value };
  return value;
}

/** XState's state value of a machine without parallel states as a dotted leaf name. */
export function stateNameOf(value: StateValue): string {
  if (typeof value === 'string') return value;
  const [key, inner] = Object.entries(value)[0] ?? ['', ''];
  return inner === undefined || (typeof inner === 'object' && Object.keys(inner).length === 0)
    ? key
    : `${key}.${stateNameOf(inner)}`;
}

/** The event object a step sends to the actor: type plus what the log knows about it. */
function eventObject(step: ReplayStep): { type: string } & Record<string, unknown> {
  if (step.event === null) return { type: step.type, inferred: true };
  const e = step.event;
  return {
    type: e.type,
    ...(e.version !== null ? { version: e.version } : {}),
    ...(e.eventId ? { eventId: e.eventId } : {}),
    ...(e.logId !== undefined ? { logId: e.logId } : {}),
    ...(e.data !== undefined && e.data !== null ? { data: e.data } : {}),
    ...(step.kind === 'jump' ? { anomaly: true } : {}),
  };
}

export interface ReplayResult {
  /**
   * The actors used, in order: one, plus one per jump. The last one is left running, so an
   * inspector keeps showing it live; stop it when done.
   */
  actors: AnyActorRef[];
  /** The state the last actor ended in. */
  end: string;
}

/**
 * Runs a plan through actors of the machine, reporting every inspection event (actor
 * registration, events, snapshots) to `inspect`, e.g. a Stately inspector's `inspect`.
 * Jumps send their event to the current actor, which ignores it, then continue in a new
 * actor restored in the target state. No I/O of its own.
 */
export function runReplay(
  info: MachineInfo,
  plan: ReplayPlan,
  inspect: Observer<InspectionEvent> | ((event: InspectionEvent) => void),
): ReplayResult {
  const machine = info.machine;
  const start = (state: string, restored: boolean): AnyActorRef => {
    const actor = createActor(machine, {
      id: plan.actorId,
      inspect,
      ...(restored ? { snapshot: machine.resolveState({ value: stateValueOf(state), context: {} }) } : {}),
    });
    actor.start();
    return actor;
  };
  let actor = start(plan.start, plan.start !== info.analysis.initial);
  const actors = [actor];
  for (const step of plan.steps) {
    actor.send(eventObject(step));
    if (step.kind === 'jump') {
      actor.stop();
      actor = start(step.to, true);
      actors.push(actor);
    }
  }
  return { actors, end: stateNameOf(actor.getSnapshot().value as StateValue) };
}
